"""The PyTorch side of bench/llama_cpp.ts for open models: the book's KV-cache Qwen3 and Llama 3
code on the weights of a Hugging Face folder our bench wrote.

    /usr/bin/python3 tools/torch_decode_open.py HF_FOLDER REQUEST.json   ->   JSON on stdout

HF_FOLDER holds config.json (model_type "qwen3" or "llama") and model.safetensors (F32), as
llm/export/hf.ts writes them. The model classes are rasbt/LLMs-from-scratch's
`pkg/llms_from_scratch/kv_cache/qwen3.py` and `kv_cache/llama3.py`, filled by the book's own
`load_weights_into_qwen` / `load_weights_into_llama` from the HF tensor names. The book's files
are exported with `git show` from the local snapshot into a scratch folder outside this
repository at run time and imported from there; none of their code is in this repository.

request: {"threads": 2, "prefill": [ids], "prompt": [ids], "newTokens": 64}
answer:  {"load_s", "prefill_s", "prefill_tokens", "first_token_s", "decode_s",
          "decoded_tokens", "tokens": [ids], "peak_rss_mb"}

Timing follows the book's generate_text_simple(use_cache=True): the prompt once through the
model into a fresh KVCache, then one token per step from the cache, argmax of the last row.
Prefill is one forward pass of the long prompt into a fresh cache (the book's forward computes
the logits of every position, not only the last: that is its code, measured as it is). Decode
speed is timed from the first generated token to the last, like the llama.cpp side.

Shims, because Debian's torch is 1.13 and the book targets torch >= 2.4: torch.nn.RMSNorm (the
Llama code uses it; same formula as torch's) and a stub for tiktoken, imported by the book's
tokenizer classes that this script never uses. Run it with /usr/bin/python3.
"""

import argparse
import json
import mmap
import os
import resource
import struct
import subprocess
import sys
import time
import types

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_shims import TorchRMSNorm  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RASBT = "/work/.mirror/rasbt+LLMs-from-scratch/repo"
DEFAULT_SCRATCH = "/tmp/groundup-book-kv-cache"
BOOK_FILES = ("__init__.py", "qwen3.py", "llama3.py", "kv_cache/__init__.py",
              "kv_cache/utils.py", "kv_cache/qwen3.py", "kv_cache/llama3.py")


def install_shims():
    if not hasattr(nn, "RMSNorm"):
        nn.RMSNorm = TorchRMSNorm

    def unused(*args, **kwargs):
        raise RuntimeError("tiktoken is a stub: the bench never tokenizes text")

    for name, attrs in (("tiktoken", {"Encoding": unused}),
                        ("tiktoken.load", {"load_tiktoken_bpe": unused})):
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module


