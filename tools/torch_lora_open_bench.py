"""Times one LoRA (or full) fine-tuning step of an open model in PyTorch, with the book's own
Qwen3 and Llama 3 code: the yardstick for bench/lora_open.ts.

    /usr/bin/python3 tools/torch_lora_open_bench.py --family qwen3|llama [--mode lora|full]
        [--steps 2] [--tokens 70] [--scratch /tmp/groundup-lora-bench]

The book's `Qwen3Model` (pkg/llms_from_scratch/qwen3.py, QWEN_CONFIG_06_B) or `Llama3Model`
(llama3.py, LLAMA32_CONFIG_1B) in float32 with a 256-position RoPE table, random weights, batch
8 x --tokens random ids (the last 10 targets of each row -100, as padding). lora: every parameter
frozen, then appendix E's replace_linear_with_lora(rank 16, alpha 16) on every nn.Linear (the
attention and MLP projections and the output head), AdamW(lr 1e-4) over the LoRA parameters;
full: AdamW over every parameter. One warm-up step, then the median of --steps timed steps; one
JSON line with the peak RSS.

The book's files are exported with `git show` from the local snapshot into --scratch (outside the
repository) and imported with the shims tools/hf_parity_fixtures.py installs for torch 1.13.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS_DIR)
from hf_parity_fixtures import REPO_ROOT, git, import_file, install_shims, write_file  # noqa: E402
from torch_lora import replace_linear_with_lora  # noqa: E402

BATCH = 8


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--family", choices=["qwen3", "llama"], required=True)
    parser.add_argument("--mode", choices=["lora", "full"], default="lora")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=70)
    parser.add_argument("--layers", type=int, default=0, help="fewer blocks (0: the model's)")
    parser.add_argument("--scratch", default="/tmp/groundup-lora-bench")
    parser.add_argument("--rasbt", default="/work/.mirror/rasbt+LLMs-from-scratch/repo")
    args = parser.parse_args()
    scratch = os.path.abspath(args.scratch)
    if scratch == REPO_ROOT or scratch.startswith(REPO_ROOT + os.sep):
        sys.exit(f"--scratch {scratch} is inside the repository")
    name = "qwen3.py" if args.family == "qwen3" else "llama3.py"
    write_file(f"{scratch}/{name}", git(args.rasbt, "show", f"HEAD:pkg/llms_from_scratch/{name}"))
    install_shims()
    book = import_file(f"book_{args.family}", f"{scratch}/{name}")
    if args.family == "qwen3":
        cfg = dict(book.QWEN_CONFIG_06_B, dtype=torch.float32, context_length=256)
        model_class = book.Qwen3Model
    else:
        cfg = dict(book.LLAMA32_CONFIG_1B, dtype=torch.float32, context_length=256)
        model_class = book.Llama3Model

    if args.layers:
        cfg["n_layers"] = args.layers
    torch.manual_seed(123)
    model = model_class(cfg)
    if args.mode == "lora":
        for param in model.parameters():
            param.requires_grad = False
        replace_linear_with_lora(model, rank=16, alpha=16)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.01)
    g = torch.Generator().manual_seed(7)
    inputs = torch.randint(0, cfg["vocab_size"], (BATCH, args.tokens), generator=g)
    targets = torch.randint(0, cfg["vocab_size"], (BATCH, args.tokens), generator=g)
    targets[:, -10:] = -100

    def step():
        optimizer.zero_grad()
        logits = model(inputs)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
        optimizer.step()
        return loss.item()

    step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(json.dumps({
        "impl": "pytorch",
        "family": args.family,
        "mode": args.mode,
        "layers": cfg["n_layers"],
        "step_seconds": round(statistics.median(times), 3),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }), flush=True)


if __name__ == "__main__":
    main()
