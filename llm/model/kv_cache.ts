/**
 * The key/value cache that makes generation cost one token's work per step: each block's keys
 * and values (the n_kv_groups heads, after RoPE) of the positions seen so far, per row of the
 * batch, each row with its own length.
 *
 * Two stores, one interface:
 *
 * - **in place** (the cpu backend with BLAS, i.e. the engine `initEngine` sets up): plain
 *   Float32Arrays of [rows, kvHeads, capacity, headDim] per layer, reserved ahead (growing by
 *   doubling up to the context length), and written at each row's own length. A decode step
 *   copies only its new keys/values; attention reads the cache where it lies
 *   (llm/engine/cached_attention.ts). Rows of different lengths need no padding or masks.
 *   Sliding-window layers hold a ring of `window` slots instead (position p in slot p mod
 *   window): a Gemma 3 model's local layers cost their window, not the context.
 * - **tensors** (every other backend: webgpu, wasm, plain tfjs): tfjs tensors
 *   [rows, kvHeads, slots, headDim] grown by `tf.concat`, rows of different lengths left-padded
 *   to the longest (the model masks the pad slots, see `leftPads`).
 *
 * Rows can be dropped (`keepRows`) and added (`appendRows`), which is what continuous batching
 * (llm/infer/batch_generate.ts) does as answers finish and waiting prompts take their place.
 */
import * as tf from "@tensorflow/tfjs";
import { type LayerBuffers, writeKeysValues } from "../engine/cached_attention.ts";
import { cachedAttention } from "../engine/cached_attention.ts";
import { blasInUse } from "../engine/cpu_kernels.ts";

/**
 * One layer's cached keys and values in the tensor store, [rows, kvHeads, slots, headDim] each:
 * the n_kv_groups key/value heads (after RoPE), not their repetition to every query head.
 */
export interface LayerKV {
  /** Keys of the cached positions, null before the first token. */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  keys: tf.Tensor4D | null;
  /** Values of the cached positions, null before the first token. */
  values: tf.Tensor4D | null;
}

/** How a cache is reserved. */
export interface KVCacheOptions {
  /** Most positions a row may hold (the model's context length). Default: no limit. */
  maxLength?: number;
  /**
   * Slots per row reserved at first use (in-place store); the cache doubles (up to
   * `maxLength`) when a row needs more. Default: min(maxLength, 2048).
   */
  capacity?: number;
  /** Rows reserved at first use (in-place store); grows as rows are added. Default: the first batch. */
  rows?: number;
  /**
   * Hold keys/values in place. Default: exactly when the tfjs backend is cpu and the engine's
   * BLAS kernels are in use (the in-place attention needs BLAS); true elsewhere is an error.
   */
  inPlace?: boolean;
}

/** Sizes of one layer's heads (and its window), known at its first write. */
interface HeadShape {
  kvHeads: number;
  headDim: number;
  /** A sliding layer's window when the in-place store keeps it as a ring. */
  ring?: number;
}

/**
 * Keys and values of the tokens seen so far, one entry per transformer block, rows of the batch
 * each with its own length (the position of its next token).
 */
export class KVCache {
  /** Tensor store: one entry per transformer block (unused by the in-place store). */
  readonly layers: LayerKV[];
  /** True for the in-place store (see the module's comment). */
  readonly inPlace: boolean;
  /** Most positions a row may hold. */
  readonly maxLength: number;
  private rowLengths: number[] = [];
  private buffers: (LayerBuffers | null)[];
  private heads: (HeadShape | null)[];
  private capacity: number;
  private rowCapacity: number;
  /** Real tokens per row of the next pass (the rest padding), when announced. */
  private keepNext: number[] | null = null;

