"""Reference GGUF fixtures from llama.cpp's own Python package, gguf-py (tests/fixtures/gguf/).

gguf-py ships inside node-llama-cpp's copy of llama.cpp (`llama/gitRelease.bundle`, release v0.4.0).
Clone that bundle OUTSIDE the repository and point --gguf-py at its gguf-py folder; nothing of
llama.cpp is copied into this repository:

    npm install --prefix /tmp/llama node-llama-cpp@3.21.1
    git clone /tmp/llama/node_modules/node-llama-cpp/llama/gitRelease.bundle /tmp/llama.cpp
    /usr/bin/python3 tools/gguf_fixtures.py --gguf-py /tmp/llama.cpp/gguf-py

Writes (deterministic: a re-run leaves `git status` clean):
  conversions.json  float32 inputs and the bytes gguf-py's quantize() gives for Q8_0 (bit-exact
                    with ggml-quants.c's quantize_row_q8_0_ref, as gguf-py states), F16 and BF16
  small.gguf        a file written by gguf-py's GGUFWriter: a key of every value type (nested
                    array included) and one tensor of each type F32, F16, BF16, Q8_0
  small.json        what small.gguf holds, for the reader test and for writing it again
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "gguf"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf-py", required=True, help="llama.cpp's gguf-py folder")
    args = parser.parse_args()
    sys.path.insert(0, args.gguf_py)
    import gguf  # noqa: E402
    from gguf import GGMLQuantizationType as T, quants  # noqa: E402

    rng = np.random.default_rng(20261203)
    vectors = {
        "normal": rng.standard_normal(32 * 8).astype(np.float32),
        "wide": (rng.standard_normal(32 * 4) * 40).astype(np.float32),
        # amax 127 → d = 1, id = 1: every x.5 is a tie that roundf sends away from zero
        "ties": np.array([127, -127] + [k + 0.5 for k in range(-15, 15)], dtype=np.float32),
        "zeros": np.zeros(32, dtype=np.float32),
        # a scale that is subnormal in fp16, and values spanning it
        "tiny": (rng.standard_normal(32) * 1e-6).astype(np.float32),
        "one_hot": np.array([0.0] * 31 + [-3.0], dtype=np.float32),
    }
    half_inputs = np.array(
        [0.0, -0.0, 1.0, -2.5, 65504.0, 65519.0, 65520.0, 1e-8, 5.96e-8, 2.98e-8, 6.1e-5,
         1.0009765625, 1.00048828125, 1.00146484375, 3.4e38, -1e-30, 0.1, 0.2, 0.3, 1 / 3],
        dtype=np.float32,
    )
    conversions = {
        "q8_0": [
            {"name": name, "input": [float(x) for x in v],
             "bytes": quants.quantize(v.reshape(-1, 32), T.Q8_0).tobytes().hex()}
            for name, v in vectors.items()
        ],
        "f16": {"input": [float(x) for x in half_inputs],
                "bytes": half_inputs.astype(np.float16).tobytes().hex()},
        "bf16": {"input": [float(x) for x in half_inputs] + [float(x) for x in vectors["normal"][:32]],
                 "bytes": quants.quantize(np.concatenate([half_inputs, vectors["normal"][:32]]),
                                          T.BF16).tobytes().hex()},
    }
    (OUT / "conversions.json").write_text(json.dumps(conversions, indent=1) + "\n")

    # small.gguf: GGUFWriter writes general.architecture first, then keys in the order added.
    path = OUT / "small.gguf"
    writer = gguf.GGUFWriter(str(path), "test")
    V = gguf.GGUFValueType
    keys = [
        ("test.uint8", 200, V.UINT8), ("test.int8", -100, V.INT8), ("test.uint16", 60000, V.UINT16),
        ("test.int16", -30000, V.INT16), ("test.uint32", 4000000000, V.UINT32),
        ("test.int32", -2000000000, V.INT32), ("test.float32", 0.15625, V.FLOAT32),
        ("test.bool", True, V.BOOL), ("test.string", "héllo GGUF ✓", V.STRING),
        ("test.uint64", 2**63 + 5, V.UINT64), ("test.int64", -(2**62), V.INT64),
        ("test.float64", 0.1, V.FLOAT64),
    ]
    for key, value, vtype in keys:
        writer.add_key_value(key, value, vtype)
    writer.add_key_value("test.strings", ["a", "", "Ġthe", "<|endoftext|>"], V.ARRAY)
    writer.add_key_value("test.int32s", [1, -2, 3], V.ARRAY, sub_type=V.INT32)
    writer.add_key_value("test.float32s", [0.5, -1.25], V.ARRAY, sub_type=V.FLOAT32)
    writer.add_key_value("test.nested", [[1, 2], [3]], V.ARRAY)
    tensors = {
        "f32": (rng.standard_normal((2, 3)).astype(np.float32), T.F32),
        "f16": (rng.standard_normal((4, 8)).astype(np.float32), T.F16),
        "bf16": (rng.standard_normal((3, 5)).astype(np.float32), T.BF16),
        "q8_0": (rng.standard_normal((2, 64)).astype(np.float32), T.Q8_0),
    }
    for name, (values, qtype) in tensors.items():
        if qtype == T.F32:
            writer.add_tensor(name, values)
        elif qtype == T.F16:
            writer.add_tensor(name, values.astype(np.float16))
        else:
            writer.add_tensor(name, quants.quantize(values, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    def kv(value, vtype):
        return {"type": vtype.name.lower(), "value": str(value) if vtype in (V.UINT64, V.INT64) else value}

    described = {
        "metadata": [["general.architecture", {"type": "string", "value": "test"}]]
        + [[key, kv(value, vtype)] for key, value, vtype in keys]
        + [["test.strings", {"type": "array", "itemType": "string", "value": ["a", "", "Ġthe", "<|endoftext|>"]}],
           ["test.int32s", {"type": "array", "itemType": "int32", "value": [1, -2, 3]}],
           ["test.float32s", {"type": "array", "itemType": "float32", "value": [0.5, -1.25]}],
           ["test.nested", {"type": "array", "itemType": "array", "value": [
               {"type": "array", "itemType": "int32", "value": [1, 2]},
               {"type": "array", "itemType": "int32", "value": [3]}]}]],
        "tensors": [
            {"name": name, "shape": list(values.shape), "type": qtype.name,
             "input": [float(x) for x in values.reshape(-1)],
             # what the file holds, as gguf-py dequantizes it
             "stored": [float(x) for x in quants.dequantize(
                 quants.quantize(values, qtype) if qtype not in (T.F32, T.F16)
                 else values.astype(np.float16 if qtype == T.F16 else np.float32), qtype
             ).reshape(-1)]}
            for name, (values, qtype) in tensors.items()
        ],
    }
    (OUT / "small.json").write_text(json.dumps(described, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}/conversions.json, small.gguf ({path.stat().st_size} bytes), small.json")


if __name__ == "__main__":
    main()
