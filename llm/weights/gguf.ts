/**
 * The GGUF file format (version 3), llama.cpp's model file: read and written without any
 * dependency. Format only: which keys and tensor names a model needs is llm/export's business.
 *
 * Layout of a file (every number little-endian):
 *
 *   "GGUF"  u32 version (3)  u64 tensor count  u64 key/value count
 *   key/value pairs:  string key, u32 value type, value
 *   tensor infos:     string name, u32 n_dims, u64 dims[n_dims] (innermost first),
 *                     u32 ggml type, u64 offset (relative to the data section)
 *   padding to `general.alignment` (default 32), then the data section: each tensor's bytes at
 *   its offset, every offset a multiple of the alignment.
 *
 * A string is a u64 byte length and UTF-8 bytes; an array is a u32 item type, a u64 count and
 * the items (arrays of arrays allowed). Tensor types written and read here: F32, F16, BF16 and
 * Q8_0 (blocks of 32 values: an fp16 scale d = max|x| / 127 and 32 int8 q = round(x / d), as
 * llama.cpp's quantize_row_q8_0_ref computes them, bit for bit).
 *
 * `writeGguf` streams: tensor data is asked for one tensor at a time and written to a temporary
 * file beside the target, renamed into place when complete, so a multi-gigabyte model is never
 * in memory twice and a crash never leaves a half file under the real name.
 */
import { dirname, join } from "node:path";
import { WeightsFileError } from "./errors.ts";

/** A GGUF file that cannot be read, or a GGUF that cannot be written; names the file and place. */
export class GgufError extends WeightsFileError {
  /** The class name, for error reports. */
  override name = "GgufError";
}

const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const VERSION = 3;
/** The alignment when `general.alignment` is absent. */
export const GGUF_DEFAULT_ALIGNMENT = 32;
const ALIGNMENT_KEY = "general.alignment";

// ---------------------------------------------------------------------------------------------
// Values

/** GGUF's value types, by their numbers in the file. */
const VALUE_TYPES = [
  "uint8",
  "int8",
  "uint16",
  "int16",
  "uint32",
  "int32",
  "float32",
  "bool",
  "string",
  "array",
  "uint64",
  "int64",
  "float64",
] as const;

/** A GGUF value type's name. */
export type GgufValueType = typeof VALUE_TYPES[number];
/** The types whose values are JavaScript numbers. */
export type GgufNumberType =
  | "uint8"
  | "int8"
  | "uint16"
  | "int16"
  | "uint32"
  | "int32"
  | "float32"
  | "float64";
/** The types whose values are bigints (64-bit integers). */
export type GgufBigIntType = "uint64" | "int64";
/** The types an array may hold. */
export type GgufItemType = Exclude<GgufValueType, "array"> | "array";

/** One typed value of a key (the type is part of the file, so it is part of the value). */
export type GgufValue =
  | { type: GgufNumberType; value: number }
  | { type: GgufBigIntType; value: bigint }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | GgufArray;

/** An array value: scalars of one type, or arrays (GGUF allows nesting). */
export type GgufArray =
  | { type: "array"; itemType: GgufNumberType; value: number[] }
  | { type: "array"; itemType: GgufBigIntType; value: bigint[] }
  | { type: "array"; itemType: "bool"; value: boolean[] }
  | { type: "array"; itemType: "string"; value: string[] }
  | { type: "array"; itemType: "array"; value: GgufArray[] };

/** An array value of one item type. */
function ggufArray(itemType: GgufNumberType, value: number[]): GgufArray;
function ggufArray(itemType: GgufBigIntType, value: bigint[]): GgufArray;
function ggufArray(itemType: "bool", value: boolean[]): GgufArray;
function ggufArray(itemType: "string", value: string[]): GgufArray;
function ggufArray(itemType: "array", value: GgufArray[]): GgufArray;
function ggufArray(itemType: GgufArray["itemType"], value: unknown[]): GgufArray {
  return { type: "array", itemType, value } as GgufArray;
}

