/**
 * Causal multi-head self-attention (the book's `MultiHeadAttention`, ch03, grown into its
 * grouped-query attention of Llama 3 / Qwen3 / Gemma 3) and the key/value cache that makes
 * generation cost one token's work per step.
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
  RMSNorm,
} from "./layers.ts";
import { ops } from "./ops.ts";
import { applyRope, type RopeAngles } from "./rope.ts";
import type { KVCache } from "./kv_cache.ts";

export { KVCache, type KVCacheOptions, type LayerKV } from "./kv_cache.ts";

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

/**
 * Additive sliding-window mask [1, 1, queries, keys]: -∞ where key j is `window` or more slots
 * before query i (at slot offset + i), so a "sliding" layer sees only the last `window` tokens.
 * Slots, not positions: within a left-padded row both are shifted by the same pad count, so the
 * distance is the same. null when no key is that far back (the mask would be all zeros).
 */
export function slidingWindowMask(
  window: number,
  numQueries: number,
  numKeys: number,
  offset: number,
): tf.Tensor4D | null {
  if (offset + numQueries - 1 < window) return null;
  const mask = new Float32Array(numQueries * numKeys);
  for (let i = 0; i < numQueries; i++) {
    const firstVisible = offset + i - window + 1;
    for (let j = 0; j < Math.min(firstVisible, numKeys); j++) mask[i * numKeys + j] = -Infinity;
  }
  return tf.tensor4d(mask, [1, 1, numQueries, numKeys]);
}

/** What `MultiHeadAttention` is built from. */
export interface AttentionOptions {
  /** Input and output width (the book's d_in = emb_dim). */
  dim: number;
  /** Number of query heads. */
  numHeads: number;
  /** Dropout probability on the attention weights while training. */
  dropRate: number;
  /** Whether the query, key and value projections have biases. */
  qkvBias: boolean;
  /** How the projections are initialised. */
  init: ParameterInit;
  /** Width of each head; default dim / numHeads (which must then divide evenly). */
  headDim?: number;
  /** Key/value heads (grouped-query attention); must divide numHeads. Default numHeads. */
  numKvGroups?: number;
  /** Bias on the output projection; default true (GPT-2). */
  outBias?: boolean;
  /** RMSNorm over head_dim on queries and keys before RoPE (Qwen3, Gemma 3). Default none. */
  qkNorm?: { eps: number; unitOffset: boolean };
  /** Scores are divided by this; default √headDim (Gemma 3: √query_pre_attn_scalar). */
  scoreDivisor?: number;
}

/** Generation's extras for one attention call (training passes none). */
export interface AttentionCall {
  /** The model's key/value cache: x's tokens follow each row's cached ones and are appended. */
  cache?: KVCache;
  /** This layer's entry in the cache. Default 0. */
  layerIndex?: number;
  /**
   * Added to the scores before the causal softmax (tensor store): -∞ hides left padding
   * (`paddingMask`) and, on sliding layers, keys outside the window (`slidingWindowMask`).
   */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  keyMask?: tf.Tensor;
  /** Sliding layers: each query sees only the last `window` positions (the in-place store's mask). */
  window?: number;
  /** RoPE angles of x's tokens: queries and keys are rotated by them (none: no rotation). */
  rope?: RopeAngles;
}

/**
 * The book's MultiHeadAttention (ch03): query/key/value projections split into heads, causal scaled
 * dot-product attention with dropout on the weights, and an output projection. Grown into the
 * book's GroupedQueryAttention (Llama 3, Qwen3, Gemma 3): fewer key/value heads than query heads,
 * an explicit head width, optional QK-norm and RoPE.
 */
export class MultiHeadAttention implements Module {
  /** The width of each head. */
  readonly headDim: number;
  /** Query projection dim → numHeads·headDim (bias when qkv_bias). */
  W_query: LinearLayer;
  /** Key projection dim → numKvGroups·headDim (bias when qkv_bias). */
  W_key: LinearLayer;
  /** Value projection dim → numKvGroups·headDim (bias when qkv_bias). */
  W_value: LinearLayer;
  /** Output projection numHeads·headDim → dim; replaceable like the others (LoRA). */
  out_proj: LinearLayer;
  /** RMSNorm of each query head (QK-norm), or null. */
  readonly q_norm: RMSNorm | null;
  /** RMSNorm of each key head (QK-norm), or null. */
  readonly k_norm: RMSNorm | null;