  /** An empty cache for a model of `numLayers` blocks. */
  constructor(numLayers: number, options: KVCacheOptions = {}) {
    const canInPlace = tf.getBackend() === "cpu" && blasInUse() !== undefined;
    if (options.inPlace && !canInPlace) {
      throw new Error(
        `KVCache: inPlace needs the cpu backend with BLAS (initEngine); backend is ${tf.getBackend()}` +
          (blasInUse() ? "" : ", no BLAS in use"),
      );
    }
    this.inPlace = options.inPlace ?? canInPlace;
    this.maxLength = options.maxLength ?? Infinity;
    this.capacity = Math.max(1, Math.min(options.capacity ?? 2048, this.maxLength));
    this.rowCapacity = options.rows ?? 0;
    this.layers = Array.from({ length: numLayers }, () => ({ keys: null, values: null }));
    this.buffers = new Array(numLayers).fill(null);
    this.heads = new Array(numLayers).fill(null);
  }

  /** Rows of the batch the cache holds (0 before the first forward pass). */
  get rows(): number {
    return this.rowLengths.length;
  }

  /** Cached positions of each row (the position of its next token). */
  get lengths(): readonly number[] {
    return this.rowLengths;
  }

  /** Cached positions of the longest row: every row's length when they are all the same. */
  get length(): number {
    return this.rowLengths.reduce((a, b) => Math.max(a, b), 0);
  }

  /**
   * Per row, how many slots it lacks to the longest: the left padding of the tensor store
   * (whose rows share one slot count), and what shifts each row's positions.
   */
  leftPads(): number[] {
    const longest = this.length;
    return this.rowLengths.map((n) => longest - n);
  }

  /**
   * In-place store: slots layer `layer` reserves per (row, kv head): its window at most for a
   * sliding layer's ring; 0 before the layer's first write (and for the tensor store).
   */
  slots(layer: number): number {
    return this.buffers[layer]?.capacity ?? 0;
  }

  /**
   * Called by the model before a forward pass of `batch` rows and `tokens` new tokens each: the
   * first pass sets the rows; the in-place store reserves room for the new positions.
   */
  begin(batch: number, tokens: number): void {
    if (this.rows === 0) this.rowLengths = new Array(batch).fill(0);
    if (batch !== this.rows) {
      throw new Error(`KVCache: it holds ${this.rows} rows; the input has ${batch}`);
    }
    if (this.inPlace) this.reserve(Math.max(this.rows, this.rowCapacity), this.length + tokens);
  }

  /**
   * Called by the model after the forward pass: every row holds `tokens` more positions (or
   * the real tokens announced by `nextPassKeeps`).
   */
  advance(tokens: number): void {
    const keep = this.keepNext;
    this.keepNext = null;
    this.rowLengths = this.rowLengths.map((n, b) => n + (keep ? keep[b] : tokens));
  }

  /**
   * In-place store: of the next forward pass's tokens, row b keeps only its first `lengths[b]`
   * (the rest are right padding, as batched prefill feeds). Announced before the pass, so that
   * a sliding layer's ring never lets padding overwrite positions the row still needs
   * (`truncate` after the pass cannot give those back).
   */
  nextPassKeeps(lengths: readonly number[]): void {
    if (!this.inPlace) {
      throw new Error(
        "KVCache.nextPassKeeps: only the in-place store keeps rows of their own lengths",
      );
    }
    if (lengths.some((n) => !(Number.isInteger(n) && n >= 0))) {
      throw new Error(`KVCache.nextPassKeeps: lengths [${lengths}] must be whole numbers ≥ 0`);
    }
    this.keepNext = [...lengths];
  }

  /**
   * Tensor store: appends [rows, kvHeads, tokens, headDim] keys/values to layer `layer` and
   * returns all of them (kept beyond the caller's tf.tidy).
   */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  appendTensors(layer: number, keys: tf.Tensor4D, values: tf.Tensor4D): [tf.Tensor4D, tf.Tensor4D] {
    const entry = this.layers[layer];
    if (entry.keys && entry.values) {
      keys = tf.concat([entry.keys, keys], 2);
      values = tf.concat([entry.values, values], 2);
    }
    entry.keys?.dispose();
    entry.values?.dispose();
    entry.keys = tf.keep(keys);
    entry.values = tf.keep(values);
    return [keys, values];
  }

