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
 * Sliding-window layers keep a ring of `window` slots per (row, head): position p lives in slot
 * p mod window, overwriting the position `window` back, which no later query can see. RoPE is
 * applied before caching, so slot order does not matter to the products; only the mask does.
 * A one-token step writes its key and then attends over the whole ring (every slot is inside
 * the window); a longer call (prefill) gathers the visible cached positions and its own keys in
 * position order into a scratch matrix, attends there with the window mask, and only then
 * writes the positions the ring keeps.
 *
 * The arithmetic is the one of the tensor path (same BLAS products, same softmax loop), per row
 * and head instead of batched. A one-token step runs the query heads that share a kv head as
 * the rows of one product (grouped-query attention without repeating the kv heads).
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
  /**
   * The call's queries, keys and values are [batch, tokens, heads, headDim] (the projections'
   * order, no transpose) instead of [batch, heads, tokens, headDim]. Same thing for one token.
   */
  tokenMajor?: boolean;
}

/** Offset of token t of head h (of `heads`) of row b in a call's [b, h, t, d] or [b, t, h, d] array. */
function callOffset(
  shape: Pick<AttentionShape, "tokens" | "headDim" | "tokenMajor">,
  heads: number,
  b: number,
  h: number,
  t: number,
): number {
  const { tokens, headDim } = shape;
  return (shape.tokenMajor ? (b * tokens + t) * heads + h : (b * heads + h) * tokens + t) * headDim;
}

/** Copies tokens first..end-1 of (row b, kv head g) of a call's array to `to` (slot after slot). */
function copyTokens(
  from: Float32Array,
  to: Float32Array,
  at: number,
  shape: Pick<AttentionShape, "kvHeads" | "tokens" | "headDim" | "tokenMajor">,
  b: number,
  g: number,
  first: number,
  end: number,
): void {
  const { kvHeads, headDim } = shape;
  if (!shape.tokenMajor) {
    const src = callOffset(shape, kvHeads, b, g, first);
    to.set(from.subarray(src, src + (end - first) * headDim), at);
    return;
  }
  for (let t = first; t < end; t++) {
    const src = callOffset(shape, kvHeads, b, g, t);
    to.set(from.subarray(src, src + headDim), at + (t - first) * headDim);
  }
}

/** One layer's cache storage: keys and values, [rowCapacity, kvHeads, capacity, headDim] each. */
export interface LayerBuffers {
  keys: Float32Array;
  values: Float32Array;
  /** Slots per (row, head): the third dimension. */
  capacity: number;
  /**
   * Sliding-window layers: the window, and the buffers are a ring of at most `window` slots
   * (position p in slot p mod capacity). Undefined: slot p holds position p.
   */
  ring?: number;
}

/**
 * Writes the new keys and values ([batch, kvHeads, tokens, headDim] each, as the projections
 * give them after RoPE) of row b at positions lengths[b].. (slot = position, or position mod
 * capacity in a ring). With `keep`, only row b's first keep[b] tokens are written (the others
 * are padding), and a ring skips positions it would overwrite again within this call.
 */
export function writeKeysValues(
  buffers: LayerBuffers,
  keys: Float32Array,
  values: Float32Array,
  lengths: ArrayLike<number>,
  shape: Pick<AttentionShape, "batch" | "kvHeads" | "tokens" | "headDim" | "tokenMajor">,
  keep?: ArrayLike<number>,
): void {
  const { batch, kvHeads, tokens, headDim } = shape;
  const { capacity, ring } = buffers;
  for (let b = 0; b < batch; b++) {
    const count = keep ? keep[b] : tokens;
    if (ring === undefined && lengths[b] + count > capacity) {
      throw new Error(
        `KV cache: row ${b} holds ${lengths[b]} positions; ${count} more exceed its ` +
          `${capacity} slots`,
      );
    }
    // A ring keeps only the call's last `capacity` positions.
    const first = ring === undefined ? 0 : Math.max(0, count - capacity);
    for (let g = 0; g < kvHeads; g++) {
      const rowStart = (b * kvHeads + g) * capacity * headDim;
      for (let t = first; t < count;) {
        // Runs of consecutive slots: up to the ring's end, or all of them without a ring.
        const slot = (lengths[b] + t) % capacity;
        const run = Math.min(count - t, capacity - slot);
        const dst = rowStart + slot * headDim;
        copyTokens(keys, buffers.keys, dst, shape, b, g, t, t + run);
        copyTokens(values, buffers.values, dst, shape, b, g, t, t + run);
        t += run;
      }
    }
  }
}

/** Products of at most this many multiply-adds run BLAS on one thread (as cpu_kernels.ts). */
const SINGLE_THREAD_MAX_MACS = 2 ** 22;

/** The keys/values one (row, kv head) attends over, as contiguous [count, headDim] matrices. */
interface KeySpan {
  keys: Float32Array;
  values: Float32Array;
  /** Rows of keys/values. */
  count: number;
  /** Index of the call's first query among them (its causal offset). */
  offset: number;
  /** Whether some key lies outside a query's window (the mask must hide it). */
  masked: boolean;
}

/**
 * softmax(q·kᵀ / divisor) · v for queries [batch, heads, tokens, headDim] against the cache.
 * Row b's query t sits at position lengths[b] + t and sees positions 0..lengths[b]+t (causal),
 * or only the last `window` of them (sliding-window layers). Query head h reads kv head
 * floor(h / (heads / kvHeads)). Returns [batch, tokens, heads·headDim], the heads merged.
 *
 * Order with `writeKeysValues`: a plain layer, or a ring with one token per row, is written
 * first (the call's keys are then in the buffers); a ring with more tokens is attended first
 * (`keys`/`values` of the call given here), then written.
 */
