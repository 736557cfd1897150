"""The book's GPT model in PyTorch: the reference our TensorFlow.js model is checked against.

Same architecture, same parameter names and the same initialization as `GPTModel` in
rasbt/LLMs-from-scratch, chapter 4 (ch04/01_main-chapter-code/gpt.py), so a `state_dict` moves
between the two unchanged. One addition, as in the book's bonus material ch04/03_kv-cache: the
attention can keep a key/value cache for generation (off by default; the cache is a plain
attribute, not part of the state dict).

The causal mask is a non-persistent buffer, so `state_dict()` holds exactly the learnable
parameters. (The main chapter registers it as a persistent buffer; to load one of our files into
that version use `model.load_state_dict(tensors, strict=False)`.)

A developer tool, not a runtime dependency. Needs Debian's PyTorch: run it with /usr/bin/python3
(`apt-get install python3-torch libopenblas0-pthread`); a pyenv/venv python3 will not see it.
"""

import torch
import torch.nn as nn


class MultiHeadAttention(nn.Module):
    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__()
        assert d_out % num_heads == 0, "d_out must be divisible by num_heads"
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(dropout)
        # mask[i, j] = 1 where key j lies in the future of query i.
        self.register_buffer(
            "mask", torch.triu(torch.ones(context_length, context_length), diagonal=1),
            persistent=False)
        self.cache_k = None  # (b, heads, tokens so far, head_dim) while generating with a cache
        self.cache_v = None

    def forward(self, x, use_cache=False):
        b, num_tokens, _ = x.shape
        # (b, tokens, d_out) -> (b, heads, tokens, head_dim)
        def split_heads(t):
            return t.view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)

        queries = split_heads(self.W_query(x))
        keys = split_heads(self.W_key(x))
        values = split_heads(self.W_value(x))

        past = 0
        if use_cache:
            if self.cache_k is not None:
                past = self.cache_k.shape[2]
                keys = torch.cat([self.cache_k, keys], dim=2)
                values = torch.cat([self.cache_v, values], dim=2)
            self.cache_k, self.cache_v = keys, values

        attn_scores = queries @ keys.transpose(2, 3)
        # The new queries sit at positions past..past+num_tokens-1 and see keys 0..their own.
        mask_bool = self.mask.bool()[past:past + num_tokens, :past + num_tokens]
        attn_scores.masked_fill_(mask_bool, -torch.inf)
        attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        attn_weights = self.dropout(attn_weights)

        context_vec = (attn_weights @ values).transpose(1, 2)
        context_vec = context_vec.contiguous().view(b, num_tokens, self.d_out)
        return self.out_proj(context_vec)

    def reset_cache(self):
        self.cache_k, self.cache_v = None, None


class LayerNorm(nn.Module):
    def __init__(self, emb_dim):
        super().__init__()
        self.eps = 1e-5
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)  # biased, as GPT-2 does
        norm_x = (x - mean) / torch.sqrt(var + self.eps)
        return self.scale * norm_x + self.shift


class GELU(nn.Module):
    """GELU, tanh approximation (the one GPT-2 was trained with)."""

    def forward(self, x):
        return 0.5 * x * (1 + torch.tanh(
            torch.sqrt(torch.tensor(2.0 / torch.pi)) * (x + 0.044715 * torch.pow(x, 3))))


class FeedForward(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(cfg["emb_dim"], 4 * cfg["emb_dim"]),
            GELU(),
            nn.Linear(4 * cfg["emb_dim"], cfg["emb_dim"]),
        )

    def forward(self, x):
        return self.layers(x)


class TransformerBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.att = MultiHeadAttention(
            d_in=cfg["emb_dim"], d_out=cfg["emb_dim"], context_length=cfg["context_length"],
            num_heads=cfg["n_heads"], dropout=cfg["drop_rate"], qkv_bias=cfg["qkv_bias"])
        self.ff = FeedForward(cfg)
        self.norm1 = LayerNorm(cfg["emb_dim"])
        self.norm2 = LayerNorm(cfg["emb_dim"])
        self.drop_shortcut = nn.Dropout(cfg["drop_rate"])

    def forward(self, x, use_cache=False):
        shortcut = x
        x = self.drop_shortcut(self.att(self.norm1(x), use_cache=use_cache))
        x = x + shortcut
        shortcut = x
        x = self.drop_shortcut(self.ff(self.norm2(x)))
        return x + shortcut


class GPTModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])
        # nn.Sequential as in the book, so parameter names read trf_blocks.<i>.…
        self.trf_blocks = nn.Sequential(*[TransformerBlock(cfg) for _ in range(cfg["n_layers"])])
        self.final_norm = LayerNorm(cfg["emb_dim"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)
        self.current_pos = 0  # next position id when generating with a cache

    def forward(self, in_idx, use_cache=False):
        _, seq_len = in_idx.shape
        start = self.current_pos if use_cache else 0
        pos_ids = torch.arange(start, start + seq_len, device=in_idx.device)
        if use_cache:
            self.current_pos += seq_len
        x = self.drop_emb(self.tok_emb(in_idx) + self.pos_emb(pos_ids))
        for block in self.trf_blocks:
            x = block(x, use_cache=use_cache)
        return self.out_head(self.final_norm(x))

    def reset_kv_cache(self):
        for block in self.trf_blocks:
            block.att.reset_cache()
        self.current_pos = 0


def generate_text_simple(model, idx, max_new_tokens, context_size):
    """The book's greedy decoding: re-run the whole (cropped) context for every new token."""
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]
        with torch.no_grad():
            logits = model(idx_cond)
        idx_next = torch.argmax(logits[:, -1, :], dim=-1, keepdim=True)
        idx = torch.cat((idx, idx_next), dim=1)
    return idx


def generate_text_cached(model, idx, max_new_tokens, context_size):
    """Greedy decoding with the key/value cache: the prompt once, then one token per step.

    Gives the same tokens as generate_text_simple as long as everything fits the context
    (a sliding window would need the cache to be rebuilt, which this minimal version refuses).
    """
    if idx.shape[1] + max_new_tokens > context_size:
        raise ValueError(
            f"prompt {idx.shape[1]} + {max_new_tokens} new tokens exceed context {context_size}")
    model.reset_kv_cache()
    with torch.no_grad():
        logits = model(idx, use_cache=True)
        for step in range(max_new_tokens):
            idx_next = torch.argmax(logits[:, -1, :], dim=-1, keepdim=True)
            idx = torch.cat((idx, idx_next), dim=1)
            if step + 1 < max_new_tokens:  # the last token's successor is never needed
                logits = model(idx_next, use_cache=True)
    model.reset_kv_cache()
    return idx


def model_from_safetensors(path, config):
    """The model a bench saved (our safetensors, the book's state_dict names), in eval mode."""
    from safetensors_io import load_file  # tools/ is on the path of every script that gets here
    model = GPTModel({**config, "drop_rate": 0.0})
    tensors, _ = load_file(path)
    model.load_state_dict({k: torch.as_tensor(v) for k, v in tensors.items()})
    model.eval()
    return model
