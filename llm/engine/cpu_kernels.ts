/**
 * The matmul family of tfjs `cpu` kernels (BatchMatMul, _FusedMatMul) computed by BLAS sgemm.
 *
 * tfjs semantics kept: `a` [...batchA, M, K] (or [..., K, M] with transposeA) times
 * `b` [...batchB, K, N] (or [..., N, K] with transposeB) gives [...broadcast(batchA, batchB),
 * M, N]. Gradients of matMul are matMuls, so the backward pass takes the same path.
 *
 * One deliberate difference: the stock kernel pairs batches by `index % batchSize`, which is
 * only right when one side has a single batch or the batch shapes are equal up to leading
 * dimensions; for e.g. [2,3,..] × [2,1,..] it silently computes the wrong pairs. Here batches
 * pair by true NumPy broadcasting, which the output shape tfjs computes already assumes.
 */
import * as tf from "@tensorflow/tfjs";
import type { Blas } from "./blas.ts";
import { fewRowsProduct } from "./few_rows_gemm.ts";
import {
  type CpuBackend,
  float32Values,
  type KernelArgs,
  replaceCpuKernel,
  restoreCpuKernel,
  runCpuKernel,
} from "./kernel_registry.ts";

/** The cpu kernels this module replaces. */
export const BLAS_KERNEL_NAMES = ["BatchMatMul", "_FusedMatMul"] as const;

/**
 * Our own kernel: a linear layer x·Wᵀ + b for inference, x of any rank (see `linearInference`).
 */
const LINEAR_INFERENCE = "GroundupLinearInference";

let activeBlas: Blas | undefined;

/** Route the matmul family of the tfjs cpu backend through `blas`. Idempotent. */
export function registerBlasKernels(blas: Blas): string[] {
  activeBlas = blas;
  replaceCpuKernel("BatchMatMul", (args) => batchMatMul(blas, args));
  replaceCpuKernel("_FusedMatMul", (args) => fusedMatMul(blas, args));
  if (!tf.getKernel(LINEAR_INFERENCE, "cpu")) {
    tf.registerKernel({
      kernelName: LINEAR_INFERENCE,
      backendName: "cpu",
      kernelFunc: ((args: KernelArgs) => linearKernel(args)) as unknown as tf.KernelFunc,
    });
  }
  return [...BLAS_KERNEL_NAMES];
}

/** Put tfjs's own matmul kernels back. */
export function unregisterBlasKernels(): void {
  for (const name of BLAS_KERNEL_NAMES) restoreCpuKernel(name);
  if (tf.getKernel(LINEAR_INFERENCE, "cpu")) tf.unregisterKernel(LINEAR_INFERENCE, "cpu");
  activeBlas = undefined;
}

/**
 * x [..., in] · weightᵀ (weight [out, in]) + bias [out] as ONE tfjs op, or undefined where it
 * does not apply (another backend, no BLAS, or a gradient being recorded: then the caller's
 * differentiable path runs). The same sgemm (sgemv for one row) and bias loop as the
 * `_FusedMatMul` path, so the values are identical; what it saves is the reshapes around a
 * fused matMul, about five tfjs ops per linear layer, which add up in token-by-token decoding.
 */
export function linearInference(
  x: tf.Tensor,
  weight: tf.Tensor,
  bias: tf.Tensor | null,
  recordingGradients: boolean,
): tf.Tensor | undefined {
  if (recordingGradients || !activeBlas || tf.getBackend() !== "cpu") return undefined;
  if (x.dtype !== "float32" || x.shape[x.shape.length - 1] !== weight.shape[1]) return undefined;
  const inputs: tf.NamedTensorMap = bias ? { x, weight, bias } : { x, weight };
  return tf.engine().runKernel(LINEAR_INFERENCE, inputs, {}) as tf.Tensor;
}

function linearKernel({ inputs, backend }: KernelArgs): tf.TensorInfo {
  const { x, weight, bias } = inputs;
  const blas = activeBlas;
  const xValues = float32Values(backend, x!);
  const w = float32Values(backend, weight!);
  if (!blas || !xValues || !w) {
    throw new Error(`${LINEAR_INFERENCE}: float32 cpu tensors and BLAS needed`);
  }
  const [outFeatures, inFeatures] = weight!.shape;
  const rows = xValues.length / inFeatures;
  const out = new Float32Array(rows * outFeatures);
  // A few rows (batched decoding): split over two threads, each on one BLAS thread.
  const split = out.length > 0 && inFeatures > 0 &&
    fewRowsProduct(xValues, w, out, rows, outFeatures, inFeatures);
  if (!split && out.length > 0 && inFeatures > 0) {
    blas.sgemm(
      false,
      true,
      rows,
      outFeatures,
      inFeatures,
      1,
      xValues,
      inFeatures,
      w,
      inFeatures,
      0,
      out,
      outFeatures,
    );
  }
  if (bias) addRowVectorInPlace(out, float32Values(backend, bias)!);
  return backend.makeTensorInfo([...x!.shape.slice(0, -1), outFeatures], "float32", out);
}

