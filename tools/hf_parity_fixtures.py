"""Writes the Hugging Face parity fixtures under tests/fixtures/hf/.

Our loader reads a model folder in exact Hugging Face layout (config.json, generation_config.json,
model.safetensors or shards + model.safetensors.index.json) and must compute what a trusted
reference computes after ITS OWN loader has mapped the same files. This script makes tiny random
models in that layout for the six families, loads every folder back from disk with the
reference's own weight loader, and records the reference's outputs:

  llama3, smollm2   rasbt/LLMs-from-scratch pkg/llms_from_scratch/llama3.py, load_weights_into_llama
  qwen3             rasbt/LLMs-from-scratch pkg/llms_from_scratch/qwen3.py, load_weights_into_qwen
  gemma3            rasbt/LLMs-from-scratch ch05/12_gemma3/standalone-gemma3.ipynb (its code cells:
                    model classes and load_weights_into_gemma)
  phi3, phi2        Lightning-AI/litgpt litgpt/model.py + litgpt/config.py, weights mapped by
                    copy_weights_phi from litgpt/scripts/convert_hf_checkpoint.py

The reference code is never copied into this repository: it is exported with `git show` from the
local snapshots of those repositories into a scratch folder outside the repository, and imported
from there. Only the HF config -> reference config mapping is ours (the references' loaders map
weights, not configs).

How to run (from the repository root; Debian's PyTorch, no transformers, no network):

    /usr/bin/python3 tools/hf_parity_fixtures.py          # rewrites tests/fixtures/hf/
    deno task fixtures:hf                                 # the same

Options: --out DIR (somewhere else), --scratch DIR (where the references are exported, default
/tmp/groundup-hf-references), --rasbt / --litgpt (bare git dirs of the snapshots). The output is
deterministic (fixed seeds, one thread): a re-run leaves `git status` clean.

Shims, because Debian's torch is 1.13 and the references target torch >= 2:
  - torch.nn.RMSNorm (torch 2.4) for the book's llama3.py: same formula, x * rsqrt(mean(x^2) +
    eps) * weight, computed in the input dtype (float32 here).
  - torch.nn.functional.scaled_dot_product_attention (torch 2.0) for LitGPT: the math of
    PyTorch's documented reference implementation (scale, causal or given mask, softmax, @ v).
  - import stubs for modules that are imported but never used on this path: tiktoken (llama3.py's
    tokenizer), lightning.fabric.utilities.load, safetensors.torch, tqdm and litgpt.utils
    (convert_hf_checkpoint's file handling: we call its copy_weights_phi directly with the
    tensors we read), and an empty litgpt/__init__.py (the real one imports the whole API).
"""

import argparse
import contextlib
import importlib.util
import io
import json
import math
import os
import subprocess
import sys
import types

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_shims import TorchRMSNorm  # noqa: E402
import torch.nn.functional as F

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TOOLS_DIR)
sys.path.insert(0, TOOLS_DIR)
from safetensors_io import load_file, save_file  # noqa: E402

DEFAULT_RASBT = "/work/.mirror/rasbt+LLMs-from-scratch/repo"
DEFAULT_LITGPT = "/work/.mirror/Lightning-AI+litgpt/repo"
DEFAULT_SCRATCH = "/tmp/groundup-hf-references"

PROMPT_TOKENS = 224          # >= 200: RoPE scaling and sliding windows only show on long prompts
LOGITS_EVERY = 16            # logits rows recorded at 0, 16, 32, ... and the last position
GREEDY_PROMPT = 12
GREEDY_NEW = 24
SAFETENSORS_METADATA = {"format": "pt"}  # what transformers' save_pretrained writes
SHARDS = 3


# ---------------------------------------------------------------------------------------------
# the references: exported from the snapshots, imported from the scratch folder


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True).stdout


def write_file(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))


def export_references(rasbt, litgpt, scratch):
    """git show the reference files into `scratch` (outside the repository); -> commits."""
    scratch = os.path.abspath(scratch)
    if scratch == REPO_ROOT or scratch.startswith(REPO_ROOT + os.sep):
        sys.exit(f"--scratch {scratch} is inside the repository; the references must stay outside")
    for name in ("llama3.py", "qwen3.py"):
        write_file(f"{scratch}/book/{name}", git(rasbt, "show", f"HEAD:pkg/llms_from_scratch/{name}"))
    notebook = json.loads(git(rasbt, "show", "HEAD:ch05/12_gemma3/standalone-gemma3.ipynb"))
    write_file(f"{scratch}/book/gemma3.py", gemma3_code_cells(notebook))
    for path in ("litgpt/config.py", "litgpt/model.py", "litgpt/scripts/convert_hf_checkpoint.py"):
        write_file(f"{scratch}/litgpt/{path}", git(litgpt, "show", f"HEAD:{path}"))
    # Empty package files: the real litgpt/__init__.py imports the whole API (lightning etc.).
    write_file(f"{scratch}/litgpt/litgpt/__init__.py", "")
    write_file(f"{scratch}/litgpt/litgpt/scripts/__init__.py", "")
    return {
        "rasbt": git(rasbt, "rev-parse", "HEAD").decode().strip(),
        "litgpt": git(litgpt, "rev-parse", "HEAD").decode().strip(),
    }


# The notebook's cells that define the model and its HF loader; the others install packages,
# download weights, tokenize or print.
GEMMA3_DEFINITIONS = ("class FeedForward", "class RMSNorm", "def compute_rope_params",
                      "class GroupedQueryAttention", "class TransformerBlock",
                      "class Gemma3Model", "def load_weights_into_gemma")


