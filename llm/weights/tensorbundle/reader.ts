/**
 * TensorFlow TensorBundle (checkpoint V2) reader: `<prefix>.index` lists every tensor, and
 * `<prefix>.data-NNNNN-of-NNNNN` shards hold the raw bytes (tensorflow/core/util/
 * tensor_bundle). The index is parsed up front; tensor bytes are read one tensor at a time
 * through a file handle, so a multi-gigabyte checkpoint is never loaded whole.
 */
import { namingSync, TensorBundleError } from "../errors.ts";
import { crc32c, unmaskCrc } from "../crc32c.ts";
import { type BundleHeader, decodeBundleEntry, decodeBundleHeader } from "./bundle_proto.ts";
import {
  decodeNumeric,
  elementSize,
  isSupportedNumeric,
  type TensorValues,
  TF_DTYPE_NAMES,
} from "./dtypes.ts";
import { keyText, type ParsedTable, readTable } from "./table.ts";

/** One tensor as the index describes it. */
export interface TensorBundleEntry {
  name: string;
  /** TensorFlow dtype name, e.g. "DT_FLOAT". */
  dtype: string;
  /** The DataType enum number as stored. */
  dtypeEnum: number;
  shape: number[];
  shardId: number;
  /** Byte offset of the tensor in its shard file. */
  offset: number;
  /** Stored byte length. */
  size: number;
  /** Masked CRC32C as stored in the index. */
  crc32c: number;
}

/** What an `.index` file holds. */
export interface TensorBundleIndex {
  indexPath: string;
  header: BundleHeader;
  /** Tensors by name, in the index's (sorted) key order. */
  entries: Map<string, TensorBundleEntry>;
  /** The table structure (blocks, restarts, compression), for diagnostics. */
  table: ParsedTable;
}

/** Every Deno platform is little-endian; TensorBundle data is stored in writer byte order. */
const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The header entry's key: the empty string sorts before every tensor name. */
const HEADER_KEY = "";

/** Parses `<prefix>.index` alone (no data shard is needed or touched). */
export async function readIndexOnly(indexPath: string): Promise<TensorBundleIndex> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(indexPath);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new TensorBundleError(`${indexPath}: checkpoint index file not found`, indexPath);
    }
    throw error;
  }
  return parseIndex(bytes, indexPath);
}

/** Parses index bytes already in memory; `indexPath` names the file in errors. */
export function parseIndex(bytes: Uint8Array, indexPath: string): TensorBundleIndex {
  return namingSync(indexPath, () => parseIndexBytes(bytes, indexPath));
}

function parseIndexBytes(bytes: Uint8Array, indexPath: string): TensorBundleIndex {
  const table = readTable(bytes, indexPath);
  const [first, ...rest] = table.entries;
  if (!first || keyText(first.key) !== HEADER_KEY) {
    throw new TensorBundleError(
      `${indexPath}: missing the header entry (empty key) that every TensorBundle index ` +
        `starts with`,
      indexPath,
    );
  }
  const header = decodeBundleHeader(first.value, `${indexPath}: header entry`);
  if (header.numShards < 1) {
    throw new TensorBundleError(
      `${indexPath}: header says ${header.numShards} shards, expected at least 1`,
      indexPath,
    );
  }
  if (header.endianness !== "little" || !HOST_IS_LITTLE_ENDIAN) {
    throw new TensorBundleError(
      `${indexPath}: checkpoint byte order is ${header.endianness}-endian; only ` +
        `little-endian checkpoints on little-endian hosts are supported`,
      indexPath,
    );
  }

  const entries = new Map<string, TensorBundleEntry>();
  for (const { key, value } of rest) {
    const name = keyText(key);
    const where = `${indexPath}: tensor "${name}"`;
    const raw = decodeBundleEntry(value, where);
    const dtype = TF_DTYPE_NAMES[raw.dtype];
    if (dtype === undefined) {
      throw new TensorBundleError(
        `${where}: unknown dtype number ${raw.dtype} (not a TensorFlow DataType)`,
      );
    }
    if (raw.sliceCount > 0) {
      throw new TensorBundleError(
        `${where}: stored as ${raw.sliceCount} slice(s) of a partitioned variable; sliced ` +
          `tensors are not supported`,
      );
    }
    if (raw.shardId >= header.numShards) {
      throw new TensorBundleError(
        `${where}: shard_id ${raw.shardId} but the header declares ${header.numShards} shard(s)`,
      );
    }
    const width = elementSize(dtype);
    const count = numElements(raw.shape);
    if (width !== undefined && count * width !== raw.size) {
      throw new TensorBundleError(
        `${where}: ${dtype} shape [${raw.shape}] needs ${count * width} bytes but the entry ` +
          `says ${raw.size}`,
      );
    }
    entries.set(name, {
      name,
      dtype,
      dtypeEnum: raw.dtype,
      shape: raw.shape,
      shardId: raw.shardId,
      offset: raw.offset,
      size: raw.size,
      crc32c: raw.crc32cMasked,
    });
  }
  return { indexPath, header, entries, table };
}

