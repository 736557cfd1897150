/**
 * The safetensors file format (https://github.com/huggingface/safetensors), read and written
 * without any dependency, so weights move between this project, PyTorch and Hugging Face tools.
 *
 * Layout of a file:
 *
 *   [8 bytes]  N, the header length, unsigned 64-bit little-endian
 *   [N bytes]  UTF-8 JSON: { "__metadata__": {str: str}?, "<name>": {"dtype": "F32",
 *              "shape": [..], "data_offsets": [begin, end]}, ... }, padded with spaces
 *   [rest]     the data section; offsets are relative to its start, little-endian values
 *
 * We check a file as strictly as the reference implementation does: tensors must tile the data
 * section exactly (no gaps, no overlaps, nothing left over), so a truncated or spliced file is an
 * error that names the file and the tensor, never a silently wrong weight.
 *
 * Every tensor is handed out as a Float32Array (the model computes in float32): F16, BF16, F64
 * and the integer types are converted on read; only F32 is written.
 */
import { dirname, join } from "node:path";
import { mapFile, type MappedFile } from "./mmap.ts";

/** A tensor as the model code exchanges it: row-major float32 values and their shape. */
export interface NamedTensor {
  /** Dimensions, outermost first. */
  shape: number[];
  /** Row-major values; length is the product of `shape`. */
  data: Float32Array;
}

/** Where one tensor lives in a file, as its header says. */
export interface TensorInfo {
  dtype: string;
  shape: number[];
  /** [begin, end) in bytes, relative to the start of the data section. */
  dataOffsets: [number, number];
}

/** A parsed header, enough to read any tensor later without loading the whole file. */
export interface SafetensorsHeader {
  /** The file (or "<memory>") the header came from, for error messages. */
  source: string;
  /** Absolute byte offset of the data section (8 + header length). */
  dataStart: number;
  /** Tensors in the order they are stored. */
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

/** Any malformed file or unwritable tensor. The message names the file and the tensor. */
export class SafetensorsError extends Error {
  /** Error name, for matching without `instanceof`. */
  override name = "SafetensorsError";
}

/** The reference implementation refuses headers above 100 MB; so do we (a sane bound). */
const MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = "__metadata__";

// ---------------------------------------------------------------------------------------------
// dtypes

type Decoder = (raw: ArrayBuffer) => Float32Array;

interface DtypeSpec {
  bytes: number;
  /** Converts the tensor's raw little-endian bytes (an aligned copy) to float32; absent when
   * we know the dtype's size (so the header can be checked) but cannot convert its values. */
  decode?: Decoder;
}

const DTYPES: Record<string, DtypeSpec> = {
  F32: { bytes: 4, decode: (raw) => new Float32Array(raw) },
  F16: { bytes: 2, decode: decodeF16 },
  BF16: { bytes: 2, decode: decodeBF16 },
  F64: { bytes: 8, decode: (raw) => Float32Array.from(new Float64Array(raw)) },
  I64: { bytes: 8, decode: (raw) => Float32Array.from(new BigInt64Array(raw), Number) },
  U64: { bytes: 8, decode: (raw) => Float32Array.from(new BigUint64Array(raw), Number) },
  I32: { bytes: 4, decode: (raw) => Float32Array.from(new Int32Array(raw)) },
  U32: { bytes: 4, decode: (raw) => Float32Array.from(new Uint32Array(raw)) },
  I16: { bytes: 2, decode: (raw) => Float32Array.from(new Int16Array(raw)) },
  U16: { bytes: 2, decode: (raw) => Float32Array.from(new Uint16Array(raw)) },
  I8: { bytes: 1, decode: (raw) => Float32Array.from(new Int8Array(raw)) },
  U8: { bytes: 1, decode: (raw) => Float32Array.from(new Uint8Array(raw)) },
  BOOL: { bytes: 1, decode: (raw) => Float32Array.from(new Uint8Array(raw), (b) => b ? 1 : 0) },
  F8_E4M3: { bytes: 1 },
  F8_E5M2: { bytes: 1 },
};

/** Float32 value of every half-precision bit pattern, built on first use (256 KiB). */
let f16Table: Float32Array | undefined;

function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24; // zero and subnormals
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function decodeF16(raw: ArrayBuffer): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) f16Table[bits] = halfToFloat(bits);
  }
  const table = f16Table;
  const halves = new Uint16Array(raw);
  const out = new Float32Array(halves.length);
  for (let i = 0; i < halves.length; i++) out[i] = table[halves[i]];
  return out;
}

