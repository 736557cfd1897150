/**
 * The building blocks of the book's GPT (rasbt/LLMs-from-scratch ch04) in plain TensorFlow.js
 * ops: Linear, Embedding, LayerNorm, GELU, FeedForward and dropout; and those of the book's
 * Llama 3 / Qwen3 / Gemma 3 code: RMSNorm and the gated feed-forward (SwiGLU, GeGLU).
 *
 * Parameters are `tf.Variable`s stored in PyTorch's layouts (a Linear weight is [out, in]), so a
 * state_dict of the book's model loads without transposes. A parameter is frozen by setting its
 * variable's `trainable` to false.
 */
import * as tf from "@tensorflow/tfjs";
import type { SeededRandom } from "../random.ts";
import { blockKernelsActive, fusedRmsNorm, fusedSiluMul } from "../engine/block_kernels.ts";
import { linearInitBound, type ParameterInit, standardNormal, uniform } from "./init.ts";
import { ops } from "./ops.ts";
import { linearInference } from "../engine/cpu_kernels.ts";
import { recordingGradients } from "../engine/fused_ops.ts";
import { packedLinear, packedLookup } from "../engine/packed_linear.ts";
import type { PackedMatrix } from "../engine/packed_matrix.ts";

/** A parameter with its state_dict name (e.g. `trf_blocks.0.att.W_query.weight`). */
// deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
export type NamedParameter = [name: string, variable: tf.Variable];

/** Anything holding parameters: it lists them under the book's state_dict names. */
export interface Module {
  /**
   * Every parameter below this module, as [name, variable] with `prefix` prepended to each name (""
   * for none).
   */
  namedParameters(prefix: string): NamedParameter[];
}

/** What a forward pass needs besides its input: training mode and the dropout RNG. */
export interface ForwardContext {
  /** Dropout is active only when true (PyTorch's `model.train()`). */
  training: boolean;
  /** Draws one seed per dropout call, so a training run is reproducible and resumable. */
  rng: SeededRandom;
}

export function prefixed(prefix: string, name: string): string {
  return prefix === "" ? name : `${prefix}.${name}`;
}

export function newVariable(shape: number[], values: Float32Array | "zeros" | "ones"): tf.Variable {
  const initial = values === "zeros"
    ? tf.zeros(shape)
    : values === "ones"
    ? tf.ones(shape)
    : tf.tensor(values, shape, "float32");
  // tf.variable shares the initial tensor's data, so the initial handle can go.
  const variable = tf.variable(initial, true);
  initial.dispose();
  return variable;
}

/**
 * The interface every linear layer has, so a later stage can wrap one (LoRA: W x + (α/r)·B A x)
 * and put the wrapper where the Linear was (see `GPTModel.replaceLinears`).
 */
export interface LinearLayer extends Module {
  /** Input width (the last axis of x). */
  readonly inFeatures: number;
  /** Output width. */
  readonly outFeatures: number;
  /** x: [..., inFeatures] → [..., outFeatures]. */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  apply(x: tf.Tensor): tf.Tensor;
}

/**
 * nn.Linear: y = x·Wᵀ + b with W stored [out, in] as PyTorch does.
 *
 * For quantized inference W may instead be `packed` (Q8_0 / fp16 / bf16 bytes, see
 * llm/engine/packed_matrix.ts) with no float32 copy: a model built with init mode "empty"
 * allocates no weight, and its loader packs each one in (llm/model/precision.ts). A packed
 * layer lists only its bias among its parameters.
 */
