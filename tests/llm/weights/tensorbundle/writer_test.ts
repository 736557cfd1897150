import assert from "node:assert/strict";
import { join } from "node:path";
import { openTensorBundle } from "../../../../llm/weights/tensorbundle/reader.ts";
import {
  type WritableTensor,
  writeTensorBundle,
} from "../../../../llm/weights/tensorbundle/writer.ts";
import { sharedFixture, withTempDir } from "../../../fixtures.ts";
import { openaiGpt2Tensors } from "../gpt2_test_weights.ts";

const DATA_SUFFIX = ".data-00000-of-00001";

/** Reads every tensor of a checkpoint back as writer input, in data-file order. */
async function readAllInDataOrder(prefix: string): Promise<Array<[string, WritableTensor]>> {
  const bundle = await openTensorBundle(prefix);
  const out: Array<[string, WritableTensor]> = [];
  for (const entry of [...bundle.entries.values()].sort((a, b) => a.offset - b.offset)) {
    const values = await bundle.read(entry.name);
    out.push([
      entry.name,
      Array.isArray(values)
        ? { shape: entry.shape, strings: values }
        : { shape: entry.shape, data: values },
    ]);
  }
  return out;
}

Deno.test("writer reproduces real TensorFlow checkpoints byte for byte (uncompressed indexes)", async () => {
  const folders = [
    "half_plus_three",
    "half_plus_two_mkl",
    "rust_keras_single_input_saved_model",
    "rust_keras_multiple_inputs_saved_model",
    "rust_regression_savedmodel",
  ];
  await withTempDir(async (dir) => {
    for (const folder of folders) {
      const original = sharedFixture("tf-checkpoint", folder, "variables");
      const prefix = join(dir, folder, "variables");
      await writeTensorBundle(prefix, await readAllInDataOrder(original));
      for (const suffix of [".index", DATA_SUFFIX]) {
        assert.deepEqual(
          await Deno.readFile(prefix + suffix),
          await Deno.readFile(original + suffix),
          `${folder}${suffix}`,
        );
      }
    }
  });
});

Deno.test("writer: Snappy-compressed index blocks read back like the real Snappy checkpoints", async () => {
  await withTempDir(async (dir) => {
    for (const folder of ["half_plus_two_cpu", "half_plus_two_tf2_cpu"]) {
      const original = await openTensorBundle(sharedFixture("tf-checkpoint", folder, "variables"));
      const prefix = join(dir, folder, "variables");
      await writeTensorBundle(prefix, await readAllInDataOrder(original.prefix), {
        index: { compression: "snappy" },
      });
      const copy = await openTensorBundle(prefix);
      assert.equal(copy.index.table.dataBlocks[0].block.compression, "snappy");
      assert.deepEqual([...copy.entries.values()], [...original.entries.values()]);
      for (const name of original.entries.keys()) {
        assert.deepEqual(await copy.read(name), await original.read(name), name);
      }
    }
  });
});

Deno.test("writer/reader round trip for every supported dtype, scalars, empty and string tensors", async () => {
  const halfBits = Uint16Array.from([0x3c00, 0xc000, 0x3555, 0x0001, 0x7c00, 0x0000]); // 1, -2, ~1/3, 2^-24, inf, 0
  const bf16Bits = Uint16Array.from([0x3f80, 0xc049, 0x0000]); // 1, -3.140625, 0
  const tensors: Array<[string, WritableTensor]> = [
    ["f32", { shape: [2, 3], data: Float32Array.from([1.5, -2, 3.25, 0, 1e-30, -7]) }],
    ["f64", { shape: [2], data: Float64Array.from([Math.PI, -1e300]) }],
    ["i32", { shape: [3], data: Int32Array.from([-2147483648, 0, 2147483647]) }],
    ["i64", { shape: [2], data: BigInt64Array.from([-(2n ** 63n), 2n ** 60n + 1n]) }],
    ["u64", { shape: [1], data: BigUint64Array.from([2n ** 64n - 1n]) }],
    ["i8", { shape: [2], data: Int8Array.from([-128, 127]) }],
    ["i16", { shape: [2], data: Int16Array.from([-32768, 32767]) }],
    ["u8", { shape: [2], data: Uint8Array.from([0, 255]) }],
    ["u16", { shape: [1], data: Uint16Array.from([65535]) }],
    ["u32", { shape: [1], data: Uint32Array.from([4294967295]) }],
    ["bool", { shape: [3], data: Uint8Array.from([1, 0, 1]), dtype: "DT_BOOL" }],
    ["half", { shape: [6], data: halfBits, dtype: "DT_HALF" }],
    ["bf16", { shape: [3], data: bf16Bits, dtype: "DT_BFLOAT16" }],
    ["scalar", { shape: [], data: Float32Array.from([42]) }],
    ["empty", { shape: [0, 4], data: new Float32Array(0) }],
    ["strings", {
      shape: [2, 2],
      strings: ["", "héllo", new Uint8Array([0, 255, 1]), "x".repeat(300)],
    }],
  ];
  await withTempDir(async (dir) => {
    const prefix = join(dir, "all");
    await writeTensorBundle(prefix, tensors);
    const bundle = await openTensorBundle(prefix);
    const dtypes = Object.fromEntries([...bundle.entries.values()].map((e) => [e.name, e.dtype]));
    assert.deepEqual(dtypes, {
      bf16: "DT_BFLOAT16",
      bool: "DT_BOOL",
      empty: "DT_FLOAT",
      f32: "DT_FLOAT",
      f64: "DT_DOUBLE",
      half: "DT_HALF",
      i16: "DT_INT16",
      i32: "DT_INT32",
      i64: "DT_INT64",
      i8: "DT_INT8",
      scalar: "DT_FLOAT",
      strings: "DT_STRING",
      u16: "DT_UINT16",
      u32: "DT_UINT32",
      u64: "DT_UINT64",
      u8: "DT_UINT8",
    });
    for (const [name, tensor] of tensors) {
      assert.deepEqual(bundle.entry(name).shape, tensor.shape, name);
      const values = await bundle.read(name);
      if ("strings" in tensor) {
        const encoded = tensor.strings.map((s) =>
          typeof s === "string" ? new TextEncoder().encode(s) : s
        );
        assert.deepEqual(values, encoded);
      } else if (name === "half") {
        assert.deepEqual(Array.from(values as Float32Array), [
          1,
          -2,
          0.333251953125,
          2 ** -24,
          Infinity,
          0,
        ]);
      } else if (name === "bf16") {
        assert.deepEqual(Array.from(values as Float32Array), [1, -3.140625, 0]);
      } else {
        assert.deepEqual(values, tensor.data, name);
      }
    }
  });
});