/** bfloat16 is the top half of a float32, so widening is a 16-bit shift. */
function decodeBF16(raw: ArrayBuffer): Float32Array {
  const halves = new Uint16Array(raw);
  const words = new Uint32Array(halves.length);
  for (let i = 0; i < halves.length; i++) words[i] = halves[i] << 16;
  return new Float32Array(words.buffer);
}

/** Typed arrays use the host's byte order; the format is little-endian. */
const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function requireLittleEndianHost(source: string): void {
  if (!HOST_IS_LITTLE_ENDIAN) {
    throw new SafetensorsError(`${source}: safetensors I/O needs a little-endian machine`);
  }
}

// ---------------------------------------------------------------------------------------------
// header parsing

function elementCount(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

function isNonNegativeInteger(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}

function describe(x: unknown): string {
  return JSON.stringify(x) ?? String(x);
}

/** Reads the header length from the first 8 bytes and checks it against the total size. */
function parseHeaderLength(prefix: Uint8Array, totalBytes: number, source: string): number {
  if (totalBytes < 8) {
    throw new SafetensorsError(
      `${source}: ${totalBytes} bytes is too short for a safetensors file ` +
        `(it starts with an 8-byte header length)`,
    );
  }
  const length = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (length > BigInt(totalBytes - 8)) {
    throw new SafetensorsError(
      `${source}: header length ${length} at offset 0 runs past the end of the file ` +
        `(${totalBytes} bytes); not a safetensors file, or truncated`,
    );
  }
  if (length > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(
      `${source}: header length ${length} at offset 0 exceeds the ${MAX_HEADER_BYTES}-byte limit`,
    );
  }
  if (length < 2n) {
    throw new SafetensorsError(`${source}: header length ${length} at offset 0 is too small`);
  }
  return Number(length);
}

/**
 * Parses and validates the JSON header. `dataBytes` is the size of the data section, which the
 * tensors must cover exactly.
 */
function parseHeaderJson(
  headerBytes: Uint8Array,
  dataBytes: number,
  source: string,
): SafetensorsHeader {
  const where = `${source}: header (bytes 8..${8 + headerBytes.length})`;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch {
    throw new SafetensorsError(`${where} is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(`${where} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new SafetensorsError(`${where} must be a JSON object, got ${describe(json)}`);
  }

  let metadata: Record<string, string> = {};
  const entries: [string, TensorInfo][] = [];
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === METADATA_KEY) {
      metadata = parseMetadata(value, where);
    } else {
      entries.push([name, parseTensorInfo(name, value, source)]);
    }
  }

  // Tensors must tile the data section: sorted by offset, each starts where the last ended.
  entries.sort(([, a], [, b]) =>
    a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]
  );
  let expectedBegin = 0;
  let previous = "the start of the data section";
  for (const [name, info] of entries) {
    const [begin, end] = info.dataOffsets;
    if (begin !== expectedBegin) {
      const problem = begin < expectedBegin ? "overlaps" : "leaves a gap after";
      throw new SafetensorsError(
        `${source}: tensor "${name}" data_offsets [${begin}, ${end}] ${problem} ${previous} ` +
          `(expected it to begin at ${expectedBegin})`,
      );
    }
    if (end > dataBytes) {
      throw new SafetensorsError(
        `${source}: tensor "${name}" data_offsets [${begin}, ${end}] run past the data section ` +
          `(${dataBytes} bytes); the file is truncated or the offsets are wrong`,
      );
    }
    expectedBegin = end;
    previous = `tensor "${name}" (ending at ${end})`;
  }
  if (expectedBegin !== dataBytes) {
    throw new SafetensorsError(
      `${source}: the data section holds ${dataBytes} bytes but the tensors cover only ` +
        `${expectedBegin}; ${dataBytes - expectedBegin} trailing bytes are not described`,
    );
  }
  return { source, dataStart: 8 + headerBytes.length, tensors: new Map(entries), metadata };
}

function parseMetadata(value: unknown, where: string): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new SafetensorsError(`${where}: "${METADATA_KEY}" must be an object of strings`);
  }
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== "string") {
      throw new SafetensorsError(
        `${where}: "${METADATA_KEY}"."${key}" must be a string, got ${describe(v)}`,
      );
    }
  }
  return { ...(value as Record<string, string>) };
}

