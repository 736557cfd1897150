/**
 * Text generation (book ch04/ch05): greedy decoding (`generate_text_simple`) and sampling with
 * temperature, top-k and top-p, a stop token, a seeded RNG and a streaming callback. A key/value
 * cache is used by default, so each new token costs one position's work instead of the whole
 * window's.
 */
import * as tf from "@tensorflow/tfjs";
import { SeededRandom } from "../random.ts";
import type { GPTModel } from "./gpt.ts";

/** How the next token is chosen from the logits. */
export interface SamplingOptions {
  /** 0 or omitted: greedy (argmax). Otherwise logits are divided by it before sampling. */
  temperature?: number;
  /** Keep only the k largest logits (ties with the k-th are kept, as the book's code does). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (nucleus sampling). */
  topP?: number;
}

/** Options of `generate`: how many tokens, how to sample, when to stop. */
export interface GenerateOptions extends SamplingOptions {
  /** Upper bound on generated tokens (the stop token may end generation earlier). */
  maxNewTokens: number;
  /** Stop (without emitting it) when this token is produced, e.g. 50256 `<|endoftext|>`. */
  eosId?: number;
  /**
   * More stop tokens, with `eosId`: a chat model ends a turn with its own token (Llama 3's
   * `<|eot_id|>`, Qwen3's `<|im_end|>`) besides its end of text.
   */
  stopIds?: Iterable<number>;
  /**
   * Sample only among ids below this: a model's vocabulary may have more rows than its
   * tokenizer has ids (Qwen3: 151,936 rows, 151,669 ids), and those padding rows must never be
   * chosen. Default: every row.
   */
  vocabLimit?: number;
  /** Sampling RNG; its state advances, so a caller can save and resume it. */
  rng?: SeededRandom;
  /** Seed for a fresh RNG when `rng` is not given. Default 123. */
  seed?: number;
  /** Use the key/value cache (default true); false recomputes the whole window every step. */
  useCache?: boolean;
  /** Window size; default and maximum: the model's context_length. */
  contextSize?: number;
  /** Called with each new token as soon as it is chosen (for streaming output). */
  onToken?: (token: number, index: number) => void | Promise<void>;
  /**
   * With the cache, feed a long prompt a slice at a time (the same computation: attention is
   * causal), each slice sized to take about this many ms but at least `prefillMinTokens` (one
   * forward pass has a fixed cost: reading every weight), awaiting `betweenSlices` after each,
   * so that a server can answer other requests during a long prefill. Default: the whole
   * prompt at once.
   */
  prefillTurnMs?: number;
  /** The smallest prefill slice, in tokens (default 32). */
  prefillMinTokens?: number;
  /** Awaited between prefill slices (e.g. an event-loop turn). */
  betweenSlices?: () => Promise<void>;
}

/** The tokens that end generation: `eosId` and `stopIds` together. */
export function stopSet(options: { eosId?: number; stopIds?: Iterable<number> }): Set<number> {
  const stops = new Set(options.stopIds ?? []);
  if (options.eosId !== undefined) stops.add(options.eosId);
  return stops;
}

/** The first `limit` logits of a row (all of them when no limit is given). */
export function limitVocab(logits: Float32Array, limit: number | undefined): Float32Array {
  return limit !== undefined && limit < logits.length ? logits.subarray(0, limit) : logits;
}

/** Index of the largest value (the first one on ties, as torch.argmax). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** Picks the next token from one row of logits according to `options`. */
export function sampleNextToken(
  logits: Float32Array,
  options: SamplingOptions,
  rng: SeededRandom,
): number {
  const { temperature = 0, topK, topP } = options;
  if (!(temperature > 0)) return argmax(logits); // top-k never changes the argmax

  // Candidates: every token, or those at least as large as the k-th largest logit.
  let candidates: number[] = [];
  if (topK !== undefined && topK > 0 && topK < logits.length) {
    const kthLargest = Float32Array.from(logits).sort()[logits.length - topK];
    for (let i = 0; i < logits.length; i++) if (logits[i] >= kthLargest) candidates.push(i);
  } else {
    candidates = Array.from({ length: logits.length }, (_, i) => i);
  }

  // Softmax of logits / temperature over the candidates, stably around the maximum.
  let maxLogit = -Infinity;
  for (const i of candidates) maxLogit = Math.max(maxLogit, logits[i]);
  let weights = candidates.map((i) => Math.exp((logits[i] - maxLogit) / temperature));

  if (topP !== undefined && topP > 0 && topP < 1) {
    const total = weights.reduce((a, b) => a + b, 0);
    const order = candidates.map((_, j) => j).sort((a, b) => weights[b] - weights[a]);
    const keep: number[] = [];
    let cumulative = 0;
    for (const j of order) {
      keep.push(j);
      cumulative += weights[j] / total;
      if (cumulative >= topP) break;
    }
    candidates = keep.map((j) => candidates[j]);
    weights = keep.map((j) => weights[j]);
  }

  const total = weights.reduce((a, b) => a + b, 0);
  let threshold = rng.next() * total;
  for (let j = 0; j < candidates.length; j++) {
    threshold -= weights[j];
    if (threshold < 0) return candidates[j];
  }
  return candidates[candidates.length - 1]; // rounding left a sliver at the end
}

