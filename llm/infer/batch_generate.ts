/**
 * Batched generation: several prompts decoded together with one key/value cache, so each decode
 * step is one forward pass over `rows` tokens instead of `rows` passes over one token (the
 * matrix products see a taller left operand, which BLAS turns into better throughput).
 *
 * Rows of different lengths are LEFT-padded to a common length. Why left and not per-row
 * lengths: with left padding every row's next token sits in the same (last) slot, so one
 * dense [rows, 1] input and one shared cache length serve all rows, and `lastTokenOnly` picks
 * every row's logits at once; per-row lengths would need ragged caches or a gather per step.
 * Padding must not change a row's tokens, so the model is told the pad counts
 * (`ForwardOptions.padding`): pad keys are masked out of every real query's attention, and each
 * row's position ids start at 0 at its first real token (GPT-2's learned positional embeddings
 * would otherwise see shifted positions). The result equals one-by-one decoding up to float
 * rounding in the matrix products (different shapes may sum in a different order); greedy tests
 * check token-for-token equality.
 *
 * A row that stops (end-of-text or its token budget) is dropped from the batch and its cache
 * rows with it, and slots that are padding in every remaining row are trimmed off, so finished
 * rows cost nothing in later steps. With `maxRows`, waiting prompts take the freed rows: they
 * are prefilled on their own and their cache is joined to the running one (the shorter of the
 * two left-padded), so the batch stays full.
 */
import { nextTurn } from "../timers.ts";
import * as tf from "@tensorflow/tfjs";
import type { KVCache } from "../model/attention.ts";
import {
  generate,
  limitVocab,
  sampleNextToken,
  type SamplingOptions,
  stopSet,
} from "../model/generate.ts";
import type { GPTModel } from "../model/gpt.ts";
import { SeededRandom } from "../random.ts";

/** Options of `batchGenerate` and `batchGenerateRows`. */
export interface BatchGenerateOptions extends SamplingOptions {
  /** New tokens per row at most. */
  maxNewTokens: number;
  /** A row stops (without emitting it) when it produces this token, e.g. 50256. */
  eosId?: number;
  /** More stop tokens, with `eosId` (a chat model's end-of-turn token). */
  stopIds?: Iterable<number>;
  /** Sample only among ids below this (see `GenerateOptions.vocabLimit`). */
  vocabLimit?: number;
  /**
   * Sampling seed (default 123). Every row gets its own generator seeded with it, so a row
   * draws the same numbers as `generate(model, prompt, { seed })` would for it alone.
   */
  seed?: number;
  /** Window size; default and maximum: the model's context_length (see `batchGenerateRows`). */
  contextSize?: number;
  /**
   * Rows decoded together at most (default: all prompts at once). With fewer rows than
   * prompts, a finished row's place goes to the next waiting prompt (continuous batching), so
   * the batch stays full while answers of different lengths finish.
   */
  maxRows?: number;
  /** Token used in pad slots (never attended to; default 0). */
  padId?: number;
  /** Checked before every step; aborting throws the signal's reason and frees the cache. */
  signal?: AbortSignal;
  /**
   * Give the event loop a turn every this many decode steps (default 1), so a server, a UI
   * or a Ctrl-C handler stays responsive while a batch decodes. 0: never.
   */
  yieldEvery?: number;
  /** Called after every decode step with the number of rows still decoding (for progress). */
  onStep?: (info: { activeRows: number; newTokens: number }) => void;
}

/** One finished row: its index among the prompts and its new tokens (the stop token excluded). */
export interface FinishedRow {
  /** Index of the prompt in the list given. */
  row: number;
  /** Its new tokens, the stop token excluded. */
  tokens: number[];
}

interface ActiveRow {
  row: number;
  tokens: number[];
  rng: SeededRandom;
  /** Pad slots at the start of this row in the cache. */
  pads: number;
}

/**
 * Decodes `prompts` (token ids, any lengths) together and yields each row as soon as it
 * finishes, in finishing order. A prompt whose tokens would not fit the window for the whole
 * run (prompt + maxNewTokens - 1 > contextSize) needs the sliding window of `generate`; such
 * rows are decoded one at a time with `generate` after the batch, with the same results.
 */
