"""Times one DPO step of the book's notebook in PyTorch: the yardstick for bench/dpo_step.ts.

    /usr/bin/python3 tools/torch_dpo_bench.py [--model tiny|124M|355M] [--steps 2] [--tokens 70]
        [--notebook PATH | --book-repo GIT_DIR]

The book's `compute_dpo_loss_batch` (read from dpo-from-scratch.ipynb at run time, as
tools/torch_dpo_reference.py does) on the book's GPTModel (tools/torch_gpt.py) with the
pretrained-weights config (context 1024, qkv_bias, drop 0.0), random weights: a policy and a
frozen reference copy, batch 8 pairs x --tokens random ids, each mask 1 from position 40 to 10
before the end (a prompt, a response, padding), β 0.1, AdamW(lr 5e-6, weight_decay 0.01). A
step: zero_grad, the policy's two forward passes, the reference's two (no grad), backward, step.
One warm-up step, then the median of --steps timed steps. One JSON line.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_dpo_reference import DEFAULT_BOOK_REPO, book_functions, read_notebook  # noqa: E402
from torch_gpt import GPTModel  # noqa: E402

CONFIGS = {
    "tiny": {"emb_dim": 32, "n_heads": 4, "n_layers": 2},
    "124M": {"emb_dim": 768, "n_heads": 12, "n_layers": 12},
    "355M": {"emb_dim": 1024, "n_heads": 16, "n_layers": 24},
}
BATCH = 8


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="124M", choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=70)
    parser.add_argument("--notebook")
    parser.add_argument("--book-repo", default=DEFAULT_BOOK_REPO)
    args = parser.parse_args()
    book = book_functions(read_notebook(args))
    cfg = {**CONFIGS[args.model], "vocab_size": 50257, "context_length": 1024,
           "drop_rate": 0.0, "qkv_bias": True}
    torch.manual_seed(123)
    policy = GPTModel(cfg)
    reference = GPTModel(cfg)
    reference.load_state_dict(policy.state_dict())
    reference.eval()
    policy.train()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=5e-6, weight_decay=0.01)
    g = torch.Generator().manual_seed(7)
    mask = torch.zeros(BATCH, args.tokens, dtype=torch.bool)
    mask[:, 40:args.tokens - 10] = True
    batch = {
        "chosen": torch.randint(0, cfg["vocab_size"], (BATCH, args.tokens), generator=g),
        "rejected": torch.randint(0, cfg["vocab_size"], (BATCH, args.tokens), generator=g),
        "chosen_mask": mask, "rejected_mask": mask.clone(),
    }

    def step():
        start = time.perf_counter()
        optimizer.zero_grad()
        loss, _, _ = book["compute_dpo_loss_batch"](batch, policy, reference, beta=0.1)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    step()
    times = [step() for _ in range(args.steps)]
    print(json.dumps({
        "bench": "dpo_step", "impl": "pytorch", "model": args.model, "torch": torch.__version__,
        "batch": BATCH, "tokens": args.tokens, "steps": args.steps,
        "seconds": round(statistics.median(times), 4), "seconds_all": [round(t, 4) for t in times],
        "threads": torch.get_num_threads(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }), flush=True)


if __name__ == "__main__":
    main()
