/**
 * Damaged checkpoints: each is a corrupted temporary copy of a real fixture (or a hand-built
 * index), and each must fail with an error naming the file and what is wrong.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { crc32c, maskCrc } from "../../../../llm/weights/crc32c.ts";
import { WeightsFileError } from "../../../../llm/weights/errors.ts";
import {
  encodeBundleEntry,
  encodeBundleHeader,
} from "../../../../llm/weights/tensorbundle/bundle_proto.ts";
import { openTensorBundle, readIndexOnly } from "../../../../llm/weights/tensorbundle/reader.ts";
import { TableBuilder } from "../../../../llm/weights/tensorbundle/table_builder.ts";
import { sharedFixture, withTempDir } from "../../../fixtures.ts";

const DATA_SUFFIX = ".data-00000-of-00001";

/** Copies a fixture checkpoint into `dir` and returns the new prefix. */
async function copyCheckpoint(folder: string, dir: string): Promise<string> {
  for (const suffix of [".index", DATA_SUFFIX]) {
    const target = join(dir, `variables${suffix}`);
    // Fixtures are read-only and copyFile keeps the mode; the copies must be writable.
    await Deno.writeFile(
      target,
      await Deno.readFile(sharedFixture("tf-checkpoint", folder, `variables${suffix}`)),
    );
  }
  return join(dir, "variables");
}

async function patchFile(path: string, patch: (bytes: Uint8Array) => Uint8Array): Promise<void> {
  await Deno.writeFile(path, patch(await Deno.readFile(path)));
}

/** Rewrites the trailer CRC of the block at [offset, offset+size) so only the content is wrong. */
function fixBlockCrc(file: Uint8Array, offset: number, size: number): void {
  const crc = crc32c(file.subarray(offset, offset + size + 1));
  new DataView(file.buffer, file.byteOffset).setUint32(offset + size + 1, maskCrc(crc), true);
}

async function rejects(promise: Promise<unknown>, file: string, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: Error) => {
    assert.ok(error.message.includes(file), `message names ${file}: ${error.message}`);
    // A typed error (TensorBundleError, SnappyError, ProtobufError) that carries the file.
    assert.ok(error instanceof WeightsFileError, `${error.name}: ${error.message}`);
    assert.equal(error.file, file, error.message);
    assert.match(error.message, pattern);
    return true;
  });
}

/** A one-shard index with the given (sorted) tensor entries. */
async function writeIndex(prefix: string, entries: Array<[string, Uint8Array]>): Promise<void> {
  const table = new TableBuilder();
  table.add(
    "",
    encodeBundleHeader({
      numShards: 1,
      endianness: "little",
      version: { producer: 1, minConsumer: 0, badConsumers: [] },
    }),
  );
  for (const [name, value] of entries) table.add(name, value);
  await Deno.writeFile(`${prefix}.index`, table.finish());
}

const floatEntry = (dtype: number, shape: number[], size: number) =>
  encodeBundleEntry({ dtype, shape, shardId: 0, offset: 0, size, crc32cMasked: 0 });

Deno.test("corrupt: truncated index files", async () => {
  await withTempDir(async (dir) => {
    const prefix = await copyCheckpoint("half_plus_three", dir);
    const index = `${prefix}.index`;
    await patchFile(index, (b) => b.slice(0, 30));
    await rejects(readIndexOnly(index), index, /30 bytes, shorter than the 48-byte table footer/);
    await copyCheckpoint("half_plus_three", dir);
    await patchFile(index, (b) => b.slice(0, b.length - 10));
    await rejects(readIndexOnly(index), index, /bad table magic number/);
  });
});

Deno.test("corrupt: bad magic number", async () => {
  await withTempDir(async (dir) => {
    const prefix = await copyCheckpoint("half_plus_three", dir);
    await patchFile(`${prefix}.index`, (b) => {
      b[b.length - 1] ^= 0xff;
      return b;
    });
    await rejects(
      openTensorBundle(prefix),
      `${prefix}.index`,
      /bad table magic number .* expected 0xdb4775248b80fb57/,
    );
  });
});

Deno.test("corrupt: a flipped byte in an index block fails its CRC (plain and Snappy blocks)", async () => {
  for (const folder of ["half_plus_three", "half_plus_two_cpu"]) {
    await withTempDir(async (dir) => {
      const prefix = await copyCheckpoint(folder, dir);
      await patchFile(`${prefix}.index`, (b) => {
        b[10] ^= 0x01;
        return b;
      });
      await rejects(
        openTensorBundle(prefix),
        `${prefix}.index`,
        /data block 0 at offset 0 .*checksum mismatch/,
      );
    });
  }
});