function parseTensorInfo(name: string, value: unknown, source: string): TensorInfo {
  const where = `${source}: tensor "${name}"`;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new SafetensorsError(`${where}: header entry must be an object, got ${describe(value)}`);
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (typeof dtype !== "string" || !(dtype in DTYPES)) {
    throw new SafetensorsError(
      `${where}: unknown dtype ${describe(dtype)} (expected one of ${
        Object.keys(DTYPES).join(", ")
      })`,
    );
  }
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
    throw new SafetensorsError(
      `${where}: shape must be an array of non-negative integers, got ${describe(shape)}`,
    );
  }
  if (
    !Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger) ||
    offsets[0] > offsets[1]
  ) {
    throw new SafetensorsError(
      `${where}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${
        describe(offsets)
      }`,
    );
  }
  const needed = elementCount(shape) * DTYPES[dtype].bytes;
  const held = offsets[1] - offsets[0];
  if (held !== needed) {
    throw new SafetensorsError(
      `${where}: data_offsets [${offsets[0]}, ${offsets[1]}] hold ${held} bytes but shape ` +
        `[${shape}] of ${dtype} needs ${needed}`,
    );
  }
  return { dtype, shape: [...shape], dataOffsets: [offsets[0], offsets[1]] };
}

/** Converts one tensor's raw bytes (copied into a fresh, aligned buffer) to float32. */
function decodeTensor(
  raw: ArrayBuffer,
  name: string,
  info: TensorInfo,
  source: string,
): NamedTensor & { dtype: string } {
  const decode = DTYPES[info.dtype].decode;
  if (!decode) {
    throw new SafetensorsError(
      `${source}: tensor "${name}" has dtype ${info.dtype}, which this reader cannot convert`,
    );
  }
  return { dtype: info.dtype, shape: [...info.shape], data: decode(raw) };
}

// ---------------------------------------------------------------------------------------------
// reading

/** Parses a whole safetensors file held in memory. Each tensor gets its own copy of the data. */
export function readSafetensors(
  bytes: Uint8Array,
  source = "<memory>",
): { tensors: Map<string, NamedTensor & { dtype: string }>; metadata: Record<string, string> } {
  requireLittleEndianHost(source);
  const headerLength = parseHeaderLength(bytes, bytes.length, source);
  const dataStart = 8 + headerLength;
  const header = parseHeaderJson(
    bytes.subarray(8, dataStart),
    bytes.length - dataStart,
    source,
  );
  const tensors = new Map<string, NamedTensor & { dtype: string }>();
  for (const [name, info] of header.tensors) {
    const [begin, end] = info.dataOffsets;
    // slice() copies into a new ArrayBuffer, which is aligned for any typed-array view.
    const raw = bytes.slice(dataStart + begin, dataStart + end).buffer;
    tensors.set(name, decodeTensor(raw, name, info, source));
  }
  return { tensors, metadata: header.metadata };
}

/** Reads and parses a whole file. For multi-GB files use {@link openSafetensors}. */
export async function readSafetensorsFile(
  path: string,
): Promise<
  { tensors: Map<string, NamedTensor & { dtype: string }>; metadata: Record<string, string> }
> {
  return readSafetensors(await Deno.readFile(path), path);
}

/** Reads exactly `buffer.length` bytes at `position`, or fails naming what was being read. */
async function readExactly(
  file: Deno.FsFile,
  position: number,
  buffer: Uint8Array,
  what: string,
): Promise<void> {
  await file.seek(position, Deno.SeekMode.Start);
  let filled = 0;
  while (filled < buffer.length) {
    const n = await file.read(buffer.subarray(filled));
    if (n === null) {
      throw new SafetensorsError(
        `${what}: file ended after ${position + filled} bytes, expected ` +
          `${buffer.length - filled} more (truncated?)`,
      );
    }
    filled += n;
  }
}

/** Parses the header of an open file, checking it against the file's size. */
async function readHeaderFrom(file: Deno.FsFile, path: string): Promise<SafetensorsHeader> {
  requireLittleEndianHost(path);
  const { size } = await file.stat();
  const prefix = new Uint8Array(8);
  if (size >= 8) await readExactly(file, 0, prefix, path);
  const headerLength = parseHeaderLength(prefix, size, path);
  const headerBytes = new Uint8Array(headerLength);
  await readExactly(file, 8, headerBytes, path);
  return parseHeaderJson(headerBytes, size - 8 - headerLength, path);
}

/** Reads only the header of a file: names, dtypes, shapes, offsets and metadata. */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  using file = await Deno.open(path, { read: true });
  return await readHeaderFrom(file, path);
}

/** Reads one tensor from an open file whose header was parsed by {@link readSafetensorsHeader}. */
async function readTensor(
  file: Deno.FsFile,
  header: SafetensorsHeader,
  name: string,
): Promise<NamedTensor & { dtype: string }> {
  const info = header.tensors.get(name);
  if (!info) {
    throw new SafetensorsError(`${header.source}: no tensor named "${name}"`);
  }
  const [begin, end] = info.dataOffsets;
  const raw = new Uint8Array(end - begin);
  await readExactly(file, header.dataStart + begin, raw, `${header.source}: tensor "${name}"`);
  return decodeTensor(raw.buffer, name, info, header.source);
}

