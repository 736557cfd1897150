"""Writes the PyTorch parity fixtures under tests/fixtures/parity/.

Our TensorFlow.js GPT must match the book's PyTorch GPTModel (tools/torch_gpt.py) on the same
weights and inputs: logits, loss, gradients and AdamW steps. This script computes the expected
values with PyTorch, in float32 as PyTorch does by default, and writes them as small fixtures
(well under 2 MB in total) that the Deno tests read. PyTorch is a developer tool here, never a
runtime dependency.

How to run (from the repository root):

    apt-get install python3-torch libopenblas0-pthread    # Debian's PyTorch (no PyPI needed)
    /usr/bin/python3 tools/torch_reference.py               # rewrites tests/fixtures/parity/
    /usr/bin/python3 tools/torch_reference.py --out /tmp/p  # somewhere else, e.g. to compare

Use /usr/bin/python3 explicitly: a pyenv or venv `python3` earlier on PATH does not see Debian's
torch. The output is deterministic: seeds are fixed and PyTorch runs on one thread, so a re-run
writes byte-identical files (`git status` stays clean).

What it writes, per variant (`no_qkv_bias/`, `qkv_bias/`; tiny config, drop_rate 0):
  config.json          the book's config keys
  weights.safetensors  every parameter (F32, the book's state_dict names; no mask buffers).
                       PyTorch's default initialization, except that the LayerNorm scale/shift
                       are perturbed away from 1/0 so the forward pass actually exercises them.
  inputs.json          input_ids and target_ids [2, 12]; some targets are -100 (ignored)
  expected.safetensors logits [2, 12, vocab]; loss (scalar, cross-entropy mean over the
                       non-ignored targets); grad.<name> for every parameter; after_step.<name>
                       = every parameter after one AdamW step; loss_after_step (same batch,
                       weights after step 1); grad_step2.<name> = its gradients;
                       after_step2.<name> = after a second AdamW step with them (checks the
                       optimizer's state, not just the first update)
  adamw.json           the optimizer hyperparameters used
  generate.json        greedy generation (the book's generate_text_simple) from two prompts,
                       one long enough that the context must be cropped to context_length
and dtypes.safetensors: one small tensor per dtype (F16, BF16, F64, I64, I32, ...) beside its
float32 value as PyTorch converts it (`<dtype>.as_f32`), for the safetensors reader's tests.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import load_file, save_file  # noqa: E402
from torch_gpt import GPTModel, generate_text_simple  # noqa: E402

SEED = 123
TINY_CONFIG = {
    "vocab_size": 97,
    "context_length": 16,
    "emb_dim": 32,
    "n_heads": 4,
    "n_layers": 2,
    "drop_rate": 0.0,
    "qkv_bias": False,
}
BATCH, TOKENS = 2, 12
IGNORE_INDEX = -100
# The book's pretraining optimizer: torch.optim.AdamW(model.parameters(), lr=4e-4,
# weight_decay=0.1), betas and eps at PyTorch's defaults, decay applied to every parameter.
ADAMW = {"lr": 4e-4, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.1}
GENERATE_NEW_TOKENS = 8
METADATA = {"format": "pt", "generator": "tools/torch_reference.py"}


def to_json(value, indent=""):
    """Indented JSON that keeps lists of numbers on one line (token ids read as rows)."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {to_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, (list, dict)) for v in value):
        return "[\n" + ",\n".join(inner + to_json(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value, separators=(", ", ": "))


def write_json(path, value):
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "w", encoding="utf-8") as f:
        f.write(to_json(value) + "\n")
    os.replace(temp, path)


def make_model(cfg):
    torch.manual_seed(SEED)
    model = GPTModel(cfg)
    # LayerNorms start at scale 1 / shift 0, where a model that ignored them (or swapped them)
    # would still match; move them off that point, reproducibly.
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".scale"):
                param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=g))
            elif name.endswith(".shift"):
                param.copy_(0.1 * torch.randn(param.shape, generator=g))
    return model


def make_batch(cfg):
    """Inputs and next-token targets from one random stream, with some targets ignored:
    a stretch at the end of row 1 (as padding would be) and one position inside row 0."""
    g = torch.Generator().manual_seed(SEED + 2)
    stream = torch.randint(0, cfg["vocab_size"], (BATCH, TOKENS + 1), generator=g)
    inputs, targets = stream[:, :-1].clone(), stream[:, 1:].clone()
    targets[1, -3:] = IGNORE_INDEX
    targets[0, 4] = IGNORE_INDEX
    return inputs, targets


def loss_fn(model, inputs, targets):
    """The book's calc_loss_batch."""
    logits = model(inputs)
    loss = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
    return logits, loss


def parameters(model, prefix=""):
    return {prefix + name: p.detach().clone() for name, p in model.named_parameters()}


def greedy_cases(model, cfg):
    """Greedy continuations; the top-2 logit margin of each step says how robust the expected
    token is to float32 rounding (a test may treat a tiny margin as a tie)."""
    g = torch.Generator().manual_seed(SEED + 3)
    cases = []
    for prompt_len in (4, cfg["context_length"] - 2):  # the second overflows the context
        prompt = torch.randint(0, cfg["vocab_size"], (1, prompt_len), generator=g)
        out = generate_text_simple(model, prompt, GENERATE_NEW_TOKENS, cfg["context_length"])
        margins = []
        for i in range(GENERATE_NEW_TOKENS):
            context = out[:, : prompt_len + i][:, -cfg["context_length"]:]
            with torch.no_grad():
                top2 = torch.topk(model(context)[0, -1], 2).values
            margins.append(float(top2[0] - top2[1]))
        cases.append({
            "prompt": prompt[0].tolist(),
            "max_new_tokens": GENERATE_NEW_TOKENS,
            "context_size": cfg["context_length"],
            "expected_new_tokens": out[0, prompt_len:].tolist(),
            "min_top2_margin": min(margins),
        })
    return cases