def gemma3_code_cells(notebook):
    cells = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    chosen = [c for c in cells if any(d in c for d in GEMMA3_DEFINITIONS)]
    found = [d for d in GEMMA3_DEFINITIONS if any(d in c for c in chosen)]
    if len(found) != len(GEMMA3_DEFINITIONS):
        sys.exit(f"standalone-gemma3.ipynb: missing {set(GEMMA3_DEFINITIONS) - set(found)}")
    return "\n\n".join(chosen) + "\n"


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None):
    """F.scaled_dot_product_attention (torch >= 2.0) for torch 1.13, without dropout."""
    assert dropout_p == 0.0, "the fixtures run in eval mode"
    scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
    scores = query @ key.transpose(-2, -1) * scale
    if is_causal:
        t_q, t_k = query.size(-2), key.size(-2)
        future = torch.ones(t_q, t_k, dtype=torch.bool, device=query.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    return torch.softmax(scores, dim=-1) @ value


def stub_module(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def unused(name):
    """A stand-in class for something imported but never used (a class, so that annotations
    such as `incremental_save | None` still evaluate)."""
    def fail(*args, **kwargs):
        raise RuntimeError(f"{name} is a stub: the fixtures never use it")
    return type(name.rsplit(".", 1)[-1], (), {"__init__": fail})


def install_shims():
    if not hasattr(nn, "RMSNorm"):
        nn.RMSNorm = TorchRMSNorm
    if not hasattr(F, "scaled_dot_product_attention"):
        F.scaled_dot_product_attention = scaled_dot_product_attention
    stub_module("tiktoken", Encoding=unused("tiktoken.Encoding"))
    stub_module("tiktoken.load", load_tiktoken_bpe=unused("tiktoken.load.load_tiktoken_bpe"))
    for name in ("lightning", "lightning.fabric", "lightning.fabric.utilities"):
        stub_module(name)
    stub_module("lightning.fabric.utilities.load",
                _NotYetLoadedTensor=unused("lightning.fabric.utilities.load._NotYetLoadedTensor"))
    stub_module("safetensors")
    stub_module("safetensors.torch", load_file=unused("safetensors.torch.load_file"))
    stub_module("tqdm", tqdm=unused("tqdm.tqdm"))
    stub_module("litgpt.utils", extend_checkpoint_dir=unused("extend_checkpoint_dir"),
                incremental_save=unused("incremental_save"), lazy_load=unused("lazy_load"),
                save_config=unused("save_config"))


def import_file(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def import_references(scratch):
    install_shims()
    sys.path.insert(0, f"{scratch}/litgpt")
    import litgpt.config
    import litgpt.model
    import litgpt.scripts.convert_hf_checkpoint
    return types.SimpleNamespace(
        llama3=import_file("book_llama3", f"{scratch}/book/llama3.py"),
        qwen3=import_file("book_qwen3", f"{scratch}/book/qwen3.py"),
        gemma3=import_file("book_gemma3", f"{scratch}/book/gemma3.py"),
        lit_config=litgpt.config,
        lit_model=litgpt.model,
        lit_convert=litgpt.scripts.convert_hf_checkpoint,
    )


# ---------------------------------------------------------------------------------------------
# random weights, every value bf16-representable so a BF16 file holds exactly the same numbers


def bf16_round(t):
    return t.to(torch.bfloat16).to(torch.float32)


class Init:
    def __init__(self, seed, embedding_gain=1.0):
        self.gen = torch.Generator().manual_seed(seed)
        self.embedding_gain = embedding_gain

    def normal(self, shape, std, mean=0.0):
        return bf16_round(mean + std * torch.randn(*shape, generator=self.gen))

    def linear(self, out_features, in_features):
        """Weights [out, in] with std 1/sqrt(in): activations keep their scale through a layer,
        so attention is neither uniform nor one-hot and the logits spread over a few units."""
        return self.normal([out_features, in_features], 1.0 / math.sqrt(in_features))

    def embedding(self, vocab, hidden):
        """std gain/sqrt(hidden): the tied head then gives logits with a std near `gain`."""
        return self.normal([vocab, hidden], self.embedding_gain / math.sqrt(hidden))

    def norm(self, size, zero_centred=False):
        """Norm weights near 1 (Gemma stores them zero-centred: applied as 1 + w)."""
        return self.normal([size], 0.1, 0.0 if zero_centred else 1.0)

    def bias(self, size):
        return self.normal([size], 0.05)


def llama_like_weights(init, c, *, qk_norm=False, gemma=False):
    """HF names of LlamaForCausalLM, Qwen3ForCausalLM and Gemma3ForCausalLM, in state_dict order."""
    hidden, inter, hd = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    heads, kv = c["num_attention_heads"], c["num_key_value_heads"]
    w = {"model.embed_tokens.weight": init.embedding(c["vocab_size"], hidden)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "self_attn.q_proj.weight"] = init.linear(heads * hd, hidden)
        w[p + "self_attn.k_proj.weight"] = init.linear(kv * hd, hidden)
        w[p + "self_attn.v_proj.weight"] = init.linear(kv * hd, hidden)
        w[p + "self_attn.o_proj.weight"] = init.linear(hidden, heads * hd)
        if qk_norm:
            w[p + "self_attn.q_norm.weight"] = init.norm(hd, gemma)
            w[p + "self_attn.k_norm.weight"] = init.norm(hd, gemma)
        w[p + "mlp.gate_proj.weight"] = init.linear(inter, hidden)
        w[p + "mlp.up_proj.weight"] = init.linear(inter, hidden)
        w[p + "mlp.down_proj.weight"] = init.linear(hidden, inter)
        w[p + "input_layernorm.weight"] = init.norm(hidden, gemma)
        w[p + "post_attention_layernorm.weight"] = init.norm(hidden, gemma)
        if gemma:
            w[p + "pre_feedforward_layernorm.weight"] = init.norm(hidden, gemma)
            w[p + "post_feedforward_layernorm.weight"] = init.norm(hidden, gemma)
    w["model.norm.weight"] = init.norm(hidden, gemma)
    if not c.get("tie_word_embeddings", True):
        w["lm_head.weight"] = init.linear(c["vocab_size"], hidden)
    return w


def phi3_weights(init, c):
    hidden, inter, heads, kv = (c["hidden_size"], c["intermediate_size"],
                                c["num_attention_heads"], c["num_key_value_heads"])
    hd = hidden // heads
    w = {"model.embed_tokens.weight": init.embedding(c["vocab_size"], hidden)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "self_attn.o_proj.weight"] = init.linear(hidden, heads * hd)
        w[p + "self_attn.qkv_proj.weight"] = init.linear((heads + 2 * kv) * hd, hidden)  # rows Q; K; V
        w[p + "mlp.gate_up_proj.weight"] = init.linear(2 * inter, hidden)  # rows gate; up
        w[p + "mlp.down_proj.weight"] = init.linear(hidden, inter)
        w[p + "input_layernorm.weight"] = init.norm(hidden)
        w[p + "post_attention_layernorm.weight"] = init.norm(hidden)
    w["model.norm.weight"] = init.norm(hidden)
    w["lm_head.weight"] = init.linear(c["vocab_size"], hidden)
    return w


def phi2_weights(init, c):
    hidden, inter, heads, kv = (c["hidden_size"], c["intermediate_size"],
                                c["num_attention_heads"], c["num_key_value_heads"])
    hd = hidden // heads
    w = {"model.embed_tokens.weight": init.embedding(c["vocab_size"], hidden)}

    def linear(name, out_features, in_features):
        w[name + ".weight"] = init.linear(out_features, in_features)
        w[name + ".bias"] = init.bias(out_features)

    def layernorm(name, size):
        w[name + ".weight"] = init.norm(size)
        w[name + ".bias"] = init.bias(size)

    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        linear(p + "self_attn.q_proj", heads * hd, hidden)
        linear(p + "self_attn.k_proj", kv * hd, hidden)
        linear(p + "self_attn.v_proj", kv * hd, hidden)
        linear(p + "self_attn.dense", hidden, heads * hd)
        linear(p + "mlp.fc1", inter, hidden)
        linear(p + "mlp.fc2", hidden, inter)
        layernorm(p + "input_layernorm", hidden)
    layernorm("model.final_layernorm", hidden)
    linear("lm_head", c["vocab_size"], hidden)
    return w


# ---------------------------------------------------------------------------------------------
# HF configs, key for key as transformers writes them (sorted, indent 2), tiny sizes.
# `layout` "legacy" = rope_theta/rope_scaling/torch_dtype (what Hub checkpoints have);
# "v5" = transformers v5: rope_parameters and dtype.


DTYPE_NAMES = {"F32": "float32", "BF16": "bfloat16"}


def with_layout(config, layout, dtype, rope_theta, rope_extra=None):
    """Adds the RoPE and dtype keys in the given layout; rope_extra: llama3 scaling keys."""
    config = dict(config)
    if layout == "legacy":
        config["torch_dtype"] = dtype
        config["rope_theta"] = rope_theta
        config["rope_scaling"] = dict(rope_extra, rope_type="llama3") if rope_extra else None
        config["transformers_version"] = "4.51.3"
    else:
        config["dtype"] = dtype
        config["rope_parameters"] = dict(rope_extra or {}, rope_theta=rope_theta,
                                         rope_type="llama3" if rope_extra else "default")
        config["transformers_version"] = "5.0.0"
    return config


def llama3_config(layout, dtype):
    """Llama-3.2-1B's keys; original_max_position_embeddings 64 so that the prompt is longer
    than it and, with head_dim 16 and theta 500000, frequency 0 is kept, frequency 1 (wavelength
    32.6, between 64/4 and 64/1) is smoothed and frequencies 2-7 are divided by the factor."""
    base = {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 254, "eos_token_id": 255, "head_dim": 16, "hidden_act": "silu",
        "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 128,
        "max_position_embeddings": 2048, "mlp_bias": False, "model_type": "llama",
        "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05, "tie_word_embeddings": True,
        "use_cache": True, "vocab_size": 256,
    }
    scaling = {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
               "original_max_position_embeddings": 64}
    return with_layout(base, layout, dtype, 500000.0, scaling)


def smollm2_config(layout, dtype):
    """SmolLM2-135M-Instruct's keys: GQA with 3 key/value heads, tied, theta 100000, no scaling."""
    base = {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 1, "eos_token_id": 2, "head_dim": 8, "hidden_act": "silu",
        "hidden_size": 48, "initializer_range": 0.041666666666666664, "intermediate_size": 128,
        "is_llama_config": True, "max_position_embeddings": 8192, "mlp_bias": False,
        "model_type": "llama", "num_attention_heads": 6, "num_hidden_layers": 2,
        "num_key_value_heads": 3, "pad_token_id": 2, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_interleaved": False, "tie_word_embeddings": True, "use_cache": True,
        "vocab_size": 256,
    }
    return with_layout(base, layout, dtype, 100000.0)


def qwen3_config(layout, dtype):
    """Qwen3-0.6B's keys: head_dim 32 with 4 heads on hidden 64 (4 x 32 != 64), QK-norm."""
    base = {
        "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 253, "eos_token_id": 254, "head_dim": 32, "hidden_act": "silu",
        "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 128,
        "max_position_embeddings": 40960, "max_window_layers": 2, "model_type": "qwen3",
        "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06, "sliding_window": None, "tie_word_embeddings": True,
        "use_cache": True, "use_sliding_window": False, "vocab_size": 256,
    }
    return with_layout(base, layout, dtype, 1000000.0)


GEMMA3_LAYER_TYPES = ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]


def gemma3_config(layout, dtype):
    """gemma-3-270m's keys (no tie_word_embeddings: tied). Sliding window 32 < the prompt on the
    sliding layers, local theta 10000 vs global 1e6, head_dim 16 with 4 heads on hidden 48,
    query_pre_attn_scalar 32 != head_dim, hidden 48 so that sqrt(48) = 6.9282 rounds to 6.9375 in
    bf16. dtype is bfloat16 in both layouts (the released model's dtype, which decides the
    embedding scale), also for the F32 file."""
    base = {
        "architectures": ["Gemma3ForCausalLM"], "attention_bias": False,
        "attention_dropout": 0.0, "attn_logit_softcapping": None, "bos_token_id": 2,
        "eos_token_id": 1, "final_logit_softcapping": None, "head_dim": 16,
        "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 48, "initializer_range": 0.02,
        "intermediate_size": 128, "layer_types": GEMMA3_LAYER_TYPES,
        "max_position_embeddings": 32768, "model_type": "gemma3_text",
        "num_attention_heads": 4, "num_hidden_layers": 4, "num_key_value_heads": 2,
        "pad_token_id": 0, "query_pre_attn_scalar": 32, "rms_norm_eps": 1e-06,
        "sliding_window": 32, "use_bidirectional_attention": False, "use_cache": True,
        "vocab_size": 256,
    }
    del dtype  # see the docstring
    if layout == "legacy":
        return dict(base, _sliding_window_pattern=2, rope_local_base_freq=10000.0,
                    rope_scaling=None, rope_theta=1000000.0, torch_dtype="bfloat16",
                    transformers_version="4.55.0")
    return dict(base, dtype="bfloat16", transformers_version="5.0.0", rope_parameters={
        "full_attention": {"rope_theta": 1000000.0, "rope_type": "default"},
        "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"},
    })


def phi3_config(layout, dtype):
    """Phi-3-mini-4k-instruct's keys, untied; GQA 4 heads / 2 key-value heads (the Phi3
    architecture's num_key_value_heads, as in Phi-3-medium), so qkv_proj is not three equal
    thirds. sliding_window 2047 as released: longer than the prompt."""
    assert layout == "legacy"
    return {
        "architectures": ["Phi3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 1, "embd_pdrop": 0.0, "eos_token_id": 255, "hidden_act": "silu",
        "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 128,
        "max_position_embeddings": 4096, "model_type": "phi3", "num_attention_heads": 4,
        "num_hidden_layers": 2, "num_key_value_heads": 2,
        "original_max_position_embeddings": 4096, "pad_token_id": 255, "resid_pdrop": 0.0,
        "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 10000.0,
        "sliding_window": 2047, "tie_word_embeddings": False, "torch_dtype": dtype,
        "transformers_version": "4.51.3", "use_cache": True, "vocab_size": 256,
    }


def phi2_config(layout, dtype):
    """phi-2's keys: head_dim 20 (80 / 4), partial_rotary_factor 0.4 -> 8 rotary dims (phi-2:
    32 of 80), GELU-tanh ("gelu_new"), LayerNorm with biases, untied head with bias."""
    assert layout == "legacy"
    return {
        "architectures": ["PhiForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 255,
        "embd_pdrop": 0.0, "eos_token_id": 255, "hidden_act": "gelu_new", "hidden_size": 80,
        "initializer_range": 0.02, "intermediate_size": 128, "layer_norm_eps": 1e-05,
        "max_position_embeddings": 2048, "model_type": "phi", "num_attention_heads": 4,
        "num_hidden_layers": 2, "num_key_value_heads": 4, "partial_rotary_factor": 0.4,
        "qk_layernorm": False, "resid_pdrop": 0.1, "rope_scaling": None, "rope_theta": 10000.0,
        "tie_word_embeddings": False, "torch_dtype": dtype, "transformers_version": "4.51.3",
        "use_cache": True, "vocab_size": 256,
    }


def generation_config(c, eos_ids=None, **extra):
    out = {"bos_token_id": c["bos_token_id"], "eos_token_id": eos_ids or c["eos_token_id"],
           "transformers_version": c["transformers_version"]}
    if "pad_token_id" in c:
        out["pad_token_id"] = c["pad_token_id"]
    out.update(extra)
    return out


# ---------------------------------------------------------------------------------------------
# the references, built from an HF config and an HF-named state dict by their own loaders


def quiet():
    """The book's loaders print "Model uses weight tying."; the fixtures' log stays short."""
    return contextlib.redirect_stdout(io.StringIO())


def hf_rope_theta(c, layer_type=None):
    if "rope_parameters" in c:
        params = c["rope_parameters"]
        return (params[layer_type] if layer_type else params)["rope_theta"]
    return c["rope_local_base_freq"] if layer_type == "sliding_attention" else c["rope_theta"]


def hf_rope_scaling(c):
    scaling = c.get("rope_parameters") if "rope_parameters" in c else c.get("rope_scaling")
    if not scaling or scaling.get("rope_type") != "llama3":
        return None
    return scaling


def build_llama3(refs, c, params):
    scaling = hf_rope_scaling(c)
    cfg = {
        "vocab_size": c["vocab_size"], "context_length": c["max_position_embeddings"],
        "emb_dim": c["hidden_size"], "n_heads": c["num_attention_heads"],
        "n_layers": c["num_hidden_layers"], "hidden_dim": c["intermediate_size"],
        "n_kv_groups": c["num_key_value_heads"], "rope_base": hf_rope_theta(c),
        "dtype": torch.float32,
        "rope_freq": None if scaling is None else {
            "factor": scaling["factor"], "low_freq_factor": scaling["low_freq_factor"],
            "high_freq_factor": scaling["high_freq_factor"],
            "original_context_length": scaling["original_max_position_embeddings"],
        },
    }
    assert c["rms_norm_eps"] == 1e-5 and c["head_dim"] == c["hidden_size"] // c["num_attention_heads"]
    model = refs.llama3.Llama3Model(cfg)
    with quiet():
        refs.llama3.load_weights_into_llama(model, cfg, params)
    return model


def build_qwen3(refs, c, params):
    cfg = {
        "vocab_size": c["vocab_size"], "context_length": c["max_position_embeddings"],
        "emb_dim": c["hidden_size"], "n_heads": c["num_attention_heads"],
        "n_layers": c["num_hidden_layers"], "hidden_dim": c["intermediate_size"],
        "head_dim": c["head_dim"], "qk_norm": True, "n_kv_groups": c["num_key_value_heads"],
        "rope_base": hf_rope_theta(c), "dtype": torch.float32,
    }
    assert c["rms_norm_eps"] == 1e-6
    model = refs.qwen3.Qwen3Model(cfg)
    with quiet():
        refs.qwen3.load_weights_into_qwen(model, cfg, params)
    return model


def gemma3_embedding_scale(c):
    """sqrt(hidden) as HF applies it: a float32 tensor cast to the model's dtype (bfloat16)."""
    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[c.get("dtype") or c["torch_dtype"]]
    return torch.tensor(c["hidden_size"] ** 0.5, dtype=torch.float32).to(dtype).item()


def build_gemma3(refs, c, params):
    cfg = {
        "vocab_size": c["vocab_size"], "context_length": c["max_position_embeddings"],
        "emb_dim": c["hidden_size"], "n_heads": c["num_attention_heads"],
        "n_layers": c["num_hidden_layers"], "hidden_dim": c["intermediate_size"],
        "head_dim": c["head_dim"], "qk_norm": True, "n_kv_groups": c["num_key_value_heads"],
        "rope_local_base": hf_rope_theta(c, "sliding_attention"),
        "rope_base": hf_rope_theta(c, "full_attention"), "sliding_window": c["sliding_window"],
        "layer_types": c["layer_types"], "dtype": torch.float32,
        "query_pre_attn_scalar": c["query_pre_attn_scalar"],
    }
    assert c["rms_norm_eps"] == 1e-6
    model = refs.gemma3.Gemma3Model(cfg)
    with quiet():
        refs.gemma3.load_weights_into_gemma(model, cfg, params)
    # The notebook multiplies the embeddings by cfg["emb_dim"] ** 0.5 in its forward, exactly
    # sqrt(48) = 6.9282 in float32; HF multiplies by that scale cast to the model's dtype,
    # 6.9375 in bfloat16. Its forward reads model.cfg at call time, so an emb_dim of 6.9375^2
    # (exact in float64) there makes it multiply by exactly 6.9375; the layers are built already.
    scale = gemma3_embedding_scale(c)
    model.cfg = dict(cfg, emb_dim=scale * scale)
    assert model.cfg["emb_dim"] ** 0.5 == scale
    return model


def lit_config(refs, c, name, **keys):
    return refs.lit_config.Config(
        name=name, block_size=c["max_position_embeddings"], vocab_size=c["vocab_size"],
        padded_vocab_size=c["vocab_size"], n_layer=c["num_hidden_layers"],
        n_embd=c["hidden_size"], n_head=c["num_attention_heads"],
        n_query_groups=c["num_key_value_heads"], intermediate_size=c["intermediate_size"],
        rope_base=hf_rope_theta(c), **keys)


def build_litgpt(refs, config, params):
    """GPT(config) with the state dict that copy_weights_phi makes from the HF tensors."""
    state_dict = {}
    refs.lit_convert.copy_weights_phi(config, {}, state_dict, params)
    model = refs.lit_model.GPT(config)
    model.load_state_dict(state_dict, strict=True)
    return model


def build_phi3(refs, c, params):
    # litgpt/config.py "Phi-3-mini-4k-instruct" with the tiny sizes; the name must start with
    # "Phi-3" (copy_weights_phi maps qkv_proj / gate_up_proj / o_proj for those names).
    config = lit_config(refs, c, "Phi-3-parity", rotary_percentage=1.0, bias=False,
                        norm_class_name="RMSNorm", norm_eps=c["rms_norm_eps"],
                        mlp_class_name="LLaMAMLP", parallel_residual=False,
                        sliding_window_size=2048)
    return build_litgpt(refs, config, params)


def build_phi2(refs, c, params):
    # litgpt/config.py "phi-2" with the tiny sizes.
    config = lit_config(refs, c, "phi-2-parity", rotary_percentage=c["partial_rotary_factor"],
                        shared_attention_norm=True, lm_head_bias=True, gelu_approximate="tanh",
                        norm_eps=c["layer_norm_eps"])
    assert config.rope_n_elem == 8
    return build_litgpt(refs, config, params)


# ---------------------------------------------------------------------------------------------
# the cases


def book(commit, path):
    return f"rasbt/LLMs-from-scratch@{commit} {path}"


def litgpt_ref(commit):
    return (f"Lightning-AI/litgpt@{commit} litgpt/model.py (GPT) + litgpt/config.py, weights "
            f"mapped by copy_weights_phi in litgpt/scripts/convert_hf_checkpoint.py")


ARCHES = {
    "llama3": dict(family="llama", seed=1001, config=llama3_config, weights=llama_like_weights,
                   build=build_llama3, generation=lambda c: generation_config(
                       c, do_sample=True, temperature=0.6, top_p=0.9),
                   reference=lambda commits: book(commits["rasbt"],
                                                  "pkg/llms_from_scratch/llama3.py")),
    "smollm2": dict(family="llama", seed=1002, config=smollm2_config, weights=llama_like_weights,
                    build=build_llama3, generation=lambda c: generation_config(c),
                    reference=lambda commits: book(commits["rasbt"],
                                                   "pkg/llms_from_scratch/llama3.py")),
    "qwen3": dict(family="qwen3", seed=1003, config=qwen3_config,
                  weights=lambda init, c: llama_like_weights(init, c, qk_norm=True),
                  build=build_qwen3, generation=lambda c: generation_config(
                      c, eos_ids=[c["eos_token_id"], c["bos_token_id"]], do_sample=True,
                      temperature=0.6, top_k=20, top_p=0.95),
                  reference=lambda commits: book(commits["rasbt"],
                                                 "pkg/llms_from_scratch/qwen3.py")),
    # Gemma multiplies the embeddings by sqrt(hidden): with the default gain they swamp the
    # residual stream and greedy decoding repeats one token; half the gain lets it move.
    "gemma3": dict(family="gemma3", seed=1024, embedding_gain=0.5, config=gemma3_config,
                   weights=lambda init, c: llama_like_weights(init, c, qk_norm=True, gemma=True),
                   build=build_gemma3, generation=lambda c: generation_config(
                       c, eos_ids=[1, 106], cache_implementation="hybrid",
                       do_sample=True, top_k=64, top_p=0.95),
                   reference=lambda commits: book(commits["rasbt"],
                                                  "ch05/12_gemma3/standalone-gemma3.ipynb")),
    "phi3": dict(family="phi3", seed=1005, config=phi3_config, weights=phi3_weights,
                 build=build_phi3, generation=lambda c: generation_config(
                     c, eos_ids=[255, 253, 254]),
                 reference=lambda commits: litgpt_ref(commits["litgpt"])),
    "phi2": dict(family="phi2", seed=1036, config=phi2_config, weights=phi2_weights,
                 build=build_phi2, generation=lambda c: generation_config(c),
                 reference=lambda commits: litgpt_ref(commits["litgpt"])),
}

# (case, arch, file dtype, config layout, shards, same_as, what it exercises)
CASES = [
    ("llama3", "llama3", "F32", "legacy", 1, None,
     "Llama 3.2 style: tied, GQA 4/2, llama3 rope scaling (factor 32, lf 1, hf 4, original "
     "context 64 < the prompt: one frequency kept, one smoothed, six divided)"),
    ("qwen3", "qwen3", "F32", "legacy", 1, None,
     "head_dim 32 with 4 heads on hidden 64, QK-norm, GQA 4/2, tied, theta 1e6"),
    ("gemma3", "gemma3", "F32", "v5", 1, None,
     "layer_types sliding/full/sliding/full, sliding window 32 < the prompt, local theta 1e4 / "
     "global 1e6 (v5 rope_parameters per layer type), four (1+w) norms per block with nonzero "
     "w, QK-norm, query_pre_attn_scalar 32 != head_dim 16, embeddings x sqrt(48) rounded to "
     "bf16 (6.9375), GeGLU-tanh, GQA 4/2, tied (no tie_word_embeddings key)"),
    ("phi3", "phi3", "F32", "legacy", 1, None,
     "fused qkv_proj (rows Q; K; V with GQA 4/2: not equal thirds) and gate_up_proj (first "
     "half gate), untied head"),
    ("phi2", "phi2", "F32", "legacy", 1, None,
     "partial rotary 0.4 (8 of 20 dims), parallel block with one LayerNorm, biases everywhere, "
     "dense, fc1/fc2 GELU-tanh, final_layernorm, lm_head with bias"),
    ("smollm2", "smollm2", "F32", "v5", 1, None,
     "a llama with GQA 6/3 (3 key/value heads), tied, theta 1e5, transformers-v5 config "
     "(rope_parameters, dtype)"),
    ("llama3-bf16", "llama3", "BF16", "legacy", 1, "llama3", "llama3's values in a BF16 file"),
    ("llama3-sharded", "llama3", "F32", "legacy", SHARDS, "llama3",
     "llama3's values in 3 shards + model.safetensors.index.json; layers straddle shards"),
    ("qwen3-bf16", "qwen3", "BF16", "legacy", 1, "qwen3", "qwen3's values in a BF16 file"),
    ("gemma3-bf16", "gemma3", "BF16", "legacy", 1, "gemma3",
     "gemma3's values in a BF16 file, legacy config (rope_theta + rope_local_base_freq, "
     "torch_dtype, _sliding_window_pattern)"),
]


# ---------------------------------------------------------------------------------------------
# writing and reading HF folders


def write_json(path, value, pretty=True):
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "w", encoding="utf-8") as f:
        if pretty:  # transformers: json.dumps(..., indent=2, sort_keys=True) + "\n"
            f.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
        else:
            f.write(value)
    os.replace(temp, path)


def to_file_dtype(tensors, dtype):
    return {k: (v.to(torch.bfloat16) if dtype == "BF16" else v) for k, v in tensors.items()}


def split_shards(names, tensors, count):
    """Consecutive runs of names (state_dict order) of about equal byte size, as save_pretrained
    fills shards up to max_shard_size."""
    sizes = [tensors[n].numel() * tensors[n].element_size() for n in names]
    target = sum(sizes) / count
    shards, current, filled = [], [], 0
    for name, size in zip(names, sizes):
        if current and filled + size / 2 > target * (len(shards) + 1) and len(shards) < count - 1:
            shards.append(current)
            current = []
        current.append(name)
        filled += size
    shards.append(current)
    assert len(shards) == count, f"could not split into {count} shards"
    return shards


def write_hf_folder(folder, config, generation, tensors, dtype, shards):
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        os.remove(os.path.join(folder, name))
    write_json(f"{folder}/config.json", config)
    write_json(f"{folder}/generation_config.json", generation)
    tensors = to_file_dtype(tensors, dtype)
    if shards == 1:
        save_file(tensors, f"{folder}/model.safetensors", SAFETENSORS_METADATA)
        return
    weight_map = {}
    for i, names in enumerate(split_shards(list(tensors), tensors, shards)):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: tensors[n] for n in names}, f"{folder}/{file}", SAFETENSORS_METADATA)
        weight_map.update({n: file for n in names})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    write_json(f"{folder}/model.safetensors.index.json",
               {"metadata": {"total_size": total}, "weight_map": weight_map})


