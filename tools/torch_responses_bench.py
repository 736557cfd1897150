"""The PyTorch side of bench/responses_vs_torch.ts: greedy responses with the book's KV cache.

    /usr/bin/python3 tools/torch_responses_bench.py WEIGHTS.safetensors PROMPTS.json [--threads N]

Loads the weights our bench saved (the book's state_dict names, so both sides run the same
model) and the prompts' token ids (Alpaca-formatted test entries, tokenized by our side), then
says {"ready": true} and waits on stdin. Each line is a command; each answer one JSON line:

  "single"     every prompt alone through the book's ch04/03_kv-cache decoding
               (tools/torch_gpt.py generate_text_cached: the prompt once, then one token per
               step from the cache), --new-tokens greedy tokens each; answers the seconds,
               tokens/s and every prompt's new token ids (the caller compares them with ours).
  "batched B"  the same prompts in groups of B, longest first. The book's cache code has no
               padding or attention mask, so a group's rows must be equally long: each row is
               cut from the left to the group's shortest prompt (a few tokens of the
               instruction's preamble), then decoded together. Same number of new tokens per
               row; the tokens differ from "single" and are not returned.
  "quit"

Needs Debian's PyTorch: run it with /usr/bin/python3.
"""

import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt import generate_text_cached, model_from_safetensors  # noqa: E402


def peak_rss_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("weights")
    parser.add_argument("prompts")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with open(args.prompts) as f:
        job = json.load(f)
    config, prompts, new_tokens = job["config"], job["prompts"], job["new_tokens"]
    model = model_from_safetensors(args.weights, config)
    context = config["context_length"]

    def single():
        tokens = []
        start = time.perf_counter()
        for ids in prompts:
            out = generate_text_cached(model, torch.tensor([ids]), new_tokens, context)
            tokens.append(out[0, len(ids):].tolist())
        seconds = time.perf_counter() - start
        return {"mode": "single", "seconds": seconds, "new_tokens": new_tokens * len(prompts),
                "tokens": tokens}

    def batched(size):
        order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
        cut = 0
        start = time.perf_counter()
        for first in range(0, len(order), size):
            group = [prompts[i] for i in order[first:first + size]]
            shortest = min(len(ids) for ids in group)
            cut += sum(len(ids) - shortest for ids in group)
            idx = torch.tensor([ids[len(ids) - shortest:] for ids in group])
            generate_text_cached(model, idx, new_tokens, context)
        seconds = time.perf_counter() - start
        return {"mode": f"batch {size}", "seconds": seconds,
                "new_tokens": new_tokens * len(prompts), "prompt_tokens_cut": cut}

    generate_text_cached(model, torch.tensor([prompts[0]]), 2, context)  # warm-up
    print(json.dumps({"ready": True, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        result = single() if command[0] == "single" else batched(int(command[1]))
        result["tokens_per_s"] = result["new_tokens"] / result["seconds"]
        result.update(impl="pytorch", torch=torch.__version__, threads=torch.get_num_threads(),
                      peak_rss_mb=peak_rss_mb())
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
