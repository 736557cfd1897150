/**
 * Reader for the LevelDB-style sorted table ("SSTable") that a TensorBundle `.index` file is.
 * Layout (LevelDB `doc/table_format.md`, TensorFlow `core/lib/io/table_format.txt`):
 *
 *   [data block 1][trailer] ... [data block N][trailer]
 *   [metaindex block][trailer]            (empty in TensorFlow checkpoints)
 *   [index block][trailer]                (one entry per data block: separator key → handle)
 *   [footer: 48 bytes]                    (metaindex handle, index handle, padding, magic)
 *
 * A block handle is two varint64s (offset, size). Every block is followed by a 5-byte trailer:
 * a compression type byte (0 none, 1 Snappy) and the masked CRC32C of block contents + type.
 * Inside a block, keys are prefix-compressed against the previous key; every 16th entry (a
 * "restart point") stores its key whole so a reader could binary-search. The block ends with
 * the restart offsets (uint32 each) and their count (uint32).
 *
 * The index is small (kilobytes even for GPT-2 XL), so the whole file is parsed in memory.
 */
import { TensorBundleError } from "../errors.ts";
import { crc32c, unmaskCrc } from "../crc32c.ts";
import { snappyDecompress } from "../snappy.ts";

/** Magic number at the end of every table, stored little-endian. */
export const TABLE_MAGIC = 0xdb4775248b80fb57n;
/** Two block handles (at most 10 + 10 bytes each) padded to 40 bytes, plus the 8-byte magic. */
const FOOTER_SIZE = 48;
export const BLOCK_HANDLE_MAX_SIZE = 20;
/** Compression type byte + fixed32 masked CRC. */
const BLOCK_TRAILER_SIZE = 5;
export const COMPRESSION_NONE = 0;
export const COMPRESSION_SNAPPY = 1;

export interface BlockHandle {
  offset: number;
  size: number;
}

export type BlockCompression = "none" | "snappy";

export interface TableEntry {
  key: Uint8Array;
  value: Uint8Array;
}

export interface ParsedBlock {
  compression: BlockCompression;
  entries: TableEntry[];
  restarts: number[];
}

/** The whole table: all key/value pairs in order, plus the structure (for diagnostics/tests). */
export interface ParsedTable {
  footer: { metaindex: BlockHandle; index: BlockHandle };
  indexBlock: ParsedBlock;
  dataBlocks: Array<{ handle: BlockHandle; block: ParsedBlock }>;
  entries: TableEntry[];
}

/** Reads a varint (up to 64 bits, must fit 2^53) from `bytes` at `pos`. */
export function readVarint(
  bytes: Uint8Array,
  pos: number,
  where: string,
): { value: number; next: number } {
  let value = 0;
  for (let i = 0; i < 10; i++) {
    if (pos + i >= bytes.length) {
      throw new TensorBundleError(`${where}: truncated varint at byte ${pos}`);
    }
    const byte = bytes[pos + i];
    value += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) {
      if (!Number.isSafeInteger(value)) {
        throw new TensorBundleError(`${where}: varint at byte ${pos} exceeds 2^53`);
      }
      return { value, next: pos + i + 1 };
    }
  }
  throw new TensorBundleError(`${where}: varint at byte ${pos} is longer than 10 bytes`);
}

function readUint32LE(bytes: Uint8Array, pos: number): number {
  return (bytes[pos] | (bytes[pos + 1] << 8) | (bytes[pos + 2] << 16) | (bytes[pos + 3] << 24)) >>>
    0;
}

/** Decodes a block handle (varint offset, varint size) starting at `pos`. */
function decodeBlockHandle(
  bytes: Uint8Array,
  pos: number,
  where: string,
): { handle: BlockHandle; next: number } {
  const offset = readVarint(bytes, pos, where);
  const size = readVarint(bytes, offset.next, where);
  return { handle: { offset: offset.value, size: size.value }, next: size.next };
}

