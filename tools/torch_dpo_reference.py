"""Writes the PyTorch fixtures for DPO under tests/fixtures/parity/dpo/.

The functions are the book's own, read at run time from its notebook
(`ch07/04_preference-tuning-with-dpo/dpo-from-scratch.ipynb`: `custom_collate_fn`,
`compute_dpo_loss`, `compute_logprobs`, `compute_dpo_loss_batch`), never copied here. The models
are the tiny GPT of tools/torch_reference.py (q/k/v biases on: the reference is exactly
parity/qkv_bias/weights.safetensors, checked), the policy a reproducibly perturbed copy of it.

  config.json           the model config, beta, the pad id
  inputs.json           three preference pairs (token ids < PAD, prompt lengths) and what the
                        book's custom_collate_fn makes of them (chosen, rejected, their masks;
                        allowed_max_length = the context length)
  policy.safetensors    the policy's weights
  expected.safetensors  untrained_loss (policy = reference: ln 2); policy_/reference_ chosen and
                        rejected log-probabilities [3]; loss, chosen_rewards, rejected_rewards;
                        grad.<name> for every policy parameter; after_step.<name> after one AdamW
                        step
  adamw.json            the optimizer settings

Run from the repository root with Debian's PyTorch:

    /usr/bin/python3 tools/torch_dpo_reference.py [--notebook PATH | --book-repo GIT_DIR]

Deterministic (fixed seeds, one thread): a re-run leaves `git status` clean.
"""

import argparse
import json
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import load_file, save_file  # noqa: E402
from torch_gpt import GPTModel  # noqa: E402
from torch_reference import SEED, TINY_CONFIG, write_json  # noqa: E402

NOTEBOOK = "ch07/04_preference-tuning-with-dpo/dpo-from-scratch.ipynb"
DEFAULT_BOOK_REPO = "/work/.mirror/rasbt+LLMs-from-scratch/repo"
BOOK_FUNCTIONS = ("custom_collate_fn", "compute_dpo_loss", "compute_logprobs",
                  "compute_dpo_loss_batch")
PAD = 96  # the tiny vocabulary's last id stands in for GPT-2's 50256
BETA = 0.1
# The book's DPO optimizer (AdamW, weight_decay 0.01) with a larger lr, so the step is visible.
ADAMW = {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01}
METADATA = {"format": "pt", "generator": "tools/torch_dpo_reference.py"}


def read_notebook(args):
    if args.notebook:
        with open(args.notebook, encoding="utf-8") as f:
            return json.load(f)
    text = subprocess.run(["git", "-C", args.book_repo, "show", f"HEAD:{NOTEBOOK}"],
                          check=True, capture_output=True, text=True).stdout
    return json.loads(text)


def book_functions(notebook):
    """Executes the notebook's cells that define the book's DPO functions; returns them."""
    namespace = {"torch": torch, "F": torch.nn.functional}
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and any(f"def {n}(" in source for n in BOOK_FUNCTIONS):
            exec(compile(source, NOTEBOOK, "exec"), namespace)
    missing = [n for n in BOOK_FUNCTIONS if n not in namespace]
    assert not missing, f"not found in the notebook: {missing}"
    return {n: namespace[n] for n in BOOK_FUNCTIONS}


def make_reference(cfg, check_against):
    """tools/torch_reference.py's tiny model, loaded from its fixture (and compared with it)."""
    weights, _ = load_file(check_against)
    torch.manual_seed(SEED)
    model = GPTModel(cfg)
    model.load_state_dict(weights, strict=False)
    for name, p in model.named_parameters():
        assert torch.equal(p, weights[name]), name
    return model


def make_policy(reference, cfg):
    """A copy of the reference with every weight moved a little: policy != reference."""
    g = torch.Generator().manual_seed(SEED + 7)
    policy = GPTModel(cfg)
    policy.load_state_dict(reference.state_dict())
    with torch.no_grad():
        for _, p in policy.named_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return policy