export function cachedAttention(
  blas: Blas,
  buffers: LayerBuffers,
  queries: Float32Array,
  lengths: ArrayLike<number>,
  shape: AttentionShape,
  divisor: number,
  window?: number,
  fresh?: { keys: Float32Array; values: Float32Array },
): Float32Array {
  const { batch, heads, kvHeads, tokens, headDim } = shape;
  const group = heads / kvHeads;
  const width = heads * headDim;
  const out = new Float32Array(batch * tokens * width);
  const { capacity, ring } = buffers;
  const gathering = ring !== undefined && tokens > 1;
  if (gathering && !fresh) throw new Error("cachedAttention: a ring prefill needs the call's keys");
  // One-token steps: the group's query heads are the rows of one product.
  const queryRows = tokens === 1 ? group : tokens;
  let longest = 0;
  for (let b = 0; b < batch; b++) longest = Math.max(longest, lengths[b] + tokens);
  const scores = new Float32Array(queryRows * longest);
  const scratch = gathering
    ? {
      keys: new Float32Array((Math.min(longest, ring + tokens)) * headDim),
      values: new Float32Array((Math.min(longest, ring + tokens)) * headDim),
    }
    : undefined;

  /** Where row b's kv head g reads its keys (see the module comment on rings). */
  const span = (b: number, g: number): KeySpan => {
    const cached = lengths[b];
    const start = (b * kvHeads + g) * capacity * headDim;
    if (!gathering) {
      const count = ring === undefined ? cached + tokens : Math.min(cached + 1, capacity);
      return {
        keys: buffers.keys.subarray(start, start + count * headDim),
        values: buffers.values.subarray(start, start + count * headDim),
        count,
        offset: count - tokens,
        masked: ring === undefined && window !== undefined && cached + tokens > window,
      };
    }
    // Ring prefill: the cached positions the first query can see, then the call's own.
    const visible = Math.min(cached, ring - 1);
    for (let i = 0; i < visible; i++) {
      const slot = (cached - visible + i) % capacity;
      const src = start + slot * headDim;
      scratch!.keys.set(buffers.keys.subarray(src, src + headDim), i * headDim);
      scratch!.values.set(buffers.values.subarray(src, src + headDim), i * headDim);
    }
    copyTokens(fresh!.keys, scratch!.keys, visible * headDim, shape, b, g, 0, tokens);
    copyTokens(fresh!.values, scratch!.values, visible * headDim, shape, b, g, 0, tokens);
    const count = visible + tokens;
    return {
      keys: scratch!.keys.subarray(0, count * headDim),
      values: scratch!.values.subarray(0, count * headDim),
      count,
      offset: visible,
      masked: true,
    };
  };

  const threads = tokens * longest * headDim <= SINGLE_THREAD_MAX_MACS ? blas.threads() : undefined;
  if (threads !== undefined && threads > 1) blas.setThreads(1);
  try {
    for (let b = 0; b < batch; b++) {
      for (let g = 0; g < kvHeads; g++) {
        const { keys, values, count, offset, masked } = span(b, g);
        // One token: the group's heads (adjacent) as rows; else one head at a time.
        const passes = tokens === 1 ? [[g * group, group]] : headsOf(g, group, tokens);
        for (const [h, rows] of passes) {
          const rowScores = scores.subarray(0, rows * count);
          // Token-major queries of one head are every `width`-th run of headDim.
          const qLd = tokens > 1 && shape.tokenMajor ? width : headDim;
          const qStart = callOffset(shape, heads, b, h, 0);
          const q = queries.subarray(qStart, qStart + (rows - 1) * qLd + headDim);
          // scores[t, j] = q[t] · keys[j]
          blas.sgemm(
            false,
            true,
            rows,
            count,
            headDim,
            1,
            q,
            qLd,
            keys,
            headDim,
            0,
            rowScores,
            count,
          );
          // One token: every row is the same position (offset), all keys before it visible.
          const causalOffset = tokens === 1 ? count - 1 : offset;
          if (masked && window !== undefined) {
            hideOutsideWindow(rowScores, rows, count, offset, window, tokens === 1);
          }
          const weights = causalSoftmaxValues(rowScores, rows, count, causalOffset, divisor);
          // out[b, t, h·headDim ..] = weights[t] · values; one token: the group's heads are
          // adjacent in the output row, so the product writes them all.
          const outStart = b * tokens * width + h * headDim;
          const ldc = tokens === 1 ? headDim : width;
          const outView = out.subarray(outStart, outStart + (rows - 1) * ldc + headDim);
          blas.sgemm(
            false,
            false,
            rows,
            headDim,
            count,
            1,
            weights,
            count,
            values,
            headDim,
            0,
            outView,
            ldc,
          );
        }
      }
    }
  } finally {
    if (threads !== undefined && threads > 1) blas.setThreads(threads);
  }
  return out;
}

/** [head, tokens] for each query head of kv head g's group (multi-token calls: a head a pass). */
function headsOf(g: number, group: number, tokens: number): [number, number][] {
  return Array.from({ length: group }, (_, i) => [g * group + i, tokens]);
}

/**
 * -∞ on the scores of keys `window` or more positions before each query (query t at position
 * offset + t, or every row at offset when `samePosition`), as the sliding-window mask adds
 * before the softmax.
 */
function hideOutsideWindow(
  scores: Float32Array,
  rows: number,
  keyCount: number,
  offset: number,
  window: number,
  samePosition: boolean,
): void {
  for (let t = 0; t < rows; t++) {
    const position = samePosition ? offset : offset + t;
    const firstVisible = Math.min(position - window + 1, keyCount);
    for (let j = 0; j < firstVisible; j++) scores[t * keyCount + j] = -Infinity;
  }
}
