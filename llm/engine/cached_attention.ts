/**
 * Attention that reads a key/value cache where it lies: plain Float32Arrays of
 * [rows, kvHeads, capacity, headDim] per layer, written in place (llm/model/kv_cache.ts).
 *
 * Why: with the cache as tfjs tensors every decode step had to `tf.concat` the whole cache to
 * add one position (copying it), split the heads with a transpose and run a dozen small ops per
 * layer. Here each (row, head) pair's cached keys are one contiguous [length, headDim] matrix, so
 * the scores are one BLAS product (sgemv for one token) straight on the cache, the weights one
 * causal softmax (the fused kernel's loop), and the output one more product written directly in
 * the [rows, tokens, heads·headDim] layout the output projection reads. Rows keep their own
 * lengths, so batched decoding needs neither padding nor masks.
 *
 * The arithmetic is the one of the tensor path (same BLAS products, same softmax loop), per row
 * and head instead of batched.
 */
import type { Blas } from "./blas.ts";
import { causalSoftmaxValues } from "./fused_ops.ts";

/** Sizes of one attention call. */
export interface AttentionShape {
  /** Rows of the batch. */
  batch: number;
  /** Query heads. */
  heads: number;
  /** Key/value heads (grouped-query attention); divides `heads`. */
  kvHeads: number;
  /** New tokens per row in this call. */
  tokens: number;
  /** Width of each head. */
  headDim: number;
}

/** One layer's cache storage: keys and values, [rowCapacity, kvHeads, capacity, headDim] each. */
export interface LayerBuffers {
  keys: Float32Array;
  values: Float32Array;
  /** Slots per (row, head): the third dimension. */
  capacity: number;
}

/**
 * Writes the new keys and values ([batch, kvHeads, tokens, headDim] each, as the projections
 * give them after RoPE) into slots lengths[b]..lengths[b]+tokens-1 of each row b.
 */
export function writeKeysValues(
  buffers: LayerBuffers,
  keys: Float32Array,
  values: Float32Array,
  lengths: ArrayLike<number>,
  shape: Pick<AttentionShape, "batch" | "kvHeads" | "tokens" | "headDim">,
): void {
  const { batch, kvHeads, tokens, headDim } = shape;
  const block = tokens * headDim;
  for (let b = 0; b < batch; b++) {
    if (lengths[b] + tokens > buffers.capacity) {
      throw new Error(
        `KV cache: row ${b} holds ${lengths[b]} positions; ${tokens} more exceed its ` +
          `${buffers.capacity} slots`,
      );
    }
    for (let g = 0; g < kvHeads; g++) {
      const from = (b * kvHeads + g) * block;
      const to = ((b * kvHeads + g) * buffers.capacity + lengths[b]) * headDim;
      buffers.keys.set(keys.subarray(from, from + block), to);
      buffers.values.set(values.subarray(from, from + block), to);
    }
  }
}

/** Products of at most this many multiply-adds run BLAS on one thread (as cpu_kernels.ts). */
const SINGLE_THREAD_MAX_MACS = 2 ** 22;

/**
 * softmax(q·kᵀ / divisor) · v for queries [batch, heads, tokens, headDim] against the cache,
 * after `writeKeysValues` stored this call's keys and values: row b's query t sits at position
 * lengths[b] + t and sees slots 0..lengths[b]+t (causal), or only the last `window` of them
 * (sliding-window layers). Query head h reads kv head floor(h / (heads / kvHeads)). Returns
 * [batch, tokens, heads·headDim], the heads already merged.
 */
export function cachedAttention(
  blas: Blas,
  buffers: LayerBuffers,
  queries: Float32Array,
  lengths: ArrayLike<number>,
  shape: AttentionShape,
  divisor: number,
  window?: number,
): Float32Array {
  const { batch, heads, kvHeads, tokens, headDim } = shape;
  const group = heads / kvHeads;
  const width = heads * headDim;
  const out = new Float32Array(batch * tokens * width);
  let longest = 0;
  for (let b = 0; b < batch; b++) longest = Math.max(longest, lengths[b] + tokens);
  const scores = new Float32Array(tokens * longest);

  const threads = tokens * longest * headDim <= SINGLE_THREAD_MAX_MACS ? blas.threads() : undefined;
  if (threads !== undefined && threads > 1) blas.setThreads(1);
  try {
    for (let b = 0; b < batch; b++) {
      const cached = lengths[b];
      const keyCount = cached + tokens;
      const rowScores = scores.subarray(0, tokens * keyCount);
      for (let h = 0; h < heads; h++) {
        const g = Math.floor(h / group);
        const start = (b * kvHeads + g) * buffers.capacity * headDim;
        const keys = buffers.keys.subarray(start, start + keyCount * headDim);
        const values = buffers.values.subarray(start, start + keyCount * headDim);
        const qStart = (b * heads + h) * tokens * headDim;
        const q = queries.subarray(qStart, qStart + tokens * headDim);
        // scores[t, j] = q[t] · keys[j]
        blas.sgemm(
          false,
          true,
          tokens,
          keyCount,
          headDim,
          1,
          q,
          headDim,
          keys,
          headDim,
          0,
          rowScores,
          keyCount,
        );
        if (window !== undefined) hideOutsideWindow(rowScores, tokens, keyCount, cached, window);
        const weights = causalSoftmaxValues(rowScores, tokens, keyCount, cached, divisor);
        // out[b, t, h·headDim ..] = weights[t] · values
        const outStart = b * tokens * width + h * headDim;
        const outView = out.subarray(outStart, outStart + (tokens - 1) * width + headDim);
        blas.sgemm(
          false,
          false,
          tokens,
          headDim,
          keyCount,
          1,
          weights,
          keyCount,
          values,
          headDim,
          0,
          outView,
          width,
        );
      }
    }
  } finally {
    if (threads !== undefined && threads > 1) blas.setThreads(threads);
  }
  return out;
}

/**
 * -∞ on the scores of keys `window` or more positions before each query (query t at position
 * cached + t), as the sliding-window mask adds before the softmax.
 */
function hideOutsideWindow(
  scores: Float32Array,
  tokens: number,
  keyCount: number,
  cached: number,
  window: number,
): void {
  for (let t = 0; t < tokens; t++) {
    const firstVisible = Math.min(cached + t - window + 1, keyCount);
    for (let j = 0; j < firstVisible; j++) scores[t * keyCount + j] = -Infinity;
  }
}
