/**
 * The reader against every real checkpoint in ../shared/fixtures/tf-checkpoint/, compared with
 * each folder's expected.json (decoded independently, see the folders' SOURCE.md).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { openTensorBundle, readIndexOnly } from "../../../../llm/weights/tensorbundle/reader.ts";
import {
  decodeBundleEntry,
  encodeBundleEntry,
} from "../../../../llm/weights/tensorbundle/bundle_proto.ts";
import { sharedFixture } from "../../../fixtures.ts";

interface ExpectedTensor {
  name: string;
  dtype: string;
  dtypeEnum: number;
  shape: number[];
  shard_id: number;
  offset: number;
  size: number;
  crc32c_masked: number;
  values?: number[];
  string?: { numElements: number; lengths: number[]; firstElementSha256: string };
}

interface ExpectedBlock {
  offset: number;
  size: number;
  compression: string;
  numEntries: number;
  restarts: number[];
}

interface Expected {
  indexFile: string;
  footer: { metaindexHandle: [number, number]; indexHandle: [number, number] };
  indexBlock: { compression: string; numEntries: number; restarts: number[] };
  dataBlocks: ExpectedBlock[];
  header: {
    num_shards: number;
    endianness: string;
    version: { producer: number; min_consumer: number };
  };
  tensors: ExpectedTensor[];
}

/** Checkpoints that come with their data file. */
const WITH_DATA = [
  "half_plus_two_cpu",
  "half_plus_three",
  "half_plus_two_mkl",
  "half_plus_two_tf2_cpu",
  "rust_keras_single_input_saved_model",
  "rust_keras_multiple_inputs_saved_model",
  "rust_regression_savedmodel",
];

async function loadExpected(folder: string): Promise<Expected> {
  return JSON.parse(
    await Deno.readTextFile(sharedFixture("tf-checkpoint", folder, "expected.json")),
  );
}

Deno.test("the fixture folder list covers every checkpoint in shared/fixtures/tf-checkpoint", async () => {
  const folders: string[] = [];
  for await (const entry of Deno.readDir(sharedFixture("tf-checkpoint"))) {
    if (entry.isDirectory) folders.push(entry.name);
  }
  assert.deepEqual(folders.sort(), [...WITH_DATA, "gpt2_124M_index_only"].sort());
});

for (const folder of WITH_DATA) {
  Deno.test(`tensorbundle reader: ${folder} matches expected.json`, async () => {
    const expected = await loadExpected(folder);
    const bundle = await openTensorBundle(sharedFixture("tf-checkpoint", folder, "variables"));

    // Table structure: footer, index block, data blocks (incl. Snappy ones), restarts.
    const table = bundle.index.table;
    assert.deepEqual(
      [table.footer.metaindex.offset, table.footer.metaindex.size],
      expected.footer.metaindexHandle,
    );
    assert.deepEqual(
      [table.footer.index.offset, table.footer.index.size],
      expected.footer.indexHandle,
    );
    assert.equal(table.indexBlock.entries.length, expected.indexBlock.numEntries);
    assert.deepEqual(
      table.dataBlocks.map(({ handle, block }) => ({
        offset: handle.offset,
        size: handle.size,
        compression: block.compression,
        numEntries: block.entries.length,
        restarts: block.restarts,
      })),
      expected.dataBlocks.map(({ offset, size, compression, numEntries, restarts }) => ({
        offset,
        size,
        compression,
        numEntries,
        restarts,
      })),
    );

    assert.equal(bundle.header.numShards, expected.header.num_shards);
    assert.equal(bundle.header.endianness.toUpperCase(), expected.header.endianness);
    assert.equal(bundle.header.version.producer, expected.header.version.producer);
    assert.equal(bundle.header.version.minConsumer, expected.header.version.min_consumer);

    assert.deepEqual([...bundle.entries.keys()], expected.tensors.map((t) => t.name));
    for (const want of expected.tensors) {
      const entry = bundle.entry(want.name);
      assert.deepEqual(
        [
          entry.dtype,
          entry.dtypeEnum,
          entry.shape,
          entry.shardId,
          entry.offset,
          entry.size,
          entry.crc32c,
        ],
        [
          want.dtype,
          want.dtypeEnum,
          want.shape,
          want.shard_id,
          want.offset,
          want.size,
          want.crc32c_masked,
        ],
        want.name,
      );
      const values = await bundle.read(want.name);
      if (want.string) {
        assert.ok(Array.isArray(values), `${want.name} decodes to byte strings`);
        assert.equal(values.length, want.string.numElements);
        assert.deepEqual(values.map((v) => v.length), want.string.lengths);
        const sha = createHash("sha256").update(values[0]).digest("hex");
        assert.equal(sha, want.string.firstElementSha256);
      } else {
        assert.ok(!Array.isArray(values));
        const got = want.dtype === "DT_INT64"
          ? Array.from(values as BigInt64Array, Number)
          : Array.from(values as Float32Array);
        // expected.json lists float32 values widened to double, so equality is exact.
        assert.deepEqual(got, want.values, want.name);
        if (want.dtype === "DT_FLOAT") assert.ok(values instanceof Float32Array);
        if (want.dtype === "DT_INT64") assert.ok(values instanceof BigInt64Array);
      }
    }
  });
}

