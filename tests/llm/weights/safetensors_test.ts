import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type NamedTensor,
  openSafetensors,
  readSafetensors,
  readSafetensorsFile,
  readSafetensorsHeader,
  SafetensorsError,
  writeSafetensors,
  writeSafetensorsFile,
  writeSafetensorsStream,
} from "../../../llm/weights/safetensors.ts";
import { localFixture, withTempDir } from "../../fixtures.ts";

// Files written by tools/torch_reference.py with PyTorch (see tests/fixtures/parity/README.md).
const PYTHON_FILES = [
  localFixture("parity", "no_qkv_bias", "weights.safetensors"),
  localFixture("parity", "qkv_bias", "weights.safetensors"),
  localFixture("parity", "qkv_bias", "expected.safetensors"),
];
const DTYPES_FILE = localFixture("parity", "dtypes.safetensors");

function bookParameterNames(nLayers: number, qkvBias: boolean): string[] {
  const names = ["tok_emb.weight", "pos_emb.weight", "final_norm.scale", "final_norm.shift"];
  names.push("out_head.weight");
  for (let i = 0; i < nLayers; i++) {
    const p = `trf_blocks.${i}`;
    for (const w of ["W_query", "W_key", "W_value"]) {
      names.push(`${p}.att.${w}.weight`);
      if (qkvBias) names.push(`${p}.att.${w}.bias`);
    }
    names.push(`${p}.att.out_proj.weight`, `${p}.att.out_proj.bias`);
    names.push(`${p}.ff.layers.0.weight`, `${p}.ff.layers.0.bias`);
    names.push(`${p}.ff.layers.2.weight`, `${p}.ff.layers.2.bias`);
    names.push(`${p}.norm1.scale`, `${p}.norm1.shift`, `${p}.norm2.scale`, `${p}.norm2.shift`);
  }
  return names.sort();
}

/** A file from a header given as JSON text (or an object) and a data section of `dataBytes`. */
function craft(header: unknown, dataBytes: number, headerLength?: number): Uint8Array {
  const json = new TextEncoder().encode(
    typeof header === "string" ? header : JSON.stringify(header),
  );
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength ?? json.length), true);
  out.set(json, 8);
  return out;
}

function assertFails(bytes: Uint8Array, ...fragments: (string | RegExp)[]): void {
  assert.throws(() => readSafetensors(bytes, "bad.safetensors"), (e: unknown) => {
    assert.ok(e instanceof SafetensorsError, `expected a SafetensorsError, got ${e}`);
    assert.match(e.message, /^bad\.safetensors: /);
    for (const f of fragments) {
      if (typeof f === "string") assert.ok(e.message.includes(f), `"${e.message}" lacks "${f}"`);
      else assert.match(e.message, f);
    }
    return true;
  });
}

function randomTensor(shape: number[], seed: number): NamedTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    data[i] = s / 2 ** 30 - 1;
  }
  return { shape, data };
}

Deno.test("reads the parameters PyTorch wrote, under the book's state_dict names", async () => {
  for (const [variant, qkvBias] of [["no_qkv_bias", false], ["qkv_bias", true]] as const) {
    const path = localFixture("parity", variant, "weights.safetensors");
    const { tensors, metadata } = await readSafetensorsFile(path);
    assert.deepEqual([...tensors.keys()].sort(), bookParameterNames(2, qkvBias));
    assert.equal(metadata.format, "pt");
    const config = JSON.parse(
      await Deno.readTextFile(localFixture("parity", variant, "config.json")),
    );
    const { vocab_size: vocab, emb_dim: d, context_length: ctx } = config;
    assert.deepEqual(tensors.get("tok_emb.weight")!.shape, [vocab, d]);
    assert.deepEqual(tensors.get("pos_emb.weight")!.shape, [ctx, d]);
    assert.deepEqual(tensors.get("out_head.weight")!.shape, [vocab, d]);
    // PyTorch Linear layout [out, in]
    assert.deepEqual(tensors.get("trf_blocks.1.ff.layers.0.weight")!.shape, [4 * d, d]);
    assert.deepEqual(tensors.get("trf_blocks.1.ff.layers.2.weight")!.shape, [d, 4 * d]);
    for (const [name, t] of tensors) {
      assert.equal(t.dtype, "F32", name);
      assert.equal(t.data.length, t.shape.reduce((a, b) => a * b, 1), name);
      assert.ok(t.data.every(Number.isFinite), name);
    }
    // PyTorch's nn.Embedding starts from N(0, 1): a wrong offset or byte order would not.
    const emb = tensors.get("tok_emb.weight")!.data;
    const mean = emb.reduce((a, b) => a + b, 0) / emb.length;
    const variance = emb.reduce((a, b) => a + (b - mean) ** 2, 0) / emb.length;
    assert.ok(Math.abs(mean) < 0.1 && Math.abs(variance - 1) < 0.1, `${mean} ${variance}`);
  }
});

