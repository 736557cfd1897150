/**
 * Tight-loop replacements for the stock tfjs `cpu` kernels a GPT training step spends its time
 * in once matmuls run on BLAS (see bench/block_profile.ts and bench/RESULTS.md).
 *
 * Why they are slow in stock tfjs: a binary op whose operands differ in shape (x - max[..., 1],
 * the mask over [B, H, T, T], the gradients of every broadcast) converts each flat index to a
 * coordinate array and back; transpose and tile do the same; unary ops call a closure per
 * element; Softmax chains five whole-tensor kernels. The kernels here walk the same data with
 * strides and plain loops.
 *
 * Exactness: each kernel does the arithmetic the stock kernel does, in the same order and
 * precision (double for the operation, rounded to float32 where stock stores float32), so
 * results match stock bit for bit; the tests allow 1e-5 relative anyway. Anything outside what
 * is handled here (other dtypes, odd attributes, empty reductions) returns `undefined` and the
 * stock kernel runs.
 */
import type * as tf from "@tensorflow/tfjs";
import {
  type CpuBackend,
  type FastKernel,
  float32Values,
  type KernelArgs,
  replaceCpuKernel,
  restoreCpuKernel,
} from "./kernel_registry.ts";

// ---------------------------------------------------------------------------------------------
// Shapes and strides

function sizeOf(shape: readonly number[]): number {
  let size = 1;
  for (const d of shape) size *= d;
  return size;
}

function stridesOf(shape: readonly number[]): number[] {
  const strides = new Array(shape.length).fill(1);
  for (let d = shape.length - 2; d >= 0; d--) strides[d] = strides[d + 1] * shape[d + 1];
  return strides;
}

