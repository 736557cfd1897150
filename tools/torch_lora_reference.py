"""Writes the PyTorch fixtures for LoRA fine-tuning and instruction batches.

1. tests/fixtures/parity/lora/: the tiny model of tools/torch_reference.py (q/k/v biases on, the
   same weights as parity/qkv_bias/weights.safetensors, checked) wrapped by the book's
   `replace_linear_with_lora` (appendix E; rank 4, alpha 8, every linear layer), then trained on
   one batch built by the book's `custom_collate_fn` with `mask_instructions` (exercise 7.2):
     config.json           the model config and {rank, alpha}
     inputs.json           the examples (token ids, prompt lengths), pad id, and the collated
                           input_ids / target_ids (-100 after the first pad and over the prompts)
     adapter.safetensors   every lora.A (kaiming-uniform under torch.manual_seed(123)) and lora.B
                           (moved off zero, reproducibly, so that A gets a gradient)
     expected.safetensors  logits; loss; grad.<lora name>; after_step.<lora name> after one
                           AdamW step over the LoRA parameters only (the base is frozen, its
                           grads are None); loss_after_step; grad_step2.*; after_step2.*
     adamw.json            the optimizer settings
2. With --collate-ids FILE (written by `deno run -A tools/instruction_ids.ts`: the first batches
   of the real instruction-data.json training split, tokenized by our GPT-2 tokenizer, unshuffled),
   tests/fixtures/parity/collate.json: the book's custom_collate_fn over each batch,
   with and without mask_instructions (allowed_max_length 1024).

Run from the repository root with Debian's PyTorch:

    deno run -A tools/instruction_ids.ts > /tmp/instruction_ids.json
    /usr/bin/python3 tools/torch_lora_reference.py --collate-ids /tmp/instruction_ids.json

Deterministic (fixed seeds, one thread): a re-run leaves `git status` clean.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import load_file, save_file  # noqa: E402
from torch_lora import custom_collate_fn, replace_linear_with_lora  # noqa: E402
from torch_reference import SEED, TINY_CONFIG, make_model, write_json  # noqa: E402

RANK, ALPHA = 4, 8
PAD = 96  # the tiny vocabulary's last id stands in for GPT-2's 50256
# Book chapter 7 optimizer (AdamW, weight_decay 0.1), with a larger lr so the steps are visible.
ADAMW = {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.1}
METADATA = {"format": "pt", "generator": "tools/torch_lora_reference.py"}


def make_examples(cfg):
    """Two instruction examples of different lengths (ids < PAD), with their prompt lengths."""
    g = torch.Generator().manual_seed(SEED + 4)
    examples = []
    for length, prompt_length in ((11, 5), (6, 3)):
        ids = torch.randint(0, PAD, (length,), generator=g).tolist()
        examples.append({"ids": ids, "promptLength": prompt_length})
    return examples


def lora_parameters(model, prefix=""):
    return {prefix + n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def loss_fn(model, inputs, targets):
    logits = model(inputs)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                             ignore_index=-100)
    return logits, loss


def write_lora(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    cfg = {**TINY_CONFIG, "qkv_bias": True}
    model = make_model(cfg)
    # The same base weights as the qkv_bias parity fixture, which the test loads.
    base, _ = load_file(os.path.join(out_dir, "..", "qkv_bias", "weights.safetensors"))
    for name, tensor in model.state_dict().items():
        assert torch.equal(base[name], tensor), name

    # The book's appendix E: freeze everything, then wrap every nn.Linear.
    for param in model.parameters():
        param.requires_grad = False
    torch.manual_seed(SEED)
    replace_linear_with_lora(model, rank=RANK, alpha=ALPHA)
    g = torch.Generator().manual_seed(SEED + 5)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("lora.B"):
                param.copy_(0.1 * torch.randn(param.shape, generator=g))
    adapter = lora_parameters(model)
    assert all(".lora." in n for n in adapter) and len(adapter) == 2 * (6 * cfg["n_layers"] + 1)

    examples = make_examples(cfg)
    batch = [(e["promptLength"], e["ids"]) for e in examples]
    inputs, targets = custom_collate_fn(batch, pad_token_id=PAD, allowed_max_length=1024,
                                        mask_instructions=True)
    model.train()  # drop_rate 0: deterministic
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=ADAMW["lr"], betas=tuple(ADAMW["betas"]),
                                  eps=ADAMW["eps"], weight_decay=ADAMW["weight_decay"],
                                  foreach=False)
    logits, loss = loss_fn(model, inputs, targets)
    loss.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)
    grads = {f"grad.{n}": p.grad.detach().clone()
             for n, p in model.named_parameters() if p.requires_grad}
    optimizer.step()
    after_step = lora_parameters(model, "after_step.")
    optimizer.zero_grad()
    _, loss_after_step = loss_fn(model, inputs, targets)
    loss_after_step.backward()
    grads_step2 = {f"grad_step2.{n}": p.grad.detach().clone()
                   for n, p in model.named_parameters() if p.requires_grad}
    optimizer.step()
    after_step2 = lora_parameters(model, "after_step2.")
    expected = {"logits": logits.detach(), "loss": loss.detach(),
                "loss_after_step": loss_after_step.detach(),
                **grads, **after_step, **grads_step2, **after_step2}

    write_json(os.path.join(out_dir, "config.json"),
               {**cfg, "lora": {"rank": RANK, "alpha": ALPHA, "scaling": "alpha/rank"}})
    write_json(os.path.join(out_dir, "inputs.json"), {
        "examples": examples, "pad_token_id": PAD, "mask_instructions": True,
        "input_ids": inputs.tolist(), "target_ids": targets.tolist()})
    write_json(os.path.join(out_dir, "adamw.json"), {
        **ADAMW, "steps": 2, "parameters": "the lora.A / lora.B only (base frozen)"})
    save_file(adapter, os.path.join(out_dir, "adapter.safetensors"), METADATA)
    save_file(expected, os.path.join(out_dir, "expected.safetensors"), METADATA)
    for name, tensors in (("adapter", adapter), ("expected", expected)):
        loaded, _ = load_file(os.path.join(out_dir, f"{name}.safetensors"))
        assert loaded.keys() == tensors.keys(), name
        for key, tensor in tensors.items():
            assert torch.equal(loaded[key], tensor), key
    print(f"{out_dir}: loss {loss.item():.6f} -> {loss_after_step.item():.6f}, "
          f"{sum(t.numel() for t in adapter.values())} LoRA parameters")


def write_collate(ids_path, out_path):
    with open(ids_path, encoding="utf-8") as f:
        source = json.load(f)
    batches = []
    for batch in source["batches"]:
        pairs = [(e["promptLength"], e["ids"]) for e in batch]
        inputs, targets = custom_collate_fn(pairs, allowed_max_length=1024)
        masked_inputs, masked = custom_collate_fn(pairs, allowed_max_length=1024,
                                                  mask_instructions=True)
        assert torch.equal(inputs, masked_inputs)
        batches.append({"input_ids": inputs.tolist(), "target_ids": targets.tolist(),
                        "masked_target_ids": masked.tolist()})
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    write_json(out_path, {"source": source["source"], "batch_size": source["batch_size"],
                          "batches": batches})
    print(f"{out_path}: {len(batches)} batches")


def main():
    root = os.path.relpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(root, "tests", "fixtures"))
    parser.add_argument("--collate-ids", help="token ids from tools/instruction_ids.ts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    write_lora(os.path.join(args.out, "parity", "lora"))
    if args.collate_ids:
        write_collate(args.collate_ids,
                      os.path.join(args.out, "parity", "collate.json"))


if __name__ == "__main__":
    main()