Deno.test("re-writing a PyTorch-written file reproduces it byte for byte", async () => {
  for (const path of PYTHON_FILES) {
    const original = await Deno.readFile(path);
    const { tensors, metadata } = readSafetensors(original, path);
    const rewritten = writeSafetensors(tensors, metadata);
    assert.equal(rewritten.length, original.length, path);
    assert.ok(rewritten.every((b, i) => b === original[i]), `${path} differs`);
  }
});

Deno.test("converts F16, BF16, F64 and integer dtypes to float32 exactly as PyTorch does", async () => {
  const { tensors } = await readSafetensorsFile(DTYPES_FILE);
  const expectedDtypes: Record<string, string> = {
    float16: "F16",
    bfloat16: "BF16",
    float64: "F64",
    int64: "I64",
    int32: "I32",
    int16: "I16",
    int8: "I8",
    uint8: "U8",
    bool: "BOOL",
  };
  for (const [name, dtype] of Object.entries(expectedDtypes)) {
    const stored = tensors.get(name)!;
    const reference = tensors.get(`${name}.as_f32`)!;
    assert.equal(stored.dtype, dtype);
    assert.equal(reference.dtype, "F32");
    assert.deepEqual(stored.shape, reference.shape, name);
    // Object.is tells -0 from 0 and matches NaN with NaN.
    stored.data.forEach((v, i) => assert.ok(Object.is(v, reference.data[i]), `${name}[${i}]`));
  }
  // The corners the fixture was built to hit really are there.
  const f16 = tensors.get("float16")!.data;
  assert.ok(f16.includes(65504) && f16.includes(Infinity) && f16.some(Number.isNaN));
  assert.ok(Object.is(f16[1], -0) && f16.some((v) => v > 0 && v < 6.1e-5), "subnormal, -0");
  assert.ok(tensors.get("int64")!.data.includes(-(2 ** 31)));

  const scalar = tensors.get("float32.scalar")!;
  assert.deepEqual([scalar.shape, [...scalar.data]], [[], [3.25]]);
  const empty = tensors.get("float32.empty")!;
  assert.deepEqual([empty.shape, empty.data.length], [[0, 3], 0]);
});

Deno.test("round trip: names, shapes, values and metadata survive, layout as HF writes it", () => {
  const tensors = new Map<string, NamedTensor>([
    ["zeta.weight", randomTensor([3, 5], 1)],
    ["alpha", randomTensor([7], 2)],
    ["0", randomTensor([2, 2, 2], 3)], // integer-like: JSON.stringify would reorder it
    ["scalar", { shape: [], data: new Float32Array([-1.5]) }],
    ["empty", { shape: [4, 0], data: new Float32Array(0) }],
    ["π.ünïcode", randomTensor([1], 4)],
  ]);
  // A view into a larger buffer must be written as just its own elements.
  const big = new Float32Array([9, 8, 7, 6, 5, 4]);
  tensors.set("view", { shape: [2], data: big.subarray(2, 4) });

  const bytes = writeSafetensors(tensors, { format: "pt", note: "ü" });
  const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal((8 + headerLength) % 8, 0, "data section aligned to 8 bytes");
  const header = new TextDecoder().decode(bytes.subarray(8, 8 + headerLength));
  assert.match(header, /^\{"__metadata__":\{"format":"pt","note":"ü"\},"0":/);
  assert.match(header, /\} *$/);

  const { tensors: back, metadata } = readSafetensors(bytes);
  assert.deepEqual(metadata, { format: "pt", note: "ü" });
  assert.deepEqual([...back.keys()], [...tensors.keys()].sort());
  for (const [name, t] of tensors) {
    const r = back.get(name)!;
    assert.deepEqual(r.shape, t.shape, name);
    assert.deepEqual([...r.data], [...t.data], name);
  }
  assert.deepEqual([...back.get("view")!.data], [7, 6]);
  // Read tensors own their data: changing one cannot touch the input bytes.
  back.get("alpha")!.data[0] = 123;
  assert.notEqual(readSafetensors(bytes).tensors.get("alpha")!.data[0], 123);
});