Deno.test("corrupt: a Snappy block that decodes to the wrong length (CRC made consistent)", async () => {
  await withTempDir(async (dir) => {
    const prefix = await copyCheckpoint("half_plus_two_cpu", dir);
    await patchFile(`${prefix}.index`, (b) => {
      assert.equal(b[0], 100); // declared uncompressed length of the 87-byte Snappy block
      b[0] = 101;
      fixBlockCrc(b, 0, 87);
      return b;
    });
    await rejects(
      openTensorBundle(prefix),
      `${prefix}.index`,
      /data block 0 .*produced 100 byte\(s\) but declares 101/,
    );
  });
});

Deno.test("corrupt: a flipped byte in the data file fails that tensor's CRC", async () => {
  await withTempDir(async (dir) => {
    const prefix = await copyCheckpoint("half_plus_three", dir);
    const data = `${prefix}${DATA_SUFFIX}`;
    await patchFile(data, (b) => {
      b[5] ^= 0x40; // inside "b" (offset 4, size 4)
      return b;
    });
    const bundle = await openTensorBundle(prefix);
    assert.deepEqual(Array.from(await bundle.read("a") as Float32Array), [0.5]); // untouched tensor still reads
    await rejects(bundle.read("b"), data, /tensor "b" .*fails its checksum/);
  });
});

Deno.test("corrupt: string tensor damage is caught by the length and content checksums", async () => {
  await withTempDir(async (dir) => {
    // _CHECKPOINTABLE_OBJECT_GRAPH: offset 28, 2 varint length bytes, 4 checksum bytes, 531 bytes.
    const prefix = await copyCheckpoint("rust_regression_savedmodel", dir);
    const data = `${prefix}${DATA_SUFFIX}`;
    const name = "_CHECKPOINTABLE_OBJECT_GRAPH";
    await patchFile(data, (b) => {
      b[28 + 2 + 4 + 100] ^= 0x01;
      return b;
    });
    await rejects(
      (await openTensorBundle(prefix)).read(name),
      data,
      /string tensor .*checksum mismatch/,
    );
    await copyCheckpoint("rust_regression_savedmodel", dir);
    await patchFile(data, (b) => {
      b[28 + 3] ^= 0x01; // the lengths checksum
      return b;
    });
    await rejects(
      (await openTensorBundle(prefix)).read(name),
      data,
      /checksum of element lengths mismatch/,
    );
  });
});

Deno.test("corrupt: missing and truncated data shards are reported at open", async () => {
  await withTempDir(async (dir) => {
    const prefix = await copyCheckpoint("half_plus_two_mkl", dir);
    const data = `${prefix}${DATA_SUFFIX}`;
    await patchFile(data, (b) => b.slice(0, 30));
    await rejects(
      openTensorBundle(prefix),
      data,
      /file is 30 bytes but tensor "conv2d_2\/bias" ends at byte 32 \(truncated data file\)/,
    );
    await Deno.remove(data);
    await rejects(openTensorBundle(prefix), data, /data shard 0 of 1 is missing/);
    await Deno.remove(`${prefix}.index`);
    await rejects(openTensorBundle(prefix), `${prefix}.index`, /index file not found/);
  });
});

Deno.test("corrupt: unknown dtype, sliced tensors, size/shape disagreement, undecodable dtype", async () => {
  await withTempDir(async (dir) => {
    const prefix = join(dir, "hand");
    const index = `${prefix}.index`;
    await Deno.writeFile(`${prefix}${DATA_SUFFIX}`, new Uint8Array(64));

    await writeIndex(prefix, [["w", floatEntry(77, [2], 8)]]);
    await rejects(readIndexOnly(index), index, /tensor "w": unknown dtype number 77/);

    // Field 7 (slices), wire type 2, empty TensorSliceProto: a partitioned variable.
    await writeIndex(prefix, [["w", Uint8Array.from([...floatEntry(1, [2], 8), 0x3a, 0x00])]]);
    await rejects(readIndexOnly(index), index, /tensor "w": stored as 1 slice\(s\).*not supported/);

    await writeIndex(prefix, [["w", floatEntry(1, [2, 3], 8)]]);
    await rejects(
      readIndexOnly(index),
      index,
      /DT_FLOAT shape \[2,3\] needs 24 bytes but the entry says 8/,
    );

    await writeIndex(prefix, [["z", floatEntry(8, [2], 16)]]); // DT_COMPLEX64
    const bundle = await openTensorBundle(prefix);
    await rejects(
      bundle.read("z"),
      index,
      /tensor "z" has dtype DT_COMPLEX64, which this reader does not decode/,
    );
    await rejects(bundle.read("nope"), index, /no tensor named "nope"/);
  });
});