/** Shorthands for typed values: `gguf.u32(4)`, `gguf.str("llama")`, `gguf.arr("string", [...])`. */
export const gguf = {
  u8: (value: number): GgufValue => ({ type: "uint8", value }),
  i8: (value: number): GgufValue => ({ type: "int8", value }),
  u16: (value: number): GgufValue => ({ type: "uint16", value }),
  i16: (value: number): GgufValue => ({ type: "int16", value }),
  u32: (value: number): GgufValue => ({ type: "uint32", value }),
  i32: (value: number): GgufValue => ({ type: "int32", value }),
  f32: (value: number): GgufValue => ({ type: "float32", value }),
  f64: (value: number): GgufValue => ({ type: "float64", value }),
  u64: (value: bigint): GgufValue => ({ type: "uint64", value }),
  i64: (value: bigint): GgufValue => ({ type: "int64", value }),
  bool: (value: boolean): GgufValue => ({ type: "bool", value }),
  str: (value: string): GgufValue => ({ type: "string", value }),
  arr: ggufArray,
};

/** Integer ranges of the fixed-width number types. */
const INTEGER_RANGES: Partial<Record<GgufValueType, [number, number]>> = {
  uint8: [0, 0xff],
  int8: [-0x80, 0x7f],
  uint16: [0, 0xffff],
  int16: [-0x8000, 0x7fff],
  uint32: [0, 0xffffffff],
  int32: [-0x80000000, 0x7fffffff],
};

// ---------------------------------------------------------------------------------------------
// Tensor types

/** The ggml tensor types this module writes and reads, with their numbers in the file. */
export const GGML_TYPES = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 } as const;
/** A ggml tensor type's name. */
export type GgmlType = keyof typeof GGML_TYPES;

/** Values per block and bytes per block of each type. */
const BLOCK: Record<GgmlType, { values: number; bytes: number }> = {
  F32: { values: 1, bytes: 4 },
  F16: { values: 1, bytes: 2 },
  BF16: { values: 1, bytes: 2 },
  Q8_0: { values: 32, bytes: 34 },
};

const typeName = (id: number): GgmlType | undefined =>
  (Object.keys(GGML_TYPES) as GgmlType[]).find((name) => GGML_TYPES[name] === id);

/** Bytes of a tensor of `shape` (outermost first) stored as `type`; the innermost dim must fill blocks. */
export function ggmlTensorBytes(
  type: GgmlType,
  shape: readonly number[],
  where = "tensor",
): number {
  const { values, bytes } = BLOCK[type];
  const inner = shape.length === 0 ? 1 : shape[shape.length - 1];
  if (inner % values !== 0) {
    throw new GgufError(
      `${where}: ${type} stores blocks of ${values} values along the innermost dimension, ` +
        `which is ${inner} for shape [${shape}]`,
    );
  }
  return (shape.reduce((a, b) => a * b, 1) / values) * bytes;
}

// ---- conversions (round to nearest, ties to even, as ggml and numpy do)

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** float32 → IEEE half bits, round to nearest even (ggml's GGML_FP32_TO_FP16, numpy's astype). */
export function floatToHalf(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 | (mantissa >>> 13) : 0);
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow → infinity
  if (e <= 0) {
    // A half subnormal (or zero): shift the full mantissa into place and round.
    if (e < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - e;
    const half = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const midpoint = 1 << (shift - 1);
    const up = rest > midpoint || (rest === midpoint && (half & 1) === 1);
    return sign | (half + (up ? 1 : 0));
  }
  const half = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  const up = rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1);
  return sign | (half + (up ? 1 : 0)); // a carry into the exponent is still right (→ inf at max)
}

/** IEEE half bits → float32 value. */
export function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** float32 → bfloat16 bits, round to nearest even; NaN stays a quiet NaN (ggml's fp32_to_bf16). */
function floatToBf16(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0];
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 64) & 0xffff;
  return ((x + (0x7fff + ((x >>> 16) & 1))) >>> 16) & 0xffff;
}

const fround = Math.fround;

/** C's roundf: halves away from zero. */
function roundHalfAway(x: number): number {
  const r = Math.floor(Math.abs(x) + 0.5);
  return x < 0 ? -r : r;
}