export class Linear implements LinearLayer {
  private variable: tf.Variable | null;
  /** The bias [out] (float32 in every precision), or null. */
  readonly bias: tf.Variable | null;
  /** The weight as packed bytes (quantized inference); null when it is the float32 `weight`. */
  packed: PackedMatrix | null = null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: { bias: boolean; init: ParameterInit; sharedWeight?: tf.Variable },
  ) {
    const { bias, init, sharedWeight } = options;
    const bound = linearInitBound(inFeatures);
    const fill = (size: number) =>
      init.mode === "random" ? uniform(size, bound, init.rng) : "zeros" as const;
    if (sharedWeight) {
      if (sharedWeight.shape[0] !== outFeatures || sharedWeight.shape[1] !== inFeatures) {
        throw new Error(
          `Linear: shared weight has shape [${sharedWeight.shape}], expected [${outFeatures}, ${inFeatures}]`,
        );
      }
      this.variable = sharedWeight;
    } else if (init.mode === "empty") {
      this.variable = null;
    } else {
      this.variable = newVariable([outFeatures, inFeatures], fill(outFeatures * inFeatures));
    }
    this.bias = bias ? newVariable([outFeatures], fill(outFeatures)) : null;
  }

  /** W [out, in] as a float32 variable (absent when the layer holds packed weights). */
  get weight(): tf.Variable {
    if (this.variable) return this.variable;
    throw new Error(
      this.packed
        ? `Linear [${this.outFeatures}, ${this.inFeatures}]: the weight is packed as ` +
          `${this.packed.type} (quantized, inference only); there is no float32 copy`
        : `Linear [${this.outFeatures}, ${this.inFeatures}]: the weight was never loaded`,
    );
  }

  /** Replaces the float32 weight (the caller owns the old one). */
  set weight(variable: tf.Variable) {
    this.variable = variable;
    this.packed = null;
  }

  /** Holds `matrix` as the weight from now on, releasing the float32 one (if any). */
  setPacked(matrix: PackedMatrix, options: { disposeVariable?: boolean } = {}): void {
    if (matrix.rows !== this.outFeatures || matrix.cols !== this.inFeatures) {
      throw new Error(
        `Linear: packed weight [${matrix.shape}] for a layer of [${this.outFeatures}, ${this.inFeatures}]`,
      );
    }
    if (this.variable && options.disposeVariable !== false) this.variable.dispose();
    this.variable = null;
    this.packed = matrix;
  }

  apply(x: tf.Tensor): tf.Tensor {
    if (this.packed) return packedLinear(x, this.packed, this.bias);
    const weight = this.weight;
    // Inference on the cpu engine: the same product as one kernel call (see linearInference).
    const fast = linearInference(x, weight, this.bias, recordingGradients());
    if (fast) return fast;
    // Flatten the leading axes so the product is one plain 2-D matmul (what BLAS kernels like),
    // with W transposed on the fly rather than copied.
    const leading = x.shape.slice(0, -1);
    const x2d = tf.reshape(x, [-1, this.inFeatures]) as tf.Tensor2D;
    const y = tf.fused.matMul({
      a: x2d,
      b: weight as tf.Tensor2D,
      transposeB: true,
      bias: this.bias ?? undefined,
    });
    return tf.reshape(y, [...leading, this.outFeatures]);
  }

  namedParameters(prefix: string): NamedParameter[] {
    const params: NamedParameter[] = this.variable
      ? [[prefixed(prefix, "weight"), this.variable]]
      : [];
    if (this.bias) params.push([prefixed(prefix, "bias"), this.bias]);
    return params;
  }
}

/**
 * Row lookup whose gradient scatter-adds `dy` into the table. tfjs's stock gather gradient goes
 * through UnsortedSegmentSum, which costs about a minute per step for a 50,257-row table on the
 * cpu backend (and is missing on wasm); the result here is the same dense gradient.
 */