export async function* batchGenerateRows(
  model: GPTModel,
  prompts: readonly (readonly number[])[],
  options: BatchGenerateOptions,
): AsyncGenerator<FinishedRow> {
  const contextSize = Math.min(
    options.contextSize ?? model.config.context_length,
    model.config.context_length,
  );
  const { maxNewTokens, signal, onStep, padId = 0, yieldEvery = 1 } = options;
  const stops = stopSet(options);
  const seed = options.seed ?? 123;
  prompts.forEach((prompt, row) => {
    if (prompt.length === 0) {
      throw new Error(`batchGenerate: prompt ${row} is empty (each needs at least one token)`);
    }
  });
  if (!(maxNewTokens >= 0)) throw new Error(`batchGenerate: maxNewTokens ${maxNewTokens} < 0`);
  const fits = (prompt: readonly number[]) => prompt.length + maxNewTokens - 1 <= contextSize;
  const windowed = prompts.flatMap((prompt, row) => fits(prompt) ? [] : [row]);
  const batched = prompts.flatMap((prompt, row) => fits(prompt) ? [row] : []);

  if (maxNewTokens === 0) {
    for (let row = 0; row < prompts.length; row++) yield { row, tokens: [] };
    return;
  }

  const maxRows = options.maxRows ?? Infinity;
  if (!(maxRows >= 1)) throw new Error(`batchGenerate: maxRows ${maxRows} must be ≥ 1`);
  const vocab = model.config.vocab_size;
  /** Samples each row's next token; finished rows go to `finished`, the others' indices back. */
  const sampleRows = (rows: ActiveRow[], logits: Float32Array, finished: FinishedRow[]) => {
    onStep?.({ activeRows: rows.length, newTokens: rows.length });
    return rows.flatMap((r, i) => {
      const row = limitVocab(logits.subarray(i * vocab, (i + 1) * vocab), options.vocabLimit);
      const next = sampleNextToken(row, options, r.rng);
      if (!stops.has(next)) r.tokens.push(next);
      if (!stops.has(next) && r.tokens.length < maxNewTokens) return [i];
      finished.push({ row: r.row, tokens: r.tokens });
      return [];
    });
  };

  // The rows decoding now and their shared cache; the other prompts wait for a free row.
  let cache = model.newCache();
  let active: ActiveRow[] = [];
  let admitted = 0;
  let step = 0;
  try {
    while (active.length > 0 || admitted < batched.length) {
      signal?.throwIfAborted();
      const finished: FinishedRow[] = [];
      if (active.length < maxRows && admitted < batched.length) {
        // Free rows: prefill waiting prompts on a cache of their own (left-padded to their
        // longest), sample their first tokens, and join the survivors to the running batch.
        const rows = batched.slice(admitted, admitted + (maxRows - active.length));
        admitted += rows.length;
        const width = Math.max(...rows.map((row) => prompts[row].length));
        const fresh: ActiveRow[] = rows.map((row) => ({
          row,
          tokens: [],
          rng: new SeededRandom(seed),
          pads: width - prompts[row].length,
        }));
        const freshCache = model.newCache();
        try {
          const feed = fresh.map((r) =>
            new Array<number>(r.pads).fill(padId).concat(prompts[r.row])
          );
          const padding = fresh.map((r) => r.pads);
          const kept = sampleRows(
            fresh,
            await lastLogitsOfRows(model, feed, freshCache, padding),
            finished,
          );
          const survivors = keepRows(freshCache, fresh, kept);
          if (active.length === 0) {
            cache.dispose(); // empty: every row it had has finished
            [cache, active] = [freshCache, survivors];
          } else {
            joinCaches(cache, active, freshCache, survivors);
            active = [...active, ...survivors];
          }
        } finally {
          if (cache !== freshCache) freshCache.dispose();
        }
      } else {
        const feed = active.map((r) => [r.tokens[r.tokens.length - 1]]);
        const padding = active.map((r) => r.pads);
        const kept = sampleRows(
          active,
          await lastLogitsOfRows(model, feed, cache, padding),
          finished,
        );
        active = keepRows(cache, active, kept);
      }
      for (const row of finished) yield row;
      step++;
      if (yieldEvery > 0 && step % yieldEvery === 0 && active.length > 0) await nextTurn();
    }
  } finally {
    cache.dispose();
  }

  for (const row of windowed) {
    signal?.throwIfAborted();
    const tokens = await generate(model, prompts[row], {
      ...options,
      contextSize,
      seed,
      onToken: async (_token, index) => {
        onStep?.({ activeRows: 1, newTokens: 1 });
        signal?.throwIfAborted();
        if (yieldEvery > 0 && (index + 1) % yieldEvery === 0) await nextTurn();
      },
    });
    yield { row, tokens };
  }
}