Deno.test("tensorbundle: re-encoding every real BundleEntryProto gives the stored bytes", async () => {
  let checked = 0;
  for (const folder of [...WITH_DATA, "gpt2_124M_index_only"]) {
    const expected = await loadExpected(folder);
    const index = await readIndexOnly(sharedFixture("tf-checkpoint", folder, expected.indexFile));
    for (const { key, value } of index.table.entries.slice(1)) {
      const where = `${folder}: ${new TextDecoder().decode(key)}`;
      assert.deepEqual(encodeBundleEntry(decodeBundleEntry(value, where)), value, where);
      checked++;
    }
  }
  assert.equal(checked, 5 + 3 + 9 + 4 + 28 + 22 + 7 + 148);
});

Deno.test("tensorbundle: the real GPT-2 124M index lists 148 tensors with the 124M shapes", async () => {
  const index = await readIndexOnly(
    sharedFixture("tf-checkpoint", "gpt2_124M_index_only", "model.ckpt.index"),
  );
  const expected = await loadExpected("gpt2_124M_index_only");
  assert.equal(index.entries.size, 148);
  assert.deepEqual(index.table.dataBlocks[0].block.restarts, expected.dataBlocks[0].restarts);
  const entries = [...index.entries.values()];
  assert.ok(entries.every((e) => e.dtype === "DT_FLOAT" && e.shardId === 0));

  // Packed densely in key order, ending exactly at the size of the real data file.
  let end = 0;
  for (const entry of entries) {
    assert.equal(entry.offset, end, entry.name);
    assert.equal(entry.size, 4 * entry.shape.reduce((a, b) => a * b, 1), entry.name);
    end += entry.size;
  }
  assert.equal(end, 497_759_232);

  const shape = (name: string) => index.entries.get(name)?.shape;
  assert.deepEqual(shape("model/wte"), [50257, 768]);
  assert.deepEqual(shape("model/wpe"), [1024, 768]);
  assert.deepEqual(shape("model/ln_f/g"), [768]);
  for (let i = 0; i < 12; i++) {
    assert.deepEqual(shape(`model/h${i}/attn/c_attn/w`), [1, 768, 2304]);
    assert.deepEqual(shape(`model/h${i}/attn/c_attn/b`), [2304]);
    assert.deepEqual(shape(`model/h${i}/attn/c_proj/w`), [1, 768, 768]);
    assert.deepEqual(shape(`model/h${i}/mlp/c_fc/w`), [1, 768, 3072]);
    assert.deepEqual(shape(`model/h${i}/mlp/c_proj/w`), [1, 3072, 768]);
    assert.deepEqual(shape(`model/h${i}/ln_2/b`), [768]);
  }
  // Key order is bytewise: h0, h1, h10, h11, h2, ...
  const blocks = [
    ...new Set(entries.map((e) => /model\/(h\d+)\//.exec(e.name)?.[1]).filter(Boolean)),
  ];
  assert.deepEqual(blocks.slice(0, 5), ["h0", "h1", "h10", "h11", "h2"]);
  // Every stored CRC is what expected.json lists.
  assert.deepEqual(entries.map((e) => e.crc32c), expected.tensors.map((t) => t.crc32c_masked));
});
