/**
 * Batched generation: several prompts decoded together with one key/value cache, so each decode
 * step is one forward pass over `rows` tokens instead of `rows` passes over one token (the
 * matrix products see a taller left operand, which BLAS turns into better throughput).
 *
 * Each row keeps its own length in the cache (llm/model/kv_cache.ts): prompts are prefilled
 * together right-padded (a token never sees the pads after it) and each row's cache keeps only
 * its prompt; every decode step feeds each row's last token at the row's own position, so a row computes what it would alone, up to float rounding in the matrix products
 * (different shapes may sum in a different order); greedy tests check token-for-token equality.
 * On the cpu engine the cache is written in place and attention reads each row over its own
 * length; on other backends the tensor store left-pads rows to the longest and masks the pads.
 *
 * A row that stops (end-of-text or its token budget) is dropped from the batch and its cache
 * rows with it, so finished rows cost nothing in later steps. With `maxRows`, waiting prompts
 * take the freed rows: they are prefilled together on a cache of their own whose rows are then
 * appended to the running one, so the batch stays full.
 */
import { nextTurn } from "../../util/timers.ts";
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
  const { maxNewTokens, signal, onStep, yieldEvery = 1 } = options;
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
  // Room is reserved for the longest prompt and its answer (the cache grows if need be).
  const longest = Math.max(0, ...batched.map((row) => prompts[row].length));
  const cache = model.newCache({
    rows: Math.min(maxRows, batched.length),
    capacity: longest + maxNewTokens,
  });
  let active: ActiveRow[] = [];
  let admitted = 0;
  let step = 0;
  try {
    while (active.length > 0 || admitted < batched.length) {
      signal?.throwIfAborted();
      const finished: FinishedRow[] = [];
      if (active.length < maxRows && admitted < batched.length) {
        // Free rows: prefill the waiting prompts on a cache of their own, sample their first
        // tokens, and append the rows that go on to the running batch.
        const rows = batched.slice(admitted, admitted + (maxRows - active.length));
        admitted += rows.length;
        const fresh = rows.map((row): ActiveRow => ({
          row,
          tokens: [],
          rng: new SeededRandom(seed),
        }));
        const width = Math.max(...rows.map((row) => prompts[row].length));
        const rowCache = model.newCache({ rows: rows.length, capacity: width });
        try {
          let kept: number[];
          if (rowCache.inPlace) {
            // One pass over the prompts right-padded to the longest (a row's real tokens never
            // see the pads that follow them); each row's cache keeps only its prompt (announced
            // before the pass, so a sliding layer's ring never stores the pads).
            const feed = rows.map((row) => {
              const prompt = prompts[row];
              return [
                ...prompt,
                ...new Array(width - prompt.length).fill(prompt[prompt.length - 1]),
              ];
            });
            const last = rows.map((row, b) => b * width + prompts[row].length - 1);
            rowCache.nextPassKeeps(rows.map((row) => prompts[row].length));
            const logits = await logitsAt(model, feed, rowCache, last);
            kept = sampleRows(fresh, logits, finished);
            rowCache.keepRows(kept);
          } else {
            // The tensor store shares one length across rows: prefill each prompt alone.
            kept = [];
            for (const [i, r] of fresh.entries()) {
              signal?.throwIfAborted();
              const own = model.newCache({ rows: 1 });
              try {
                const logits = await logitsAt(model, [[...prompts[r.row]]], own);
                if (sampleRows([r], logits, finished).length > 0) {
                  rowCache.appendRows(own);
                  kept.push(i);
                }
              } finally {
                own.dispose();
              }
            }
          }
          if (kept.length > 0) cache.appendRows(rowCache);
          active.push(...kept.map((i) => fresh[i]));
        } finally {
          rowCache.dispose();
        }
      } else {
        const feed = active.map((r) => [r.tokens[r.tokens.length - 1]]);
        const kept = sampleRows(active, await logitsAt(model, feed, cache), finished);
        if (kept.length === 0) cache.reset();
        else if (kept.length < active.length) cache.keepRows(kept);
        active = kept.map((i) => active[i]);
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

/**
 * Logits [n × vocab] after feeding `feed` (equal-length rows): of each row's last token, or of
 * the flat positions `at` (row · tokens + position).
 */
async function logitsAt(
  model: GPTModel,
  feed: number[][],
  cache: KVCache,
  at?: number[],
): Promise<Float32Array> {
  const input = tf.tensor2d(feed, [feed.length, feed[0].length], "int32");
  try {
    const logits = model.forward(
      input,
      at ? { cache, gather: at } : { cache, lastTokenOnly: true },
    );
    // data(), not dataSync(): WebGPU under Deno cannot read synchronously.
    const values = (await logits.data()) as Float32Array;
    logits.dispose();
    return values;
  } finally {
    input.dispose();
  }
}