/** NumPy broadcast of two shapes, or undefined where they are incompatible. */
export function broadcastShape(a: readonly number[], b: readonly number[]): number[] | undefined {
  const rank = Math.max(a.length, b.length);
  const out = new Array(rank);
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return undefined;
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/**
 * Iteration plan for an operand broadcast to `outShape`: dims merged wherever neither operand
 * changes its broadcast status, so the inner loop runs as long as possible.
 */
interface BinaryLayout {
  /** Output dims after merging, outermost first. */
  dims: number[];
  /** Element strides of a and b per merged dim (0 where broadcast). */
  aStrides: number[];
  bStrides: number[];
}

function binaryLayout(
  aShape: readonly number[],
  bShape: readonly number[],
  outShape: readonly number[],
): BinaryLayout {
  const rank = outShape.length;
  const pad = (s: readonly number[]) => [...new Array(rank - s.length).fill(1), ...s];
  const aPadded = pad(aShape);
  const bPadded = pad(bShape);
  // Walk from the innermost dim outwards, merging dims with the same (a full?, b full?) status.
  const dims: number[] = [];
  const aFull: boolean[] = [];
  const bFull: boolean[] = [];
  for (let d = rank - 1; d >= 0; d--) {
    const size = outShape[d];
    if (size === 1) continue; // contributes nothing to the walk
    const af = aPadded[d] !== 1;
    const bf = bPadded[d] !== 1;
    const last = dims.length - 1;
    if (last >= 0 && aFull[last] === af && bFull[last] === bf) {
      dims[last] *= size;
    } else {
      dims.push(size);
      aFull.push(af);
      bFull.push(bf);
    }
  }
  dims.reverse();
  aFull.reverse();
  bFull.reverse();
  // Strides over the merged dims: a full dim advances by the product of inner full dims.
  const aStrides = new Array(dims.length);
  const bStrides = new Array(dims.length);
  let aStep = 1;
  let bStep = 1;
  for (let d = dims.length - 1; d >= 0; d--) {
    aStrides[d] = aFull[d] ? aStep : 0;
    bStrides[d] = bFull[d] ? bStep : 0;
    if (aFull[d]) aStep *= dims[d];
    if (bFull[d]) bStep *= dims[d];
  }
  return { dims, aStrides, bStrides };
}

// ---------------------------------------------------------------------------------------------
// Binary elementwise ops (float32 ⊕ float32 → float32), any broadcasting

/** The binary ops handled, as small integers so the row loop can switch on them cheaply. */
export const BinaryOp = {
  Add: 0,
  Sub: 1,
  Mul: 2,
  Div: 3,
  Max: 4,
  Min: 5,
  SquaredDifference: 6,
  Pow: 7,
} as const;
export type BinaryOp = (typeof BinaryOp)[keyof typeof BinaryOp];

/** out[o + i] = a[ai + i·as] ⊕ b[bi + i·bs] for i < n; one loop per op so each stays simple. */
function binaryRow(
  op: BinaryOp,
  out: Float32Array,
  o: number,
  a: Float32Array,
  ai: number,
  as: number,
  b: Float32Array,
  bi: number,
  bs: number,
  n: number,
): void {
  switch (op) {
    case BinaryOp.Add:
      for (let i = 0; i < n; i++) out[o + i] = a[ai + i * as] + b[bi + i * bs];
      return;
    case BinaryOp.Sub:
      for (let i = 0; i < n; i++) out[o + i] = a[ai + i * as] - b[bi + i * bs];
      return;
    case BinaryOp.Mul:
      for (let i = 0; i < n; i++) out[o + i] = a[ai + i * as] * b[bi + i * bs];
      return;
    case BinaryOp.Div:
      for (let i = 0; i < n; i++) out[o + i] = a[ai + i * as] / b[bi + i * bs];
      return;
    case BinaryOp.Max:
      for (let i = 0; i < n; i++) out[o + i] = Math.max(a[ai + i * as], b[bi + i * bs]);
      return;
    case BinaryOp.Min:
      for (let i = 0; i < n; i++) out[o + i] = Math.min(a[ai + i * as], b[bi + i * bs]);
      return;
    case BinaryOp.SquaredDifference:
      for (let i = 0; i < n; i++) {
        const diff = a[ai + i * as] - b[bi + i * bs];
        out[o + i] = diff * diff;
      }
      return;
    case BinaryOp.Pow:
      for (let i = 0; i < n; i++) out[o + i] = Math.pow(a[ai + i * as], b[bi + i * bs]);
      return;
  }
}

/** a ⊕ b with broadcasting into a fresh Float32Array, or undefined if the shapes mismatch. */
function broadcastBinary(
  op: BinaryOp,
  aShape: readonly number[],
  a: Float32Array,
  bShape: readonly number[],
  b: Float32Array,
): { shape: number[]; values: Float32Array } | undefined {
  const shape = broadcastShape(aShape, bShape);
  if (!shape) return undefined;
  const values = new Float32Array(sizeOf(shape));
  if (values.length === 0) return { shape, values };
  const { dims, aStrides, bStrides } = binaryLayout(aShape, bShape, shape);
  if (dims.length === 0) { // every dim is 1: a single element
    binaryRow(op, values, 0, a, 0, 0, b, 0, 0, 1);
    return { shape, values };
  }
  const inner = dims.length - 1;
  const n = dims[inner];
  const as = aStrides[inner];
  const bs = bStrides[inner];
  const index = new Array(inner).fill(0);
  let ai = 0;
  let bi = 0;
  for (let o = 0; o < values.length; o += n) {
    binaryRow(op, values, o, a, ai, as, b, bi, bs, n);
    // Advance the outer odometer, keeping a's and b's offsets in step.
    for (let d = inner - 1; d >= 0; d--) {
      ai += aStrides[d];
      bi += bStrides[d];
      if (++index[d] < dims[d]) break;
      ai -= aStrides[d] * dims[d];
      bi -= bStrides[d] * dims[d];
      index[d] = 0;
    }
  }
  return { shape, values };
}

function binaryKernel(op: BinaryOp): FastKernel {
  return ({ inputs, backend }) => {
    const { a, b } = inputs;
    if (!a || !b) return undefined;
    const aValues = float32Values(backend, a);
    const bValues = float32Values(backend, b);
    if (!aValues || !bValues) return undefined;
    if (op === BinaryOp.Pow && b.shape.length === 0) {
      const power = smallIntegerPower(aValues, bValues[0]);
      if (power) return backend.makeTensorInfo(a.shape, "float32", power);
    }
    const result = broadcastBinary(op, a.shape, aValues, b.shape, bValues);
    if (!result) return undefined; // stock raises tfjs's shape error
    return backend.makeTensorInfo(result.shape, "float32", result.values);
  };
}

/**
 * x² and x³ by multiplication (GELU's x³ and its gradient's x²): Math.pow is several times
 * slower. For float32 x, x·x is exact in double and x·x·x is rounded once, like pow, so the
 * float32 results agree with stock except possibly in a last bit on rare double-rounding ties.
 */
function smallIntegerPower(x: Float32Array, exponent: number): Float32Array | undefined {
  if (exponent !== 2 && exponent !== 3) return undefined;
  const out = new Float32Array(x.length);
  if (exponent === 2) {
    for (let i = 0; i < x.length; i++) out[i] = x[i] * x[i];
  } else {
    for (let i = 0; i < x.length; i++) out[i] = x[i] * x[i] * x[i];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Unary elementwise ops (float32 → float32)

function unaryKernel(fn: (x: Float32Array, out: Float32Array) => void): FastKernel {
  return ({ inputs, backend }) => {
    const x = inputs.x;
    const values = x && float32Values(backend, x);
    if (!x || !values) return undefined;
    const out = new Float32Array(values.length);
    fn(values, out);
    return backend.makeTensorInfo(x.shape, "float32", out);
  };
}

const exp = unaryKernel((x, out) => {
  for (let i = 0; i < x.length; i++) out[i] = Math.exp(x[i]);
});
const log = unaryKernel((x, out) => {
  for (let i = 0; i < x.length; i++) out[i] = Math.log(x[i]);
});
const tanh = unaryKernel((x, out) => {
  for (let i = 0; i < x.length; i++) out[i] = Math.tanh(x[i]);
});
const sqrt = unaryKernel((x, out) => {
  for (let i = 0; i < x.length; i++) out[i] = Math.sqrt(x[i]);
});
const floor = unaryKernel((x, out) => { // dropout masks: floor(keep + uniform)
  for (let i = 0; i < x.length; i++) out[i] = Math.floor(x[i]);
});

/** bool → bool (a causal mask's `equal(0)` / `logicalNot`). */
const logicalNot: FastKernel = ({ inputs, backend }) => {
  const x = inputs.x;
  if (!x || x.dtype !== "bool") return undefined;
  const values = backend.data.get(x.dataId)?.values;
  if (!(values instanceof Uint8Array)) return undefined;
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = values[i] ? 0 : 1;
  return backend.makeTensorInfo(x.shape, "bool", out);
};

// ---------------------------------------------------------------------------------------------
// Softmax over the last axis (the only axis tfjs's cpu Softmax supports)

const fround = Math.fround;

/**
 * Row by row: max, exp(x - max), sum, divide: the stock kernel's five passes over the whole
 * tensor, with each intermediate rounded to float32 exactly where stock stores one.
 */
function softmaxRows(x: Float32Array, rowLength: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let start = 0; start < x.length; start += rowLength) {
    const end = start + rowLength;
    let max = x[start];
    for (let i = start; i < end; i++) {
      const v = x[i];
      if (Number.isNaN(v) || v > max) max = v;
    }
    let sum = 0;
    for (let i = start; i < end; i++) {
      const e = fround(Math.exp(fround(x[i] - max)));
      out[i] = e;
      sum += e;
    }
    const total = fround(sum);
    for (let i = start; i < end; i++) out[i] = out[i] / total;
  }
  return out;
}

const softmax: FastKernel = ({ inputs, attrs, backend }) => {
  const logits = inputs.logits;
  const values = logits && float32Values(backend, logits);
  if (!logits || !values) return undefined;
  const rank = logits.shape.length;
  const dim = attrs?.dim as number | undefined;
  if (rank === 0 || (dim !== -1 && dim !== rank - 1)) return undefined;
  const rowLength = logits.shape[rank - 1];
  if (rowLength === 0) return undefined;
  return backend.makeTensorInfo(logits.shape, "float32", softmaxRows(values, rowLength));
};

// ---------------------------------------------------------------------------------------------
// Transpose and Tile (any numeric dtype: they only move values)

type NumericArray = Float32Array | Int32Array | Uint8Array;

function numericValues(backend: CpuBackend, info: tf.TensorInfo): NumericArray | undefined {
  if (info.dtype === "string" || info.dtype === "complex64") return undefined;
  const values = backend.data.get(info.dataId)?.values;
  return values instanceof Float32Array || values instanceof Int32Array ||
      values instanceof Uint8Array
    ? values
    : undefined;
}

function emptyLike(values: NumericArray, size: number): NumericArray {
  return new (values.constructor as new (size: number) => NumericArray)(size);
}

/** x permuted by `perm` (output dim d = input dim perm[d]), written in output order. */
function transposeValues(
  x: NumericArray,
  shape: readonly number[],
  perm: readonly number[],
): { shape: number[]; values: NumericArray } {
  const rank = shape.length;
  const inStrides = stridesOf(shape);
  const outShape = perm.map((p) => shape[p]);
  const strides = perm.map((p) => inStrides[p]); // input stride of each output dim
  const out = emptyLike(x, x.length);
  if (out.length === 0 || rank === 0) {
    out.set(x.subarray(0, out.length));
    return { shape: outShape, values: out };
  }
  const inner = rank - 1;
  const n = outShape[inner];
  const step = strides[inner];
  const index = new Array(inner).fill(0);
  let from = 0;
  for (let o = 0; o < out.length; o += n) {
    if (step === 1) out.set(x.subarray(from, from + n), o);
    else for (let i = 0; i < n; i++) out[o + i] = x[from + i * step];
    for (let d = inner - 1; d >= 0; d--) {
      from += strides[d];
      if (++index[d] < outShape[d]) break;
      from -= strides[d] * outShape[d];
      index[d] = 0;
    }
  }
  return { shape: outShape, values: out };
}

const transpose: FastKernel = ({ inputs, attrs, backend }) => {
  const x = inputs.x;
  const perm = attrs?.perm as number[] | undefined;
  const values = x && numericValues(backend, x);
  if (!x || !values || !perm || perm.length !== x.shape.length) return undefined;
  if (values.length !== sizeOf(x.shape)) return undefined;
  const result = transposeValues(values, x.shape, perm);
  return backend.makeTensorInfo(result.shape, x.dtype, result.values);
};

/** x repeated reps[d] times along each dim d. */
function tileValues(
  x: NumericArray,
  shape: readonly number[],
  reps: readonly number[],
): { shape: number[]; values: NumericArray } {
  const rank = shape.length;
  const outShape = shape.map((d, i) => d * reps[i]);
  const out = emptyLike(x, sizeOf(outShape));
  if (out.length === 0 || rank === 0) {
    out.set(x.subarray(0, out.length));
    return { shape: outShape, values: out };
  }
  const inStrides = stridesOf(shape);
  const inner = rank - 1;
  const rowLength = shape[inner];
  const n = outShape[inner];
  const index = new Array(inner).fill(0); // output coordinates of the outer dims
  for (let o = 0; o < out.length; o += n) {
    let from = 0;
    for (let d = 0; d < inner; d++) from += (index[d] % shape[d]) * inStrides[d];
    const row = x.subarray(from, from + rowLength);
    for (let r = 0; r < n; r += rowLength) out.set(row, o + r);
    for (let d = inner - 1; d >= 0; d--) {
      if (++index[d] < outShape[d]) break;
      index[d] = 0;
    }
  }
  return { shape: outShape, values: out };
}

const tile: FastKernel = ({ inputs, attrs, backend }) => {
  const x = inputs.x;
  const reps = attrs?.reps as number[] | undefined;
  const values = x && numericValues(backend, x);
  if (!x || !values || !reps || reps.length !== x.shape.length) return undefined;
  if (values.length !== sizeOf(x.shape)) return undefined;
  const result = tileValues(values, x.shape, reps);
  return backend.makeTensorInfo(result.shape, x.dtype, result.values);
};

// ---------------------------------------------------------------------------------------------
// Reductions: Sum, Mean, Max over any axes (float32)

export const Reduce = { Sum: 0, Mean: 1, Max: 2 } as const;
export type Reduce = (typeof Reduce)[keyof typeof Reduce];

/** Normalised, sorted, distinct axes, or undefined where tfjs would reject them. */
function parseAxes(axis: unknown, rank: number): number[] | undefined {
  const list = axis === undefined || axis === null
    ? [...Array(rank).keys()]
    : Array.isArray(axis)
    ? axis
    : [axis];
  const axes = list.map((a) => (typeof a === "number" && a < 0 ? a + rank : a));
  if (axes.some((a) => typeof a !== "number" || !Number.isInteger(a) || a < 0 || a >= rank)) {
    return undefined;
  }
  return [...new Set(axes as number[])].sort((p, q) => p - q);
}

/**
 * Reduce x over `axes`. Each output is accumulated over its reduced elements in row-major
 * order of the reduced dims, in double precision: the order and precision of stock tfjs (which
 * transposes the reduced dims innermost, then loops), hence the same float32 results.
 */
function reduceValues(
  kind: Reduce,
  x: Float32Array,
  shape: readonly number[],
  axes: readonly number[],
): Float32Array {
  const rank = shape.length;
  const kept = [...Array(rank).keys()].filter((d) => !axes.includes(d));
  const outSize = sizeOf(kept.map((d) => shape[d]));
  const reduceSize = sizeOf(axes.map((d) => shape[d]));
  const out = new Float32Array(outSize);
  // Mean in stock tfjs divides every element by n (in float32) before summing.
  const scale = kind === Reduce.Mean ? reduceSize : 1;

  const reducedInnermost = axes.every((d, i) => d === rank - axes.length + i);
  const reducedOutermost = axes.every((d, i) => d === i);
  if (reducedInnermost) {
    for (let o = 0; o < outSize; o++) {
      out[o] = reduceRow(kind, x, o * reduceSize, reduceSize, scale);
    }
  } else if (reducedOutermost && kind !== Reduce.Max) {
    // Columns: acc[c] gathers x[r][c] for r = 0, 1, ... (same order as stock), reading rows.
    const acc = new Float64Array(outSize);
    for (let r = 0; r < reduceSize; r++) {
      const row = r * outSize;
      if (scale === 1) { for (let c = 0; c < outSize; c++) acc[c] += x[row + c]; }
      else for (let c = 0; c < outSize; c++) acc[c] += fround(x[row + c] / scale);
    }
    out.set(acc);
  } else {
    const moved = transposeValues(x, shape, [...kept, ...axes]).values as Float32Array;
    for (let o = 0; o < outSize; o++) {
      out[o] = reduceRow(kind, moved, o * reduceSize, reduceSize, scale);
    }
  }
  return out;
}

function reduceRow(
  kind: Reduce,
  x: Float32Array,
  start: number,
  n: number,
  scale: number,
): number {
  const end = start + n;
  if (kind === Reduce.Max) {
    let max = x[start];
    for (let i = start; i < end; i++) {
      const v = x[i];
      if (Number.isNaN(v) || v > max) max = v;
    }
    return max;
  }
  let sum = 0;
  if (scale === 1) { for (let i = start; i < end; i++) sum += x[i]; }
  else for (let i = start; i < end; i++) sum += fround(x[i] / scale);
  return sum;
}

function reduceKernel(kind: Reduce, axisAttr: string): FastKernel {
  return ({ inputs, attrs, backend }: KernelArgs) => {
    const x = inputs.x;
    const values = x && float32Values(backend, x);
    if (!x || !values || values.length !== sizeOf(x.shape)) return undefined;
    const rank = x.shape.length;
    const axes = parseAxes(attrs?.[axisAttr], rank);
    if (!axes || axes.length === 0 || values.length === 0) return undefined;
    const keepDims = !!attrs?.keepDims;
    const shape = keepDims
      ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d))
      : x.shape.filter((_, i) => !axes.includes(i));
    return backend.makeTensorInfo(shape, "float32", reduceValues(kind, values, x.shape, axes));
  };
}

