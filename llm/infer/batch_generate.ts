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
 * rows cost nothing in later steps.
 */
import * as tf from "@tensorflow/tfjs";
import type { KVCache } from "../model/attention.ts";
import { generate, sampleNextToken, type SamplingOptions } from "../model/generate.ts";
import type { GPTModel } from "../model/gpt.ts";
import { SeededRandom } from "../random.ts";

export interface BatchGenerateOptions extends SamplingOptions {
  /** New tokens per row at most. */
  maxNewTokens: number;
  /** A row stops (without emitting it) when it produces this token, e.g. 50256. */
  eosId?: number;
  /**
   * Sampling seed (default 123). Every row gets its own generator seeded with it, so a row
   * draws the same numbers as `generate(model, prompt, { seed })` would for it alone.
   */
  seed?: number;
  /** Window size; default and maximum: the model's context_length (see `batchGenerateRows`). */
  contextSize?: number;
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
  row: number;
  tokens: number[];
}

interface ActiveRow {
  row: number;
  tokens: number[];
  rng: SeededRandom;
  /** Pad slots at the start of this row in the cache. */
  pads: number;
}

const nextTurn = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

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
  const { maxNewTokens, eosId, signal, onStep, padId = 0, yieldEvery = 1 } = options;
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

  const cache = model.newCache();
  try {
    const width = Math.max(0, ...batched.map((row) => prompts[row].length));
    let active: ActiveRow[] = batched.map((row) => ({
      row,
      tokens: [],
      rng: new SeededRandom(seed),
      pads: width - prompts[row].length,
    }));
    // Prefill: all prompts at once, left-padded to the longest.
    let feed: number[][] = active.map((r) => [
      ...new Array<number>(r.pads).fill(padId),
      ...prompts[r.row],
    ]);
    let step = 0;
    while (active.length > 0) {
      signal?.throwIfAborted();
      const logits = await lastLogitsOfRows(model, feed, cache, active.map((r) => r.pads));
      const vocab = model.config.vocab_size;
      const stillActive: ActiveRow[] = [];
      const finished: FinishedRow[] = [];
      active.forEach((r, i) => {
        const next = sampleNextToken(logits.subarray(i * vocab, (i + 1) * vocab), options, r.rng);
        if (next !== eosId) r.tokens.push(next);
        if (next === eosId || r.tokens.length >= maxNewTokens) {
          finished.push({ row: r.row, tokens: r.tokens });
        } else {
          stillActive.push(r);
        }
      });
      onStep?.({ activeRows: active.length, newTokens: active.length });
      if (stillActive.length < active.length) {
        const kept = active.flatMap((r, i) => stillActive.includes(r) ? [i] : []);
        const trim = Math.min(...stillActive.map((r) => r.pads));
        if (stillActive.length > 0) keepCacheRows(cache, kept, trim);
        for (const r of stillActive) r.pads -= trim;
      }
      active = stillActive;
      feed = active.map((r) => [r.tokens[r.tokens.length - 1]]);
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
