/**
 * Causal multi-head self-attention (the book's `MultiHeadAttention`, ch03) and the key/value
 * cache that makes generation cost one token's work per step.
 */
import * as tf from "@tensorflow/tfjs";
import { fusedCausalSoftmax, fusedOpsActive } from "../engine/fused_ops.ts";
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

/** One layer's cached keys and values, [batch, heads, cachedTokens, headDim] each. */
export interface LayerKV {
  keys: tf.Tensor4D | null;
  values: tf.Tensor4D | null;
}

/**
 * Keys and values of the tokens seen so far, one entry per transformer block. `length` is the
 * number of cached positions, i.e. the position of the next token fed to the model.
 */
export class KVCache {
  readonly layers: LayerKV[];
  length = 0;

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

  dispose(): void {
    this.reset();
  }
}

/**
 * Additive causal mask [queries, keys]: 0 where query i (at absolute position offset + i) may look
 * at key j, -∞ where j lies in its future. Adding -∞ before the softmax is the book's
 * `masked_fill_(mask, -inf)`.
 */
function causalMask(numQueries: number, numKeys: number, offset: number): tf.Tensor2D {
  const mask = new Float32Array(numQueries * numKeys);
  for (let i = 0; i < numQueries; i++) {
    for (let j = offset + i + 1; j < numKeys; j++) mask[i * numKeys + j] = -Infinity;
  }
  return tf.tensor2d(mask, [numQueries, numKeys]);
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

export class MultiHeadAttention implements Module {
  readonly headDim: number;
  W_query: LinearLayer;
  W_key: LinearLayer;
  W_value: LinearLayer;
  out_proj: LinearLayer;

  constructor(
    readonly dim: number,
    readonly numHeads: number,
    readonly dropRate: number,
    qkvBias: boolean,
    init: ParameterInit,
  ) {
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
  apply(
    x: tf.Tensor,
    context: ForwardContext,
    cache?: LayerKV,
    cachedLength = 0,
    keyMask?: tf.Tensor,
  ): tf.Tensor {
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

    const numKeys = keys.shape[2];
    let scores = tf.matMul(queries, keys, false, true); // [batch, heads, tokens, numKeys]
    if (keyMask) scores = tf.add(scores, keyMask);
    const weights = fusedOpsActive()
      // cpu: mask, scale and softmax in one kernel each way, no mask tensor.
      ? fusedCausalSoftmax(scores, Math.sqrt(this.headDim), cachedLength)
      : tf.softmax(
        tf.div(tf.add(scores, causalMask(tokens, numKeys, cachedLength)), Math.sqrt(this.headDim)),
      );
    const attended = tf.matMul(dropout(weights, this.dropRate, context), values);
    const merged = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [batch, tokens, this.dim]);
    return this.out_proj.apply(merged);
  }

  namedParameters(prefix: string): NamedParameter[] {
    return [
      ...this.W_query.namedParameters(prefixed(prefix, "W_query")),
      ...this.W_key.namedParameters(prefixed(prefix, "W_key")),
      ...this.W_value.namedParameters(prefixed(prefix, "W_value")),
      ...this.out_proj.namedParameters(prefixed(prefix, "out_proj")),
    ];
  }
}