  /**
   * In-place store: writes this call's keys/values ([rows, kvHeads, tokens, headDim]) at each
   * row's length in layer `layer` and returns the attention of `queries`
   * ([rows, heads, tokens, headDim]) over the row's cache, [rows, tokens, heads·headDim]. With
   * `tokenMajor` the three are [rows, tokens, heads, headDim], as the projections give them.
   */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  attend(
    layer: number,
    queries: tf.Tensor4D,
    keys: tf.Tensor4D,
    values: tf.Tensor4D,
    divisor: number,
    window?: number,
    tokenMajor = false,
  ): tf.Tensor3D {
    const blas = blasInUse();
    if (!this.inPlace || !blas) {
      throw new Error("KVCache.attend: only the in-place store (cpu backend with BLAS) attends");
    }
    const [batch, dim1, dim2, headDim] = queries.shape;
    const [heads, tokens] = tokenMajor ? [dim2, dim1] : [dim1, dim2];
    const kvHeads = keys.shape[tokenMajor ? 2 : 1];
    const shape = { batch, heads, kvHeads, tokens, headDim, tokenMajor };
    const keep = this.keepNext;
    if (keep && (keep.length !== batch || keep.some((n) => n > tokens))) {
      throw new Error(
        `KVCache: nextPassKeeps gave lengths [${keep}]; the pass has ${batch} rows of ${tokens} tokens`,
      );
    }
    // A window shorter than the context: the layer's cache is a ring of `window` slots.
    const ring = window !== undefined && window < this.maxLength ? window : undefined;
    const buffers = this.layerBuffers(layer, { kvHeads, headDim, ring });
    // On the cpu backend dataSync hands back the tensor's own array: no copy, no wait.
    const fresh = {
      keys: keys.dataSync() as Float32Array,
      values: values.dataSync() as Float32Array,
    };
    const q = queries.dataSync() as Float32Array;
    const write = () =>
      writeKeysValues(buffers, fresh.keys, fresh.values, this.rowLengths, shape, keep ?? undefined);
    // A ring prefill reads the positions it is about to overwrite: attend first, then write.
    const attendFirst = buffers.ring !== undefined && tokens > 1;
    if (!attendFirst) write();
    const out = cachedAttention(blas, buffers, q, this.rowLengths, shape, divisor, window, fresh);
    if (attendFirst) write();
    return tf.tensor3d(out, [batch, tokens, heads * headDim]);
  }

  /**
   * In-place store: shortens each row to `lengths[b]` positions (at most its length), forgetting
   * the rest. Batched prefill feeds right-padded rows and cuts each back to its real tokens.
   */
  truncate(lengths: readonly number[]): void {
    if (!this.inPlace) {
      throw new Error("KVCache.truncate: only the in-place store keeps rows of their own lengths");
    }
    if (
      lengths.length !== this.rows || lengths.some((n, b) => !(n >= 0 && n <= this.rowLengths[b]))
    ) {
      throw new Error(
        `KVCache.truncate: lengths [${lengths}] must be one per row, each within the row's [${this.rowLengths}]`,
      );
    }
    // A ring that went round has overwritten the positions a shorter row would need again.
    const ring = this.buffers.find((buffers) => buffers?.ring !== undefined);
    lengths.forEach((n, b) => {
      const was = this.rowLengths[b];
      if (ring && n < was && was > ring.capacity) {
        throw new Error(
          `KVCache.truncate: row ${b} went round its sliding window's ring of ${ring.capacity} ` +
            `slots (${was} positions), so it cannot be cut back to ${n}; announce the real ` +
            `lengths before the pass with nextPassKeeps`,
        );
      }
    });
    this.rowLengths = [...lengths];
  }