def read_hf_folder(folder):
    """-> (config, HF-named float32 tensors), read back from the files just written, the way the
    book's notebooks read a downloaded checkpoint (every shard named by the index)."""
    with open(f"{folder}/config.json", encoding="utf-8") as f:
        config = json.load(f)
    index = f"{folder}/model.safetensors.index.json"
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    params = {}
    for file in files:
        tensors, _ = load_file(f"{folder}/{file}")
        params.update({k: v.to(torch.float32) for k, v in tensors.items()})
    return config, params


# ---------------------------------------------------------------------------------------------
# the reference's outputs


def prompt_ids(seed, config):
    """BOS, then random ids that are none of the special ids (bos, eos, pad)."""
    special = {config["bos_token_id"], config.get("pad_token_id")}
    eos = config["eos_token_id"]
    special.update(eos if isinstance(eos, list) else [eos])
    allowed = torch.tensor([i for i in range(config["vocab_size"]) if i not in special])
    gen = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(allowed), (PROMPT_TOKENS - 1,), generator=gen)
    return [config["bos_token_id"]] + allowed[picks].tolist()


def forward(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids]))[0]


def greedy(model, ids):
    """The book's generate_text_simple without a KV cache: argmax of the last row, 24 times."""
    ids = list(ids)
    new, margins = [], []
    for _ in range(GREEDY_NEW):
        last = forward(model, ids)[-1]
        top2 = torch.topk(last, 2).values
        margins.append((top2[0] - top2[1]).item())
        new.append(int(torch.argmax(last)))
        ids.append(new[-1])
    return new, min(margins)