// ---------------------------------------------------------------------------------------------
// Registration

const FAST_KERNELS: Record<string, FastKernel> = {
  Add: binaryKernel(BinaryOp.Add),
  Sub: binaryKernel(BinaryOp.Sub),
  Multiply: binaryKernel(BinaryOp.Mul),
  RealDiv: binaryKernel(BinaryOp.Div),
  Maximum: binaryKernel(BinaryOp.Max),
  Minimum: binaryKernel(BinaryOp.Min),
  SquaredDifference: binaryKernel(BinaryOp.SquaredDifference),
  Pow: binaryKernel(BinaryOp.Pow),
  Exp: exp,
  Log: log,
  Tanh: tanh,
  Sqrt: sqrt,
  Floor: floor,
  LogicalNot: logicalNot,
  Softmax: softmax,
  Transpose: transpose,
  Tile: tile,
  Sum: reduceKernel(Reduce.Sum, "axis"),
  Mean: reduceKernel(Reduce.Mean, "axis"),
  Max: reduceKernel(Reduce.Max, "reductionIndices"),
};

/** The stock cpu kernels this module replaces. */
export const FAST_KERNEL_NAMES: readonly string[] = Object.keys(FAST_KERNELS);

/** Register the tight-loop kernels on the tfjs cpu backend. Idempotent. */
export function registerFastKernels(): string[] {
  for (const [name, kernel] of Object.entries(FAST_KERNELS)) replaceCpuKernel(name, kernel);
  return [...FAST_KERNEL_NAMES];
}

/** Put the stock kernels back. */
export function unregisterFastKernels(): void {
  for (const name of FAST_KERNEL_NAMES) restoreCpuKernel(name);
}
