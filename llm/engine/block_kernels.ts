/**
 * Fused kernels for the open families' blocks on the cpu engine: RoPE, RMSNorm and SwiGLU's
 * SiLU·up, each one tfjs kernel forward and one backward, wired with `tf.customGrad`.
 *
 * Why: written in tfjs ops, RoPE is two slices, four multiplies, an add, a sub and a concat per
 * query or key tensor, and tfjs's cpu Slice of a non-contiguous half ([.., headDim/2] of each
 * head) walks element by element: it was most of a Qwen3-shaped prefill and a large part of each
 * decode step. RMSNorm is five kernels (square, mean, add, rsqrt, two muls) on tensors of one row
 * per token; SwiGLU three. A fused kernel reads its input once and allocates one output.
 *
 * The arithmetic is the tfjs ops' own, step by step in float32 (`Math.fround` where tfjs stores
 * an intermediate tensor), so the fused RoPE and SiLU·up give the stock ops' values bit for bit;
 * RMSNorm's mean of squares is summed in float64 like tfjs's cpu Sum, so it matches to rounding.
 *
 * Active exactly when the engine's fused ops are (`fusedOpsActive()`: backend cpu, registered by
 * `initEngine`); the kernels register themselves on first use. Every other backend (webgpu,
 * wasm, plain cpu) runs the tfjs formulas in rope.ts and layers.ts.
 */
import * as tf from "@tensorflow/tfjs";
import { customGrad, fusedOpsActive, recordingGradients, run } from "./fused_ops.ts";
import type { KernelArgs } from "./kernel_registry.ts";

const BACKEND = "cpu";
const f32 = Math.fround;

function values(args: KernelArgs, name: string): Float32Array {
  const info = args.inputs[name]!;
  const v = args.backend.data.get(info.dataId)?.values;
  if (!(v instanceof Float32Array)) {
    throw new Error(`block kernel: ${name} must be a float32 tensor on the cpu backend`);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// The loops (exported for the tests)

/**
 * Rotates the first 2·half dims of each head of x [batch, heads, tokens, headDim] (or
 * [batch, tokens, heads, headDim] with `tokenMajor`) by the angles cos/sin
 * [rows (1 or batch), 1, tokens, half] (rope.ts's formula); with `inverse`, by minus the angles
 * (the backward pass: a rotation's transpose is its inverse). Other dims pass through.
 */
export function ropeForward(
  x: Float32Array,
  cos: Float32Array,
  sin: Float32Array,
  shape: readonly number[],
  half: number,
  angleRows: number,
  inverse = false,
  tokenMajor = false,
): Float32Array {
  const [batch, dim1, dim2, headDim] = shape;
  const [heads, tokens] = tokenMajor ? [dim2, dim1] : [dim1, dim2];
  const out = new Float32Array(x.length);
  const sign = inverse ? -1 : 1;
  for (let b = 0; b < batch; b++) {
    const angleBase = (angleRows === 1 ? 0 : b) * tokens * half;
    for (let h = 0; h < heads; h++) {
      for (let t = 0; t < tokens; t++) {
        const at = (tokenMajor ? (b * tokens + t) * heads + h : (b * heads + h) * tokens + t) *
          headDim;
        const angle = angleBase + t * half;
        for (let i = 0; i < half; i++) {
          const c = cos[angle + i];
          const s = sign * sin[angle + i];
          const x1 = x[at + i];
          const x2 = x[at + half + i];
          // x1' = x1·cos − x2·sin, x2' = x2·cos + x1·sin, each product a float32 as in tfjs.
          out[at + i] = f32(x1 * c) - f32(x2 * s);
          out[at + half + i] = f32(x2 * c) + f32(x1 * s);
        }
        for (let i = 2 * half; i < headDim; i++) out[at + i] = x[at + i];
      }
    }
  }
  return out;
}

/**
 * RMSNorm of each row of `dim` values: x · 1/√(mean(x²) + eps) · gain, where gain is `scale`
 * (+ 1 with `unitOffset`, Gemma). Also returns each row's 1/√(mean(x²) + eps) for the backward.
 */
export function rmsNormForward(
  x: Float32Array,
  scale: Float32Array,
  dim: number,
  eps: number,
  unitOffset: boolean,
): { y: Float32Array; rstd: Float32Array } {
  const rows = x.length / dim;
  const y = new Float32Array(x.length);
  const rstd = new Float32Array(rows);
  const gain = unitOffset ? scale.map((w) => f32(w + 1)) : scale;
  for (let r = 0; r < rows; r++) {
    const at = r * dim;
    let sum = 0;
    for (let i = 0; i < dim; i++) sum += f32(x[at + i] * x[at + i]);
    const inv = f32(1 / Math.sqrt(f32(f32(f32(sum) / dim) + eps)));
    rstd[r] = inv;
    for (let i = 0; i < dim; i++) y[at + i] = f32(x[at + i] * inv) * gain[i];
  }
  return { y, rstd };
}

/**
 * RMSNorm's backward: with g = dy·gain and r = 1/√(mean(x²) + eps),
 * dx = r·g − x·r³·mean(g·x) and dscale = Σ_rows dy·x·r.
 */
export function rmsNormBackward(
  dy: Float32Array,
  x: Float32Array,
  scale: Float32Array,
  rstd: Float32Array,
  dim: number,
  unitOffset: boolean,
): { dx: Float32Array; dscale: Float32Array } {
  const dx = new Float32Array(x.length);
  const dscale = new Float64Array(dim);
  for (let r = 0; r < rstd.length; r++) {
    const at = r * dim;
    const inv = rstd[r];
    let dot = 0;
    for (let i = 0; i < dim; i++) {
      const gain = unitOffset ? scale[i] + 1 : scale[i];
      dot += dy[at + i] * gain * x[at + i];
      dscale[i] += dy[at + i] * x[at + i] * inv;
    }
    const k = (inv * inv * inv * dot) / dim;
    for (let i = 0; i < dim; i++) {
      const gain = unitOffset ? scale[i] + 1 : scale[i];
      dx[at + i] = inv * dy[at + i] * gain - x[at + i] * k;
    }
  }
  return { dx, dscale: Float32Array.from(dscale) };
}

/** silu(gate)·up elementwise, silu(g) = g·sigmoid(g), as tf.mul(tf.mul(g, tf.sigmoid(g)), up). */
export function siluMulForward(gate: Float32Array, up: Float32Array): Float32Array {
  const out = new Float32Array(gate.length);
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i];
    const sigmoid = f32(1 / (1 + Math.exp(-g)));
    out[i] = f32(g * sigmoid) * up[i];
  }
  return out;
}