def rows_to_json(rows):
    """float32 values with 9 significant digits: enough to get the float32 back exactly."""
    return [[float(f"{x:.9g}") for x in row] for row in rows.tolist()]


def eos_ids(*configs):
    ids = set()
    for c in configs:
        eos = c["eos_token_id"]
        ids.update(eos if isinstance(eos, list) else [eos])
    return ids


def expected_outputs(case, arch, commits, model, config, generation):
    ids = prompt_ids(arch["seed"] + 500, config)
    logits = forward(model, ids)
    positions = list(range(0, len(ids), LOGITS_EVERY))
    if positions[-1] != len(ids) - 1:
        positions.append(len(ids) - 1)
    new_ids, margin = greedy(model, ids[:GREEDY_PROMPT])
    # So that a generator that stops at EOS and one that does not agree on these 24 ids.
    assert not eos_ids(config, generation) & set(new_ids), f"{case}: greedy hit an EOS id"
    # The same forward with float64 weights and activations: how far float32 rounding moves
    # these logits. (The references' norms that cast to float32 explicitly still do.)
    book_cfg = getattr(model, "cfg", None)
    if isinstance(book_cfg, dict):  # the book's forward casts to cfg["dtype"] before the head
        model.cfg = dict(book_cfg, dtype=torch.float64)
    with torch.no_grad():
        logits64 = model.double()(torch.tensor([ids]))[0]
    model.float()
    if isinstance(book_cfg, dict):
        model.cfg = book_cfg
    out = {
        "case": case, "family": arch["family"], "reference": arch["reference"](commits),
        "input_ids": ids, "logits_positions": positions,
        "logits": rows_to_json(logits[positions]),
        "greedy": {"prompt_ids": ids[:GREEDY_PROMPT], "new_ids": new_ids},
        "min_top2_margin": float(f"{margin:.4g}"),
        "float64_rerun_max_abs_diff": float(f"{(logits.double() - logits64).abs().max().item():.3g}"),
        "logits_std": float(f"{logits.std().item():.4g}"),
    }
    if arch["family"] == "gemma3":
        out["emb_scale"] = gemma3_embedding_scale(config)
    return out, logits