/** `batchGenerateRows` collected: the new tokens of every prompt, in the prompts' order. */
export async function batchGenerate(
  model: GPTModel,
  prompts: readonly (readonly number[])[],
  options: BatchGenerateOptions,
): Promise<number[][]> {
  const out: number[][] = new Array(prompts.length);
  for await (const { row, tokens } of batchGenerateRows(model, prompts, options)) out[row] = tokens;
  return out;
}

/** Logits [rows × vocab] of each row's last slot after feeding `feed` (equal-length rows). */
async function lastLogitsOfRows(
  model: GPTModel,
  feed: number[][],
  cache: KVCache,
  padding: number[],
): Promise<Float32Array> {
  const input = tf.tensor2d(feed, [feed.length, feed[0].length], "int32");
  try {
    const logits = model.forward(input, { cache, lastTokenOnly: true, padding });
    // data(), not dataSync(): WebGPU under Deno cannot read synchronously.
    const values = (await logits.data()) as Float32Array;
    logits.dispose();
    return values;
  } finally {
    input.dispose();
  }
}

/**
 * Drops the finished rows from `cache` (and the slots that are now padding in every row left);
 * returns the rows that go on, their pad counts updated.
 */
function keepRows(cache: KVCache, rows: ActiveRow[], kept: number[]): ActiveRow[] {
  const survivors = kept.map((i) => rows[i]);
  if (survivors.length === 0) {
    cache.reset();
    return survivors;
  }
  const trim = Math.min(...survivors.map((r) => r.pads));
  if (survivors.length < rows.length || trim > 0) keepCacheRows(cache, kept, trim);
  for (const r of survivors) r.pads -= trim;
  return survivors;
}

/**
 * Appends the rows of `added` to `cache` (continuous batching): the cache with fewer slots is
 * left-padded with zero keys/values to the other's length (its rows' pad counts grow by as
 * much), then the two are stacked along the batch axis. `added` is left as it was.
 */
function joinCaches(
  cache: KVCache,
  rows: ActiveRow[],
  added: KVCache,
  addedRows: ActiveRow[],
): void {
  if (addedRows.length === 0) return;
  const slots = Math.max(cache.length, added.length);
  const grow = slots - cache.length;
  const addedGrow = slots - added.length;
  const padLeft = (t: tf.Tensor4D, n: number) =>
    n > 0 ? tf.pad(t, [[0, 0], [0, 0], [n, 0], [0, 0]]) : t;
  cache.layers.forEach((layer, i) => {
    const other = added.layers[i];
    const [keys, values] = tf.tidy(() =>
      [[layer.keys!, other.keys!], [layer.values!, other.values!]].map(([mine, theirs]) =>
        tf.concat([padLeft(mine, grow), padLeft(theirs, addedGrow)], 0)
      ) as tf.Tensor4D[]
    );
    layer.keys!.dispose();
    layer.values!.dispose();
    layer.keys = keys;
    layer.values = values;
  });
  for (const r of rows) r.pads += grow;
  for (const r of addedRows) r.pads += addedGrow;
  cache.length = slots;
}

/**
 * Keeps only the cache rows `rows` (batch indices, ascending) and drops the first `leading`
 * slots (padding in every kept row). The cache's tensors are replaced; its length shrinks.
 */
export function keepCacheRows(cache: KVCache, rows: readonly number[], leading: number): void {
  for (const layer of cache.layers) {
    if (!layer.keys || !layer.values) continue;
    const [keys, values] = tf.tidy(() => {
      const index = tf.tensor1d(Array.from(rows), "int32");
      return [layer.keys!, layer.values!].map((t) => {
        const picked = tf.gather(t, index, 0);
        const [b, h, slots, d] = picked.shape;
        return leading > 0
          ? tf.slice(picked, [0, 0, leading, 0], [b, h, slots - leading, d])
          : picked;
      }) as tf.Tensor4D[];
    });
    layer.keys.dispose();
    layer.values.dispose();
    layer.keys = keys;
    layer.values = values;
  }
  cache.length -= leading;
}