Deno.test("files: atomic write, whole-file read, header-only and per-tensor reads", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "model.safetensors");
    const tensors = new Map<string, NamedTensor>([
      ["b", randomTensor([4, 3], 5)],
      ["a", randomTensor([6], 6)],
    ]);
    await writeSafetensorsFile(path, new Map([["old", randomTensor([2], 9)]]));
    await writeSafetensorsFile(path, tensors, { step: "7" }); // replaces the old file
    const names = [];
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    assert.deepEqual(names, ["model.safetensors"], "no temporary files left behind");

    assert.deepEqual(await Deno.readFile(path), writeSafetensors(tensors, { step: "7" }));
    const whole = await readSafetensorsFile(path);
    assert.deepEqual([...whole.tensors.keys()], ["a", "b"]);

    const header = await readSafetensorsHeader(path);
    assert.equal(header.source, path);
    assert.equal(header.dataStart % 8, 0);
    assert.deepEqual(header.metadata, { step: "7" });
    assert.deepEqual(header.tensors.get("b"), {
      dtype: "F32",
      shape: [4, 3],
      dataOffsets: [24, 72],
    });

    await using reader = await openSafetensors(path);
    const b = await reader.read("b");
    assert.deepEqual([...b.data], [...tensors.get("b")!.data]);
    await assert.rejects(() => reader.read("c"), /model\.safetensors: no tensor named "c"/);
  });
});

Deno.test("a failed write leaves the previous file untouched and no temporary file", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "w.safetensors");
    await writeSafetensorsFile(path, new Map([["x", randomTensor([3], 1)]]));
    const before = await Deno.readFile(path);
    const bad = new Map([["y", { shape: [4], data: new Float32Array(3) }]]);
    await assert.rejects(
      () => writeSafetensorsFile(path, bad),
      /tensor "y": shape \[4\] has 4 elements but data has 3/,
    );
    assert.deepEqual(await Deno.readFile(path), before);
    const names = [];
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    assert.deepEqual(names, ["w.safetensors"]);
  });
});

Deno.test("writer rejects tensors it cannot describe", () => {
  const write = (name: string, t: NamedTensor) => () => writeSafetensors(new Map([[name, t]]));
  assert.throws(write("w", { shape: [2, 2], data: new Float32Array(3) }), /tensor "w".*4 elements/);
  assert.throws(write("w", { shape: [-1], data: new Float32Array(0) }), /tensor "w": shape/);
  assert.throws(write("__metadata__", randomTensor([1], 1)), /reserved/);
  assert.throws(
    () => writeSafetensors(new Map(), { n: 3 as unknown as string }),
    /metadata "n" must be a string/,
  );
});

