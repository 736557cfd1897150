/**
 * Causal multi-head self-attention (the book's `MultiHeadAttention`, ch03) and the key/value
 * cache that makes generation cost one token's work per step.
 */
import * as tf from "@tensorflow/tfjs";
import type { ParameterInit } from "./init.ts";
import {
  dropout,
  type ForwardContext,
  Linear,
  type LinearLayer,
  type Module,
  type NamedParameter,
  prefixed,
} from "./layers.ts";
import { ops } from "./ops.ts";

/** One layer's cached keys and values, [batch, heads, cachedTokens, headDim] each. */
export interface LayerKV {
  /** Keys of the cached positions, null before the first token. */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  keys: tf.Tensor4D | null;
  /** Values of the cached positions, null before the first token. */
  values: tf.Tensor4D | null;
}

/**
 * Keys and values of the tokens seen so far, one entry per transformer block. `length` is the
 * number of cached positions, i.e. the position of the next token fed to the model.
 */
export class KVCache {
  /** One entry per transformer block, in order. */
  readonly layers: LayerKV[];
  /** Number of cached positions (the same in every layer). */
  length = 0;

  /** An empty cache for a model of `numLayers` blocks. */
  constructor(numLayers: number) {
    this.layers = Array.from({ length: numLayers }, () => ({ keys: null, values: null }));
  }

  /** Forgets every cached position (and frees its tensors). */
  reset(): void {
    for (const layer of this.layers) {
      layer.keys?.dispose();
      layer.values?.dispose();
      layer.keys = null;
      layer.values = null;
    }
    this.length = 0;
  }

  /** Same as `reset`: frees the cached tensors. */
  dispose(): void {
    this.reset();
  }
}

/**
 * Additive padding mask [batch, 1, queries, keys] for left-padded rows (batched generation):
 * -∞ where key j is one of row b's first `padding[b]` slots (pad tokens), so no real query sees
 * them. A pad query still sees itself: its row of weights must not be all -∞ (that would be NaN,
 * and NaN keys/values would poison every later product), and what it computes is never read.
 * The causal part stays with the caller, so the fused causal softmax can still apply it.
 */
export function paddingMask(
  padding: readonly number[],
  numQueries: number,
  numKeys: number,
  offset: number,
): tf.Tensor4D {
  const mask = new Float32Array(padding.length * numQueries * numKeys);
  padding.forEach((pads, b) => {
    for (let i = 0; i < numQueries; i++) {
      const row = (b * numQueries + i) * numKeys;
      for (let j = 0; j < Math.min(pads, numKeys); j++) {
        if (j !== offset + i) mask[row + j] = -Infinity;
      }
    }
  });
  return tf.tensor4d(mask, [padding.length, 1, numQueries, numKeys]);
}

/** What `MultiHeadAttention` is built from. */
export interface AttentionOptions {
  /** Input and output width (the book's d_in = d_out = emb_dim). */
  dim: number;
  /** Number of heads; must divide `dim`. */
  numHeads: number;
  /** Dropout probability on the attention weights while training. */
  dropRate: number;
  /** Whether the query, key and value projections have biases. */
  qkvBias: boolean;
  /** How the projections are initialised. */
  init: ParameterInit;
}

/** Generation's extras for one attention call (training passes none). */
export interface AttentionCall {
  /** This layer's cached keys/values: x's tokens follow them and are appended to them. */
  cache?: LayerKV;
  /** Number of cached positions, i.e. the absolute position of x's first token. Default 0. */
  cachedLength?: number;
  /** Added to the scores before the causal softmax: -∞ hides left padding (`paddingMask`). */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  keyMask?: tf.Tensor;
}

/**
 * The book's MultiHeadAttention (ch03): query/key/value projections split into heads, causal scaled
 * dot-product attention with dropout on the weights, and an output projection.
 */
