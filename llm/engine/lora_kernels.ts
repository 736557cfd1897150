/**
 * A LoRA linear layer as one cpu kernel forward and one backward, on BLAS sgemm:
 *
 *   y = x Wᵀ + b + (s · x A) B        W [out, in] and b [out] frozen, A [in, r], B [r, out]
 *
 * Why: in plain tfjs ops the adapter's update `(s·x A) B` is a second [rows, out] tensor, added
 * to the frozen product by a separate Add, and the backward adds two [rows, in] gradients. For
 * the output head (out = 50,257) that is pure memory traffic over [rows, vocab] tensors, fresh
 * allocations included: it cost more than the frozen product itself (bench/RESULTS.md). Here
 * the update is accumulated into the frozen product's own output buffer (sgemm with beta = 1),
 * and in the backward `dx = dy W + (s · dy Bᵀ) Aᵀ` likewise; `dy Bᵀ` is needed for A's gradient
 * anyway. The frozen weight gets no gradient (it is not an input of the op), as in lora.ts.
 *
 * Results equal the plain-tfjs form up to float32 rounding (the sums are done in another order).
 * Registered only with a BLAS library (`registerLoraKernels`); lora.ts runs its plain-tfjs form
 * wherever `loraKernelsActive()` is false (other backends, no BLAS, native kernels off).
 */
import * as tf from "@tensorflow/tfjs";
import type { Blas } from "./blas.ts";
import { recordingGradients } from "./fused_ops.ts";
import { type CpuBackend, float32Values, type KernelArgs } from "./kernel_registry.ts";

const BACKEND = "cpu";
const FORWARD = "GroundupLoraLinear";
const BACKWARD = "GroundupLoraLinearGrad";

/** The kernel names this module registers on the cpu backend. */
export const LORA_KERNEL_NAMES: readonly string[] = [FORWARD, BACKWARD];

/** The library the kernels compute with (set by `registerLoraKernels`). */
let activeBlas: Blas | undefined;

function values(backend: CpuBackend, info: tf.TensorInfo | undefined, what: string): Float32Array {
  const v = info ? float32Values(backend, info) : undefined;
  if (!v) {
    throw new Error(`LoRA linear kernel: ${what} must be a float32 tensor on the cpu backend`);
  }
  return v;
}

/**
 * C = alpha · op(A) op(B) + beta · C for contiguous row-major matrices (op(A) M×K, op(B) K×N):
 * the leading dimensions follow from the shapes.
 */
function gemm(
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  b: Float32Array,
  beta: number,
  c: Float32Array,
): void {
  if (!activeBlas) throw new Error("LoRA linear kernel: no BLAS library registered");
  activeBlas.sgemm(
    transA,
    transB,
    m,
    n,
    k,
    alpha,
    a,
    transA ? m : k,
    b,
    transB ? k : n,
    beta,
    c,
    n,
  );
}

/** Sizes of a call: rows of x, in, out, rank. */
function dims(inputs: tf.NamedTensorInfoMap) {
  const [rows, inFeatures] = inputs.x!.shape;
  const [rank, outFeatures] = inputs.B!.shape;
  return { rows, inFeatures, outFeatures, rank };
}

/**
 * Forward: [y [rows, out], down = s·u A [rows, r]] (down is saved for B's gradient), where u is
 * the adapter's own input when given (x after adapter dropout), else x.
 */
function forward({ inputs, attrs, backend }: KernelArgs): tf.TensorInfo[] {
  const { rows, inFeatures, outFeatures, rank } = dims(inputs);
  const scale = attrs!.scale as number;
  const x = values(backend, inputs.x, "x");
  const u = inputs.u ? values(backend, inputs.u, "adapter input") : x;
  const weight = values(backend, inputs.weight, "weight");
  const down = new Float32Array(rows * rank);
  const y = new Float32Array(rows * outFeatures);
  if (rows > 0) {
    gemm(false, false, rows, rank, inFeatures, scale, u, values(backend, inputs.A, "A"), 0, down);
    // y = x Wᵀ (+ b, added after the product as tfjs's fused matMul does), then y += down B.
    gemm(false, true, rows, outFeatures, inFeatures, 1, x, weight, 0, y);
    if (inputs.bias) {
      const bias = values(backend, inputs.bias, "bias");
      for (let start = 0; start < y.length; start += outFeatures) {
        for (let j = 0; j < outFeatures; j++) y[start + j] += bias[j];
      }
    }
    gemm(false, false, rows, outFeatures, rank, 1, down, values(backend, inputs.B, "B"), 1, y);
  }
  return [
    backend.makeTensorInfo([rows, outFeatures], "float32", y),
    backend.makeTensorInfo([rows, rank], "float32", down),
  ];
}

/**
 * Backward: [dx [rows, in], dA [in, r], dB [r, out]], or with a separate adapter input u
 * [dx, du [rows, in], dA, dB] (dx then holds only the frozen path's dy W).
 */