/** A file opened for tensor-by-tensor reading; close it (or use `await using`) when done. */
export interface SafetensorsReader extends AsyncDisposable {
  readonly header: SafetensorsHeader;
  /** True when tensors are read from a memory mapping of the file (see `openSafetensors`). */
  readonly mapped: boolean;
  /** One tensor's values; mapped F32 tensors are views of the mapping (every read the same memory). */
  read(name: string): Promise<NamedTensor & { dtype: string }>;
  close(): void;
}

/** Options of `openSafetensors`. */
export interface OpenSafetensorsOptions {
  /**
   * Map the file into memory (default true where the platform allows, see mmap.ts): F32
   * tensors are then views of the file's pages, not copies, and load in no time; other dtypes
   * are converted from the mapped bytes. false: read each tensor into a fresh buffer.
   */
  map?: boolean;
}

/** Opens a file, parses its header and reads tensors on demand, so a 6 GB checkpoint needs
 * only one tensor's worth of memory at a time (none at all when mapped: the pages are the
 * file's). */
export async function openSafetensors(
  path: string,
  options: OpenSafetensorsOptions = {},
): Promise<SafetensorsReader> {
  const file = await Deno.open(path, { read: true });
  let header: SafetensorsHeader;
  let mapping: MappedFile | undefined;
  try {
    header = await readHeaderFrom(file, path);
    if (options.map !== false) mapping = mapFile(path, (await file.stat()).size);
  } catch (e) {
    file.close();
    throw e;
  }
  if (mapping) file.close(); // the mapping holds the pages
  const close = () => {
    if (!mapping) file.close();
  };
  const read = mapping
    ? (name: string) => {
      try {
        return Promise.resolve(readMappedTensor(mapping!, header, name));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    : (name: string) => readTensor(file, header, name);
  return {
    header,
    mapped: mapping !== undefined,
    read,
    close,
    [Symbol.asyncDispose]: () => Promise.resolve(close()),
  };
}

/** One tensor of a mapped file: its bytes as they lie in the mapping, decoded (F32: a view). */
function readMappedTensor(
  mapping: MappedFile,
  header: SafetensorsHeader,
  name: string,
): NamedTensor & { dtype: string } {
  const info = header.tensors.get(name);
  if (!info) {
    throw new SafetensorsError(`${header.source}: no tensor named "${name}"`);
  }
  const [begin, end] = info.dataOffsets;
  const raw = mapping.bytes(header.dataStart + begin, end - begin);
  return decodeTensor(raw, name, info, header.source);
}

// ---------------------------------------------------------------------------------------------
// writing

/** The header bytes and the order in which tensor data follows them. */
interface Layout {
  header: Uint8Array;
  ordered: [string, NamedTensor][];
}

/**
 * The header for float32 tensors stored in the given order: compact JSON with `__metadata__`
 * first, padded with spaces so that the data section starts at a multiple of 8 bytes, as the
 * reference implementation writes it.
 */
function encodeHeader(
  entries: Iterable<readonly [string, readonly number[]]>,
  metadata?: Record<string, string>,
): Uint8Array {
  // The JSON is assembled entry by entry because JSON.stringify would move integer-like keys
  // (a tensor named "0") to the front, breaking the intended order.
  const fields: string[] = [];
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== "string") {
        throw new SafetensorsError(
          `writeSafetensors: metadata "${key}" must be a string, got ${describe(value)}`,
        );
      }
    }
    fields.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(metadata)}`);
  }
  let offset = 0;
  for (const [name, shape] of entries) {
    const where = `writeSafetensors: tensor "${name}"`;
    if (name === METADATA_KEY || name === "") {
      throw new SafetensorsError(`${where}: this name is reserved or empty`);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      throw new SafetensorsError(
        `${where}: shape must be non-negative integers, got ${describe(shape)}`,
      );
    }
    const end = offset + elementCount(shape) * 4;
    const info = { dtype: "F32", shape, data_offsets: [offset, end] };
    fields.push(`${JSON.stringify(name)}:${JSON.stringify(info)}`);
    offset = end;
  }
  const json = new TextEncoder().encode(`{${fields.join(",")}}`);
  const padded = Math.ceil(json.length / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(json, 8);
  return header;
}

/** Lays tensors out as the reference implementation does: names sorted, data in that order. */
function planLayout(tensors: Map<string, NamedTensor>, metadata?: Record<string, string>): Layout {
  const ordered = [...tensors].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [name, tensor] of ordered) {
    const where = `writeSafetensors: tensor "${name}"`;
    if (!(tensor.data instanceof Float32Array)) {
      throw new SafetensorsError(`${where}: data must be a Float32Array`);
    }
    if (Array.isArray(tensor.shape) && tensor.shape.every(isNonNegativeInteger)) {
      const count = elementCount(tensor.shape);
      if (tensor.data.length !== count) {
        throw new SafetensorsError(
          `${where}: shape [${tensor.shape}] has ${count} elements but data has ${tensor.data.length}`,
        );
      }
    }
  }
  const header = encodeHeader(ordered.map(([name, t]) => [name, t.shape] as const), metadata);
  return { header, ordered };
}

/** The little-endian bytes of a float32 tensor, without copying. */
function tensorBytes(tensor: NamedTensor): Uint8Array {
  const { buffer, byteOffset, byteLength } = tensor.data;
  return new Uint8Array(buffer, byteOffset, byteLength);
}

/** Serializes float32 tensors into one safetensors buffer. */
export function writeSafetensors(
  tensors: Map<string, NamedTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  requireLittleEndianHost("writeSafetensors");
  const { header, ordered } = planLayout(tensors, metadata);
  const total = ordered.reduce((n, [, t]) => n + t.data.byteLength, header.length);
  const out = new Uint8Array(total);
  out.set(header, 0);
  let position = header.length;
  for (const [, tensor] of ordered) {
    out.set(tensorBytes(tensor), position);
    position += tensor.data.byteLength;
  }
  return out;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await file.write(bytes.subarray(written));
}

/**
 * Writes a safetensors file atomically: the data streams into a temporary file beside `path`
 * (so no single buffer of the whole model is needed) which is renamed over `path` only once it
 * is complete and flushed. A crash leaves either the old file or the new one, never half.
 */
export async function writeSafetensorsFile(
  path: string,
  tensors: Map<string, NamedTensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  requireLittleEndianHost(path);
  const { header, ordered } = planLayout(tensors, metadata);
  const name = path.split(/[\\/]/).pop();
  const temp = join(dirname(path), `.${name}.${Deno.pid}.${crypto.randomUUID()}.tmp`);
  try {
    {
      using file = await Deno.open(temp, { write: true, createNew: true });
      await writeAll(file, header);
      for (const [, tensor] of ordered) await writeAll(file, tensorBytes(tensor));
      await file.sync();
    }
    await Deno.rename(temp, path);
  } catch (e) {
    await Deno.remove(temp).catch(() => {});
    throw e;
  }
}

/**
 * Writes float32 tensors that arrive one at a time (e.g. converted from a checkpoint) into a
 * safetensors file, so a multi-gigabyte model never sits in memory whole. Every name and shape
 * is declared up front; the data must then arrive in exactly that order (the format allows any
 * order of offsets). Written to a temporary name and renamed into place when complete.
 * `onTensor` is called with 0 once the header is written, then with the bytes written so far.
 */
export async function writeSafetensorsStream(
  path: string,
  declared: ReadonlyMap<string, readonly number[]>,
  tensors: AsyncIterable<[string, NamedTensor]> | Iterable<[string, NamedTensor]>,
  metadata?: Record<string, string>,
  onTensor?: (bytesWritten: number) => void,
): Promise<void> {
  requireLittleEndianHost(path);
  const header = encodeHeader(declared, metadata);
  const order = [...declared.keys()];
  const name = path.split(/[\\/]/).pop();
  const temp = join(dirname(path), `.${name}.${Deno.pid}.${crypto.randomUUID()}.tmp`);
  try {
    {
      using file = await Deno.open(temp, { write: true, createNew: true });
      await writeAll(file, header);
      onTensor?.(0);
      let index = 0, written = 0;
      for await (const [tensorName, tensor] of tensors) {
        const want = declared.get(tensorName);
        if (order[index] !== tensorName || !want || tensor.data.length !== elementCount(want)) {
          throw new SafetensorsError(
            `${path}: got tensor "${tensorName}" [${tensor.shape}] where "${order[index]}" ` +
              `[${declared.get(order[index]) ?? "?"}] was declared`,
          );
        }
        await writeAll(file, tensorBytes(tensor));
        written += tensor.data.byteLength;
        index++;
        onTensor?.(written);
      }
      if (index !== order.length) {
        throw new SafetensorsError(
          `${path}: only ${index} of ${order.length} declared tensors arrived`,
        );
      }
      await file.sync();
    }
    await Deno.rename(temp, path);
  } catch (e) {
    await Deno.remove(temp).catch(() => {});
    throw e;
  }
}
