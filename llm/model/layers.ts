/**
 * The building blocks of the book's GPT (rasbt/LLMs-from-scratch ch04) in plain TensorFlow.js
 * ops: Linear, Embedding, LayerNorm, GELU, FeedForward and dropout.
 *
 * Parameters are `tf.Variable`s stored in PyTorch's layouts (a Linear weight is [out, in]), so a
 * state_dict of the book's model loads without transposes. A parameter is frozen by setting its
 * variable's `trainable` to false.
 */
import * as tf from "@tensorflow/tfjs";
import { fusedDropout, fusedGelu, fusedLayerNorm, fusedOpsActive } from "../engine/fused_ops.ts";
import type { SeededRandom } from "../random.ts";
import { linearInitBound, type ParameterInit, standardNormal, uniform } from "./init.ts";

/** A parameter with its state_dict name (e.g. `trf_blocks.0.att.W_query.weight`). */
export type NamedParameter = [name: string, variable: tf.Variable];

/** Anything holding parameters: it lists them under the book's state_dict names. */
export interface Module {
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

function newVariable(shape: number[], values: Float32Array | "zeros" | "ones"): tf.Variable {
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
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** x: [..., inFeatures] → [..., outFeatures]. */
  apply(x: tf.Tensor): tf.Tensor;
}

/** nn.Linear: y = x·Wᵀ + b with W stored [out, in] as PyTorch does. */
export class Linear implements LinearLayer {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: { bias: boolean; init: ParameterInit; sharedWeight?: tf.Variable },
  ) {
    const { bias, init, sharedWeight } = options;
    const bound = linearInitBound(inFeatures);
    const fill = (size: number) => init.mode === "zeros" ? "zeros" : uniform(size, bound, init.rng);
    if (sharedWeight) {
      if (sharedWeight.shape[0] !== outFeatures || sharedWeight.shape[1] !== inFeatures) {
        throw new Error(
          `Linear: shared weight has shape [${sharedWeight.shape}], expected [${outFeatures}, ${inFeatures}]`,
        );
      }
      this.weight = sharedWeight;
    } else {
      this.weight = newVariable([outFeatures, inFeatures], fill(outFeatures * inFeatures));
    }
    this.bias = bias ? newVariable([outFeatures], fill(outFeatures)) : null;
  }

  apply(x: tf.Tensor): tf.Tensor {
    // Flatten the leading axes so the product is one plain 2-D matmul (what BLAS kernels like),
    // with W transposed on the fly rather than copied.
    const leading = x.shape.slice(0, -1);
    const x2d = tf.reshape(x, [-1, this.inFeatures]) as tf.Tensor2D;
    const y = tf.fused.matMul({
      a: x2d,
      b: this.weight as tf.Tensor2D,
      transposeB: true,
      bias: this.bias ?? undefined,
    });
    return tf.reshape(y, [...leading, this.outFeatures]);
  }

  namedParameters(prefix: string): NamedParameter[] {
    const params: NamedParameter[] = [[prefixed(prefix, "weight"), this.weight]];
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

/** nn.Embedding, initialised N(0, 1). */
export class Embedding implements Module {
  readonly weight: tf.Variable;

  constructor(readonly numEmbeddings: number, readonly dim: number, init: ParameterInit) {
    const size = numEmbeddings * dim;
    this.weight = newVariable(
      [numEmbeddings, dim],
      init.mode === "zeros" ? "zeros" : standardNormal(size, init.rng),
    );
  }

  /** ids: int32 [...] → [..., dim]. */
  apply(ids: tf.Tensor): tf.Tensor {
    if (ids.dtype !== "int32") {
      throw new Error(`Embedding: token ids must be int32, got ${ids.dtype}`);
    }
    return embeddingLookup(this.weight, ids);
  }

  namedParameters(prefix: string): NamedParameter[] {
    return [[prefixed(prefix, "weight"), this.weight]];
  }
}

/** The book's LayerNorm: learnable scale/shift, eps 1e-5, biased variance. */
export class LayerNorm implements Module {
  readonly eps = 1e-5;
  readonly scale: tf.Variable;
  readonly shift: tf.Variable;

  constructor(readonly dim: number) {
    this.scale = newVariable([dim], "ones");
    this.shift = newVariable([dim], "zeros");
  }

  apply(x: tf.Tensor): tf.Tensor {
    // On the cpu backend: the same arithmetic as one kernel each way (engine/fused_ops.ts).
    if (fusedOpsActive()) return fusedLayerNorm(x, this.scale, this.shift, this.eps);
    const mean = tf.mean(x, -1, true);
    const centered = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centered), -1, true); // biased, as unbiased=False
    const normalized = tf.div(centered, tf.sqrt(tf.add(variance, this.eps)));
    return tf.add(tf.mul(this.scale, normalized), this.shift);
  }

  namedParameters(prefix: string): NamedParameter[] {
    return [[prefixed(prefix, "scale"), this.scale], [prefixed(prefix, "shift"), this.shift]];
  }
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
export function gelu(x: tf.Tensor): tf.Tensor {
  if (fusedOpsActive()) return fusedGelu(x); // one kernel each way on cpu
  const cube = tf.mul(tf.mul(x, x), x);
  const inner = tf.mul(tf.add(x, tf.mul(cube, 0.044715)), SQRT_2_OVER_PI);
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
}

/** Marks GELU's slot in FeedForward's `layers`, mirroring the book's nn.Sequential indices. */
export class GELU {
  apply(x: tf.Tensor): tf.Tensor {
    return gelu(x);
  }
}

/** The book's FeedForward: Linear(d, 4d) → GELU → Linear(4d, d), named `layers.0` / `layers.2`. */
export class FeedForward implements Module {
  readonly layers: [LinearLayer, GELU, LinearLayer];

  constructor(dim: number, init: ParameterInit) {
    this.layers = [
      new Linear(dim, 4 * dim, { bias: true, init }),
      new GELU(),
      new Linear(4 * dim, dim, { bias: true, init }),
    ];
  }

  apply(x: tf.Tensor): tf.Tensor {
    const [expand, activation, project] = this.layers;
    return project.apply(activation.apply(expand.apply(x)));
  }

  namedParameters(prefix: string): NamedParameter[] {
    return [
      ...this.layers[0].namedParameters(prefixed(prefix, "layers.0")),
      ...this.layers[2].namedParameters(prefixed(prefix, "layers.2")),
    ];
  }
}

/** nn.Dropout: active only in training; each call draws its mask seed from the context's RNG. */
export function dropout(x: tf.Tensor, rate: number, context: ForwardContext): tf.Tensor {
  if (!context.training || rate === 0) return x;
  const seed = context.rng.nextInt(0x7fffffff);
  // The fused cpu op draws its mask from the same seed with its own generator (mulberry32), so
  // masks differ from tf.dropout's, but stay seeded and reproducible.
  if (fusedOpsActive()) return fusedDropout(x, rate, seed);
  return tf.dropout(x, rate, undefined, seed);
}
