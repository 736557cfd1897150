/**
 * TensorFlow `DataType` numbers (tensorflow/core/framework/types.proto) and how a checkpoint's
 * raw little-endian bytes turn into JavaScript arrays.
 */
import { TensorBundleError } from "../errors.ts";

/** DataType enum numbers as stored in BundleEntryProto.dtype. */
export const TF_DTYPE_NAMES: Readonly<Record<number, string>> = {
  1: "DT_FLOAT",
  2: "DT_DOUBLE",
  3: "DT_INT32",
  4: "DT_UINT8",
  5: "DT_INT16",
  6: "DT_INT8",
  7: "DT_STRING",
  8: "DT_COMPLEX64",
  9: "DT_INT64",
  10: "DT_BOOL",
  11: "DT_QINT8",
  12: "DT_QUINT8",
  13: "DT_QINT32",
  14: "DT_BFLOAT16",
  15: "DT_QINT16",
  16: "DT_QUINT16",
  17: "DT_UINT16",
  18: "DT_COMPLEX128",
  19: "DT_HALF",
  20: "DT_RESOURCE",
  21: "DT_VARIANT",
  22: "DT_UINT32",
  23: "DT_UINT64",
};

export const TF_DTYPE_NUMBERS: Readonly<Record<string, number>> = Object.fromEntries(
  Object.entries(TF_DTYPE_NAMES).map(([number, name]) => [name, Number(number)]),
);

/** The dtypes this reader turns into arrays, and the bytes per element of each. */
const ELEMENT_SIZES: Readonly<Record<string, number>> = {
  DT_FLOAT: 4,
  DT_DOUBLE: 8,
  DT_INT32: 4,
  DT_UINT8: 1,
  DT_INT16: 2,
  DT_INT8: 1,
  DT_INT64: 8,
  DT_BOOL: 1,
  DT_BFLOAT16: 2,
  DT_UINT16: 2,
  DT_HALF: 2,
  DT_UINT32: 4,
  DT_UINT64: 8,
};

/** Bytes per element, or undefined for variable-size (string) and unsupported dtypes. */
export function elementSize(dtype: string): number | undefined {
  return ELEMENT_SIZES[dtype];
}

/** Whether {@link decodeNumeric} handles this dtype. */
export function isSupportedNumeric(dtype: string): boolean {
  return dtype in ELEMENT_SIZES;
}

/**
 * Values of one tensor. Half and bfloat16 are widened to Float32Array; DT_BOOL comes back as
 * a Uint8Array of 0/1; DT_STRING as one byte array per element (TF strings are bytes, and the
 * object graph stored in TF2 checkpoints is a binary protobuf, not text).
 */
export type TensorValues = NumericArray | Uint8Array[];

/** The typed arrays that hold numeric tensors. */
export type NumericArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

/**
 * Interprets raw little-endian tensor bytes. `bytes` must start at offset 0 of its own buffer
 * when zero-copy views are wanted; otherwise the bytes are copied once.
 */
export function decodeNumeric(
  dtype: string,
  bytes: Uint8Array,
): Exclude<TensorValues, Uint8Array[]> {
  const aligned = alignedBuffer(bytes, elementSize(dtype) ?? 1);
  const { buffer, byteOffset, byteLength } = aligned;
  switch (dtype) {
    case "DT_FLOAT":
      return new Float32Array(buffer, byteOffset, byteLength / 4);
    case "DT_DOUBLE":
      return new Float64Array(buffer, byteOffset, byteLength / 8);
    case "DT_INT32":
      return new Int32Array(buffer, byteOffset, byteLength / 4);
    case "DT_UINT8":
    case "DT_BOOL":
      return new Uint8Array(buffer, byteOffset, byteLength);
    case "DT_INT16":
      return new Int16Array(buffer, byteOffset, byteLength / 2);
    case "DT_INT8":
      return new Int8Array(buffer, byteOffset, byteLength);
    case "DT_INT64":
      return new BigInt64Array(buffer, byteOffset, byteLength / 8);
    case "DT_UINT16":
      return new Uint16Array(buffer, byteOffset, byteLength / 2);
    case "DT_UINT32":
      return new Uint32Array(buffer, byteOffset, byteLength / 4);
    case "DT_UINT64":
      return new BigUint64Array(buffer, byteOffset, byteLength / 8);
    case "DT_HALF":
      return halfToFloat32(new Uint16Array(buffer, byteOffset, byteLength / 2));
    case "DT_BFLOAT16":
      return bfloat16ToFloat32(new Uint16Array(buffer, byteOffset, byteLength / 2));
    default:
      throw new TensorBundleError(`dtype ${dtype} cannot be decoded as numbers`);
  }
}

/** Typed-array views need their byte offset to be a multiple of the element size. */
function alignedBuffer(bytes: Uint8Array, alignment: number): Uint8Array {
  return bytes.byteOffset % alignment === 0 ? bytes : bytes.slice();
}

/** IEEE 754 binary16 → float32 (exact: every half value is representable). */
function halfToFloat32(halves: Uint16Array): Float32Array {
  const out = new Float32Array(halves.length);
  for (let i = 0; i < halves.length; i++) {
    const h = halves[i];
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >>> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0) out[i] = sign * mantissa * 2 ** -24; // zero and subnormals
    else if (exponent === 31) out[i] = mantissa ? NaN : sign * Infinity;
    else out[i] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  return out;
}

/** bfloat16 is the top half of a float32, so widening is a 16-bit shift. */
function bfloat16ToFloat32(values: Uint16Array): Float32Array {
  const bits = new Uint32Array(values.length);
  for (let i = 0; i < values.length; i++) bits[i] = values[i] << 16;
  return new Float32Array(bits.buffer);
}