def expected_json(value):
    """Readable JSON with each list of numbers on one line (a row of logits is one line)."""
    def dump(v, indent):
        inner = indent + "  "
        if isinstance(v, dict):
            items = [f"{inner}{json.dumps(k)}: {dump(x, inner)}" for k, x in v.items()]
            return "{\n" + ",\n".join(items) + "\n" + indent + "}"
        if isinstance(v, list) and any(isinstance(x, list) for x in v):
            return "[\n" + ",\n".join(inner + dump(x, inner) for x in v) + "\n" + indent + "]"
        return json.dumps(v, separators=(", ", ": "))
    return dump(value, "") + "\n"


# ---------------------------------------------------------------------------------------------


def cross_check_phi3(refs, folder):
    """LitGPT's Phi-3 and the book's Llama 3 are the same architecture: on phi3's weights split
    as HF splits them (qkv rows Q; K; V, gate_up rows gate; up) they must agree. Two unrelated
    references agreeing is evidence that neither is being driven wrongly by this script."""
    config, params = read_hf_folder(folder)
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    hd = config["hidden_size"] // heads
    split = {}
    for name, value in params.items():
        if name.endswith("qkv_proj.weight"):
            q, k, v = value.split([heads * hd, kv * hd, kv * hd])
            for part, tensor in (("q", q), ("k", k), ("v", v)):
                split[name.replace("qkv_proj", f"{part}_proj")] = tensor
        elif name.endswith("gate_up_proj.weight"):
            gate, up = value.chunk(2)
            split[name.replace("gate_up_proj", "gate_proj")] = gate
            split[name.replace("gate_up_proj", "up_proj")] = up
        else:
            split[name] = value
    as_llama = dict(config, head_dim=hd, rope_scaling=None)
    ids = prompt_ids(ARCHES["phi3"]["seed"] + 500, config)
    litgpt = forward(build_phi3(refs, config, params).eval(), ids)
    book_llama = forward(build_llama3(refs, as_llama, split).eval(), ids)
    diff = (litgpt - book_llama).abs().max().item()
    assert diff < 1e-4, f"phi3: LitGPT and the book's llama3 differ by {diff}"
    return diff


