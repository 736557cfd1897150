/**
 * Fused ops for the cpu backend: layer norm, GELU, dropout, causal softmax and softmax
 * cross-entropy, each one tfjs kernel forward and one backward (the loops of fused_math.ts),
 * wired together with `tf.customGrad`.
 *
 * Why: written in plain tfjs ops (as the book writes them) a layer norm is ~10 kernels forward and
 * more backward, each allocating a whole new tensor; on the cpu backend that allocation and
 * memory traffic, not arithmetic, is what a training step spent its non-matmul time on.
 *
 * The model reaches these through its ops table (llm/model/ops.ts): `ops()` is `fusedOps` while
 * `fusedOpsActive()` (backend `cpu` with the kernels registered by `initEngine`); every other
 * backend (webgpu, wasm, or cpu without our kernels) runs `stockOps`, the book's formulas.
 */
import * as tf from "@tensorflow/tfjs";
import type { CpuBackend, KernelArgs } from "./kernel_registry.ts";
import {
  applyDropoutMask,
  causalSoftmaxForward,
  crossEntropyBackwardInPlace,
  crossEntropyForward,
  dropoutMask,
  geluBackward,
  geluForward,
  layerNormBackward,
  layerNormForward,
  softmaxBackward,
} from "./fused_math.ts";
import { type SimdMath, simdMath } from "./wasm/simd_math.ts";

const BACKEND = "cpu";

/** The SIMD forward loops when in use (see `registerFusedKernels`), else the JS loops. */
let simd: SimdMath | undefined;

// ---------------------------------------------------------------------------------------------
// Kernels

function values(backend: CpuBackend, info: tf.TensorInfo, what: string): Float32Array {
  const v = backend.data.get(info.dataId)?.values;
  if (!(v instanceof Float32Array)) {
    throw new Error(`fused op: ${what} must be a float32 tensor on the cpu backend`);
  }
  return v;
}

function int32Values(backend: CpuBackend, info: tf.TensorInfo, what: string): Int32Array {
  const v = backend.data.get(info.dataId)?.values;
  if (!(v instanceof Int32Array)) throw new Error(`fused op: ${what} must be int32`);
  return v;
}

type Kernel = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[];

/** logits, targets, vocabulary size and ignore index of a cross-entropy kernel call. */
function crossEntropyArgs({ inputs, attrs, backend }: KernelArgs) {
  const logits = inputs.logits!;
  return [
    values(backend, logits, "logits"),
    int32Values(backend, inputs.targets!, "targets"),
    logits.shape[1],
    attrs!.ignoreIndex as number,
  ] as const;
}