/** d(silu(g)·u): dgate = dy·u·σ(g)·(1 + g·(1 − σ(g))), dup = dy·silu(g). */
export function siluMulBackward(
  dy: Float32Array,
  gate: Float32Array,
  up: Float32Array,
): { dgate: Float32Array; dup: Float32Array } {
  const dgate = new Float32Array(gate.length);
  const dup = new Float32Array(gate.length);
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i];
    const sigmoid = 1 / (1 + Math.exp(-g));
    dgate[i] = dy[i] * up[i] * sigmoid * (1 + g * (1 - sigmoid));
    dup[i] = dy[i] * g * sigmoid;
  }
  return { dgate, dup };
}

// ---------------------------------------------------------------------------------------------
// Kernels

type Kernel = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[];

const KERNELS: Record<string, Kernel> = {
  GroundupRope: (args) => {
    const x = args.inputs.x!;
    const cos = args.inputs.cos!;
    const out = ropeForward(
      values(args, "x"),
      values(args, "cos"),
      values(args, "sin"),
      x.shape,
      cos.shape[3],
      cos.shape[0],
      args.attrs!.inverse as boolean,
      args.attrs!.tokenMajor as boolean,
    );
    return args.backend.makeTensorInfo(x.shape, "float32", out);
  },
  GroundupRMSNorm: (args) => {
    const x = args.inputs.x!;
    const dim = x.shape[x.shape.length - 1];
    const { y, rstd } = rmsNormForward(
      values(args, "x"),
      values(args, "scale"),
      dim,
      args.attrs!.eps as number,
      args.attrs!.unitOffset as boolean,
    );
    return [
      args.backend.makeTensorInfo(x.shape, "float32", y),
      args.backend.makeTensorInfo([rstd.length], "float32", rstd),
    ];
  },
  GroundupRMSNormGrad: (args) => {
    const x = args.inputs.x!;
    const dim = x.shape[x.shape.length - 1];
    const { dx, dscale } = rmsNormBackward(
      values(args, "dy"),
      values(args, "x"),
      values(args, "scale"),
      values(args, "rstd"),
      dim,
      args.attrs!.unitOffset as boolean,
    );
    return [
      args.backend.makeTensorInfo(x.shape, "float32", dx),
      args.backend.makeTensorInfo([dim], "float32", dscale),
    ];
  },
  GroundupSiluMul: (args) => {
    const gate = args.inputs.gate!;
    const out = siluMulForward(values(args, "gate"), values(args, "up"));
    return args.backend.makeTensorInfo(gate.shape, "float32", out);
  },
  GroundupSiluMulGrad: (args) => {
    const gate = args.inputs.gate!;
    const { dgate, dup } = siluMulBackward(
      values(args, "dy"),
      values(args, "gate"),
      values(args, "up"),
    );
    return [
      args.backend.makeTensorInfo(gate.shape, "float32", dgate),
      args.backend.makeTensorInfo(gate.shape, "float32", dup),
    ];
  },
};