export class MultiHeadAttention implements Module {
  /** dim / numHeads: the width of each head. */
  readonly headDim: number;
  /** Query projection dim → dim (bias when qkv_bias). */
  W_query: LinearLayer;
  /** Key projection dim → dim (bias when qkv_bias). */
  W_key: LinearLayer;
  /** Value projection dim → dim (bias when qkv_bias). */
  W_value: LinearLayer;
  /** Output projection dim → dim, always with bias; replaceable like the others (LoRA). */
  out_proj: LinearLayer;

  /** Input and output width (the book's d_in = d_out). */
  readonly dim: number;
  /** Number of heads. */
  readonly numHeads: number;
  /** Dropout probability on the attention weights while training. */
  readonly dropRate: number;

  /** The projections, initialised as `options.init` says (the book's keyword arguments). */
  constructor(options: AttentionOptions) {
    const { dim, numHeads, dropRate, qkvBias, init } = options;
    this.dim = dim;
    this.numHeads = numHeads;
    this.dropRate = dropRate;
    if (dim % numHeads !== 0) {
      throw new Error(`MultiHeadAttention: dim ${dim} is not divisible by numHeads ${numHeads}`);
    }
    this.headDim = dim / numHeads;
    this.W_query = new Linear(dim, dim, { bias: qkvBias, init });
    this.W_key = new Linear(dim, dim, { bias: qkvBias, init });
    this.W_value = new Linear(dim, dim, { bias: qkvBias, init });
    this.out_proj = new Linear(dim, dim, { bias: true, init });
  }

  /** [batch, tokens, dim] → [batch, heads, tokens, headDim]. */
  private splitHeads(x: tf.Tensor, batch: number, tokens: number): tf.Tensor4D {
    const split = tf.reshape(x, [batch, tokens, this.numHeads, this.headDim]);
    return tf.transpose(split, [0, 2, 1, 3]) as tf.Tensor4D;
  }

  /**
   * x: [batch, tokens, dim] → [batch, tokens, dim]. With `cache`, x holds the tokens that follow
   * the cached ones: their keys/values are appended to the cache (which keeps them beyond the
   * caller's tf.tidy) and the queries attend to cached and new keys. `keyMask` (see
   * `paddingMask`) is added to the scores before the causal softmax.
   */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  apply(x: tf.Tensor, context: ForwardContext, call: AttentionCall = {}): tf.Tensor {
    const { cache, cachedLength = 0, keyMask } = call;
    const [batch, tokens] = x.shape;
    const queries = this.splitHeads(this.W_query.apply(x), batch, tokens);
    let keys = this.splitHeads(this.W_key.apply(x), batch, tokens);
    let values = this.splitHeads(this.W_value.apply(x), batch, tokens);

    if (cache) {
      if (cache.keys && cache.values) {
        keys = tf.concat([cache.keys, keys], 2);
        values = tf.concat([cache.values, values], 2);
      }
      cache.keys?.dispose();
      cache.values?.dispose();
      cache.keys = tf.keep(keys);
      cache.values = tf.keep(values);
    }

    let scores = tf.matMul(queries, keys, false, true); // [batch, heads, tokens, numKeys]
    if (keyMask) scores = tf.add(scores, keyMask);
    // The book's masked_fill(-inf), scaling and softmax (formula: `stockOps.causalSoftmax`).
    const weights = ops().causalSoftmax(scores, Math.sqrt(this.headDim), cachedLength);
    const attended = tf.matMul(dropout(weights, this.dropRate, context), values);
    const merged = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [batch, tokens, this.dim]);
    return this.out_proj.apply(merged);
  }

  /** The four projections under the book's names (`W_query`, `W_key`, `W_value`, `out_proj`). */
  namedParameters(prefix: string): NamedParameter[] {
    return [
      ...this.W_query.namedParameters(prefixed(prefix, "W_query")),
      ...this.W_key.namedParameters(prefixed(prefix, "W_key")),
      ...this.W_value.namedParameters(prefixed(prefix, "W_value")),
      ...this.out_proj.namedParameters(prefixed(prefix, "out_proj")),
    ];
  }
}