const KERNELS: Record<string, Kernel> = {
  GroundupLayerNorm: ({ inputs, attrs, backend }) => {
    const x = inputs.x!;
    const dim = x.shape[x.shape.length - 1];
    const { y, mean, rstd } = layerNormForward(
      values(backend, x, "x"),
      values(backend, inputs.scale!, "scale"),
      values(backend, inputs.shift!, "shift"),
      dim,
      attrs!.eps as number,
    );
    const rows = [mean.length];
    return [
      backend.makeTensorInfo(x.shape, "float32", y),
      backend.makeTensorInfo(rows, "float32", mean),
      backend.makeTensorInfo(rows, "float32", rstd),
    ];
  },
  GroundupLayerNormGrad: ({ inputs, backend }) => {
    const x = inputs.x!;
    const dim = x.shape[x.shape.length - 1];
    const { dx, dscale, dshift } = layerNormBackward(
      values(backend, inputs.dy!, "dy"),
      values(backend, x, "x"),
      values(backend, inputs.scale!, "scale"),
      values(backend, inputs.mean!, "mean"),
      values(backend, inputs.rstd!, "rstd"),
      dim,
    );
    return [
      backend.makeTensorInfo(x.shape, "float32", dx),
      backend.makeTensorInfo([dim], "float32", dscale),
      backend.makeTensorInfo([dim], "float32", dshift),
    ];
  },
  GroundupGelu: ({ inputs, backend }) => {
    const x = inputs.x!;
    const { y, tanh } = simd
      ? simd.geluForward(values(backend, x, "x"), true)
      : geluForward(values(backend, x, "x"));
    return [
      backend.makeTensorInfo(x.shape, "float32", y),
      backend.makeTensorInfo(x.shape, "float32", tanh!),
    ];
  },
  // Without a gradient to take (evaluation, generation): no tanh buffer.
  GroundupGeluInference: ({ inputs, backend }) => {
    const x = inputs.x!;
    const { y } = simd
      ? simd.geluForward(values(backend, x, "x"), false)
      : geluForward(values(backend, x, "x"));
    return backend.makeTensorInfo(x.shape, "float32", y);
  },
  GroundupGeluGrad: ({ inputs, backend }) => {
    const x = inputs.x!;
    const dx = geluBackward(
      values(backend, inputs.dy!, "dy"),
      values(backend, x, "x"),
      values(backend, inputs.tanh!, "tanh"),
    );
    return backend.makeTensorInfo(x.shape, "float32", dx);
  },
  GroundupDropout: ({ inputs, attrs, backend }) => {
    const x = inputs.x!;
    const rate = attrs!.rate as number;
    const seed = attrs!.seed as number;
    const input = values(backend, x, "x");
    // The SIMD loop draws the same mulberry32 mask and rounds alike: bit-identical results.
    const fast = simd?.dropout(input, rate, seed);
    const mask = fast?.mask ?? dropoutMask(tf.util.sizeFromShape(x.shape), rate, seed);
    const y = fast?.y ?? applyDropoutMask(input, mask, rate);
    return [
      backend.makeTensorInfo(x.shape, "float32", y),
      backend.makeTensorInfo(x.shape, "bool", mask),
    ];
  },
  GroundupDropoutGrad: ({ inputs, attrs, backend }) => {
    const dy = inputs.dy!;
    const mask = backend.data.get(inputs.mask!.dataId).values as Uint8Array;
    const dx = (simd ? simd.applyDropoutMask.bind(simd) : applyDropoutMask)(
      values(backend, dy, "dy"),
      mask,
      attrs!.rate as number,
    );
    return backend.makeTensorInfo(dy.shape, "float32", dx);
  },
  GroundupCausalSoftmax: ({ inputs, attrs, backend }) => {
    const scores = inputs.scores!;
    const rank = scores.shape.length;
    const p = (simd ? simd.causalSoftmaxForward.bind(simd) : causalSoftmaxForward)(
      values(backend, scores, "scores"),
      scores.shape[rank - 2],
      scores.shape[rank - 1],
      attrs!.offset as number,
      attrs!.divisor as number,
    );
    return backend.makeTensorInfo(scores.shape, "float32", p);
  },
  GroundupSoftmaxGrad: ({ inputs, attrs, backend }) => {
    const p = inputs.p!;
    const ds = softmaxBackward(
      values(backend, inputs.dy!, "dy"),
      values(backend, p, "p"),
      p.shape[p.shape.length - 1],
      attrs!.divisor as number,
    );
    return backend.makeTensorInfo(p.shape, "float32", ds);
  },
  GroundupCrossEntropy: (args) => {
    const { loss, exps, inverseSums, kept } = simd
      ? simd.crossEntropyForward(...crossEntropyArgs(args), true)
      : crossEntropyForward(...crossEntropyArgs(args));
    return [
      args.backend.makeTensorInfo([], "float32", Float32Array.of(loss)),
      args.backend.makeTensorInfo(args.inputs.logits!.shape, "float32", exps!),
      args.backend.makeTensorInfo([inverseSums.length], "float32", inverseSums),
      args.backend.makeTensorInfo([], "float32", Float32Array.of(kept)),
    ];
  },
  // Without a gradient to take (evaluation): the loss only, no [rows, vocab] exponentials.
  GroundupCrossEntropyInference: (args) => {
    const { loss } = simd
      ? simd.crossEntropyForward(...crossEntropyArgs(args), false)
      : crossEntropyForward(...crossEntropyArgs(args));
    return args.backend.makeTensorInfo([], "float32", Float32Array.of(loss));
  },
  GroundupCrossEntropyGrad: ({ inputs, attrs, backend }) => {
    const exps = inputs.exps!;
    // The exps tensor never leaves crossEntropy (it is only saved for this backward), so its
    // buffer becomes the gradient: no second [rows, vocab] allocation.
    const grad = crossEntropyBackwardInPlace(
      values(backend, exps, "exps"),
      values(backend, inputs.inverseSums!, "inverseSums"),
      int32Values(backend, inputs.targets!, "targets"),
      exps.shape[1],
      attrs!.ignoreIndex as number,
      values(backend, inputs.kept!, "kept")[0],
      values(backend, inputs.dy!, "dy")[0],
    );
    return backend.makeTensorInfo(exps.shape, "float32", grad);
  },
};