/** Registers the kernels on the cpu backend (once; later calls find them there). */
function registerBlockKernels(): void {
  for (const [kernelName, kernel] of Object.entries(KERNELS)) {
    if (tf.getKernel(kernelName, BACKEND)) continue;
    tf.registerKernel({
      kernelName,
      backendName: BACKEND,
      kernelFunc: kernel as unknown as tf.KernelFunc,
    });
  }
}

let enabled = true;

/**
 * Turns the fused block ops off (the tfjs formulas run instead) or back on: for benchmarks that
 * compare both in one process (bench/block_profile.ts --decode). On by default.
 */
export function setBlockKernelsEnabled(on: boolean): void {
  enabled = on;
}

/**
 * True when the fused block ops should run: the engine's fused ops are active (cpu backend with
 * `initEngine`'s kernels) and they were not turned off. Registers this module's kernels the
 * first time it says so.
 */
export function blockKernelsActive(): boolean {
  if (!enabled || !fusedOpsActive()) return false;
  if (!tf.getKernel("GroundupRope", BACKEND)) registerBlockKernels();
  return true;
}

// ---------------------------------------------------------------------------------------------
// Ops

/**
 * rope.ts's `applyRope` as one kernel: x [batch, heads, tokens, headDim] (or
 * [batch, tokens, heads, headDim] with `tokenMajor`), angles [rows, 1, tokens, half].
 */
export function fusedRope(
  x: tf.Tensor4D,
  cos: tf.Tensor4D,
  sin: tf.Tensor4D,
  tokenMajor = false,
): tf.Tensor4D {
  // Inference (no tape): the kernel alone, without customGrad's scope and saved tensors.
  if (!recordingGradients()) {
    return run("GroundupRope", { x, cos, sin }, { inverse: false, tokenMajor }) as tf.Tensor4D;
  }
  const op = customGrad<(x: tf.Tensor, c: tf.Tensor, s: tf.Tensor) => tf.Tensor>(
    (x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor, save: tf.GradSaveFunc) => {
      save([cos, sin]);
      return {
        value: run("GroundupRope", { x, cos, sin }, { inverse: false, tokenMajor }) as tf.Tensor,
        gradFunc: (dy: tf.Tensor, [c, s]: tf.Tensor[]) => [
          run("GroundupRope", { x: dy, cos: c, sin: s }, { inverse: true, tokenMajor }),
          tf.zerosLike(c),
          tf.zerosLike(s),
        ],
      };
    },
  );
  return op(x, cos, sin) as tf.Tensor4D;
}

/** RMSNorm over the last axis (layers.ts's `RMSNorm.apply`) as one kernel each way. */
export function fusedRmsNorm(
  x: tf.Tensor,
  scale: tf.Tensor,
  eps: number,
  unitOffset: boolean,
): tf.Tensor {
  if (!recordingGradients()) {
    const [y, rstd] = run("GroundupRMSNorm", { x, scale }, { eps, unitOffset }) as tf.Tensor[];
    rstd.dispose();
    return y;
  }
  const op = customGrad<(x: tf.Tensor, s: tf.Tensor) => tf.Tensor>(
    (x: tf.Tensor, scale: tf.Tensor, save: tf.GradSaveFunc) => {
      const [y, rstd] = run("GroundupRMSNorm", { x, scale }, { eps, unitOffset }) as tf.Tensor[];
      save([x, scale, rstd]);
      return {
        value: y,
        gradFunc: (dy: tf.Tensor, [sx, sScale, sRstd]: tf.Tensor[]) =>
          run("GroundupRMSNormGrad", { dy, x: sx, scale: sScale, rstd: sRstd }, { unitOffset }),
      };
    },
  );
  return op(x, scale);
}

/** silu(gate)·up (SwiGLU's product before the down projection) as one kernel each way. */
export function fusedSiluMul(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  if (!recordingGradients()) return run("GroundupSiluMul", { gate, up }) as tf.Tensor;
  const op = customGrad<(g: tf.Tensor, u: tf.Tensor) => tf.Tensor>(
    (gate: tf.Tensor, up: tf.Tensor, save: tf.GradSaveFunc) => {
      save([gate, up]);
      return {
        value: run("GroundupSiluMul", { gate, up }) as tf.Tensor,
        gradFunc: (dy: tf.Tensor, [sg, su]: tf.Tensor[]) =>
          run("GroundupSiluMulGrad", { dy, gate: sg, up: su }),
      };
    },
  );
  return op(gate, up);
}