  /**
   * Keeps only rows `rows` (indices, ascending), in that order; the others are forgotten. The
   * tensor store also drops the leading slots that are padding in every row left.
   */
  keepRows(rows: readonly number[]): void {
    rows.forEach((r, i) => {
      if (!(r >= 0 && r < this.rows) || (i > 0 && r <= rows[i - 1])) {
        throw new Error(
          `KVCache.keepRows: rows must ascend within 0..${this.rows - 1}, got ${rows}`,
        );
      }
    });
    const lengths = rows.map((r) => this.rowLengths[r]);
    if (this.inPlace) {
      this.buffers.forEach((buffers, layer) => {
        if (!buffers) return;
        const { kvHeads, headDim } = this.heads[layer]!;
        const block = buffers.capacity * headDim;
        // Row i takes row rows[i] ≥ i: rows before i were already read, so nothing is lost.
        // A ring's slots move as they are (slot = position mod capacity stays true).
        rows.forEach((from, to) => {
          if (from === to) return;
          for (let g = 0; g < kvHeads; g++) {
            const src = (from * kvHeads + g) * block;
            const dst = (to * kvHeads + g) * block;
            const used = Math.min(lengths[to], buffers.capacity) * headDim;
            buffers.keys.copyWithin(dst, src, src + used);
            buffers.values.copyWithin(dst, src, src + used);
          }
        });
      });
    } else {
      const leading = this.length - lengths.reduce((a, b) => Math.max(a, b), 0);
      for (const entry of this.layers) {
        if (!entry.keys || !entry.values) continue;
        const [keys, values] = tf.tidy(() => {
          const index = tf.tensor1d(Array.from(rows), "int32");
          return [entry.keys!, entry.values!].map((t) => {
            const picked = tf.gather(t, index, 0);
            const [b, h, slots, d] = picked.shape;
            return leading > 0
              ? tf.slice(picked, [0, 0, leading, 0], [b, h, slots - leading, d])
              : picked;
          }) as tf.Tensor4D[];
        });
        entry.keys.dispose();
        entry.values.dispose();
        entry.keys = keys;
        entry.values = values;
      }
    }
    this.rowLengths = lengths;
  }

  /**
   * Adds the rows of `other` (a cache of the same model and store) after this cache's rows;
   * `other` is left as it was.
   */
  appendRows(other: KVCache): void {
    if (other.inPlace !== this.inPlace || other.layers.length !== this.layers.length) {
      throw new Error("KVCache.appendRows: the caches belong to different models or stores");
    }
    if (other.rows === 0) return;
    if (this.rows === 0) this.rowCapacity = Math.max(this.rowCapacity, other.rows);
    const rows = this.rows + other.rows;
    if (this.inPlace) {
      this.reserve(Math.max(rows, this.rowCapacity), other.length);
      other.buffers.forEach((theirs, layer) => {
        if (!theirs) return;
        const head = other.heads[layer]!;
        const mine = this.layerBuffers(layer, head);
        const { kvHeads, headDim } = head;
        other.rowLengths.forEach((length, r) => {
          // A ring that went round is full (its window) in both caches: slots copy as they are.
          if (length > theirs.capacity && theirs.capacity !== mine.capacity) {
            throw new Error(
              `KVCache.appendRows: layer ${layer}'s rings differ (${theirs.capacity} vs ${mine.capacity} slots)`,
            );
          }
          for (let g = 0; g < kvHeads; g++) {
            const src = (r * kvHeads + g) * theirs.capacity * headDim;
            const dst = ((this.rows + r) * kvHeads + g) * mine.capacity * headDim;
            const used = Math.min(length, theirs.capacity) * headDim;
            mine.keys.set(theirs.keys.subarray(src, src + used), dst);
            mine.values.set(theirs.values.subarray(src, src + used), dst);
          }
        });
      });
    } else {
      const slots = Math.max(this.length, other.length);
      const padLeft = (t: tf.Tensor4D, n: number) =>
        n > 0 ? tf.pad(t, [[0, 0], [0, 0], [n, 0], [0, 0]]) : t;
      this.layers.forEach((entry, i) => {
        const theirs = other.layers[i];
        if (!theirs.keys || !theirs.values) return;
        if (!entry.keys || !entry.values) {
          // This cache is empty: the rows arrive as they are.
          entry.keys = tf.keep(padLeft(theirs.keys, slots - other.length).clone());
          entry.values = tf.keep(padLeft(theirs.values, slots - other.length).clone());
          return;
        }
        const [keys, values] = tf.tidy(() =>
          [[entry.keys!, theirs.keys!], [entry.values!, theirs.values!]].map(([a, b]) =>
            tf.concat([padLeft(a, slots - this.length), padLeft(b, slots - other.length)], 0)
          ) as tf.Tensor4D[]
        );
        entry.keys.dispose();
        entry.values.dispose();
        entry.keys = keys;
        entry.values = values;
      });
    }
    this.rowLengths = [...this.rowLengths, ...other.rowLengths];
  }