/** `<prefix>.data-00000-of-00001` style shard file name (TensorFlow naming.cc). */
export function shardFileName(prefix: string, shardId: number, numShards: number): string {
  const pad = (n: number) => String(n).padStart(5, "0");
  return `${prefix}.data-${pad(shardId)}-of-${pad(numShards)}`;
}

export function numElements(shape: readonly number[]): number {
  return shape.reduce((product, dim) => product * dim, 1);
}

/** An opened checkpoint: the parsed index plus access to its data shards. */
export class TensorBundle {
  constructor(
    readonly prefix: string,
    readonly index: TensorBundleIndex,
    /** Size of each shard file, checked at open. */
    readonly shardSizes: number[],
  ) {}

  get header(): BundleHeader {
    return this.index.header;
  }

  get entries(): Map<string, TensorBundleEntry> {
    return this.index.entries;
  }

  /** The entry for `name`; an error lists a few known names when it is absent. */
  entry(name: string): TensorBundleEntry {
    const entry = this.entries.get(name);
    if (!entry) {
      const known = [...this.entries.keys()].slice(0, 5).join(", ");
      throw new TensorBundleError(
        `${this.index.indexPath}: no tensor named "${name}" (${this.entries.size} tensors, ` +
          `e.g. ${known})`,
        this.index.indexPath,
      );
    }
    return entry;
  }

  shardPath(shardId: number): string {
    return shardFileName(this.prefix, shardId, this.header.numShards);
  }

  /**
   * The stored bytes of one tensor, with the CRC32C checked for fixed-size dtypes. The result
   * owns its buffer from offset 0, so typed-array views over it need no copy.
   */
  async readBytes(name: string): Promise<Uint8Array> {
    const entry = this.entry(name);
    const path = this.shardPath(entry.shardId);
    const bytes = await readRange(path, entry.offset, entry.size, name);
    if (entry.dtype !== "DT_STRING") {
      const actual = crc32c(bytes);
      const expected = unmaskCrc(entry.crc32c);
      if (actual !== expected) {
        throw new TensorBundleError(
          `${path}: tensor "${name}" (bytes ${entry.offset}..${entry.offset + entry.size}) ` +
            `fails its checksum: index says CRC32C 0x${hex32(expected)}, data has ` +
            `0x${hex32(actual)} (corrupt data file)`,
          path,
        );
      }
    }
    return bytes;
  }

  /** Reads and decodes one tensor (see {@link TensorValues} for the array type per dtype). */
  async read(name: string): Promise<TensorValues> {
    const entry = this.entry(name);
    if (entry.dtype === "DT_STRING") {
      const bytes = await this.readBytes(name);
      const path = this.shardPath(entry.shardId);
      return namingSync(path, () => decodeStringTensor(bytes, entry, path));
    }
    if (!isSupportedNumeric(entry.dtype)) {
      throw new TensorBundleError(
        `${this.index.indexPath}: tensor "${name}" has dtype ${entry.dtype}, which this ` +
          `reader does not decode`,
        this.index.indexPath,
      );
    }
    return decodeNumeric(entry.dtype, await this.readBytes(name));
  }

  /** Reads a floating-point tensor as float32 (DT_FLOAT zero-copy; half/bf16/double widened or narrowed). */
  async readFloat32(name: string): Promise<Float32Array> {
    const entry = this.entry(name);
    const values = await this.read(name);
    if (values instanceof Float32Array) return values;
    if (values instanceof Float64Array) return Float32Array.from(values);
    throw new TensorBundleError(
      `${this.index.indexPath}: tensor "${name}" is ${entry.dtype}, expected a floating-point ` +
        `dtype`,
      this.index.indexPath,
    );
  }
}

/**
 * Opens `<prefix>.index` and checks every data shard exists and is long enough for the
 * tensors the index places in it. `prefix` may also be given as the `.index` path.
 */
