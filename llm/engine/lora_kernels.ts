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
import { type CpuBackend, float32Values, type KernelArgs } from "./kernel_registry.ts";

const BACKEND = "cpu";
const FORWARD = "GroundupLoraLinear";
const BACKWARD = "GroundupLoraLinearGrad";

/** The kernel names this module registers on the cpu backend. */
export const LORA_KERNEL_NAMES: readonly string[] = [FORWARD, BACKWARD];

let activeBlas: Blas | undefined;

function values(backend: CpuBackend, info: tf.TensorInfo | undefined, what: string): Float32Array {
  const v = info ? float32Values(backend, info) : undefined;
  if (!v) {
    throw new Error(`LoRA linear kernel: ${what} must be a float32 tensor on the cpu backend`);
  }
  return v;
}

function blas(): Blas {
  if (!activeBlas) throw new Error("LoRA linear kernel: no BLAS library registered");
  return activeBlas;
}

/** Sizes of a call: rows of x, in, out, rank. */
function dims(inputs: tf.NamedTensorInfoMap) {
  const [rows, inFeatures] = inputs.x!.shape;
  const [rank, outFeatures] = inputs.B!.shape;
  return { rows, inFeatures, outFeatures, rank };
}

/** Forward: [y [rows, out], down = s·x A [rows, r]] (down is saved for B's gradient). */
function forward({ inputs, attrs, backend }: KernelArgs): tf.TensorInfo[] {
  const { rows, inFeatures, outFeatures, rank } = dims(inputs);
  const scale = attrs!.scale as number;
  const x = values(backend, inputs.x, "x");
  const weight = values(backend, inputs.weight, "weight");
  const a = values(backend, inputs.A, "A");
  const b = values(backend, inputs.B, "B");
  const down = new Float32Array(rows * rank);
  const y = new Float32Array(rows * outFeatures);
  if (rows > 0) {
    const gemm = blas();
    // down = s · x A
    gemm.sgemm(false, false, rows, rank, inFeatures, scale, x, inFeatures, a, rank, 0, down, rank);
    // y = x Wᵀ (+ b, added after the product as tfjs's fused matMul does), then y += down B.
    gemm.sgemm(
      false,
      true,
      rows,
      outFeatures,
      inFeatures,
      1,
      x,
      inFeatures,
      weight,
      inFeatures,
      0,
      y,
      outFeatures,
    );
    if (inputs.bias) {
      const bias = values(backend, inputs.bias, "bias");
      for (let start = 0; start < y.length; start += outFeatures) {
        for (let j = 0; j < outFeatures; j++) y[start + j] += bias[j];
      }
    }
    gemm.sgemm(
      false,
      false,
      rows,
      outFeatures,
      rank,
      1,
      down,
      rank,
      b,
      outFeatures,
      1,
      y,
      outFeatures,
    );
  }
  return [
    backend.makeTensorInfo([rows, outFeatures], "float32", y),
    backend.makeTensorInfo([rows, rank], "float32", down),
  ];
}

/** Backward: [dx [rows, in], dA [in, r], dB [r, out]]. */
function backward({ inputs, attrs, backend }: KernelArgs): tf.TensorInfo[] {
  const { rows, inFeatures, outFeatures, rank } = dims(inputs);
  const scale = attrs!.scale as number;
  const dy = values(backend, inputs.dy, "dy");
  const x = values(backend, inputs.x, "x");
  const weight = values(backend, inputs.weight, "weight");
  const a = values(backend, inputs.A, "A");
  const b = values(backend, inputs.B, "B");
  const down = values(backend, inputs.down, "down");
  const dx = new Float32Array(rows * inFeatures);
  const dA = new Float32Array(inFeatures * rank);
  const dB = new Float32Array(rank * outFeatures);
  if (rows > 0) {
    const gemm = blas();
    const dDown = new Float32Array(rows * rank);
    // dB = downᵀ dy
    gemm.sgemm(
      true,
      false,
      rank,
      outFeatures,
      rows,
      1,
      down,
      rank,
      dy,
      outFeatures,
      0,
      dB,
      outFeatures,
    );
    // dDown·s = s · dy Bᵀ: the gradient at x A
    gemm.sgemm(
      false,
      true,
      rows,
      rank,
      outFeatures,
      scale,
      dy,
      outFeatures,
      b,
      outFeatures,
      0,
      dDown,
      rank,
    );
    // dA = xᵀ (s · dy Bᵀ)
    gemm.sgemm(true, false, inFeatures, rank, rows, 1, x, inFeatures, dDown, rank, 0, dA, rank);
    // dx = dy W + (s · dy Bᵀ) Aᵀ
    gemm.sgemm(
      false,
      false,
      rows,
      inFeatures,
      outFeatures,
      1,
      dy,
      outFeatures,
      weight,
      inFeatures,
      0,
      dx,
      inFeatures,
    );
    gemm.sgemm(false, true, rows, inFeatures, rank, 1, dDown, rank, a, rank, 1, dx, inFeatures);
  }
  return [
    backend.makeTensorInfo([rows, inFeatures], "float32", dx),
    backend.makeTensorInfo([inFeatures, rank], "float32", dA),
    backend.makeTensorInfo([rank, outFeatures], "float32", dB),
  ];
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

/** Whether tfjs is recording operations for a gradient (as in fused_ops.ts). */
function recordingGradients(): boolean {
  const engine = tf.engine() as unknown as { isTapeOn?: () => boolean };
  return typeof engine.isTapeOn === "function" ? engine.isTapeOn() : true;
}

function run(kernelName: string, inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap) {
  return tf.engine().runKernel(kernelName, inputs, attrs) as tf.Tensor[];
}

/**
 * `x Wᵀ + b + (s · x A) B` for x [rows, in], a frozen W [out, in] and b [out] (or null), and the
 * adapter's A [in, r] and B [r, out]; gradients for x, A and B only. Needs `loraKernelsActive()`.
 */
export function loraLinear(
  x: tf.Tensor2D,
  weight: tf.Tensor2D,
  bias: tf.Tensor | null,
  A: tf.Tensor2D,
  B: tf.Tensor2D,
  scale: number,
): tf.Tensor2D {
  const frozen: tf.NamedTensorMap = bias ? { weight, bias } : { weight };
  if (!recordingGradients()) {
    // Evaluation or generation: no gradient to take, so `down` is not kept.
    const [y, down] = run(FORWARD, { x, A, B, ...frozen }, { scale });
    down.dispose();
    return y as tf.Tensor2D;
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