def make_pairs():
    """Three pairs: a shared prompt, then a chosen and a rejected response of other lengths
    (each longer than the 2 tokens after the prompt that the book's collate also masks)."""
    g = torch.Generator().manual_seed(SEED + 6)
    pairs = []
    for prompt_len, chosen_len, rejected_len in ((5, 6, 4), (3, 4, 7), (6, 5, 3)):
        ids = lambda n: torch.randint(0, PAD, (n,), generator=g).tolist()  # noqa: E731
        prompt = ids(prompt_len)
        pairs.append({"prompt": prompt, "chosen": prompt + ids(chosen_len),
                      "rejected": prompt + ids(rejected_len)})
    return pairs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join("tests", "fixtures", "parity", "dpo"))
    parser.add_argument("--notebook", help="the notebook file (default: from --book-repo)")
    parser.add_argument("--book-repo", default=DEFAULT_BOOK_REPO,
                        help="a git dir of rasbt/LLMs-from-scratch")
    args = parser.parse_args()
    torch.set_num_threads(1)
    book = book_functions(read_notebook(args))

    cfg = {**TINY_CONFIG, "qkv_bias": True}
    here = os.path.dirname(os.path.abspath(__file__))
    reference = make_reference(
        cfg, os.path.join(here, "..", "tests", "fixtures", "parity", "qkv_bias", "weights.safetensors"))
    reference.eval()
    policy = make_policy(reference, cfg)
    policy.train()  # drop_rate 0: deterministic

    pairs = make_pairs()
    batch = book["custom_collate_fn"](pairs, pad_token_id=PAD,
                                      allowed_max_length=cfg["context_length"],
                                      mask_prompt_tokens=True)

    with torch.no_grad():
        untrained = book["compute_dpo_loss_batch"](batch, reference, reference, BETA)[0]

    def logprobs(model, key):
        return book["compute_logprobs"](model(batch[key]), batch[key], batch[f"{key}_mask"])

    with torch.no_grad():
        measured = {f"{who}_{key}_logprobs": logprobs(model, key)
                    for who, model in (("policy", policy), ("reference", reference))
                    for key in ("chosen", "rejected")}

    optimizer = torch.optim.AdamW(
        policy.parameters(), lr=ADAMW["lr"], betas=tuple(ADAMW["betas"]), eps=ADAMW["eps"],
        weight_decay=ADAMW["weight_decay"], foreach=False)
    loss, chosen_rewards, rejected_rewards = book["compute_dpo_loss_batch"](
        batch, policy, reference, BETA)
    loss.backward()
    grads = {f"grad.{n}": p.grad.detach().clone() for n, p in policy.named_parameters()}
    policy_weights = {n: p.detach().clone() for n, p in policy.named_parameters()}
    optimizer.step()
    after_step = {f"after_step.{n}": p.detach().clone() for n, p in policy.named_parameters()}

    expected = {"untrained_loss": untrained.detach(), "loss": loss.detach(),
                "chosen_rewards": chosen_rewards.detach(),
                "rejected_rewards": rejected_rewards.detach(), **measured, **grads,
                **after_step}

    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, "config.json"), {**cfg, "beta": BETA, "pad_token_id": PAD})
    write_json(os.path.join(args.out, "inputs.json"), {
        "pairs": [{"chosen": p["chosen"], "rejected": p["rejected"],
                   "promptLength": len(p["prompt"])} for p in pairs],
        "collated": {k: batch[k].int().tolist()
                     for k in ("chosen", "rejected", "chosen_mask", "rejected_mask")},
    })
    write_json(os.path.join(args.out, "adamw.json"), {
        **ADAMW, "amsgrad": False, "steps": 1,
        "decay_applies_to": "every policy parameter (the book passes policy_model.parameters())"})
    save_file(policy_weights, os.path.join(args.out, "policy.safetensors"), METADATA)
    save_file(expected, os.path.join(args.out, "expected.safetensors"), METADATA)
    for name, tensors in (("policy", policy_weights), ("expected", expected)):
        loaded, metadata = load_file(os.path.join(args.out, f"{name}.safetensors"))
        assert metadata == METADATA and loaded.keys() == tensors.keys(), name
        for key, tensor in tensors.items():
            assert torch.equal(loaded[key], tensor), key
    print(f"untrained loss {untrained.item():.7f} (ln 2 = 0.6931472); loss {loss.item():.7f}, "
          f"rewards {chosen_rewards.item():.6f} / {rejected_rewards.item():.6f}")


if __name__ == "__main__":
    main()