export async function openTensorBundle(prefix: string): Promise<TensorBundle> {
  const base = prefix.endsWith(".index") ? prefix.slice(0, -".index".length) : prefix;
  const index = await readIndexOnly(`${base}.index`);
  const numShards = index.header.numShards;
  const shardSizes: number[] = [];
  for (let shard = 0; shard < numShards; shard++) {
    const path = shardFileName(base, shard, numShards);
    let size: number;
    try {
      size = (await Deno.stat(path)).size;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new TensorBundleError(
          `${path}: data shard ${shard} of ${numShards} is missing (listed by ${index.indexPath})`,
          path,
        );
      }
      throw error;
    }
    shardSizes.push(size);
  }
  for (const entry of index.entries.values()) {
    const end = entry.offset + entry.size;
    if (end > shardSizes[entry.shardId]) {
      const path = shardFileName(base, entry.shardId, numShards);
      throw new TensorBundleError(
        `${path}: file is ${
          shardSizes[entry.shardId]
        } bytes but tensor "${entry.name}" ends at byte ${end} (truncated data file)`,
        path,
      );
    }
  }
  return new TensorBundle(base, index, shardSizes);
}

/** Reads exactly `length` bytes at `offset` through a file handle (no whole-file read). */
async function readRange(
  path: string,
  offset: number,
  length: number,
  tensorName: string,
): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  using file = await Deno.open(path, { read: true });
  await file.seek(offset, Deno.SeekMode.Start);
  let filled = 0;
  while (filled < length) {
    const n = await file.read(out.subarray(filled));
    if (n === null) {
      throw new TensorBundleError(
        `${path}: unexpected end of file at byte ${offset + filled} while reading tensor ` +
          `"${tensorName}" (bytes ${offset}..${offset + length})`,
        path,
      );
    }
    filled += n;
  }
  return out;
}

/**
 * DT_STRING layout (tensor_bundle.cc WriteStringTensor): a varint64 length per element, a
 * fixed32 masked CRC32C of those lengths, then the element bytes back to back. The entry's
 * CRC covers each length as a little-endian uint32 (uint64 if it does not fit), then the 4
 * checksum bytes, then the element bytes: not simply the stored byte range.
 */
function decodeStringTensor(
  bytes: Uint8Array,
  entry: TensorBundleEntry,
  path: string,
): Uint8Array[] {
  const where = `${path}: string tensor "${entry.name}" at offset ${entry.offset}`;
  const count = numElements(entry.shape);
  const lengths: number[] = [];
  let pos = 0;
  let crc = 0;
  for (let i = 0; i < count; i++) {
    let value = 0;
    let shift = 0;
    for (;;) {
      if (pos >= bytes.length) {
        throw new TensorBundleError(`${where}: truncated length of element ${i}`);
      }
      const byte = bytes[pos++];
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if ((byte & 0x80) === 0) break;
      if (shift > 63) {
        throw new TensorBundleError(`${where}: length of element ${i} is not a valid varint`);
      }
    }
    lengths.push(value);
    crc = crc32c(lengthBytesForChecksum(value), crc);
  }
  if (pos + 4 > bytes.length) throw new TensorBundleError(`${where}: truncated length checksum`);
  const checksumBytes = bytes.subarray(pos, pos + 4);
  const storedLengthsCrc = unmaskCrc(
    (checksumBytes[0] | (checksumBytes[1] << 8) | (checksumBytes[2] << 16) |
      (checksumBytes[3] << 24)) >>> 0,
  );
  if (storedLengthsCrc !== crc) {
    throw new TensorBundleError(
      `${where}: checksum of element lengths mismatch: stored 0x${hex32(storedLengthsCrc)}, ` +
        `computed 0x${hex32(crc)} (corrupt data file)`,
    );
  }
  crc = crc32c(checksumBytes, crc);
  pos += 4;
  const total = lengths.reduce((a, b) => a + b, 0);
  if (pos + total !== bytes.length) {
    throw new TensorBundleError(
      `${where}: element lengths add up to ${total} bytes but ${bytes.length - pos} follow ` +
        `the length header`,
    );
  }
  const elements: Uint8Array[] = [];
  for (const length of lengths) {
    const element = bytes.subarray(pos, pos + length);
    crc = crc32c(element, crc);
    elements.push(element);
    pos += length;
  }
  const expected = unmaskCrc(entry.crc32c);
  if (crc !== expected) {
    throw new TensorBundleError(
      `${where}: checksum mismatch: index says CRC32C 0x${hex32(expected)}, data has ` +
        `0x${hex32(crc)} (corrupt data file)`,
    );
  }
  return elements;
}

/** A string length as TensorFlow feeds it to the checksum: uint32 LE, or uint64 LE if larger. */
export function lengthBytesForChecksum(length: number): Uint8Array {
  if (length <= 0xffffffff) {
    return new Uint8Array([
      length & 0xff,
      (length >>> 8) & 0xff,
      (length >>> 16) & 0xff,
      length >>> 24,
    ]);
  }
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(length), true);
  return out;
}

function hex32(value: number): string {
  return value.toString(16).padStart(8, "0");
}