/**
 * Q8_0 blocks of `values` (length a multiple of 32), exactly as llama.cpp's
 * quantize_row_q8_0_ref: in float32, d = amax / 127, id = 1 / d (0 for an all-zero block),
 * q = roundf(x · id); d stored as fp16.
 */
export function quantizeQ8_0(values: Float32Array): Uint8Array {
  if (values.length % 32 !== 0) {
    throw new GgufError(`Q8_0: ${values.length} values is not a whole number of 32-value blocks`);
  }
  const blocks = values.length / 32;
  const out = new Uint8Array(blocks * 34);
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const start = b * 32;
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(values[start + j]));
    const d = fround(amax / 127);
    const id = d ? fround(1 / d) : 0;
    view.setUint16(b * 34, floatToHalf(d), true);
    for (let j = 0; j < 32; j++) {
      view.setInt8(b * 34 + 2 + j, roundHalfAway(fround(values[start + j] * id)));
    }
  }
  return out;
}

/** The stored bytes of float32 `values` as `type`. */
export function encodeTensor(type: GgmlType, values: Float32Array): Uint8Array {
  switch (type) {
    case "F32": {
      const copy = new Float32Array(values); // an aligned little-endian copy of exactly these values
      return new Uint8Array(copy.buffer);
    }
    case "F16": {
      const out = new Uint16Array(values.length);
      for (let i = 0; i < values.length; i++) out[i] = floatToHalf(values[i]);
      return new Uint8Array(out.buffer);
    }
    case "BF16": {
      const out = new Uint16Array(values.length);
      for (let i = 0; i < values.length; i++) out[i] = floatToBf16(values[i]);
      return new Uint8Array(out.buffer);
    }
    case "Q8_0":
      return quantizeQ8_0(values);
  }
}

