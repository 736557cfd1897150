"""Times one fine-tuning step of the book's chapter 7 setup in PyTorch, full and LoRA: the
yardstick for bench/finetune_step.ts.

    /usr/bin/python3 tools/torch_finetune_bench.py [--model 124M|355M] [--steps 3] [--tokens 71]

The book's GPTModel (tools/torch_gpt.py) with the pretrained-weights config (context 1024,
qkv_bias true, drop 0.0), random weights, batch 8 x --tokens random ids (the last 10 targets of
each row -100, as padding), AdamW(lr 5e-5, weight_decay 0.1) over the trainable parameters:
- full: every parameter trains (chapter 7).
- lora: every parameter frozen, then replace_linear_with_lora(rank 16, alpha 16) (appendix E /
  exercise 7.4); AdamW over the LoRA parameters only.
One warm-up step, then the median of --steps timed steps. One JSON line per mode.
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
from torch_gpt import GPTModel  # noqa: E402
from torch_lora import replace_linear_with_lora  # noqa: E402

CONFIGS = {
    "124M": {"emb_dim": 768, "n_heads": 12, "n_layers": 12},
    "355M": {"emb_dim": 1024, "n_heads": 16, "n_layers": 24},
}
BATCH = 8


def bench(mode, cfg, steps, tokens):
    torch.manual_seed(123)
    model = GPTModel(cfg)
    if mode == "lora":
        for param in model.parameters():
            param.requires_grad = False
        replace_linear_with_lora(model, rank=16, alpha=16)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=5e-5, weight_decay=0.1)
    g = torch.Generator().manual_seed(7)
    inputs = torch.randint(0, cfg["vocab_size"], (BATCH, tokens), generator=g)
    targets = torch.randint(0, cfg["vocab_size"], (BATCH, tokens), generator=g)
    targets[:, -10:] = -100

    def step():
        start = time.perf_counter()
        optimizer.zero_grad()
        logits = model(inputs)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    step()
    times = [step() for _ in range(steps)]
    print(json.dumps({
        "bench": "finetune_step", "impl": "pytorch", "mode": mode, "torch": torch.__version__,
        "batch": BATCH, "tokens": tokens, "steps": steps,
        "trainable_parameters": sum(p.numel() for p in trainable),
        "seconds": round(statistics.median(times), 4), "seconds_all": [round(t, 4) for t in times],
        "threads": torch.get_num_threads(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="124M", choices=sorted(CONFIGS))
    parser.add_argument("--mode", default="both", choices=["full", "lora", "both"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=71)
    args = parser.parse_args()
    cfg = {**CONFIGS[args.model], "vocab_size": 50257, "context_length": 1024,
           "drop_rate": 0.0, "qkv_bias": True}
    for mode in (["full", "lora"] if args.mode == "both" else [args.mode]):
        bench(mode, cfg, args.steps, args.tokens)


if __name__ == "__main__":
    main()
