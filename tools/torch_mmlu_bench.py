"""The PyTorch side of bench/mmlu_vs_torch.ts: MMLU scoring's forward passes in the book's GPTModel.

    /usr/bin/python3 tools/torch_mmlu_bench.py WEIGHTS.safetensors ROWS.json [--threads N]

Loads the weights our bench saved (the book's state_dict names, so both models are the same
model), reads the rows our evaluate stage builds (one row per question: the prompt's tokens, cut
to the context, and the four continuation tokens " A"…" D" read at its last position), and then
waits on stdin: each line "run" scores every row the way llm/eval/loglikelihood.ts does —
longest first, batches of `batch_size` rows (fewer when the logits would pass `logit_budget`
bytes), padded on the right with token 0, one forward pass per batch, log-softmax at the last
real position — and prints one JSON line: seconds, questions/s, and the log-likelihoods (so the
caller can check both implementations computed the same numbers). "quit" ends it.

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
from torch_gpt import model_from_safetensors  # noqa: E402


def batches(rows, batch_size, budget, vocab):
    order = sorted(range(len(rows)), key=lambda i: (-len(rows[i]["input"]), i))
    done = 0
    while done < len(order):
        longest = len(rows[order[done]]["input"])
        fit = max(1, budget // (longest * vocab * 4))
        size = max(1, min(batch_size, fit))
        yield order[done:done + size], longest
        done += size


@torch.no_grad()
def score(model, spec):
    rows, vocab = spec["rows"], spec["config"]["vocab_size"]
    out = [None] * len(rows)
    t0 = time.perf_counter()
    for batch, length in batches(rows, spec["batch_size"], spec["logit_budget"], vocab):
        ids = torch.zeros((len(batch), length), dtype=torch.long)
        for b, i in enumerate(batch):
            ids[b, : len(rows[i]["input"])] = torch.tensor(rows[i]["input"])
        logits = model(ids)
        for b, i in enumerate(batch):
            last = len(rows[i]["input"]) - 1
            log_probs = torch.log_softmax(logits[b, last], dim=-1)
            out[i] = [log_probs[t].item() for t in rows[i]["tokens"]]
    return time.perf_counter() - t0, out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("weights")
    parser.add_argument("rows")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with open(args.rows) as f:
        spec = json.load(f)
    model = model_from_safetensors(args.weights, spec["config"])
    print(json.dumps({"ready": True, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        seconds, lls = score(model, spec)
        n = len(spec["rows"])
        print(json.dumps({
            "impl": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
            "questions": n, "seconds": round(seconds, 4),
            "questions_per_second": round(n / seconds, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "loglikelihoods": lls,
        }), flush=True)


if __name__ == "__main__":
    main()