Deno.test("corrupt headers are errors naming the file, the tensor and the problem", () => {
  const ok = { w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
  assert.doesNotThrow(() => readSafetensors(craft(ok, 8)));

  assertFails(new Uint8Array(5), "5 bytes is too short");
  assertFails(craft(ok, 8, 10_000), "header length 10000 at offset 0 runs past the end");
  assertFails(craft("{not json", 0), "is not valid JSON");
  assertFails(craft("[1, 2]", 0), "must be a JSON object");
  assertFails(
    craft({ w: { dtype: "F33", shape: [2], data_offsets: [0, 8] } }, 8),
    'tensor "w": unknown dtype "F33"',
  );
  assertFails(
    craft({ w: { dtype: "F32", shape: [2, 3], data_offsets: [0, 8] } }, 8),
    'tensor "w": data_offsets [0, 8] hold 8 bytes but shape [2,3] of F32 needs 24',
  );
  assertFails(
    craft({ w: { dtype: "F32", shape: [2.5], data_offsets: [0, 8] } }, 8),
    'tensor "w": shape must be',
  );
  assertFails(
    craft({ w: { dtype: "F32", shape: [2], data_offsets: [8, 0] } }, 8),
    'tensor "w": data_offsets must be [begin, end]',
  );
  assertFails(
    craft({
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    }, 12),
    'tensor "b" data_offsets [4, 12] overlaps tensor "a"',
  );
  assertFails(
    craft({ a: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, 8),
    'tensor "a" data_offsets [4, 8] leaves a gap',
  );
  assertFails(craft(ok, 12), "4 trailing bytes are not described");
  assertFails(
    craft({ __metadata__: { n: 1 }, ...ok }, 8),
    '"__metadata__"."n" must be a string',
  );
});

Deno.test("invalid UTF-8 in the header is reported as such", () => {
  const bytes = new Uint8Array(8 + 4);
  new DataView(bytes.buffer).setBigUint64(0, 4n, true);
  bytes.set([0x7b, 0xc3, 0x28, 0x7d], 8);
  assertFails(bytes, "is not valid UTF-8");
});

Deno.test("a truncated real file fails naming the tensor that runs past the end", async () => {
  const path = PYTHON_FILES[0];
  const bytes = await Deno.readFile(path);
  const { tensors } = readSafetensors(bytes, path);
  const header = await readSafetensorsHeader(path);
  const last = [...header.tensors.keys()].at(-1)!;
  assert.equal(tensors.size, header.tensors.size);

  assertFails(bytes.slice(0, bytes.length - 100), `tensor "${last}"`, "run past the data section");
  assertFails(bytes.slice(0, 20), "runs past the end of the file");

  await withTempDir(async (dir) => {
    const cut = join(dir, "cut.safetensors");
    await Deno.writeFile(cut, bytes.slice(0, bytes.length - 100));
    await assert.rejects(
      () => openSafetensors(cut),
      (e: Error) => e.message.startsWith(cut) && e.message.includes(`tensor "${last}"`),
    );
    await assert.rejects(() => readSafetensorsFile(cut), SafetensorsError);
  });
});

Deno.test("unsupported-but-known dtypes parse in the header and fail only when read", () => {
  const bytes = craft({
    f8: { dtype: "F8_E4M3", shape: [4], data_offsets: [0, 4] },
  }, 4);
  assertFails(bytes, 'tensor "f8" has dtype F8_E4M3, which this reader cannot convert');
});

/** Tensors that arrive one at a time, as a conversion produces them. */
async function* arrive(items: [string, NamedTensor][]): AsyncGenerator<[string, NamedTensor]> {
  for (const item of items) yield item;
}

Deno.test("streamed writing: tensors arrive one by one in the declared order", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const declared = new Map<string, number[]>([["b", [2, 3]], ["a", [4]]]);
    const values = {
      b: Float32Array.from({ length: 6 }, (_, i) => i / 3),
      a: Float32Array.from([1, -2, 3.5, 1e-8]),
    };
    const progress: number[] = [];
    const path = `${dir}/m.safetensors`;
    await writeSafetensorsStream(
      path,
      declared,
      arrive([["b", { shape: [2, 3], data: values.b }], ["a", { shape: [4], data: values.a }]]),
      { k: "v" },
      (n) => progress.push(n),
    );
    assert.deepEqual(progress, [0, 24, 40]);
    const { tensors, metadata } = await readSafetensorsFile(path);
    assert.deepEqual(metadata, { k: "v" });
    assert.deepEqual(tensors.get("b")!.data, values.b);
    assert.deepEqual(tensors.get("a")!.data, values.a);

    await assert.rejects(
      writeSafetensorsStream(
        `${dir}/x.safetensors`,
        declared,
        arrive([["a", { shape: [4], data: values.a }]]),
      ),
      /got tensor "a" \[4\] where "b" \[2,3\] was declared/,
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["m.safetensors"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a mapped file gives the tensors of a read one, as copy-on-write views of the file", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "m.safetensors");
    const tensors = new Map([["a", randomTensor([5], 3)], ["b", randomTensor([4, 3], 4)]]);
    await writeSafetensorsFile(path, tensors);
    const bytes = await Deno.readFile(path);
    await using mapped = await openSafetensors(path);
    await using copied = await openSafetensors(path, { map: false });
    assert.equal(mapped.mapped, true, "mapping works here (Linux, FFI allowed)");
    assert.equal(copied.mapped, false);
    for (const name of ["a", "b"]) {
      const got = await mapped.read(name);
      assert.deepEqual(got, await copied.read(name));
      // A view of its own bytes of the mapping, not a copy of the file or of the tensor.
      assert.equal(got.data.buffer.byteLength, got.data.length * 4);
    }
    // Writing into a mapped tensor changes this process's pages only, never the file.
    const b = await mapped.read("b");
    b.data.fill(42);
    assert.deepEqual(await Deno.readFile(path), bytes);
    // (A reader maps once: its reads share that memory. A fresh reader maps the file anew.)
    assert.deepEqual((await mapped.read("b")).data, b.data);
    await using again = await openSafetensors(path);
    assert.deepEqual((await again.read("b")).data, tensors.get("b")!.data);
    // Every dtype the reader converts reads the same from the mapping.
    for (const file of [DTYPES_FILE, ...PYTHON_FILES]) {
      await using m = await openSafetensors(file);
      await using r = await openSafetensors(file, { map: false });
      for (const name of m.header.tensors.keys()) {
        if (!["F8_E4M3", "F8_E5M2"].includes(m.header.tensors.get(name)!.dtype)) {
          assert.deepEqual(await m.read(name), await r.read(name), `${file}: ${name}`);
        }
      }
    }
  });
});
