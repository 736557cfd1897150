"""Minimal safetensors read/write for the PyTorch tools (the `safetensors` package is not
available here: no PyPI). Writes files the way the reference implementation does: names sorted,
data packed in that order, compact JSON header with `__metadata__` first, padded with spaces so
the data starts at a multiple of 8 bytes. Our TypeScript writer (llm/weights/safetensors.ts)
follows the same rules, so both produce byte-identical files for the same F32 tensors.

Run with /usr/bin/python3 (Debian's python3-torch).
"""

import json
import os
import struct

import numpy as np
import torch

# torch dtype -> (safetensors dtype, numpy dtype used to get the little-endian bytes)
_TO_FILE = {
    torch.float32: ("F32", "<f4"),
    torch.float16: ("F16", "<f2"),
    torch.bfloat16: ("BF16", None),  # numpy has no bfloat16: written through its int16 bits
    torch.float64: ("F64", "<f8"),
    torch.int64: ("I64", "<i8"),
    torch.int32: ("I32", "<i4"),
    torch.int16: ("I16", "<i2"),
    torch.int8: ("I8", "i1"),
    torch.uint8: ("U8", "u1"),
    torch.bool: ("BOOL", "?"),
}
_FROM_FILE = {name: (dtype, np_dtype) for dtype, (name, np_dtype) in _TO_FILE.items()}


def _tensor_bytes(tensor):
    tensor = tensor.detach().contiguous().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().astype("<i2").tobytes()
    return tensor.numpy().astype(_TO_FILE[tensor.dtype][1]).tobytes()


def _compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def serialize(tensors, metadata=None):
    """dict name -> torch tensor (+ optional dict str -> str) -> bytes of a safetensors file."""
    fields = []
    if metadata is not None:
        fields.append(f"{_compact('__metadata__')}:{_compact(metadata)}")
    chunks = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name]
        data = _tensor_bytes(tensor)
        info = {"dtype": _TO_FILE[tensor.dtype][0], "shape": list(tensor.shape),
                "data_offsets": [offset, offset + len(data)]}
        fields.append(f"{_compact(name)}:{_compact(info)}")
        chunks.append(data)
        offset += len(data)
    header = ("{" + ",".join(fields) + "}").encode("utf-8")
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + b"".join(chunks)


def save_file(tensors, path, metadata=None):
    """Writes atomically: a temporary file beside `path`, renamed into place when complete."""
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "wb") as f:
        f.write(serialize(tensors, metadata))
    os.replace(temp, path)


def load_file(path):
    """-> (dict name -> torch tensor, metadata dict). Checks that the tensors tile the data."""
    with open(path, "rb") as f:
        raw = f.read()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    data = raw[8 + header_len:]
    tensors = {}
    end_of_last = 0
    for name, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"]):
        begin, end = info["data_offsets"]
        assert begin == end_of_last, f"{path}: tensor {name!r} does not follow the previous one"
        end_of_last = end
        dtype, np_dtype = _FROM_FILE[info["dtype"]]
        chunk = data[begin:end]
        if dtype == torch.bfloat16:
            array = np.frombuffer(chunk, dtype="<i2").copy()
            tensor = torch.from_numpy(array).view(torch.bfloat16)
        else:
            tensor = torch.from_numpy(np.frombuffer(chunk, dtype=np_dtype).copy())
        tensors[name] = tensor.reshape(info["shape"])
    assert end_of_last == len(data), f"{path}: {len(data) - end_of_last} trailing bytes"
    return tensors, metadata