function backward({ inputs, attrs, backend }: KernelArgs): tf.TensorInfo[] {
  const { rows, inFeatures, outFeatures, rank } = dims(inputs);
  const scale = attrs!.scale as number;
  const dy = values(backend, inputs.dy, "dy");
  const x = values(backend, inputs.x, "x");
  const u = inputs.u ? values(backend, inputs.u, "adapter input") : undefined;
  const a = values(backend, inputs.A, "A");
  const dx = new Float32Array(rows * inFeatures);
  const du = u ? new Float32Array(rows * inFeatures) : undefined;
  const dA = new Float32Array(inFeatures * rank);
  const dB = new Float32Array(rank * outFeatures);
  if (rows > 0) {
    // g = s · dy Bᵀ, the gradient at u A; B's gradient downᵀ dy. Both read dy [rows, out].
    const g = new Float32Array(rows * rank);
    gemm(true, false, rank, outFeatures, rows, 1, values(backend, inputs.down, "down"), dy, 0, dB);
    gemm(false, true, rows, rank, outFeatures, scale, dy, values(backend, inputs.B, "B"), 0, g);
    gemm(true, false, inFeatures, rank, rows, 1, u ?? x, g, 0, dA);
    // dx = dy W + g Aᵀ (or g Aᵀ into du when the adapter has its own input).
    gemm(
      false,
      false,
      rows,
      inFeatures,
      outFeatures,
      1,
      dy,
      values(backend, inputs.weight, "weight"),
      0,
      dx,
    );
    gemm(false, true, rows, inFeatures, rank, 1, g, a, du ? 0 : 1, du ?? dx);
  }
  const grads = [
    backend.makeTensorInfo([rows, inFeatures], "float32", dx),
    backend.makeTensorInfo([inFeatures, rank], "float32", dA),
    backend.makeTensorInfo([rank, outFeatures], "float32", dB),
  ];
  if (du) grads.splice(1, 0, backend.makeTensorInfo([rows, inFeatures], "float32", du));
  return grads;
}

/** Register the LoRA linear kernels on the tfjs cpu backend, computing with `blasLibrary`. */
export function registerLoraKernels(blasLibrary: Blas): string[] {
  activeBlas = blasLibrary;
  const kernels: Record<string, (args: KernelArgs) => tf.TensorInfo[]> = {
    [FORWARD]: forward,
    [BACKWARD]: backward,
  };
  for (const [kernelName, kernel] of Object.entries(kernels)) {
    if (tf.getKernel(kernelName, BACKEND)) continue;
    tf.registerKernel({
      kernelName,
      backendName: BACKEND,
      kernelFunc: kernel as unknown as tf.KernelFunc,
    });
  }
  return [...LORA_KERNEL_NAMES];
}

/** Remove them (lora.ts then runs its plain-tfjs form on cpu too). */
export function unregisterLoraKernels(): void {
  for (const kernelName of LORA_KERNEL_NAMES) {
    if (tf.getKernel(kernelName, BACKEND)) tf.unregisterKernel(kernelName, BACKEND);
  }
  activeBlas = undefined;
}

/** True when the current backend is cpu and the LoRA linear kernels are registered. */
export function loraKernelsActive(): boolean {
  return tf.getBackend() === BACKEND && tf.getKernel(FORWARD, BACKEND) !== undefined;
}

function run(kernelName: string, inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap) {
  return tf.engine().runKernel(kernelName, inputs, attrs) as tf.Tensor[];
}

/**
 * `x Wᵀ + b + (s · u A) B` for x [rows, in], a frozen W [out, in] and b [out] (or null), and the
 * adapter's A [in, r] and B [r, out]; u is `adapterInput` (x after adapter dropout) or x itself.
 * Gradients for x, u, A and B only. Needs `loraKernelsActive()`.
 */
export function loraLinear(
  x: tf.Tensor2D,
  weight: tf.Tensor2D,
  bias: tf.Tensor | null,
  A: tf.Tensor2D,
  B: tf.Tensor2D,
  scale: number,
  adapterInput?: tf.Tensor2D,
): tf.Tensor2D {
  const frozen: tf.NamedTensorMap = bias ? { weight, bias } : { weight };
  if (!recordingGradients()) {
    // Evaluation or generation: no gradient to take, so `down` is not kept.
    const inputs: tf.NamedTensorMap = { x, A, B, ...frozen };
    if (adapterInput) inputs.u = adapterInput;
    const [y, down] = run(FORWARD, inputs, { scale });
    down.dispose();
    return y as tf.Tensor2D;
  }
  if (adapterInput) {
    const op = tf.customGrad(
      ((x: tf.Tensor2D, u: tf.Tensor2D, A: tf.Tensor2D, B: tf.Tensor2D, save: tf.GradSaveFunc) => {
        const [y, down] = run(FORWARD, { x, u, A, B, ...frozen }, { scale });
        save([x, u, A, B, down]);
        return {
          value: y,
          gradFunc: (dy: tf.Tensor2D, [sx, su, sA, sB, sDown]: tf.Tensor[]) =>
            run(BACKWARD, { dy, x: sx, u: su, A: sA, B: sB, down: sDown, weight }, { scale }),
        };
      }) as unknown as Parameters<typeof tf.customGrad>[0],
    ) as (x: tf.Tensor2D, u: tf.Tensor2D, A: tf.Tensor2D, B: tf.Tensor2D) => tf.Tensor2D;
    return op(x, adapterInput, A, B);
  }
  const op = tf.customGrad(
    ((x: tf.Tensor2D, A: tf.Tensor2D, B: tf.Tensor2D, save: tf.GradSaveFunc) => {
      const [y, down] = run(FORWARD, { x, A, B, ...frozen }, { scale });
      save([x, A, B, down]);
      return {
        value: y,
        gradFunc: (dy: tf.Tensor2D, [sx, sA, sB, sDown]: tf.Tensor[]) =>
          run(BACKWARD, { dy, x: sx, A: sA, B: sB, down: sDown, weight }, { scale }),
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  ) as (x: tf.Tensor2D, A: tf.Tensor2D, B: tf.Tensor2D) => tf.Tensor2D;
  return op(x, A, B);
}
