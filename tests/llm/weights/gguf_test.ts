/**
 * GGUF against llama.cpp's own Python writer (gguf-py, tests/fixtures/gguf/, made by
 * tools/gguf_fixtures.py): our writer gives the same bytes, our reader the same values, and
 * Q8_0 / F16 / BF16 conversions equal gguf-py's (bit-exact with ggml-quants.c).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  encodeTensor,
  type GgmlType,
  gguf,
  GgufError,
  type GgufTensorSource,
  type GgufValue,
  openGguf,
  quantizeQ8_0,
  readGguf,
  writeGguf,
} from "../../../llm/weights/gguf.ts";
import { localFixture, withTempDir } from "../../fixtures.ts";

const hex = (bytes: Uint8Array) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");

const conversions = JSON.parse(await Deno.readTextFile(localFixture("gguf", "conversions.json")));
const small = JSON.parse(await Deno.readTextFile(localFixture("gguf", "small.json")));

/** small.json's metadata as typed values (64-bit integers are strings in JSON). */
function fixtureValue(v: { type: string; itemType?: string; value: unknown }): GgufValue {
  if (v.type === "uint64" || v.type === "int64") {
    return { type: v.type, value: BigInt(v.value as string) };
  }
  if (v.type === "array" && v.itemType === "array") {
    return { ...v, value: (v.value as typeof v[]).map(fixtureValue) } as GgufValue;
  }
  return v as GgufValue;
}
const smallMetadata: [string, GgufValue][] = small.metadata.map((
  [key, value]: [string, { type: string; value: unknown }],
) => [key, fixtureValue(value)]);

Deno.test("gguf: Q8_0 blocks equal llama.cpp's reference quantization, ties and zeros included", () => {
  for (const vector of conversions.q8_0) {
    const got = quantizeQ8_0(new Float32Array(vector.input));
    assert.equal(hex(got), vector.bytes, vector.name);
  }
});

Deno.test("gguf: F16 and BF16 conversions equal numpy's / gguf-py's (round to nearest even)", () => {
  assert.equal(
    hex(encodeTensor("F16", new Float32Array(conversions.f16.input))),
    conversions.f16.bytes,
  );
  assert.equal(
    hex(encodeTensor("BF16", new Float32Array(conversions.bf16.input))),
    conversions.bf16.bytes,
  );
});

Deno.test("gguf: our writer writes gguf-py's file byte for byte", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "small.gguf");
    const tensors: GgufTensorSource[] = small.tensors.map((
      t: { name: string; shape: number[]; type: GgmlType; input: number[] },
    ) => ({ name: t.name, shape: t.shape, type: t.type, data: new Float32Array(t.input) }));
    await writeGguf(path, { metadata: smallMetadata, tensors });
    const ours = await Deno.readFile(path);
    const theirs = await Deno.readFile(localFixture("gguf", "small.gguf"));
    assert.equal(ours.length, theirs.length);
    assert.equal(hex(ours), hex(theirs));
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["small.gguf"], "no temp file");
  });
});

Deno.test("gguf: the reader reads gguf-py's file: every key with its type, every tensor's values", async () => {
  using reader = await openGguf(localFixture("gguf", "small.gguf"));
  const { header } = reader;
  assert.equal(header.version, 3);
  assert.equal(header.alignment, 32);
  assert.deepEqual([...header.metadata], smallMetadata);
  for (const t of small.tensors) {
    const info = header.tensors.get(t.name)!;
    assert.deepEqual(info.shape, t.shape);
    assert.equal(info.type, t.type);
    assert.deepEqual([...await reader.read(t.name)], t.stored, t.name);
  }
});