/** Parses the 48-byte footer and checks the magic number. */
function parseFooter(
  file: Uint8Array,
  source: string,
): { metaindex: BlockHandle; index: BlockHandle } {
  if (file.length < FOOTER_SIZE) {
    throw new TensorBundleError(
      `${source}: file is ${file.length} bytes, shorter than the ${FOOTER_SIZE}-byte table ` +
        `footer (truncated or not a TensorFlow checkpoint index)`,
    );
  }
  const footerAt = file.length - FOOTER_SIZE;
  const footer = file.subarray(footerAt);
  const magic = new DataView(footer.buffer, footer.byteOffset + 40, 8).getBigUint64(0, true);
  if (magic !== TABLE_MAGIC) {
    throw new TensorBundleError(
      `${source}: bad table magic number 0x${magic.toString(16).padStart(16, "0")} at offset ` +
        `${footerAt + 40}, expected 0x${TABLE_MAGIC.toString(16)} (truncated, or not a ` +
        `TensorFlow checkpoint .index file)`,
    );
  }
  const where = `${source}: footer at offset ${footerAt}`;
  const metaindex = decodeBlockHandle(footer, 0, where);
  const index = decodeBlockHandle(footer, metaindex.next, where);
  if (index.next > 2 * BLOCK_HANDLE_MAX_SIZE) {
    throw new TensorBundleError(`${where}: block handles overrun the 40-byte handle area`);
  }
  return { metaindex: metaindex.handle, index: index.handle };
}

/**
 * Returns the contents of the block at `handle`, after checking its trailer CRC and
 * decompressing it if needed.
 */
function readBlock(
  file: Uint8Array,
  handle: BlockHandle,
  source: string,
  what: string,
): { contents: Uint8Array; compression: BlockCompression } {
  const where = `${source}: ${what} at offset ${handle.offset} (size ${handle.size})`;
  const end = handle.offset + handle.size + BLOCK_TRAILER_SIZE;
  if (end > file.length - FOOTER_SIZE) {
    throw new TensorBundleError(
      `${where}: block and trailer end at byte ${end}, past the data area that ends at ` +
        `${file.length - FOOTER_SIZE} (truncated or corrupt file)`,
    );
  }
  const raw = file.subarray(handle.offset, handle.offset + handle.size);
  const type = file[handle.offset + handle.size];
  const storedMasked = readUint32LE(file, handle.offset + handle.size + 1);
  // The checksum covers the block bytes and the compression type byte.
  const actual = crc32c(file.subarray(handle.offset, handle.offset + handle.size + 1));
  const expected = unmaskCrc(storedMasked);
  if (actual !== expected) {
    throw new TensorBundleError(
      `${where}: block checksum mismatch: stored CRC32C 0x${hex32(expected)}, computed ` +
        `0x${hex32(actual)} (corrupt file)`,
    );
  }
  if (type === COMPRESSION_NONE) return { contents: raw, compression: "none" };
  if (type === COMPRESSION_SNAPPY) {
    return { contents: snappyDecompress(raw, where), compression: "snappy" };
  }
  throw new TensorBundleError(`${where}: unknown block compression type ${type} (expected 0 or 1)`);
}