/** The BLAS library the cpu matmul kernels use now, if any. */
export function blasInUse(): Blas | undefined {
  return activeBlas;
}

/** How one (batched) product maps onto sgemm calls. */
export interface MatMulPlan {
  /** Output shape: broadcast batch dims, then M, N. */
  outShape: number[];
  m: number;
  n: number;
  k: number;
  /** Number of output matrices. */
  batch: number;
  /** For output matrix i, which matrix of a and of b it multiplies (after broadcasting). */
  aBatchOf: Int32Array;
  bBatchOf: Int32Array;
}

/**
 * Shapes → plan, or undefined where the shapes are invalid (rank < 2, inner sizes differ,
 * batch dims not broadcastable): the stock kernel then runs and raises tfjs's own error.
 */
export function planMatMul(
  aShape: readonly number[],
  bShape: readonly number[],
  transposeA: boolean,
  transposeB: boolean,
): MatMulPlan | undefined {
  const aRank = aShape.length;
  const bRank = bShape.length;
  if (aRank < 2 || bRank < 2) return undefined;
  const [aRows, aCols] = [aShape[aRank - 2], aShape[aRank - 1]];
  const [bRows, bCols] = [bShape[bRank - 2], bShape[bRank - 1]];
  const m = transposeA ? aCols : aRows;
  const k = transposeA ? aRows : aCols;
  const kB = transposeB ? bCols : bRows;
  const n = transposeB ? bRows : bCols;
  if (k !== kB) return undefined;

  // Broadcast the batch dims right-aligned, NumPy style.
  const aBatchDims = aShape.slice(0, -2);
  const bBatchDims = bShape.slice(0, -2);
  const rank = Math.max(aBatchDims.length, bBatchDims.length);
  const aDims = [...new Array(rank - aBatchDims.length).fill(1), ...aBatchDims];
  const bDims = [...new Array(rank - bBatchDims.length).fill(1), ...bBatchDims];
  const outDims: number[] = [];
  for (let d = 0; d < rank; d++) {
    if (aDims[d] !== bDims[d] && aDims[d] !== 1 && bDims[d] !== 1) return undefined;
    outDims.push(aDims[d] === 1 ? bDims[d] : aDims[d]);
  }
  const batch = outDims.reduce((p, d) => p * d, 1);
  const aBatchOf = new Int32Array(batch);
  const bBatchOf = new Int32Array(batch);
  // Walk the output batch index as a mixed-radix counter; a dim of size 1 does not advance.
  const index = new Array(rank).fill(0);
  for (let i = 0; i < batch; i++) {
    let aFlat = 0;
    let bFlat = 0;
    for (let d = 0; d < rank; d++) {
      aFlat = aFlat * aDims[d] + (aDims[d] === 1 ? 0 : index[d]);
      bFlat = bFlat * bDims[d] + (bDims[d] === 1 ? 0 : index[d]);
    }
    aBatchOf[i] = aFlat;
    bBatchOf[i] = bFlat;
    for (let d = rank - 1; d >= 0; d--) {
      if (++index[d] < outDims[d]) break;
      index[d] = 0;
    }
  }
  return { outShape: [...outDims, m, n], m, n, k, batch, aBatchOf, bBatchOf };
}

/**
 * Products of at most this many multiply-adds (m·n·k) run on one BLAS thread. Attention's
 * per-head products (256×64×256 = 2^22 for the workshop's 124M) are too small for OpenBLAS to
 * gain from splitting them: measured on 2 cores under load, 576 of them took 2.7–2.8 s on 2
 * threads and 0.25–0.29 s on 1 (bench/RESULTS.md).
 */
const SINGLE_THREAD_MAX_MACS = 2 ** 22;