/** The ops this module provides (each a forward kernel, a backward kernel, maybe an inference one). */
export const FUSED_OPS = ["layer norm", "GELU", "dropout", "causal softmax", "cross-entropy"];

/** The kernel names this module registers on the cpu backend. */
export const FUSED_KERNEL_NAMES: readonly string[] = Object.keys(KERNELS);

/**
 * Register the fused kernels on the tfjs cpu backend (idempotent). Their exp-heavy forward loops
 * run on WebAssembly SIMD where available unless `options.simd` is false.
 */
export function registerFusedKernels(options: { simd?: boolean } = {}): string[] {
  simd = options.simd === false ? undefined : simdMath();
  for (const [kernelName, kernel] of Object.entries(KERNELS)) {
    if (tf.getKernel(kernelName, BACKEND)) continue;
    tf.registerKernel({
      kernelName,
      backendName: BACKEND,
      kernelFunc: kernel as unknown as tf.KernelFunc,
    });
  }
  return [...FUSED_KERNEL_NAMES];
}

/** Remove them again (the model then runs its plain-tfjs ops on cpu too). */
export function unregisterFusedKernels(): void {
  for (const kernelName of FUSED_KERNEL_NAMES) {
    if (tf.getKernel(kernelName, BACKEND)) tf.unregisterKernel(kernelName, BACKEND);
  }
}

/** Whether the fused kernels' forward loops run on WebAssembly SIMD. */
export function fusedOpsUseSimd(): boolean {
  return simd !== undefined;
}

/**
 * The causal softmax of the fused kernel on plain arrays (SIMD when registered so): for callers
 * that hold the scores themselves, such as the in-place KV cache's attention.
 */
export function causalSoftmaxValues(
  scores: Float32Array,
  numQueries: number,
  numKeys: number,
  offset: number,
  divisor: number,
): Float32Array {
  return simd
    ? simd.causalSoftmaxForward(scores, numQueries, numKeys, offset, divisor)
    : causalSoftmaxForward(scores, numQueries, numKeys, offset, divisor);
}

/** True when the current backend is cpu and the fused kernels are registered. */
export function fusedOpsActive(): boolean {
  return tf.getBackend() === BACKEND && tf.getKernel("GroundupLayerNorm", BACKEND) !== undefined;
}

// ---------------------------------------------------------------------------------------------
// Ops

/** One of our registered kernels on the active backend (also block_kernels.ts's). */
export function run(
  kernelName: string,
  inputs: tf.NamedTensorMap,
  attrs: tf.NamedAttrMap = {},
): tf.Tensor | tf.Tensor[] {
  return tf.engine().runKernel(kernelName, inputs, attrs) as tf.Tensor | tf.Tensor[];
}

/** customGrad's typing is variadic over (Tensor | GradSaveFunc); ours take tensors then `save`. */
// deno-lint-ignore no-explicit-any
type AnyGradFunc = (...args: any[]) => { value: tf.Tensor; gradFunc: (...a: any[]) => any };
/** tf.customGrad typed for our ops (`F` is the op's own signature). */
// deno-lint-ignore no-explicit-any
export const customGrad = <F>(f: AnyGradFunc): F => tf.customGrad(f as any) as unknown as F;

/** Layer norm over the last axis: scale·(x − mean)/√(var + eps) + shift (biased variance). */
export function fusedLayerNorm(
  x: tf.Tensor,
  scale: tf.Tensor,
  shift: tf.Tensor,
  eps: number,
): tf.Tensor {
  const op = customGrad<(x: tf.Tensor, s: tf.Tensor, b: tf.Tensor) => tf.Tensor>(
    (x: tf.Tensor, scale: tf.Tensor, shift: tf.Tensor, save: tf.GradSaveFunc) => {
      const [y, mean, rstd] = run("GroundupLayerNorm", { x, scale, shift }, { eps }) as tf.Tensor[];
      save([x, scale, mean, rstd]);
      return {
        value: y,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [sx, sScale, sMean, sRstd] = saved;
          return run("GroundupLayerNormGrad", {
            dy,
            x: sx,
            scale: sScale,
            mean: sMean,
            rstd: sRstd,
          }) as tf.Tensor[];
        },
      };
    },
  );
  return op(x, scale, shift);
}