Deno.test("writer: a GPT-2-shaped checkpoint (12 blocks, 148 names) reads back identical, also with many small index blocks", async () => {
  const tensors = openaiGpt2Tensors({ layers: 12, emb: 8, vocab: 50, ctx: 16 });
  assert.equal(tensors.size, 148);
  await withTempDir(async (dir) => {
    for (
      const [label, options] of [["default", {}], ["small blocks", {
        index: { blockSize: 300 },
      }]] as const
    ) {
      const prefix = join(dir, label, "model.ckpt");
      await writeTensorBundle(prefix, tensors, options);
      const bundle = await openTensorBundle(prefix);
      const table = bundle.index.table;
      if (label === "default") {
        assert.equal(table.dataBlocks.length, 1);
        // 149 entries (header + 148) with a restart every 16 entries.
        assert.deepEqual(table.dataBlocks[0].block.restarts.length, Math.ceil(149 / 16));
      } else {
        assert.ok(table.dataBlocks.length > 5, `${table.dataBlocks.length} data blocks`);
        assert.equal(table.indexBlock.entries.length, table.dataBlocks.length);
      }
      // Same names as the real 124M index, in the same bytewise order (h0, h1, h10, h11, h2...).
      assert.deepEqual([...bundle.entries.keys()], [...tensors.keys()].sort());
      for (const [name, tensor] of tensors) {
        assert.deepEqual(bundle.entry(name).shape, tensor.shape);
        assert.deepEqual(await bundle.read(name), tensor.data, name);
      }
    }
  });
});

Deno.test("writer: names are ordered by UTF-8 bytes, not UTF-16 code units", async () => {
  // U+FF01 sorts after U+1F600 in UTF-16 (0xFF01 > 0xD83D) but before it in UTF-8 (EF.. < F0..).
  const names = ["\u{1F600}", "\uFF01", "a"];
  await withTempDir(async (dir) => {
    const prefix = join(dir, "utf8");
    await writeTensorBundle(
      prefix,
      names.map((n, i) => [n, { shape: [1], data: Float32Array.of(i) }]),
    );
    const bundle = await openTensorBundle(prefix);
    assert.deepEqual([...bundle.entries.keys()], ["a", "\uFF01", "\u{1F600}"]);
  });
});

Deno.test("writer: only complete checkpoints appear; bad input leaves nothing behind", async () => {
  await withTempDir(async (dir) => {
    const prefix = join(dir, "ckpt", "model");
    await writeTensorBundle(prefix, [["a", { shape: [2], data: Float32Array.of(1, 2) }]]);
    assert.deepEqual([...Deno.readDirSync(join(dir, "ckpt"))].map((e) => e.name).sort(), [
      "model.data-00000-of-00001",
      "model.index",
    ]);

    const failing = join(dir, "failing", "model");
    const cases: Array<[Array<[string, WritableTensor]>, RegExp]> = [
      [
        [["a", { shape: [2], data: Float32Array.of(1) }]],
        /tensor "a" has 1 values but shape \[2\] needs 2/,
      ],
      [[["a", { shape: [1], data: Float32Array.of(1) }], ["a", {
        shape: [1],
        data: Float32Array.of(1),
      }]], /duplicate tensor "a"/],
      [[["", { shape: [1], data: Float32Array.of(1) }]], /empty name is reserved/],
      [[["s", { shape: [3], strings: ["x"] }]], /has 1 strings but shape \[3\] needs 3/],
      [
        [["b", { shape: [1], data: Float32Array.of(1), dtype: "DT_BOOL" }]],
        /Float32Array, which cannot be stored as DT_BOOL/,
      ],
      [[["n", { shape: [-1], data: Float32Array.of(1) }]], /bad size -1 on axis 0/],
    ];
    for (const [tensors, pattern] of cases) {
      await assert.rejects(writeTensorBundle(failing, tensors), (error: Error) => {
        assert.ok(error.message.includes(`${failing}.index`), error.message);
        assert.match(error.message, pattern);
        return true;
      });
      assert.deepEqual([...Deno.readDirSync(join(dir, "failing"))], [], "no files left behind");
    }
  });
});