  /** Input and output width (the book's d_in). */
  readonly dim: number;
  /** Number of query heads. */
  readonly numHeads: number;
  /** Number of key/value heads; query head h reads kv head floor(h / (numHeads / numKvGroups)). */
  readonly numKvGroups: number;
  /** Dropout probability on the attention weights while training. */
  readonly dropRate: number;
  /** Scores are divided by this before the softmax. */
  readonly scoreDivisor: number;

  /** The projections, initialised as `options.init` says (the book's keyword arguments). */
  constructor(options: AttentionOptions) {
    const { dim, numHeads, dropRate, qkvBias, init } = options;
    this.dim = dim;
    this.numHeads = numHeads;
    this.dropRate = dropRate;
    if (options.headDim === undefined && dim % numHeads !== 0) {
      throw new Error(`MultiHeadAttention: dim ${dim} is not divisible by numHeads ${numHeads}`);
    }
    this.headDim = options.headDim ?? dim / numHeads;
    this.numKvGroups = options.numKvGroups ?? numHeads;
    if (numHeads % this.numKvGroups !== 0) {
      throw new Error(
        `MultiHeadAttention: numHeads ${numHeads} is not divisible by numKvGroups ${this.numKvGroups}`,
      );
    }
    this.scoreDivisor = options.scoreDivisor ?? Math.sqrt(this.headDim);
    const inner = numHeads * this.headDim;
    const kvWidth = this.numKvGroups * this.headDim;
    // Creation order W_query, W_key, W_value, out_proj: the seeded init draws in this order.
    this.W_query = new Linear(dim, inner, { bias: qkvBias, init });
    this.W_key = new Linear(dim, kvWidth, { bias: qkvBias, init });
    this.W_value = new Linear(dim, kvWidth, { bias: qkvBias, init });
    this.out_proj = new Linear(inner, dim, { bias: options.outBias ?? true, init });
    const { qkNorm } = options;
    this.q_norm = qkNorm ? new RMSNorm(this.headDim, qkNorm.eps, qkNorm.unitOffset) : null;
    this.k_norm = qkNorm ? new RMSNorm(this.headDim, qkNorm.eps, qkNorm.unitOffset) : null;
  }

  /** [batch, tokens, heads·headDim] → [batch, heads, tokens, headDim]. */
  private splitHeads(x: tf.Tensor, batch: number, tokens: number, heads: number): tf.Tensor4D {
    // One token: [batch, 1, heads, headDim] and [batch, heads, 1, headDim] share one memory
    // order, so the transpose is a reshape (no copy, one op fewer per projection).
    if (tokens === 1) return tf.reshape(x, [batch, heads, 1, this.headDim]) as tf.Tensor4D;
    const split = tf.reshape(x, [batch, tokens, heads, this.headDim]);
    return tf.transpose(split, [0, 2, 1, 3]) as tf.Tensor4D;
  }

