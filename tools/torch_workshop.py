"""The workshop's whole pretraining loop in PyTorch, timed: the reference for issue 4's
"full workshop pretraining within 1.2x of PyTorch's wall time".

The book's train_model_simple (ch05) with tools/torch_gpt.py's GPTModel at GPT_CONFIG_124M
(context 256, drop 0.1, no qkv bias), AdamW 4e-4 / 0.1, 10 epochs, evaluation every 5 steps over
5 batches, a 50-token greedy sample after each epoch. It reads the token streams our dataloader
stage wrote (train.bin / val.bin, uint16; the same windows: max_length = stride = 256, batch 2,
train shuffled with drop_last), so both sides train on identical data; only the shuffle order
and the random numbers differ.

  /usr/bin/python3 tools/torch_workshop.py .groundup/dataloader/<key>

Prints one JSON line per evaluation and a final summary line. Needs Debian's PyTorch.
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from torch_gpt import GPTModel, generate_text_simple  # noqa: E402

CONFIG = {"vocab_size": 50257, "context_length": 256, "emb_dim": 768, "n_heads": 12,
          "n_layers": 12, "drop_rate": 0.1, "qkv_bias": False}


def windows(path, length, stride):
    ids = torch.frombuffer(bytearray(open(path, "rb").read()), dtype=torch.int16).to(torch.int64)
    ids = ids & 0xFFFF  # the files hold uint16
    starts = range(0, len(ids) - length, stride)
    return [(ids[i:i + length], ids[i + 1:i + length + 1]) for i in starts]


def batches(data, size, shuffle, generator):
    order = torch.randperm(len(data), generator=generator).tolist() if shuffle else range(len(data))
    order = list(order)
    count = len(order) // size if shuffle else (len(order) + size - 1) // size
    for b in range(count):
        rows = [data[i] for i in order[b * size:(b + 1) * size]]
        yield torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])


def loss_of(model, x, y):
    logits = model(x)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())


def loader_loss(model, loader, n):
    losses = []
    for i, (x, y) in enumerate(loader):
        if i >= n:
            break
        losses.append(loss_of(model, x, y).item())
    return sum(losses) / len(losses)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dataloader_dir")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    manifest = json.load(open(os.path.join(args.dataloader_dir, "loader.json")))
    length, stride, batch = manifest["max_length"], manifest["stride"], manifest["batch_size"]
    train = windows(os.path.join(args.dataloader_dir, "train.bin"), length, stride)
    val = windows(os.path.join(args.dataloader_dir, "val.bin"), length, stride)

    torch.manual_seed(123)
    generator = torch.Generator().manual_seed(123)
    model = GPTModel(CONFIG)
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    start = time.perf_counter()
    step, tokens_seen = -1, 0
    for epoch in range(args.epochs):
        model.train()
        for x, y in batches(train, batch, True, generator):
            optimizer.zero_grad()
            loss_of(model, x, y).backward()
            optimizer.step()
            tokens_seen += x.numel()
            step += 1
            if step % 5 == 0:
                model.eval()
                with torch.no_grad():
                    tr = loader_loss(model, batches(train, batch, True, generator), 5)
                    va = loader_loss(model, batches(val, batch, False, generator), 5)
                model.train()
                print(json.dumps({"epoch": epoch + 1, "step": step, "train_loss": round(tr, 3),
                                  "val_loss": round(va, 3), "tokens_seen": tokens_seen,
                                  "elapsed_s": round(time.perf_counter() - start, 1)}), flush=True)
        model.eval()
        with torch.no_grad():
            generate_text_simple(model, torch.tensor([[6109, 3626, 6100, 345]]), 50, 256)
    print(json.dumps({"bench": "workshop_pretrain", "impl": "pytorch", "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "steps": step + 1,
                      "seconds": round(time.perf_counter() - start, 1),
                      "final_train_loss": round(tr, 3), "final_val_loss": round(va, 3)}),
          flush=True)


if __name__ == "__main__":
    main()