def write_variant(out_dir, cfg):
    os.makedirs(out_dir, exist_ok=True)
    model = make_model(cfg)
    model.train()  # drop_rate is 0, so train mode is deterministic
    inputs, targets = make_batch(cfg)
    weights = parameters(model)

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=ADAMW["lr"], betas=tuple(ADAMW["betas"]), eps=ADAMW["eps"],
        weight_decay=ADAMW["weight_decay"], foreach=False)
    logits, loss = loss_fn(model, inputs, targets)
    loss.backward()
    grads = {f"grad.{name}": p.grad.detach().clone() for name, p in model.named_parameters()}
    optimizer.step()
    after_step = parameters(model, "after_step.")

    optimizer.zero_grad()
    _, loss_after_step = loss_fn(model, inputs, targets)
    loss_after_step.backward()
    grads_step2 = {f"grad_step2.{name}": p.grad.detach().clone()
                   for name, p in model.named_parameters()}
    optimizer.step()
    after_step2 = parameters(model, "after_step2.")

    expected = {"logits": logits.detach(), "loss": loss.detach(),
                "loss_after_step": loss_after_step.detach(),
                **grads, **after_step, **grads_step2, **after_step2}

    model.eval()
    # Generation runs on the weights after the two AdamW steps (expected.safetensors'
    # after_step2.*), not on weights.safetensors.
    generate = {"description": "the book's generate_text_simple (greedy), model in eval mode",
                "weights": "after_step2.", "cases": greedy_cases(model, cfg)}

    write_json(os.path.join(out_dir, "config.json"), cfg)
    write_json(os.path.join(out_dir, "inputs.json"), {
        "input_ids": inputs.tolist(), "target_ids": targets.tolist(),
        "ignore_index": IGNORE_INDEX})
    write_json(os.path.join(out_dir, "adamw.json"), {
        **ADAMW, "amsgrad": False, "maximize": False, "steps": 2,
        "decay_applies_to": "every parameter (the book passes model.parameters())",
        "update": "p -= lr*wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; "
                  "p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)"})
    write_json(os.path.join(out_dir, "generate.json"), generate)
    save_file(weights, os.path.join(out_dir, "weights.safetensors"), METADATA)
    save_file(expected, os.path.join(out_dir, "expected.safetensors"), METADATA)

    # Read both files back and compare bit for bit, so a writer bug cannot hide in a fixture.
    for name, tensors in (("weights", weights), ("expected", expected)):
        loaded, metadata = load_file(os.path.join(out_dir, f"{name}.safetensors"))
        assert metadata == METADATA and loaded.keys() == tensors.keys(), name
        for key, tensor in tensors.items():
            assert loaded[key].dtype == torch.float32 and torch.equal(loaded[key], tensor), key
    margins = [case["min_top2_margin"] for case in generate["cases"]]
    print(f"{out_dir}: loss {loss.item():.6f} -> {loss_after_step.item():.6f}, "
          f"{sum(t.numel() for t in weights.values())} parameters, "
          f"greedy min top-2 margin {min(margins):.4g}")


def write_dtypes(path):
    """Values chosen to hit each conversion's corners: signed zero, subnormals, the largest
    finite half, infinities and NaN for the floats; negative and > 2^24 values for integers."""
    floats = torch.tensor([0.0, -0.0, 1.0, -2.5, 0.1, 65504.0, 6.1e-5, 6e-8, 3.0e38,
                           float("inf"), float("-inf"), float("nan")], dtype=torch.float32)
    ints = torch.tensor([[0, 1, -1, 127], [-128, 2 ** 24 + 1, -(2 ** 31), 2 ** 31 - 1]])
    tensors = {}
    for dtype, source in ((torch.float16, floats), (torch.bfloat16, floats),
                          (torch.float64, floats.double() / 3), (torch.int64, ints),
                          (torch.int32, ints), (torch.int16, ints[:1]), (torch.int8, ints[:1]),
                          (torch.uint8, ints[:1].abs()), (torch.bool, ints[:1] != 0)):
        name = str(dtype).removeprefix("torch.")
        tensors[name] = source.to(dtype)
        tensors[f"{name}.as_f32"] = source.to(dtype).to(torch.float32)
    tensors["float32.scalar"] = torch.tensor(3.25)
    tensors["float32.empty"] = torch.zeros(0, 3)
    save_file(tensors, path, {"purpose": "dtype conversions as PyTorch does them"})
    loaded, _ = load_file(path)
    for key, tensor in tensors.items():
        torch.testing.assert_close(loaded[key], tensor, rtol=0, atol=0, equal_nan=True)
    print(f"{path}: {len(tensors)} tensors")


def main():
    default_out = os.path.relpath(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "parity"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=default_out, help="folder to write (default: %(default)s)")
    args = parser.parse_args()

    torch.set_num_threads(1)  # one thread: the same reduction order, byte-identical reruns
    torch.use_deterministic_algorithms(True)
    for variant, qkv_bias in (("no_qkv_bias", False), ("qkv_bias", True)):
        write_variant(os.path.join(args.out, variant), {**TINY_CONFIG, "qkv_bias": qkv_bias})
    write_dtypes(os.path.join(args.out, "dtypes.safetensors"))


if __name__ == "__main__":
    main()