/** Splits a block's contents into its key/value entries, undoing the prefix compression. */
function parseBlockEntries(
  contents: Uint8Array,
  where: string,
): { entries: TableEntry[]; restarts: number[] } {
  if (contents.length < 4) {
    throw new TensorBundleError(
      `${where}: block of ${contents.length} bytes cannot hold a restart count`,
    );
  }
  const numRestarts = readUint32LE(contents, contents.length - 4);
  const restartsAt = contents.length - 4 - 4 * numRestarts;
  if (numRestarts === 0 || restartsAt < 0) {
    throw new TensorBundleError(
      `${where}: block of ${contents.length} bytes claims ${numRestarts} restart points`,
    );
  }
  const restarts: number[] = [];
  for (let i = 0; i < numRestarts; i++) {
    const restart = readUint32LE(contents, restartsAt + 4 * i);
    if (restart >= Math.max(restartsAt, 1) || (i > 0 && restart <= restarts[i - 1])) {
      throw new TensorBundleError(`${where}: restart point ${i} has bad offset ${restart}`);
    }
    restarts.push(restart);
  }

  const entries: TableEntry[] = [];
  const restartSet = new Set(restarts);
  const entryStarts = new Set<number>();
  let previousKey = new Uint8Array(0);
  let pos = 0;
  while (pos < restartsAt) {
    const entryAt = pos;
    entryStarts.add(entryAt);
    const shared = readVarint(contents, pos, where);
    const nonShared = readVarint(contents, shared.next, where);
    const valueLength = readVarint(contents, nonShared.next, where);
    pos = valueLength.next;
    if (restartSet.has(entryAt) && shared.value !== 0) {
      throw new TensorBundleError(
        `${where}: entry at restart point ${entryAt} shares ${shared.value} key bytes; ` +
          `restart entries must store the full key`,
      );
    }
    if (shared.value > previousKey.length) {
      throw new TensorBundleError(
        `${where}: entry at byte ${entryAt} shares ${shared.value} key bytes but the previous ` +
          `key has only ${previousKey.length}`,
      );
    }
    const end = pos + nonShared.value + valueLength.value;
    if (end > restartsAt) {
      throw new TensorBundleError(
        `${where}: entry at byte ${entryAt} runs to byte ${end}, past the restart array at ` +
          `${restartsAt}`,
      );
    }
    const key = new Uint8Array(shared.value + nonShared.value);
    key.set(previousKey.subarray(0, shared.value));
    key.set(contents.subarray(pos, pos + nonShared.value), shared.value);
    pos += nonShared.value;
    const value = contents.subarray(pos, pos + valueLength.value);
    pos += valueLength.value;
    entries.push({ key, value });
    previousKey = key;
  }
  for (const restart of restarts) {
    if (restartsAt > 0 && !entryStarts.has(restart)) {
      throw new TensorBundleError(`${where}: restart point ${restart} does not start an entry`);
    }
  }
  return { entries, restarts };
}

/** Reads and checks a whole table held in memory. `source` names the file in errors. */
export function readTable(file: Uint8Array, source: string): ParsedTable {
  const footer = parseFooter(file, source);
  // The metaindex is unused by TensorBundle, but its checksum still tells us about corruption.
  readBlock(file, footer.metaindex, source, "metaindex block");
  const index = readBlock(file, footer.index, source, "index block");
  const indexParsed = parseBlockEntries(index.contents, `${source}: index block`);
  const indexBlock: ParsedBlock = { compression: index.compression, ...indexParsed };

  const dataBlocks: ParsedTable["dataBlocks"] = [];
  const entries: TableEntry[] = [];
  for (const [i, indexEntry] of indexBlock.entries.entries()) {
    const where = `${source}: index entry ${i}`;
    const { handle, next } = decodeBlockHandle(indexEntry.value, 0, where);
    if (next !== indexEntry.value.length) {
      throw new TensorBundleError(
        `${where}: block handle has ${indexEntry.value.length - next} extra bytes`,
      );
    }
    const what = `data block ${i}`;
    const data = readBlock(file, handle, source, what);
    const parsed = parseBlockEntries(data.contents, `${source}: ${what}`);
    const last = parsed.entries.at(-1);
    if (last && compareBytes(last.key, indexEntry.key) > 0) {
      throw new TensorBundleError(
        `${source}: ${what} ends with key "${keyText(last.key)}", beyond its index key ` +
          `"${keyText(indexEntry.key)}"`,
      );
    }
    for (const entry of parsed.entries) {
      const previous = entries.at(-1);
      if (previous && compareBytes(previous.key, entry.key) >= 0) {
        throw new TensorBundleError(
          `${source}: ${what}: key "${keyText(entry.key)}" is not after "${
            keyText(previous.key)
          }" (keys must be strictly increasing)`,
        );
      }
      entries.push(entry);
    }
    dataBlocks.push({ handle, block: { compression: data.compression, ...parsed } });
  }
  return { footer, indexBlock, dataBlocks, entries };
}

/** Lexicographic comparison of byte strings (the table's key order). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

const KEY_DECODER = new TextDecoder();

/** A key as text for messages (tensor names are UTF-8). */
export function keyText(key: Uint8Array): string {
  return KEY_DECODER.decode(key);
}

function hex32(value: number): string {
  return value.toString(16).padStart(8, "0");
}