README = """# Hugging Face parity fixtures

Generated by `tools/hf_parity_fixtures.py`; do not edit by hand. Regenerate from the repository
root with Debian's PyTorch (no transformers, no network):

    deno task fixtures:hf        # = /usr/bin/python3 tools/hf_parity_fixtures.py

It is deterministic (fixed seeds, one thread): a re-run leaves `git status` clean. It needs the
local snapshots of the two reference repositories (bare git dirs, `--rasbt`, `--litgpt`); it
exports their files with `git show` into a scratch folder outside the repository and imports
them from there (their code is never copied here).

## References

| cases | reference | its HF loader |
|---|---|---|
| llama3, smollm2 (+ twins) | rasbt/LLMs-from-scratch@{rasbt} `pkg/llms_from_scratch/llama3.py` | `load_weights_into_llama` |
| qwen3 (+ twin) | rasbt/LLMs-from-scratch@{rasbt} `pkg/llms_from_scratch/qwen3.py` | `load_weights_into_qwen` |
| gemma3 (+ twin) | rasbt/LLMs-from-scratch@{rasbt} `ch05/12_gemma3/standalone-gemma3.ipynb` (its code cells) | `load_weights_into_gemma` |
| phi3, phi2 | Lightning-AI/litgpt@{litgpt} `litgpt/model.py` + `litgpt/config.py` | `copy_weights_phi` (`litgpt/scripts/convert_hf_checkpoint.py`) |

Each folder is written, read back from disk (all shards named by the index) and handed as an
HF-named state dict to the reference's own loader; only the HF config -> reference config
mapping is the script's. Shims for Debian's torch 1.13: `torch.nn.RMSNorm` (torch 2.4; for
llama3.py), `F.scaled_dot_product_attention` (torch 2.0; for LitGPT), and import stubs for
modules imported but unused on this path (tiktoken; lightning, safetensors, tqdm and
litgpt.utils for convert_hf_checkpoint.py; an empty `litgpt/__init__.py`).

Cross-check: LitGPT's Phi-3 and the book's Llama 3 on phi3's weights split as HF splits them
agree within {phi3_cross:.1e} (max |logit difference|).

## Cases

Each `<case>/` is an exact HF model folder: `config.json` and `generation_config.json` as
transformers writes them (sorted keys, indent 2; legacy layout = `rope_theta`/`rope_scaling`/
`torch_dtype`, v5 layout = `rope_parameters`/`dtype`), and `model.safetensors` (metadata
`{{"format": "pt"}}`) or `model-0000N-of-00003.safetensors` + `model.safetensors.index.json`
(`{{metadata: {{total_size}}, weight_map}}`). HF tensor names, `[out, in]`; tied models have no
`lm_head.weight`. Vocabulary 256; bos/eos ids are moved into it.

| case | file | config | bytes | exercises |
|---|---|---|---|---|
{case_rows}

Every weight is random but bf16-representable (drawn in float32, rounded to bfloat16), so a BF16
twin holds exactly the same values; the script checks that the reference computes bit-identical
logits from each twin. Linear weights have std 1/sqrt(in), embeddings gain/sqrt(hidden) (gain 1;
0.5 for gemma3, whose embeddings are multiplied by sqrt(hidden)), norm weights 1 + 0.1 N(0, 1)
(Gemma: 0.1 N(0, 1), applied as 1 + w), biases 0.05 N(0, 1): logits spread over about one unit.

**Gemma's embedding scale.** HF multiplies the embeddings by sqrt(hidden_size) cast to the
model's dtype. Both gemma3 configs declare `bfloat16` (the released model's dtype; the F32 file
is an upcast copy), so the expected outputs use sqrt(48) rounded to bf16 = 6.9375, recorded as
`emb_scale`. (The notebook multiplies by the unrounded `emb_dim ** 0.5`; the script makes it use
6.9375. With the unrounded 6.9282 the logits move by about 7e-3.)

## expected/<case>.json

```
{{ "case", "family", "reference": "<repo>@<commit> <path>",
  "input_ids": [{prompt} ids: BOS, then random ids that are not bos/eos/pad],
  "logits_positions": [0, 16, ..., {last}],
  "logits": [[256 floats] per position: the float32 forward of the whole prompt],
  "greedy": {{ "prompt_ids": the first {greedy_prompt} input ids, "new_ids": {greedy_new} ids }},
  "min_top2_margin", "float64_rerun_max_abs_diff", "logits_std", ("emb_scale") }}
```

`new_ids`: argmax of the last row, appended, {greedy_new} times, without a KV cache; none of
them is an EOS id of config.json or generation_config.json, so stopping at EOS or not gives the
same ids. `min_top2_margin`: the smallest gap between the best and second-best logit over those
steps (far above float32 noise). `float64_rerun_max_abs_diff`: the same forward with float64
weights and activations (where a reference casts its norms to float32 explicitly, they stay
float32) against the float32 logits: all at most {worst_f64:.1e}, so a tolerance of 1e-4 on the
logits holds with a wide margin. Twins hold `{{"case": ..., "same_as": "<base case>"}}`.
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "fixtures", "hf"))
    parser.add_argument("--scratch", default=DEFAULT_SCRATCH)
    parser.add_argument("--rasbt", default=DEFAULT_RASBT)
    parser.add_argument("--litgpt", default=DEFAULT_LITGPT)
    parser.add_argument("--cases", nargs="*", help="only these cases (twins need their base)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the references' own initialisation, overwritten by the loaders

    commits = export_references(args.rasbt, args.litgpt, args.scratch)
    refs = import_references(os.path.abspath(args.scratch))
    os.makedirs(f"{args.out}/expected", exist_ok=True)

    base_logits, rows, f64_diffs = {}, [], []
    for case, arch_name, dtype, layout, shards, same_as, exercises in CASES:
        if args.cases and case not in args.cases:
            continue
        arch = ARCHES[arch_name]
        config = arch["config"](layout, DTYPE_NAMES[dtype])
        weights = arch["weights"](Init(arch["seed"], arch.get("embedding_gain", 1.0)), config)
        folder = f"{args.out}/{case}"
        generation = arch["generation"](config)
        write_hf_folder(folder, config, generation, weights, dtype, shards)

        config, params = read_hf_folder(folder)
        for name, value in weights.items():
            assert torch.equal(params[name], value), f"{case}: {name} did not survive the file"
        model = arch["build"](refs, config, params).eval()
        if same_as is None:
            expected, logits = expected_outputs(case, arch, commits, model, config, generation)
            base_logits[case] = logits
            f64_diffs.append(expected["float64_rerun_max_abs_diff"])
            text = expected_json(expected)
            notes = (f"margin {expected['min_top2_margin']}, "
                     f"f64 diff {expected['float64_rerun_max_abs_diff']}, "
                     f"logits std {expected['logits_std']}")
        else:
            # A twin holds the same values: the reference must compute bit-identical logits.
            ids = prompt_ids(arch["seed"] + 500, config)
            assert torch.equal(forward(model, ids), base_logits[same_as]), f"{case} != {same_as}"
            text = expected_json({"case": case, "same_as": same_as})
            notes = f"same values as {same_as}"
        write_json(f"{args.out}/expected/{case}.json", text, pretty=False)
        size = sum(os.path.getsize(f"{folder}/{f}") for f in os.listdir(folder))
        files = "3 shards" if shards > 1 else "model.safetensors"
        rows.append(f"| {case} | {dtype} {files} | {layout} | {size} | {exercises} |")
        print(f"{case:16s} {dtype:4s} {layout:6s} shards {shards}  {size:8d} bytes  {notes}")

    if args.cases:
        print("--cases given: README.md left as it is")
        return
    phi3_cross = cross_check_phi3(refs, f"{args.out}/phi3")
    print(f"phi3: LitGPT vs the book's llama3 on the split weights: max |diff| {phi3_cross:.2e}")
    last = PROMPT_TOKENS - 1
    write_json(f"{args.out}/README.md", README.format(
        rasbt=commits["rasbt"], litgpt=commits["litgpt"], phi3_cross=phi3_cross,
        case_rows="\n".join(rows), prompt=PROMPT_TOKENS, last=last,
        greedy_prompt=GREEDY_PROMPT, greedy_new=GREEDY_NEW, worst_f64=max(f64_diffs)),
        pretty=False)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.out) for f in fs)
    print(f"references: rasbt/LLMs-from-scratch@{commits['rasbt']}, "
          f"Lightning-AI/litgpt@{commits['litgpt']}; {args.out}: {total} bytes in all")


if __name__ == "__main__":
    main()