  /** Forgets every row and position (and frees the tensors or buffers). */
  reset(): void {
    for (const layer of this.layers) {
      layer.keys?.dispose();
      layer.values?.dispose();
      layer.keys = null;
      layer.values = null;
    }
    this.buffers.fill(null);
    this.rowLengths = [];
    this.keepNext = null;
  }

  /** Same as `reset`: frees what the cache holds. */
  dispose(): void {
    this.reset();
  }

  /** Layer `layer`'s buffers, allocated at its first write. */
  private layerBuffers(layer: number, head: HeadShape): LayerBuffers {
    const known = this.heads[layer];
    if (
      known &&
      (known.kvHeads !== head.kvHeads || known.headDim !== head.headDim || known.ring !== head.ring)
    ) {
      throw new Error(
        `KVCache: layer ${layer} holds ${known.kvHeads} heads of ${known.headDim} (window ` +
          `${known.ring ?? "none"}); got ${head.kvHeads} of ${head.headDim} (window ${
            head.ring ?? "none"
          })`,
      );
    }
    this.heads[layer] = head;
    let buffers = this.buffers[layer];
    if (!buffers) {
      // Untouched pages of a fresh ArrayBuffer cost no memory: reserving ahead is cheap.
      const capacity = slotsOf(head, this.capacity);
      const size = Math.max(this.rowCapacity, this.rows) * head.kvHeads * capacity * head.headDim;
      buffers = {
        keys: new Float32Array(size),
        values: new Float32Array(size),
        capacity,
        ring: head.ring,
      };
      this.buffers[layer] = buffers;
    }
    return buffers;
  }

  /**
   * Makes room for `rows` rows of `slots` positions: doubles the slots (up to maxLength) and
   * grows the rows as needed, moving what is cached into the larger buffers.
   */
  private reserve(rows: number, slots: number): void {
    if (slots > this.maxLength) {
      throw new Error(`KVCache: ${slots} positions exceed the cache's limit of ${this.maxLength}`);
    }
    let capacity = this.capacity;
    while (capacity < slots) capacity = Math.min(capacity * 2, this.maxLength);
    const rowCapacity = rows > this.rowCapacity
      ? Math.max(rows, this.rowCapacity * 2)
      : this.rowCapacity;
    if (capacity === this.capacity && rowCapacity === this.rowCapacity) return;
    this.buffers.forEach((old, layer) => {
      if (!old) return;
      const head = this.heads[layer]!;
      const { kvHeads, headDim } = head;
      const slots = slotsOf(head, capacity);
      if (slots === old.capacity && rowCapacity === this.rowCapacity) return;
      const size = rowCapacity * kvHeads * slots * headDim;
      const grown: LayerBuffers = {
        keys: new Float32Array(size),
        values: new Float32Array(size),
        capacity: slots,
        ring: head.ring,
      };
      this.rowLengths.forEach((length, r) => {
        // A ring only goes round once it has its full window, which it then keeps: its slots
        // move as they are.
        const used = Math.min(length, old.capacity) * headDim;
        for (let g = 0; g < kvHeads; g++) {
          const src = (r * kvHeads + g) * old.capacity * headDim;
          const dst = (r * kvHeads + g) * slots * headDim;
          grown.keys.set(old.keys.subarray(src, src + used), dst);
          grown.values.set(old.values.subarray(src, src + used), dst);
        }
      });
      this.buffers[layer] = grown;
    });
    this.capacity = capacity;
    this.rowCapacity = rowCapacity;
  }
}

/** Slots a layer reserves when the cache reserves `capacity`: at most its window for a ring. */
function slotsOf(head: HeadShape, capacity: number): number {
  return head.ring === undefined ? capacity : Math.min(capacity, head.ring);
}