def import_book(rasbt, scratch):
    """Exports the book's package files into `scratch` (outside this repository) and imports
    its KV-cache modules from there."""
    scratch = os.path.abspath(scratch)
    if scratch == REPO_ROOT or scratch.startswith(REPO_ROOT + os.sep):
        sys.exit(f"--scratch {scratch} is inside the repository; the book's code must stay outside")
    for name in BOOK_FILES:
        data = subprocess.run(["git", "-C", rasbt, "show", f"HEAD:pkg/llms_from_scratch/{name}"],
                              check=True, capture_output=True).stdout
        path = os.path.join(scratch, "llms_from_scratch", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    install_shims()
    sys.path.insert(0, scratch)
    import llms_from_scratch.kv_cache.llama3 as kv_llama3
    import llms_from_scratch.kv_cache.qwen3 as kv_qwen3
    import llms_from_scratch.kv_cache.utils as kv_utils
    import llms_from_scratch.llama3 as llama3
    return types.SimpleNamespace(kv_llama3=kv_llama3, kv_qwen3=kv_qwen3, llama3=llama3,
                                 KVCache=kv_utils.KVCache)


def mapped_safetensors(path):
    """F32 tensors of a safetensors file as views of a read-only memory map: no copy in memory,
    so the model's own parameters are the only full copy (a 1B model is 5 GB in float32)."""
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    (header_len,) = struct.unpack("<Q", mapped[:8])
    header = json.loads(mapped[8:8 + header_len].decode("utf-8"))
    header.pop("__metadata__", None)
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            sys.exit(f"{path}: tensor {name!r} is {info['dtype']}; the bench writes F32 only")
        begin, end = info["data_offsets"]
        array = np.frombuffer(mapped, dtype="<f4", count=(end - begin) // 4, offset=base + begin)
        tensors[name] = torch.from_numpy(array).view(info["shape"])  # read-only view: a warning
    return tensors


def book_config(c):
    """HF config.json -> the book's cfg dict (its keys: kv_cache/qwen3.py and kv_cache/llama3.py)."""
    common = {
        "vocab_size": c["vocab_size"], "context_length": c["max_position_embeddings"],
        "emb_dim": c["hidden_size"], "n_heads": c["num_attention_heads"],
        "n_layers": c["num_hidden_layers"], "hidden_dim": c["intermediate_size"],
        "n_kv_groups": c["num_key_value_heads"], "rope_base": c["rope_theta"],
        "dtype": torch.float32,
    }
    if c["model_type"] == "qwen3":
        # The book's Qwen3 RMSNorm has eps 1e-6 built in, its Llama one 1e-5: both as HF's.
        assert c["rms_norm_eps"] == 1e-6, c["rms_norm_eps"]
        return dict(common, head_dim=c["head_dim"], qk_norm=True)
    if c["model_type"] == "llama":
        assert c["rms_norm_eps"] == 1e-5, c["rms_norm_eps"]
        assert c.get("head_dim", c["hidden_size"] // c["num_attention_heads"]) == \
            c["hidden_size"] // c["num_attention_heads"]
        scaling = c.get("rope_scaling")
        return dict(common, rope_freq=None if not scaling else {
            "factor": scaling["factor"], "low_freq_factor": scaling["low_freq_factor"],
            "high_freq_factor": scaling["high_freq_factor"],
            "original_context_length": scaling["original_max_position_embeddings"],
        })
    sys.exit(f"config.json: model_type {c['model_type']!r}; the bench knows qwen3 and llama")


def load_model(book, folder):
    with open(os.path.join(folder, "config.json")) as f:
        c = json.load(f)
    cfg = book_config(c)
    params = mapped_safetensors(os.path.join(folder, "model.safetensors"))
    if c["model_type"] == "qwen3":
        model = book.kv_qwen3.Qwen3Model(cfg)
        load = book.kv_qwen3.load_weights_into_qwen
    else:
        model = book.kv_llama3.Llama3Model(cfg)
        load = book.llama3.load_weights_into_llama
    with open(os.devnull, "w") as devnull:  # the loaders print "Model uses weight tying."
        stdout, sys.stdout = sys.stdout, devnull
        try:
            load(model, cfg, params)
        finally:
            sys.stdout = stdout
    return model.eval()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("request")
    parser.add_argument("--rasbt", default=DEFAULT_RASBT)
    parser.add_argument("--scratch", default=DEFAULT_SCRATCH)
    args = parser.parse_args()
    with open(args.request) as f:
        request = json.load(f)
    torch.set_num_threads(request.get("threads", 2))
    book = import_book(args.rasbt, args.scratch)

    start = time.perf_counter()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # non-writable numpy views: only read
        model = load_model(book, args.folder)
    load_seconds = time.perf_counter() - start

    with torch.no_grad():
        # Prefill: the long prompt in one forward pass into a fresh cache.
        cache = book.KVCache(n_layers=model.cfg["n_layers"])
        model.reset_kv_cache()
        start = time.perf_counter()
        model(torch.tensor([request["prefill"]]), cache=cache)
        prefill_seconds = time.perf_counter() - start

        # Decode: the book's generate_text_simple(use_cache=True) loop, stopped at the last
        # token (it runs one forward pass more, whose logits it never uses).
        cache = book.KVCache(n_layers=model.cfg["n_layers"])
        model.reset_kv_cache()
        tokens = []
        start = time.perf_counter()
        logits = model(torch.tensor([request["prompt"]]), cache=cache)
        first_token_seconds = 0.0
        while True:
            next_idx = logits[:, -1].argmax(dim=-1, keepdim=True)
            tokens.append(int(next_idx[0, 0]))
            if len(tokens) == 1:
                first_token_seconds = time.perf_counter() - start
                start = time.perf_counter()
            if len(tokens) >= request["newTokens"]:
                break
            logits = model(next_idx, cache=cache)
        decode_seconds = time.perf_counter() - start

    print(json.dumps({
        "load_s": load_seconds,
        "prefill_s": prefill_seconds,
        "prefill_tokens": len(request["prefill"]),
        "first_token_s": first_token_seconds,
        "decode_s": decode_seconds,
        "decoded_tokens": len(tokens) - 1,
        "tokens": tokens,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