  /**
   * x: [batch, tokens, dim] → [batch, tokens, dim]. With `cache`, x holds the tokens that follow
   * the cached ones: their keys/values (numKvGroups heads, after RoPE) are appended to the cache
   * (which keeps them beyond the caller's tf.tidy) and the queries attend to cached and new keys.
   * `keyMask` is added to the scores before the causal softmax.
   */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  apply(x: tf.Tensor, context: ForwardContext, call: AttentionCall = {}): tf.Tensor {
    const { cache, layerIndex = 0, keyMask, rope } = call;
    const [batch, tokens] = x.shape;
    if (cache?.inPlace && tokens > 1) return this.applyInPlace(x, context, call);
    let queries = this.splitHeads(this.W_query.apply(x), batch, tokens, this.numHeads);
    let keys = this.splitHeads(this.W_key.apply(x), batch, tokens, this.numKvGroups);
    let values = this.splitHeads(this.W_value.apply(x), batch, tokens, this.numKvGroups);
    if (this.q_norm && this.k_norm) {
      queries = this.q_norm.apply(queries) as tf.Tensor4D;
      keys = this.k_norm.apply(keys) as tf.Tensor4D;
    }
    if (rope) {
      queries = applyRope(queries, rope);
      keys = applyRope(keys, rope);
    }

    if (cache?.inPlace) {
      if (context.training && this.dropRate > 0) {
        throw new Error("MultiHeadAttention: a KV cache is for inference, not training");
      }
      // Keys/values written into the cache where they stay; attention reads them there and
      // returns the heads already merged (llm/engine/cached_attention.ts).
      const merged = cache.attend(
        layerIndex,
        queries,
        keys,
        values,
        this.scoreDivisor,
        call.window,
      );
      return this.out_proj.apply(merged);
    }
    // The tensor store: every row's slots end at the same one (left padding is masked).
    const cachedLength = cache?.length ?? 0;
    if (cache) [keys, values] = cache.appendTensors(layerIndex, keys, values);

    // [batch, heads, tokens, numKeys]
    let scores: tf.Tensor = this.groupedProduct(queries, keys as tf.Tensor4D, true);
    if (keyMask) scores = tf.add(scores, keyMask);
    // The book's masked_fill(-inf), scaling and softmax (formula: `stockOps.causalSoftmax`).
    const weights = ops().causalSoftmax(scores, this.scoreDivisor, cachedLength);
    const attended = this.groupedProduct(
      dropout(weights, this.dropRate, context) as tf.Tensor4D,
      values,
      false,
    );
    const merged = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [
      batch,
      tokens,
      this.numHeads * this.headDim,
    ]);
    return this.out_proj.apply(merged);
  }

  /**
   * A multi-token pass (prefill) on the in-place cache: queries, keys and values stay in the
   * projections' [batch, tokens, heads, headDim] order (a reshape, no transpose); QK-norm
   * (over headDim) and RoPE work in that order, and the cache reads it as it is.
   */
  private applyInPlace(x: tf.Tensor, context: ForwardContext, call: AttentionCall): tf.Tensor {
    const { cache, layerIndex = 0, rope } = call;
    if (context.training && this.dropRate > 0) {
      throw new Error("MultiHeadAttention: a KV cache is for inference, not training");
    }
    const [batch, tokens] = x.shape;
    const heads = (y: tf.Tensor, n: number) =>
      tf.reshape(y, [batch, tokens, n, this.headDim]) as tf.Tensor4D;
    let queries = heads(this.W_query.apply(x), this.numHeads);
    let keys = heads(this.W_key.apply(x), this.numKvGroups);
    const values = heads(this.W_value.apply(x), this.numKvGroups);
    if (this.q_norm && this.k_norm) {
      queries = this.q_norm.apply(queries) as tf.Tensor4D;
      keys = this.k_norm.apply(keys) as tf.Tensor4D;
    }
    if (rope) {
      queries = applyRope(queries, rope, true);
      keys = applyRope(keys, rope, true);
    }
    const merged = cache!.attend(
      layerIndex,
      queries,
      keys,
      values,
      this.scoreDivisor,
      call.window,
      true,
    );
    return this.out_proj.apply(merged);
  }

  /**
   * a [batch, heads, rows, ·] times each head's key/value matrix b [batch, kvHeads, ·, ·]
   * (transposed when `transposeB`), where query head h reads kv head floor(h / group). The book
   * repeats the kv heads (`repeat_interleave`) to heads; folding each group's query heads into
   * one matrix instead ([batch, kvHeads, group·rows, ·], a free reshape since heads
   * kv·group..kv·group+group−1 are adjacent) gives the same products without copying the cache
   * every step.
   */
  private groupedProduct(a: tf.Tensor4D, b: tf.Tensor4D, transposeB: boolean): tf.Tensor4D {
    const group = this.numHeads / this.numKvGroups;
    if (group === 1) return tf.matMul(a, b, false, transposeB);
    const [batch, heads, rows, width] = a.shape;
    const folded = tf.reshape(a, [batch, this.numKvGroups, group * rows, width]);
    const product = tf.matMul(folded, b, false, transposeB) as tf.Tensor4D;
    return tf.reshape(product, [batch, heads, rows, product.shape[3]]);
  }

  /**
   * The projections under the book's names (`W_query`, `W_key`, `W_value`, `out_proj`), then
   * `q_norm` and `k_norm` when present.
   */
  namedParameters(prefix: string): NamedParameter[] {
    return [
      ...this.W_query.namedParameters(prefixed(prefix, "W_query")),
      ...this.W_key.namedParameters(prefixed(prefix, "W_key")),
      ...this.W_value.namedParameters(prefixed(prefix, "W_value")),
      ...this.out_proj.namedParameters(prefixed(prefix, "out_proj")),
      ...(this.q_norm?.namedParameters(prefixed(prefix, "q_norm")) ?? []),
      ...(this.k_norm?.namedParameters(prefixed(prefix, "k_norm")) ?? []),
    ];
  }
}