/**
 * Whether tfjs is recording operations for a gradient (inside `tf.grads`/`variableGrads`). When
 * it is not, the ops below run kernels that skip what only the backward needs.
 */
export function recordingGradients(): boolean {
  // isTapeOn is tfjs-core's own test (engine.ts); should a later tfjs drop it, assume a gradient
  // may be wanted: the training kernels are right either way, only slower.
  const engine = tf.engine() as unknown as { isTapeOn?: () => boolean };
  return typeof engine.isTapeOn === "function" ? engine.isTapeOn() : true;
}

/** GELU with the tanh approximation, as the book's GELU module. */
export function fusedGelu(x: tf.Tensor): tf.Tensor {
  if (!recordingGradients()) return run("GroundupGeluInference", { x }) as tf.Tensor;
  return geluWithGradient(x);
}

const geluWithGradient = customGrad<(x: tf.Tensor) => tf.Tensor>(
  (x: tf.Tensor, save: tf.GradSaveFunc) => {
    const [y, tanh] = run("GroundupGelu", { x }) as tf.Tensor[];
    save([x, tanh]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, [sx, sTanh]: tf.Tensor[]) =>
        run("GroundupGeluGrad", { dy, x: sx, tanh: sTanh }),
    };
  },
);

/**
 * Inverted dropout with a keep mask drawn from `seed` (mulberry32), generated once in the forward
 * pass and reused by the backward. Deterministic for a given seed, but not the same mask as
 * `tf.dropout` with that seed (tfjs draws from its own seedrandom stream).
 */
export function fusedDropout(x: tf.Tensor, rate: number, seed: number): tf.Tensor {
  const op = customGrad<(x: tf.Tensor) => tf.Tensor>((x: tf.Tensor, save: tf.GradSaveFunc) => {
    const [y, mask] = run("GroundupDropout", { x }, { rate, seed }) as tf.Tensor[];
    save([mask]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, [sMask]: tf.Tensor[]) =>
        run("GroundupDropoutGrad", { dy, mask: sMask }, { rate }),
    };
  });
  return op(x);
}

/**
 * Attention weights: softmax(scores / divisor) over the last axis of [..., queries, keys], where
 * query i (at absolute position offset + i) sees only keys 0..offset+i. No mask tensor is built.
 */
export function fusedCausalSoftmax(scores: tf.Tensor, divisor: number, offset: number): tf.Tensor {
  const op = customGrad<(s: tf.Tensor) => tf.Tensor>((s: tf.Tensor, save: tf.GradSaveFunc) => {
    const p = run("GroundupCausalSoftmax", { scores: s }, { divisor, offset }) as tf.Tensor;
    save([p]);
    return {
      value: p,
      gradFunc: (dy: tf.Tensor, [sp]: tf.Tensor[]) =>
        run("GroundupSoftmaxGrad", { dy, p: sp }, { divisor }),
    };
  });
  return op(scores);
}

/**
 * Mean cross-entropy of logits [rows, vocab] against int32 targets [rows], skipping rows whose
 * target is `ignoreIndex` (NaN when all are). Forward: one softmax pass per row; backward:
 * (softmax − onehot)/count, written over the forward's saved exponentials.
 */
export function fusedCrossEntropy(
  logits: tf.Tensor2D,
  targets: tf.Tensor1D,
  ignoreIndex: number,
): tf.Scalar {
  if (!recordingGradients()) {
    return run("GroundupCrossEntropyInference", { logits, targets }, { ignoreIndex }) as tf.Scalar;
  }
  const op = customGrad<(l: tf.Tensor, t: tf.Tensor) => tf.Scalar>(
    (l: tf.Tensor, t: tf.Tensor, save: tf.GradSaveFunc) => {
      const [loss, exps, inverseSums, kept] = run(
        "GroundupCrossEntropy",
        { logits: l, targets: t },
        { ignoreIndex },
      ) as tf.Tensor[];
      save([exps, inverseSums, t, kept]);
      return {
        value: loss,
        gradFunc: (dy: tf.Tensor, [sExps, sInverseSums, sTargets, sKept]: tf.Tensor[]) => [
          run("GroundupCrossEntropyGrad", {
            dy,
            exps: sExps,
            inverseSums: sInverseSums,
            targets: sTargets,
            kept: sKept,
          }, { ignoreIndex }),
          // Targets get a zero gradient (tfjs wants float32 gradients even for int inputs).
          tf.zeros(sTargets.shape),
        ],
      };
    },
  );
  return op(logits, targets);
}