Deno.test("gguf: what the writer wrote reads back exactly (alignment 64, 3-D, every type)", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "round.gguf");
    const values = Float32Array.from({ length: 2 * 3 * 64 }, (_, i) => Math.sin(i) * (i % 7));
    const metadata: [string, GgufValue][] = [
      ["general.alignment", { type: "uint32", value: 64 }],
      ["a.list", { type: "array", itemType: "uint64", value: [1n, 2n ** 64n - 1n] }],
      ["a.bools", { type: "array", itemType: "bool", value: [true, false] }],
      // A header far larger than the writer's first buffer and the reader's first read.
      ["a.tokens", gguf.arr("string", Array.from({ length: 200_000 }, (_, i) => `tok${i}`))],
    ];
    const types: GgmlType[] = ["F32", "F16", "BF16", "Q8_0"];
    await writeGguf(path, {
      metadata,
      tensors: types.map((type) => ({
        name: `t.${type}`,
        shape: [2, 3, 64],
        type,
        data: () => values, // asked for when written
      })),
    });
    const bytes = await Deno.readFile(path);
    const file = readGguf(bytes, path);
    assert.deepEqual([...file.metadata], metadata);
    for (const type of types) {
      const info = file.tensors.get(`t.${type}`)!;
      assert.equal(info.offset % 64, 0);
      assert.deepEqual(info.shape, [2, 3, 64]);
      const back = file.read(`t.${type}`);
      if (type === "F32") assert.deepEqual(back, values);
      // Written again from what was read, the stored bytes are the same: reading is exact.
      assert.equal(hex(encodeTensor(type, back)), hex(encodeTensor(type, values)), type);
    }
    // dims are stored innermost first: the first tensor's info ends "... 3, 64, 3, 2" in u64s.
    const view = new DataView(bytes.buffer);
    const name = new TextEncoder().encode("t.F32");
    const at = findBytes(bytes, name) + name.length;
    assert.equal(view.getUint32(at, true), 3);
    assert.deepEqual(
      [0, 1, 2].map((d) => Number(view.getBigUint64(at + 4 + 8 * d, true))),
      [64, 3, 2],
    );
  });
});

function findBytes(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

Deno.test("gguf: bad input is refused naming the place, and nothing is left behind", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "bad.gguf");
    const tensor = (over: Partial<GgufTensorSource>): GgufTensorSource => ({
      name: "w",
      shape: [2, 32],
      type: "F32",
      data: new Float32Array(64),
      ...over,
    });
    await assert.rejects(
      writeGguf(path, { metadata: [], tensors: [tensor({ shape: [2, 30], type: "Q8_0" })] }),
      /tensor "w": Q8_0 stores blocks of 32 values along the innermost dimension, which is 30/,
    );
    await assert.rejects(
      writeGguf(path, { metadata: [], tensors: [tensor({}), tensor({})] }),
      /tensor "w" is given twice/,
    );
    await assert.rejects(
      writeGguf(path, { metadata: [["k", { type: "uint8", value: 300 }]], tensors: [] }),
      /"k": a uint8 value must be in 0\.\.255, got 300/,
    );
    await assert.rejects(
      writeGguf(path, {
        metadata: [["general.alignment", { type: "uint32", value: 48 }]],
        tensors: [],
      }),
      /"general.alignment" must be a uint32 power of two/,
    );
    // A tensor whose data fails halfway: no file, no temporary file.
    await assert.rejects(
      writeGguf(path, {
        metadata: [],
        tensors: [tensor({}), tensor({ name: "v", data: () => new Float32Array(3) })],
      }),
      /tensor "v" \[2,32\] needs 64 float32 values, got 3/,
    );
    assert.deepEqual([...Deno.readDirSync(dir)], []);

    // Reading: a truncated file and a wrong magic.
    const good = await Deno.readFile(localFixture("gguf", "small.gguf"));
    await Deno.writeFile(path, good.subarray(0, good.length - 100));
    await assert.rejects(openGguf(path), (e: Error) => {
      assert.ok(e instanceof GgufError);
      assert.match(
        e.message,
        /bad\.gguf: tensor "q8_0" ends at data byte \d+, but the data section has \d+ bytes/,
      );
      return true;
    });
    await Deno.writeFile(path, good.subarray(0, 200));
    await assert.rejects(openGguf(path), /bad\.gguf: the file ends at byte 200 inside/);
    await Deno.writeFile(path, new TextEncoder().encode("PK\x03\x04 not a gguf"));
    await assert.rejects(openGguf(path), /bad\.gguf: not a GGUF file \(starts with 0x04034b50/);
  });
});