/** Logits of the last position for `ids` (one sequence), optionally extending `cache`. */
async function lastLogits(
  model: GPTModel,
  ids: number[],
  cache: ReturnType<GPTModel["newCache"]> | undefined,
): Promise<Float32Array> {
  const input = tf.tensor2d(ids, [1, ids.length], "int32");
  try {
    const logits = model.forward(input, { cache, lastTokenOnly: true });
    // data(), not dataSync(): WebGPU under Deno cannot read synchronously.
    const values = (await logits.data()) as Float32Array;
    logits.dispose();
    return values;
  } finally {
    input.dispose();
  }
}

/**
 * Generates up to `maxNewTokens` tokens after `prompt` (token ids of one sequence) and returns
 * the new tokens (the stop token excluded). The context is cropped to the last `contextSize`
 * tokens. With the cache, the positions already seen are not recomputed; once the window
 * slides past `contextSize` every position shifts, so the cache is rebuilt from the window
 * (the same result as without a cache, at no-cache cost).
 */
export async function generate(
  model: GPTModel,
  prompt: readonly number[],
  options: GenerateOptions,
): Promise<number[]> {
  const contextSize = Math.min(
    options.contextSize ?? model.config.context_length,
    model.config.context_length,
  );
  if (prompt.length === 0) throw new Error("generate: the prompt must contain at least one token");
  const rng = options.rng ?? new SeededRandom(options.seed ?? 123);
  const tokens = [...prompt];
  const generated: number[] = [];
  // Room for the whole answer up front (the window never holds more than contextSize).
  const cache = options.useCache === false ? undefined : model.newCache({
    rows: 1,
    capacity: Math.min(contextSize, prompt.length + options.maxNewTokens),
  });
  let cacheStart = 0; // index in `tokens` of the first cached position
  const stops = stopSet(options);

  try {
    for (let index = 0; index < options.maxNewTokens; index++) {
      const windowStart = Math.max(0, tokens.length - contextSize);
      let feed: number[];
      if (!cache) {
        feed = tokens.slice(windowStart);
      } else if (cache.length > 0 && cacheStart === windowStart) {
        feed = tokens.slice(cacheStart + cache.length);
      } else {
        cache.reset();
        cacheStart = windowStart;
        feed = tokens.slice(windowStart);
      }
      const turnMs = options.prefillTurnMs;
      const minSlice = options.prefillMinTokens ?? 32;
      let slice = minSlice; // tokens; then sized by how long the last slice took
      while (cache && turnMs !== undefined && feed.length > slice) {
        const t0 = performance.now();
        await lastLogits(model, feed.slice(0, slice), cache);
        feed = feed.slice(slice);
        const ms = Math.max(performance.now() - t0, 0.5);
        // Grow at most twofold a step: one fast slice must not make the next one huge.
        slice = Math.max(minSlice, Math.min(2 * slice, Math.round((slice * turnMs) / ms)));
        await options.betweenSlices?.();
      }
      const logits = await lastLogits(model, feed, cache);
      const next = sampleNextToken(limitVocab(logits, options.vocabLimit), options, rng);
      if (stops.has(next)) break;
      tokens.push(next);
      generated.push(next);
      await options.onToken?.(next, index);
    }
  } finally {
    cache?.dispose();
  }
  return generated;
}

/** The book's keyword arguments of `generate_text_simple`. */
export interface GenerateSimpleOptions {
  /** Tokens to append to each sequence. */
  maxNewTokens: number;
  /** Window the model sees: each step feeds the last `contextSize` tokens. */
  contextSize: number;
}

/**
 * The book's `generate_text_simple`: greedy decoding for a batch of equally long sequences,
 * recomputing the cropped window every step; returns each sequence with its new tokens appended.
 */
export async function generateTextSimple(
  model: GPTModel,
  idx: readonly (readonly number[])[],
  options: GenerateSimpleOptions,
): Promise<number[][]> {
  const { maxNewTokens, contextSize } = options;
  const sequences = idx.map((row) => [...row]);
  const vocab = model.config.vocab_size;
  for (let step = 0; step < maxNewTokens; step++) {
    const windows = sequences.map((row) => row.slice(-contextSize));
    const input = tf.tensor2d(windows, undefined, "int32");
    const logits = model.forward(input, { lastTokenOnly: true });
    const values = (await logits.data()) as Float32Array;
    tf.dispose([input, logits]);
    sequences.forEach((row, b) => row.push(argmax(values.subarray(b * vocab, (b + 1) * vocab))));
  }
  return sequences;
}