/** C = op(A) · op(B) per the plan, into a fresh Float32Array. */
function blasMatMul(
  blas: Blas,
  plan: MatMulPlan,
  a: Float32Array,
  b: Float32Array,
  transposeA: boolean,
  transposeB: boolean,
): Float32Array {
  const { m, n, k, batch, aBatchOf, bBatchOf } = plan;
  const out = new Float32Array(batch * m * n);
  // Empty products: nothing to call (BLAS also rejects leading dimensions of 0).
  if (out.length === 0 || k === 0) return out;
  const lda = transposeA ? m : k;
  const ldb = transposeB ? k : n;
  const aSize = m * k;
  const bSize = k * n;
  const cSize = m * n;

  // x[batch, M, K] · W[K, N] (a Linear layer on a 3-D input): the batches of a are just more
  // rows, so one large sgemm replaces `batch` small ones.
  const bIsShared = bBatchOf.every((j) => j === 0);
  const aIsIdentity = aBatchOf.every((j, i) => j === i);
  if (!transposeA && bIsShared && aIsIdentity && batch > 1) {
    blas.sgemm(false, transposeB, batch * m, n, k, 1, a, k, b, ldb, 0, out, n);
    return out;
  }
  const threads = m * n * k <= SINGLE_THREAD_MAX_MACS ? blas.threads() : undefined;
  if (threads !== undefined && threads > 1) blas.setThreads(1);
  try {
    for (let i = 0; i < batch; i++) {
      const aView = a.subarray(aBatchOf[i] * aSize, (aBatchOf[i] + 1) * aSize);
      const bView = b.subarray(bBatchOf[i] * bSize, (bBatchOf[i] + 1) * bSize);
      const cView = out.subarray(i * cSize, (i + 1) * cSize);
      blas.sgemm(transposeA, transposeB, m, n, k, 1, aView, lda, bView, ldb, 0, cView, n);
    }
  } finally {
    if (threads !== undefined && threads > 1) blas.setThreads(threads);
  }
  return out;
}

/** Both operands as float32 buffers of the right size, or undefined (→ stock kernel). */
function operands(
  backend: CpuBackend,
  a: tf.TensorInfo | undefined,
  b: tf.TensorInfo | undefined,
): [Float32Array, Float32Array] | undefined {
  if (!a || !b) return undefined;
  const aValues = float32Values(backend, a);
  const bValues = float32Values(backend, b);
  if (!aValues || !bValues) return undefined;
  if (aValues.length < sizeOf(a.shape) || bValues.length < sizeOf(b.shape)) return undefined;
  return [aValues, bValues];
}

function batchMatMul(blas: Blas, { inputs, attrs, backend }: KernelArgs) {
  const { a, b } = inputs;
  const transposeA = !!attrs?.transposeA;
  const transposeB = !!attrs?.transposeB;
  const values = operands(backend, a, b);
  if (!values || !a || !b) return undefined;
  const plan = planMatMul(a.shape, b.shape, transposeA, transposeB);
  if (!plan) return undefined;
  const out = blasMatMul(blas, plan, values[0], values[1], transposeA, transposeB);
  return backend.makeTensorInfo(plan.outShape, "float32", out);
}

/** tfjs fused activations → the cpu kernel that computes each, exactly as stock does. */
const ACTIVATION_KERNELS: Record<string, string> = {
  relu: "Relu",
  relu6: "Relu6",
  elu: "Elu",
  sigmoid: "Sigmoid",
  prelu: "Prelu",
  leakyrelu: "LeakyRelu",
};

function fusedMatMul(blas: Blas, args: KernelArgs) {
  const { inputs, attrs, backend } = args;
  const { bias, preluActivationWeights } = inputs;
  const activation = (attrs?.activation as string | undefined) ?? "linear";
  if (activation !== "linear" && !(activation in ACTIVATION_KERNELS)) return undefined;

  const product = batchMatMul(blas, args);
  if (!product) return undefined;
  let current: tf.TensorInfo = product;

  if (bias) {
    const biasValues = float32Values(backend, bias);
    if (biasValues && isTrailingVector(bias.shape, current.shape)) {
      // The product is ours alone (fresh buffer): add the bias in place, row by row.
      addRowVectorInPlace(float32Values(backend, current)!, biasValues);
    } else {
      const sum = runCpuKernel("Add", backend, { a: current, b: bias });
      backend.disposeIntermediateTensorInfo(current);
      current = sum;
    }
  }
  if (activation !== "linear") {
    const kernelName = ACTIVATION_KERNELS[activation];
    const activated = activation === "prelu"
      ? runCpuKernel(kernelName, backend, { x: current, alpha: preluActivationWeights })
      : activation === "leakyrelu"
      ? runCpuKernel(kernelName, backend, { x: current }, { alpha: attrs?.leakyreluAlpha! })
      : runCpuKernel(kernelName, backend, { x: current });
    backend.disposeIntermediateTensorInfo(current);
    current = activated;
  }
  return current;
}

/** True when `shape` broadcasts against `target` as one value per column: [N], [1, N], .... */
function isTrailingVector(shape: readonly number[], target: readonly number[]): boolean {
  if (shape.length === 0 || shape.length > target.length) return false;
  if (shape[shape.length - 1] !== target[target.length - 1]) return false;
  return shape.slice(0, -1).every((d) => d === 1);
}

function addRowVectorInPlace(matrix: Float32Array, row: Float32Array): void {
  const n = row.length;
  for (let start = 0; start < matrix.length; start += n) {
    for (let j = 0; j < n; j++) matrix[start + j] += row[j];
  }
}

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((p, d) => p * d, 1);
}