/** Float32 values of stored bytes of `type` (`count` values). */
export function decodeTensor(type: GgmlType, bytes: Uint8Array, count: number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  switch (type) {
    case "F32":
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
      break;
    case "F16":
      for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(i * 2, true));
      break;
    case "BF16": {
      const words = new Uint32Array(count);
      for (let i = 0; i < count; i++) words[i] = view.getUint16(i * 2, true) << 16;
      out.set(new Float32Array(words.buffer));
      break;
    }
    case "Q8_0":
      for (let b = 0; b < count / 32; b++) {
        const d = halfToFloat(view.getUint16(b * 34, true));
        for (let j = 0; j < 32; j++) out[b * 32 + j] = fround(view.getInt8(b * 34 + 2 + j) * d);
      }
      break;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writing

/** One tensor to write: its data is asked for when its turn comes (streamed). */
export interface GgufTensorSource {
  /** The tensor's name in the file, e.g. `blk.0.attn_q.weight`. */
  name: string;
  /** Dimensions, outermost first (PyTorch's order); written innermost first as GGUF wants. */
  shape: readonly number[];
  /** How the values are stored. */
  type: GgmlType;
  /** The float32 values, row-major, or a function giving them when the tensor is written. */
  data: Float32Array | (() => Float32Array | Promise<Float32Array>);
}

/** What a GGUF file holds. */
export interface GgufContent {
  /** Key/value pairs, written in this order. `general.alignment` (uint32) sets the alignment. */
  metadata: Iterable<[string, GgufValue]> | Record<string, GgufValue>;
  /** Tensors, written in this order. */
  tensors: readonly GgufTensorSource[];
}

const textEncoder = new TextEncoder();

/** Appends little-endian bytes; grows as needed. Used for the header only. */
class ByteWriter {
  #buffer = new Uint8Array(1 << 16);
  #view = new DataView(this.#buffer.buffer);
  length = 0;

  private reserve(extra: number): void {
    if (this.length + extra <= this.#buffer.length) return;
    let size = this.#buffer.length * 2;
    while (size < this.length + extra) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.#buffer.subarray(0, this.length));
    this.#buffer = bigger;
    this.#view = new DataView(bigger.buffer);
  }
  /** Reserves `n` bytes at the end (growing the buffer, so read #view after) and returns where they start. */
  private at(n: number): number {
    this.reserve(n);
    const position = this.length;
    this.length += n;
    return position;
  }
  u8(v: number) {
    const p = this.at(1);
    this.#view.setUint8(p, v);
  }
  i8(v: number) {
    const p = this.at(1);
    this.#view.setInt8(p, v);
  }
  u16(v: number) {
    const p = this.at(2);
    this.#view.setUint16(p, v, true);
  }
  i16(v: number) {
    const p = this.at(2);
    this.#view.setInt16(p, v, true);
  }
  u32(v: number) {
    const p = this.at(4);
    this.#view.setUint32(p, v, true);
  }
  i32(v: number) {
    const p = this.at(4);
    this.#view.setInt32(p, v, true);
  }
  f32(v: number) {
    const p = this.at(4);
    this.#view.setFloat32(p, v, true);
  }
  f64(v: number) {
    const p = this.at(8);
    this.#view.setFloat64(p, v, true);
  }
  u64(v: bigint | number) {
    const p = this.at(8);
    this.#view.setBigUint64(p, BigInt(v), true);
  }
  i64(v: bigint) {
    const p = this.at(8);
    this.#view.setBigInt64(p, v, true);
  }
  bytes(b: Uint8Array) {
    const p = this.at(b.length); // may grow (replace) the buffer: take it after
    this.#buffer.set(b, p);
  }
  string(s: string) {
    const b = textEncoder.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  pad(alignment: number) {
    const extra = (alignment - (this.length % alignment)) % alignment;
    this.reserve(extra);
    this.#buffer.fill(0, this.length, this.length + extra);
    this.length += extra;
  }
  result(): Uint8Array {
    return this.#buffer.subarray(0, this.length);
  }
}

/** Writes one scalar of `type`; `where` names the key in errors. */
function writeScalar(out: ByteWriter, type: GgufValueType, value: unknown, where: string): void {
  const fail = (expected: string): never => {
    throw new GgufError(`${where}: a ${type} value must be ${expected}, got ${String(value)}`);
  };
  const range = INTEGER_RANGES[type];
  if (range) {
    if (typeof value !== "number" || !Number.isInteger(value)) fail("an integer");
    const v = value as number;
    if (v < range[0] || v > range[1]) fail(`in ${range[0]}..${range[1]}`);
  }
  switch (type) {
    case "uint8":
      return out.u8(value as number);
    case "int8":
      return out.i8(value as number);
    case "uint16":
      return out.u16(value as number);
    case "int16":
      return out.i16(value as number);
    case "uint32":
      return out.u32(value as number);
    case "int32":
      return out.i32(value as number);
    case "float32":
    case "float64":
      if (typeof value !== "number") fail("a number");
      return type === "float32" ? out.f32(value as number) : out.f64(value as number);
    case "uint64":
    case "int64":
      if (typeof value !== "bigint") fail("a bigint");
      if (type === "uint64" && ((value as bigint) < 0n || (value as bigint) >= 1n << 64n)) {
        fail("in 0..2^64-1");
      }
      if (
        type === "int64" && ((value as bigint) < -(1n << 63n) || (value as bigint) >= 1n << 63n)
      ) {
        fail("in -2^63..2^63-1");
      }
      return type === "uint64" ? out.u64(value as bigint) : out.i64(value as bigint);
    case "bool":
      if (typeof value !== "boolean") fail("true or false");
      return out.u8(value ? 1 : 0);
    case "string":
      if (typeof value !== "string") fail("a string");
      return out.string(value as string);
    case "array":
      return writeArray(out, value as GgufArray, where);
  }
}

function writeArray(out: ByteWriter, array: GgufArray, where: string): void {
  if (typeof array !== "object" || array === null || !Array.isArray(array.value)) {
    throw new GgufError(`${where}: an array value must be {type: "array", itemType, value: [...]}`);
  }
  const itemType = VALUE_TYPES.indexOf(array.itemType);
  if (itemType < 0) throw new GgufError(`${where}: unknown array item type "${array.itemType}"`);
  out.u32(itemType);
  out.u64(array.value.length);
  array.value.forEach((item, i) => writeScalar(out, array.itemType, item, `${where}[${i}]`));
}

/** The header of a file: every byte before the data section, and each tensor's offset. */
function encodeHeader(content: GgufContent, source: string): {
  header: Uint8Array;
  alignment: number;
  tensors: { source: GgufTensorSource; offset: number; bytes: number }[];
} {
  const entries = Symbol.iterator in content.metadata
    ? [...(content.metadata as Iterable<[string, GgufValue]>)]
    : Object.entries(content.metadata as Record<string, GgufValue>);
  const keys = new Set<string>();
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  for (const [key, value] of entries) {
    if (keys.has(key)) throw new GgufError(`${source}: key "${key}" is given twice`);
    keys.add(key);
    if (key === ALIGNMENT_KEY) {
      if (value.type !== "uint32" || value.value <= 0 || (value.value & (value.value - 1)) !== 0) {
        throw new GgufError(
          `${source}: "${ALIGNMENT_KEY}" must be a uint32 power of two, got ${value.type} ${
            String(value.value)
          }`,
        );
      }
      alignment = value.value;
    }
  }
  const names = new Set<string>();
  let offset = 0;
  const tensors = content.tensors.map((tensor) => {
    const where = `${source}: tensor "${tensor.name}"`;
    if (names.has(tensor.name)) throw new GgufError(`${where} is given twice`);
    names.add(tensor.name);
    if (!(tensor.type in GGML_TYPES)) throw new GgufError(`${where}: unknown type ${tensor.type}`);
    if (
      tensor.shape.length === 0 || tensor.shape.length > 4 ||
      !tensor.shape.every((d) => Number.isInteger(d) && d > 0)
    ) {
      throw new GgufError(`${where}: shape [${tensor.shape}] must be 1 to 4 positive integers`);
    }
    const bytes = ggmlTensorBytes(tensor.type, tensor.shape, where);
    const placed = { source: tensor, offset, bytes };
    offset += bytes + ((alignment - (bytes % alignment)) % alignment);
    return placed;
  });

  const out = new ByteWriter();
  out.u32(MAGIC);
  out.u32(VERSION);
  out.u64(tensors.length);
  out.u64(entries.length);
  for (const [key, value] of entries) {
    out.string(key);
    const type = VALUE_TYPES.indexOf(value?.type);
    if (type < 0) {
      throw new GgufError(`${source}: key "${key}" has unknown value type "${value?.type}"`);
    }
    out.u32(type);
    writeScalar(
      out,
      value.type,
      value.type === "array" ? value : value.value,
      `${source}: "${key}"`,
    );
  }
  for (const { source: tensor, offset } of tensors) {
    out.string(tensor.name);
    out.u32(tensor.shape.length);
    for (const dim of [...tensor.shape].reverse()) out.u64(dim);
    out.u32(GGML_TYPES[tensor.type]);
    out.u64(offset);
  }
  out.pad(alignment);
  return { header: out.result(), alignment, tensors };
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await file.write(bytes.subarray(written));
}

/**
 * Writes a GGUF file: names, shapes and types are checked and the header laid out first, then
 * each tensor's data is fetched, converted and written in turn. The file appears under `path`
 * only once complete (a temporary file beside it is renamed); on any error nothing is left.
 * `onTensor(index, name)` is called after each tensor is written.
 */
export async function writeGguf(
  path: string,
  content: GgufContent,
  onTensor?: (index: number, name: string) => void,
): Promise<void> {
  const { header, alignment, tensors } = encodeHeader(content, path);
  const name = path.split(/[\\/]/).pop();
  const temp = join(dirname(path), `.${name}.${Deno.pid}.${crypto.randomUUID()}.tmp`);
  try {
    {
      using file = await Deno.open(temp, { write: true, createNew: true });
      await writeAll(file, header);
      for (const [index, { source, bytes }] of tensors.entries()) {
        const values = typeof source.data === "function" ? await source.data() : source.data;
        const count = source.shape.reduce((a, b) => a * b, 1);
        if (!(values instanceof Float32Array) || values.length !== count) {
          throw new GgufError(
            `${path}: tensor "${source.name}" [${source.shape}] needs ${count} float32 values, ` +
              `got ${values instanceof Float32Array ? values.length : typeof values}`,
          );
        }
        const encoded = encodeTensor(source.type, values);
        if (encoded.length !== bytes) throw new Error(`internal: ${source.name} size ${bytes}`);
        await writeAll(file, encoded);
        const pad = (alignment - (bytes % alignment)) % alignment;
        // Padded after every tensor, the last one too, as gguf-py's GGUFWriter does.
        if (pad > 0) await writeAll(file, new Uint8Array(pad));
        onTensor?.(index, source.name);
      }
      await file.sync();
    }
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

/** One tensor as the header describes it. */
export interface GgufTensorInfo {
  /** The tensor's name in the file. */
  name: string;
  /** Dimensions, outermost first (the reverse of the file's order). */
  shape: number[];
  /** How its values are stored. */
  type: GgmlType;
  /** Byte offset relative to the data section. */
  offset: number;
  /** Bytes of the stored data. */
  bytes: number;
}

/** A parsed header. */
export interface GgufHeader {
  /** The file (or "<memory>"), for error messages. */
  source: string;
  /** The format version (3; 2 is read too). */
  version: number;
  /** Key/value pairs in file order. */
  metadata: Map<string, GgufValue>;
  /** Tensors in file order. */
  tensors: Map<string, GgufTensorInfo>;
  /** `general.alignment`, or 32. */
  alignment: number;
  /** Absolute byte offset of the data section. */
  dataStart: number;
}

/** Thrown inside the parser when the bytes given end before the header does. */
class NeedMoreBytes extends Error {}

/** Reads a header from a prefix of a file; throws NeedMoreBytes when the prefix is too short. */
class ByteReader {
  readonly #view: DataView;
  position = 0;
  constructor(readonly bytes: Uint8Array, readonly source: string, readonly complete: boolean) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private need(n: number, what: string): void {
    if (this.position + n <= this.bytes.length) return;
    if (!this.complete) throw new NeedMoreBytes();
    throw new GgufError(
      `${this.source}: the file ends at byte ${this.bytes.length} inside ${what} ` +
        `(at byte ${this.position}, ${n} bytes needed)`,
      this.source,
    );
  }
  u8(what: string) {
    this.need(1, what);
    return this.#view.getUint8(this.position++);
  }
  i8(what: string) {
    this.need(1, what);
    return this.#view.getInt8(this.position++);
  }
  u16(what: string) {
    this.need(2, what);
    const v = this.#view.getUint16(this.position, true);
    this.position += 2;
    return v;
  }
  i16(what: string) {
    this.need(2, what);
    const v = this.#view.getInt16(this.position, true);
    this.position += 2;
    return v;
  }
  u32(what: string) {
    this.need(4, what);
    const v = this.#view.getUint32(this.position, true);
    this.position += 4;
    return v;
  }
  i32(what: string) {
    this.need(4, what);
    const v = this.#view.getInt32(this.position, true);
    this.position += 4;
    return v;
  }
  f32(what: string) {
    this.need(4, what);
    const v = this.#view.getFloat32(this.position, true);
    this.position += 4;
    return v;
  }
  f64(what: string) {
    this.need(8, what);
    const v = this.#view.getFloat64(this.position, true);
    this.position += 8;
    return v;
  }
  u64(what: string) {
    this.need(8, what);
    const v = this.#view.getBigUint64(this.position, true);
    this.position += 8;
    return v;
  }
  i64(what: string) {
    this.need(8, what);
    const v = this.#view.getBigInt64(this.position, true);
    this.position += 8;
    return v;
  }
  /** A u64 that must fit a JavaScript number (counts, lengths, offsets). */
  count(what: string, limit = Number.MAX_SAFE_INTEGER): number {
    const at = this.position;
    const v = this.u64(what);
    if (v > BigInt(limit)) {
      throw new GgufError(`${this.source}: ${what} at byte ${at} is ${v}, above ${limit}`);
    }
    return Number(v);
  }
  string(what: string): string {
    const length = this.count(`the length of ${what}`, 1 << 30);
    this.need(length, what);
    const bytes = this.bytes.subarray(this.position, this.position + length);
    this.position += length;
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      throw new GgufError(`${this.source}: ${what} is not valid UTF-8`, this.source);
    }
  }
}

function readScalar(r: ByteReader, type: GgufValueType, what: string): unknown {
  switch (type) {
    case "uint8":
      return r.u8(what);
    case "int8":
      return r.i8(what);
    case "uint16":
      return r.u16(what);
    case "int16":
      return r.i16(what);
    case "uint32":
      return r.u32(what);
    case "int32":
      return r.i32(what);
    case "float32":
      return r.f32(what);
    case "float64":
      return r.f64(what);
    case "uint64":
      return r.u64(what);
    case "int64":
      return r.i64(what);
    case "bool": {
      const at = r.position;
      const b = r.u8(what);
      if (b > 1) throw new GgufError(`${r.source}: ${what} at byte ${at} is bool ${b}, not 0 or 1`);
      return b === 1;
    }
    case "string":
      return r.string(what);
    case "array":
      return readArray(r, what);
  }
}

function readValueType(r: ByteReader, what: string): GgufValueType {
  const at = r.position;
  const id = r.u32(`the type of ${what}`);
  const type = VALUE_TYPES[id];
  if (type === undefined) {
    throw new GgufError(`${r.source}: ${what} has unknown value type ${id} (at byte ${at})`);
  }
  return type;
}

function readArray(r: ByteReader, what: string): GgufArray {
  const itemType = readValueType(r, `the items of ${what}`);
  const length = r.count(`the length of ${what}`, 1 << 30);
  const value: unknown[] = new Array(length);
  for (let i = 0; i < length; i++) value[i] = readScalar(r, itemType, `${what}[${i}]`);
  return { type: "array", itemType, value } as GgufArray;
}

function parseHeader(bytes: Uint8Array, source: string, complete: boolean): GgufHeader {
  const r = new ByteReader(bytes, source, complete);
  const magic = r.u32("the magic number");
  if (magic !== MAGIC) {
    throw new GgufError(
      `${source}: not a GGUF file (starts with 0x${magic.toString(16).padStart(8, "0")}, ` +
        `expected "GGUF")`,
      source,
    );
  }
  const version = r.u32("the version");
  if (version !== 2 && version !== 3) {
    throw new GgufError(`${source}: GGUF version ${version}; only versions 2 and 3 are read`);
  }
  const tensorCount = r.count("the tensor count", 1 << 24);
  const kvCount = r.count("the key/value count", 1 << 24);
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = r.string(`key ${i}`);
    const type = readValueType(r, `key "${key}"`);
    const value = readScalar(r, type, `key "${key}"`);
    metadata.set(key, type === "array" ? value as GgufArray : { type, value } as GgufValue);
  }
  const alignmentValue = metadata.get(ALIGNMENT_KEY);
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  if (alignmentValue) {
    if (
      alignmentValue.type !== "uint32" || alignmentValue.value === 0 ||
      (alignmentValue.value & (alignmentValue.value - 1)) !== 0
    ) {
      throw new GgufError(`${source}: "${ALIGNMENT_KEY}" must be a uint32 power of two`);
    }
    alignment = alignmentValue.value;
  }
  const tensors = new Map<string, GgufTensorInfo>();
  for (let i = 0; i < tensorCount; i++) {
    const name = r.string(`the name of tensor ${i}`);
    const where = `${source}: tensor "${name}"`;
    const nDims = r.u32(`the dimension count of tensor "${name}"`);
    if (nDims < 1 || nDims > 4) throw new GgufError(`${where} has ${nDims} dimensions (1-4)`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(r.count(`dimension ${d} of tensor "${name}"`));
    const typeId = r.u32(`the type of tensor "${name}"`);
    const type = typeName(typeId);
    if (!type) {
      throw new GgufError(
        `${where} has ggml type ${typeId}; only F32 (0), F16 (1), Q8_0 (8) and BF16 (30) are read`,
      );
    }
    const offset = r.count(`the offset of tensor "${name}"`);
    if (offset % alignment !== 0) {
      throw new GgufError(`${where}: offset ${offset} is not a multiple of ${alignment}`);
    }
    if (tensors.has(name)) throw new GgufError(`${where} appears twice`);
    const shape = dims.reverse();
    tensors.set(name, { name, shape, type, offset, bytes: ggmlTensorBytes(type, shape, where) });
  }
  const dataStart = Math.ceil(r.position / alignment) * alignment;
  return { source, version, metadata, tensors, alignment, dataStart };
}

/** Checks that every tensor lies inside a data section of `dataBytes` bytes, without overlap. */
function checkTensorBounds(header: GgufHeader, dataBytes: number): void {
  const sorted = [...header.tensors.values()].sort((a, b) => a.offset - b.offset);
  let end = 0;
  for (const tensor of sorted) {
    if (tensor.offset < end) {
      throw new GgufError(`${header.source}: tensor "${tensor.name}" overlaps the one before it`);
    }
    end = tensor.offset + tensor.bytes;
    if (end > dataBytes) {
      throw new GgufError(
        `${header.source}: tensor "${tensor.name}" ends at data byte ${end}, but the data ` +
          `section has ${dataBytes} bytes (truncated file?)`,
        header.source,
      );
    }
  }
}

/** A GGUF in memory: its header and every tensor's values. */
export function readGguf(bytes: Uint8Array, source = "<memory>"): GgufHeader & {
  read(name: string): Float32Array;
} {
  const header = parseHeader(bytes, source, true);
  checkTensorBounds(header, bytes.length - header.dataStart);
  return {
    ...header,
    read(name) {
      const info = header.tensors.get(name);
      if (!info) throw new GgufError(`${source}: no tensor "${name}"`);
      const start = header.dataStart + info.offset;
      const count = info.shape.reduce((a, b) => a * b, 1);
      return decodeTensor(info.type, bytes.subarray(start, start + info.bytes), count);
    },
  };
}

/** An open GGUF file: the header, and tensors read one at a time. Close it (`using`). */
export interface GgufReader extends Disposable {
  /** The parsed header. */
  header: GgufHeader;
  /** The stored bytes of one tensor. */
  readRaw(name: string): Promise<Uint8Array>;
  /** One tensor's values as float32 (dequantized). */
  read(name: string): Promise<Float32Array>;
  /** Closes the file. */
  close(): void;
}

async function readAt(file: Deno.FsFile, position: number, length: number): Promise<Uint8Array> {
  await file.seek(position, Deno.SeekMode.Start);
  const out = new Uint8Array(length);
  let filled = 0;
  while (filled < length) {
    const n = await file.read(out.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return out.subarray(0, filled);
}

/** Opens a GGUF file: reads and checks its header (growing the read until it is whole). */
export async function openGguf(path: string): Promise<GgufReader> {
  const file = await Deno.open(path, { read: true });
  try {
    const size = (await file.stat()).size;
    let header: GgufHeader | undefined;
    for (let chunk = 1 << 20; !header; chunk *= 4) {
      const length = Math.min(chunk, size);
      const bytes = await readAt(file, 0, length);
      try {
        header = parseHeader(bytes, path, length >= size);
      } catch (error) {
        if (!(error instanceof NeedMoreBytes)) throw error;
      }
    }
    checkTensorBounds(header, size - header.dataStart);
    const found = header;
    const info = (name: string) => {
      const tensor = found.tensors.get(name);
      if (!tensor) throw new GgufError(`${path}: no tensor "${name}"`);
      return tensor;
    };
    const readRaw = (name: string) => {
      const tensor = info(name);
      return readAt(file, found.dataStart + tensor.offset, tensor.bytes);
    };
    return {
      header: found,
      readRaw,
      async read(name) {
        const tensor = info(name);
        const count = tensor.shape.reduce((a, b) => a * b, 1);
        return decodeTensor(tensor.type, await readRaw(name), count);
      },
      close: () => file.close(),
      [Symbol.dispose]: () => file.close(),
    };
  } catch (error) {
    file.close();
    throw error;
  }
}

/** A metadata value's plain JavaScript value (number, bigint, boolean, string or array). */
export function ggufPlain(value: GgufValue | undefined): unknown {
  if (value === undefined) return undefined;
  if (value.type === "array" && value.itemType === "array") {
    return (value.value as GgufArray[]).map(ggufPlain);
  }
  return value.value;
}