const embeddingLookup = tf.customGrad(
  // customGrad's typing is variadic over (Tensor | GradSaveFunc); this function takes the
  // table, the ids and then tfjs's `save`.
  ((table: tf.Tensor2D, ids: tf.Tensor, save: tf.GradSaveFunc) => {
    // Keep the ids for the backward pass (the caller's tidy may dispose its own handle).
    save([ids]);
    const [vocabSize, dim] = table.shape;
    return {
      value: tf.gather(table, ids),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [savedIds] = saved;
        const rows = tf.reshape(savedIds, [-1, 1]);
        const updates = tf.reshape(dy, [-1, dim]);
        // scatterND sums the updates of repeated ids, which is exactly the embedding gradient.
        // Ids get a zero gradient (tfjs requires float32 gradients even for int inputs).
        return [tf.scatterND(rows, updates, [vocabSize, dim]), tf.zeros(savedIds.shape)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0],
) as (table: tf.Tensor, ids: tf.Tensor) => tf.Tensor;

/**
 * nn.Embedding, initialised N(0, 1). Like `Linear`, the table may be `packed` for quantized
 * inference (init mode "empty" allocates none), and is then not among the parameters.
 */
export class Embedding implements Module {
  private variable: tf.Variable | null;
  /** The table as packed bytes (quantized inference); null when it is the float32 `weight`. */
  packed: PackedMatrix | null = null;

  /**
   * A table of `numEmbeddings` rows of width `dim`, drawn N(0, 1) (or zeros when `init.mode` is
   * "zeros", nothing when "empty").
   */
  constructor(readonly numEmbeddings: number, readonly dim: number, init: ParameterInit) {
    const size = numEmbeddings * dim;
    this.variable = init.mode === "empty" ? null : newVariable(
      [numEmbeddings, dim],
      init.mode === "zeros" ? "zeros" : standardNormal(size, init.rng),
    );
  }

  /** The lookup table [numEmbeddings, dim] (absent when packed). */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  get weight(): tf.Variable {
    if (this.variable) return this.variable;
    throw new Error(
      this.packed
        ? `Embedding [${this.numEmbeddings}, ${this.dim}]: the table is packed as ` +
          `${this.packed.type} (quantized, inference only); there is no float32 copy`
        : `Embedding [${this.numEmbeddings}, ${this.dim}]: the table was never loaded`,
    );
  }

  /** Replaces the float32 table (the caller owns the old one). */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  set weight(variable: tf.Variable) {
    this.variable = variable;
    this.packed = null;
  }

  /** Holds `matrix` as the table from now on, releasing the float32 one (if any). */
  setPacked(matrix: PackedMatrix): void {
    if (matrix.rows !== this.numEmbeddings || matrix.cols !== this.dim) {
      throw new Error(
        `Embedding: packed table [${matrix.shape}] for [${this.numEmbeddings}, ${this.dim}]`,
      );
    }
    this.variable?.dispose();
    this.variable = null;
    this.packed = matrix;
  }

  /** ids: int32 [...] → [..., dim]. */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  apply(ids: tf.Tensor): tf.Tensor {
    if (ids.dtype !== "int32") {
      throw new Error(`Embedding: token ids must be int32, got ${ids.dtype}`);
    }
    if (this.packed) return packedLookup(this.packed, ids);
    return embeddingLookup(this.weight, ids);
  }

  /** The table as `weight`, under `prefix` (nothing when packed). */
  namedParameters(prefix: string): NamedParameter[] {
    return this.variable ? [[prefixed(prefix, "weight"), this.variable]] : [];
  }
}

/** The book's LayerNorm: learnable scale/shift, eps 1e-5 by default, biased variance. */
export class LayerNorm implements Module {
  /** Learnable per-feature gain [dim], initialised to 1. */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  readonly scale: tf.Variable;
  /** Learnable per-feature offset [dim], initialised to 0. */
  readonly shift: tf.Variable;

  /**
   * Normalises over a last axis of width `dim`; `eps` is added to the variance before the square
   * root (PyTorch's default 1e-5).
   */
  constructor(readonly dim: number, readonly eps = 1e-5) {
    this.scale = newVariable([dim], "ones");
    this.shift = newVariable([dim], "zeros");
  }

  /** Normalises each row of the last axis (formula: `stockOps.layerNorm` in ops.ts). */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  apply(x: tf.Tensor): tf.Tensor {
    return ops().layerNorm(x, this.scale, this.shift, this.eps);
  }

  /** `scale` and `shift` under `prefix`. */
  namedParameters(prefix: string): NamedParameter[] {
    return [[prefixed(prefix, "scale"), this.scale], [prefixed(prefix, "shift"), this.shift]];
  }
}

/**
 * RMSNorm (Llama, Qwen3, Gemma): x / √(mean(x²) + eps) · w, no centring and no shift. With
 * `unitOffset` (Gemma) the stored weight is zero-centred and applied as (1 + w), so a fresh norm
 * is the identity scale either way.
 */
export class RMSNorm implements Module {
  /** Learnable per-feature gain [dim]: 1 (or 0 with unitOffset) initially. */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  readonly scale: tf.Variable;

  /** Normalises over a last axis of width `dim`. */
  constructor(readonly dim: number, readonly eps = 1e-5, readonly unitOffset = false) {
    this.scale = newVariable([dim], unitOffset ? "zeros" : "ones");
  }

  /** Normalises each row of the last axis. */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  apply(x: tf.Tensor): tf.Tensor {
    // The cpu engine: the same arithmetic in one kernel (five tfjs kernels otherwise).
    if (blockKernelsActive()) return fusedRmsNorm(x, this.scale, this.eps, this.unitOffset);
    const meanSquare = tf.mean(tf.square(x), -1, true);
    const normalized = tf.mul(x, tf.rsqrt(tf.add(meanSquare, this.eps)));
    return tf.mul(normalized, this.unitOffset ? tf.add(this.scale, 1) : this.scale);
  }

  /** `scale` under `prefix` (there is no shift). */
  namedParameters(prefix: string): NamedParameter[] {
    return [[prefixed(prefix, "scale"), this.scale]];
  }
}

/** A LayerNorm or an RMSNorm: what a block's norms are. */
export type Norm = LayerNorm | RMSNorm;

/** GELU, tanh approximation (formula: `stockOps.gelu` in ops.ts). */
export function gelu(x: tf.Tensor): tf.Tensor {
  return ops().gelu(x);
}

/** Marks GELU's slot in FeedForward's `layers`, mirroring the book's nn.Sequential indices. */
export class GELU {
  /** Elementwise GELU of x (any shape). */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  apply(x: tf.Tensor): tf.Tensor {
    return gelu(x);
  }
}

/**
 * The book's FeedForward: Linear(d, 4d) → GELU → Linear(4d, d), named `layers.0` / `layers.2`
 * (Phi-2's MLP is the same with its own width).
 */
export class FeedForward implements Module {
  /** The book's nn.Sequential: expand, GELU, project (indices 0, 1, 2 in the state_dict names). */
  readonly layers: [LinearLayer, GELU, LinearLayer];

  /**
   * Linear layers of width `dim` → hidden (default 4·dim) → `dim`, with biases unless
   * `bias: false`, initialised as `init` says.
   */
  constructor(dim: number, init: ParameterInit, options: { hidden?: number; bias?: boolean } = {}) {
    const { hidden = 4 * dim, bias = true } = options;
    this.layers = [
      new Linear(dim, hidden, { bias, init }),
      new GELU(),
      new Linear(hidden, dim, { bias, init }),
    ];
  }

  /** x: [..., dim] → [..., dim]. */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  apply(x: tf.Tensor): tf.Tensor {
    const [expand, activation, project] = this.layers;
    return project.apply(activation.apply(expand.apply(x)));
  }

  /** The two linear layers as `layers.0.*` and `layers.2.*` (GELU has no parameters). */
  namedParameters(prefix: string): NamedParameter[] {
    return [
      ...this.layers[0].namedParameters(prefixed(prefix, "layers.0")),
      ...this.layers[2].namedParameters(prefixed(prefix, "layers.2")),
    ];
  }
}

/** SiLU (swish): x · sigmoid(x). */
// deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
export function silu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(x));
}

/**
 * The gated feed-forward of the book's Llama 3 / Qwen3 / Gemma 3 code: fc3(act(fc1 x) · fc2 x),
 * with fc1 the gate, fc2 the up and fc3 the down projection. act is SiLU (SwiGLU: Llama, Qwen3,
 * Phi-3, SmolLM2) or GELU-tanh (GeGLU: Gemma 3).
 */
export class GatedFeedForward implements Module {
  /** Gate projection dim → hidden. */
  fc1: LinearLayer;
  /** Up projection dim → hidden. */
  fc2: LinearLayer;
  /** Down projection hidden → dim. */
  fc3: LinearLayer;

  /** Three linear layers dim → hidden (twice) → dim, initialised as `init` says. */
  constructor(
    dim: number,
    hidden: number,
    readonly activation: "silu" | "gelu",
    init: ParameterInit,
    bias = false,
  ) {
    this.fc1 = new Linear(dim, hidden, { bias, init });
    this.fc2 = new Linear(dim, hidden, { bias, init });
    this.fc3 = new Linear(hidden, dim, { bias, init });
  }

  /** x: [..., dim] → [..., dim]. */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  apply(x: tf.Tensor): tf.Tensor {
    const gate = this.fc1.apply(x);
    if (this.activation === "silu" && blockKernelsActive()) {
      return this.fc3.apply(fusedSiluMul(gate, this.fc2.apply(x)));
    }
    const activated = this.activation === "silu" ? silu(gate) : gelu(gate);
    return this.fc3.apply(tf.mul(activated, this.fc2.apply(x)));
  }

  /** `fc1.*`, `fc2.*`, `fc3.*` (the book's names). */
  namedParameters(prefix: string): NamedParameter[] {
    return [
      ...this.fc1.namedParameters(prefixed(prefix, "fc1")),
      ...this.fc2.namedParameters(prefixed(prefix, "fc2")),
      ...this.fc3.namedParameters(prefixed(prefix, "fc3")),
    ];
  }
}

/** nn.Dropout: active only in training; each call draws its mask seed from the context's RNG. */
export function dropout(x: tf.Tensor, rate: number, context: ForwardContext): tf.Tensor {
  if (!context.training || rate === 0) return x;
  const seed = context.rng.nextInt(0x7fffffff);
  return ops().dropout(x, rate, seed); // mask drawn from `seed`: see `ModelOps.dropout`
}
