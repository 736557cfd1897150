"""Times the book's GPTModel in PyTorch: the yardstick for our engine's benchmarks (bench/).

    /usr/bin/python3 tools/torch_bench.py                 # both benchmarks, ~2 min on 2 cores
    /usr/bin/python3 tools/torch_bench.py --bench train --steps 5
    nice -n 10 /usr/bin/python3 tools/torch_bench.py      # on a shared machine

Needs Debian's PyTorch (`apt-get install python3-torch libopenblas0-pthread`); use
/usr/bin/python3 explicitly, a pyenv/venv python3 will not see it. PyTorch keeps its default
intra-op thread count unless --threads is given (`threads` in each result). Note that Debian's
torch 1.13 defaults to 1 OpenMP thread on the 2-core CI machines, while its matrix products go
to OpenBLAS, whose own thread pool uses every core (OPENBLAS_NUM_THREADS limits it).

Prints one JSON line per result, each with `"impl": "pytorch"` and the process's peak resident
memory so far (`peak_rss_mb`). With `--bench all` (the default) each benchmark runs in its own
process, so each peak belongs to that benchmark alone.

- train_step: GPT-2 124M workshop config (context 256, drop 0.1, qkv_bias false), batch 2 x 256
  tokens: forward + cross-entropy + backward + AdamW(lr 4e-4, wd 0.1). One warm-up step, then
  the median of --steps timed steps (with the forward/backward/optimizer split).
- generate: GPT-2 124M pretrained-weights config (context 1024, qkv_bias true), eval mode,
  --new-tokens greedy tokens from "Hello, I am": the book's generate_text_simple (no cache,
  re-runs the whole context per token) and with the key/value cache (tools/torch_gpt.py); the
  two outputs must be identical.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt import GPTModel, generate_text_cached, generate_text_simple  # noqa: E402

GPT2_124M = {"vocab_size": 50257, "emb_dim": 768, "n_heads": 12, "n_layers": 12}
TRAIN_CONFIG = {**GPT2_124M, "context_length": 256, "drop_rate": 0.1, "qkv_bias": False}
GENERATE_CONFIG = {**GPT2_124M, "context_length": 1024, "drop_rate": 0.1, "qkv_bias": True}
PROMPT_IDS = [15496, 11, 314, 716]  # "Hello, I am" in GPT-2 BPE (the book's example prompt)
SEED = 123


def peak_rss_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def emit(result):
    print(json.dumps({**result, "impl": "pytorch", "torch": torch.__version__,
                      "threads": torch.get_num_threads(),
                      "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
                      "peak_rss_mb": peak_rss_mb()}), flush=True)


def bench_train(steps):
    torch.manual_seed(SEED)
    model = GPTModel(TRAIN_CONFIG)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    batch, tokens = 2, TRAIN_CONFIG["context_length"]
    inputs = torch.randint(0, TRAIN_CONFIG["vocab_size"], (batch, tokens))
    targets = torch.randint(0, TRAIN_CONFIG["vocab_size"], (batch, tokens))

    def step():
        t0 = time.perf_counter()
        optimizer.zero_grad()
        logits = model(inputs)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        return loss.item(), (t3 - t0, t1 - t0, t2 - t1, t3 - t2)

    first_loss, _ = step()  # warm-up: allocations, optimizer state
    timings = [step()[1] for _ in range(steps)]
    total, forward, backward, optim = (statistics.median(column) for column in zip(*timings))
    emit({"bench": "train_step", "config": "gpt2-124M", "context_length": tokens,
          "batch": batch, "tokens_per_step": batch * tokens, "steps": steps,
          "parameters": sum(p.numel() for p in model.parameters()),
          "seconds": round(total, 4), "seconds_all": [round(t[0], 4) for t in timings],
          "forward_s": round(forward, 4), "backward_s": round(backward, 4),
          "optimizer_s": round(optim, 4), "tokens_per_s": round(batch * tokens / total, 2),
          "first_loss": round(first_loss, 4)})


def bench_generate(new_tokens):
    torch.manual_seed(SEED)
    model = GPTModel(GENERATE_CONFIG)
    model.eval()
    prompt = torch.tensor([PROMPT_IDS])
    context = GENERATE_CONFIG["context_length"]
    # Warm-up both paths briefly so one-time costs do not land in the first timing.
    generate_text_simple(model, prompt, 2, context)
    generate_text_cached(model, prompt, 2, context)

    outputs = {}
    for kv_cache, generate in ((False, generate_text_simple), (True, generate_text_cached)):
        t0 = time.perf_counter()
        outputs[kv_cache] = generate(model, prompt, new_tokens, context)
        seconds = time.perf_counter() - t0
        result = {"bench": "generate", "config": "gpt2-124M", "context_length": context,
                  "kv_cache": kv_cache, "prompt_tokens": len(PROMPT_IDS),
                  "new_tokens": new_tokens, "seconds": round(seconds, 4),
                  "tokens_per_s": round(new_tokens / seconds, 2)}
        if kv_cache:
            identical = torch.equal(outputs[True], outputs[False])
            result["identical_to_no_cache"] = identical
        emit(result)
    if not torch.equal(outputs[True], outputs[False]):
        sys.exit("generate: the KV-cache output differs from generate_text_simple's")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", choices=["all", "train", "generate"], default="all")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps (median)")
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.bench == "train":
        bench_train(args.steps)
    elif args.bench == "generate":
        bench_generate(args.new_tokens)
    else:
        # One process per benchmark: ru_maxrss only grows, so this keeps each peak separate.
        passed_on = ["--steps", str(args.steps), "--new-tokens", str(args.new_tokens)]
        if args.threads:
            passed_on += ["--threads", str(args.threads)]
        for name in ("train", "generate"):
            subprocess.run([sys.executable, os.path.abspath(__file__), "--bench", name,
                            *passed_on], check=True)


if __name__ == "__main__":
    main()
