/**
 * Log-likelihood of continuations given contexts, the way lm-evaluation-harness's HFLM computes
 * it (lm_eval/models/huggingface.py `_encode_pair` and `_loglikelihood_tokens`):
 *   - whitespace at the end of the context moves to the front of the continuation; the
 *     continuation's tokens are those of tokenize(context + continuation) after the context's;
 *   - the model sees (context + continuation)[-(max_length + 1):][:-1], i.e. over-long inputs
 *     are cut from the left and the last continuation token is only predicted;
 *   - the score is the sum of the log-softmax of the continuation tokens at their positions.
 *
 * Work is expressed as rows (one model input and the (position, token) pairs to read from
 * it), so that several continuations that are each a single token after the same context are
 * read from one forward pass, and rows of different lengths share a batch (padded on the
 * right: the causal mask keeps padding from reaching earlier positions).
 */
import { nextTurn } from "../../util/timers.ts";
import * as tf from "@tensorflow/tfjs";
import type { GPTModel } from "../model/gpt.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";

/**
 * One request of the harness's loglikelihood kind, as token ids: how likely is `continuation` after
 * `context`?
 */
export interface TokenizedRequest {
  /** The context's tokens (may be empty; it is then scored after end-of-text). */
  context: number[];
  /** The continuation's tokens (at least one). */
  continuation: number[];
}

/** The harness's `_encode_pair`: trailing whitespace of the context joins the continuation. */
export function encodePair(
  tokenizer: Tokenizer,
  context: string,
  continuation: string,
): TokenizedRequest {
  const spaces = context.length - context.trimEnd().length;
  if (spaces > 0) {
    continuation = context.slice(context.length - spaces) + continuation;
    context = context.slice(0, context.length - spaces);
  }
  const whole = tokenizer.encode(context + continuation);
  const contextIds = tokenizer.encode(context);
  return { context: contextIds, continuation: whole.slice(contextIds.length) };
}

/** One model input and the next-token log-probabilities to read from it. */
export interface ScoreRow {
  /** The tokens fed to the model (at most its context length). */
  input: number[];
  /** (position in `input`, token whose log-probability at that position is wanted). */
  picks: { position: number; token: number }[];
}

/**
 * The row for one request, truncated as HFLM does: input = (context + continuation)
 * [-(maxLength + 1):][:-1]; continuation token j is predicted at position
 * input.length - continuation.length + j.
 */
export function requestRow(request: TokenizedRequest, maxLength: number): ScoreRow {
  const { context, continuation } = request;
  if (continuation.length === 0) throw new Error("a continuation must have at least one token");
  if (continuation.length > maxLength) {
    throw new Error(
      `a continuation of ${continuation.length} tokens does not fit the model's ${maxLength}`,
    );
  }
  const whole = [...context, ...continuation];
  const input = whole.slice(Math.max(0, whole.length - (maxLength + 1)), whole.length - 1);
  if (input.length === 0) {
    throw new Error("an empty context: the harness scores it after the end-of-text token");
  }
  const first = input.length - continuation.length;
  return { input, picks: continuation.map((token, j) => ({ position: first + j, token })) };
}

/**
 * The row that scores several single-token continuations after one context in one pass:
 * the same input HFLM builds for each of them ((context + [c])[-(L+1):][:-1] = context[-L:]),
 * all read at its last position.
 */
export function sharedContextRow(context: number[], tokens: number[], maxLength: number): ScoreRow {
  const input = context.slice(Math.max(0, context.length - maxLength));
  if (input.length === 0) {
    throw new Error("an empty context: the harness scores it after the end-of-text token");
  }
  return { input, picks: tokens.map((token) => ({ position: input.length - 1, token })) };
}

/** How `scoreRows` and `loglikelihoods` batch their forward passes. */
export interface ScoreOptions {
  /** Rows per forward pass at most. */
  batchSize: number;
  /** Upper bound on one batch's logits [rows, tokens, vocab] in bytes (default 256 MiB). */
  maxLogitBytes?: number;
  /** Checked between batches; aborting throws the signal's reason. */
  signal?: AbortSignal;
  /** Called after each batch with the number of rows done. */
  onBatch?: (rowsDone: number, rowsTotal: number) => void;
}

const DEFAULT_MAX_LOGIT_BYTES = 256 * 2 ** 20;

/**
 * The log-probabilities of every row's picks, in row order. Rows are batched longest first
 * (as the harness orders requests), each batch padded to its longest row. Between batches the
 * event loop gets a turn and `signal` is checked, so a long evaluation can be interrupted.
 */
export async function scoreRows(
  model: GPTModel,
  rows: readonly ScoreRow[],
  options: ScoreOptions,
): Promise<number[][]> {
  const { vocab_size: vocab, context_length: maxLength } = model.config;
  const budget = Math.min(options.maxLogitBytes ?? DEFAULT_MAX_LOGIT_BYTES, model.maxTensorBytes);
  for (const [i, row] of rows.entries()) {
    if (row.input.length === 0 || row.input.length > maxLength) {
      throw new Error(`row ${i}: ${row.input.length} tokens; the model takes 1 to ${maxLength}`);
    }
    const outside = row.input.find((id) => id < 0 || id >= vocab);
    if (outside !== undefined) {
      throw new Error(`row ${i}: token id ${outside} is outside the vocabulary of ${vocab}`);
    }
  }
  const order = rows.map((_, i) => i).sort((a, b) =>
    rows[b].input.length - rows[a].input.length || a - b
  );
  const results: number[][] = new Array(rows.length);
  let done = 0;
  while (done < order.length) {
    options.signal?.throwIfAborted();
    const longest = rows[order[done]].input.length;
    const fit = Math.max(1, Math.floor(budget / (longest * vocab * 4)));
    const batch = order.slice(done, done + Math.max(1, Math.min(options.batchSize, fit)));
    const scored = await scoreBatch(model, batch.map((i) => rows[i]), longest);
    batch.forEach((rowIndex, b) => (results[rowIndex] = scored[b]));
    done += batch.length;
    options.onBatch?.(done, order.length);
    // Let timers, signals and progress output run between forward passes.
    await nextTurn();
  }
  return results;
}

/** One forward pass over `rows` padded to `length`; returns each row's picked log-probs. */
async function scoreBatch(
  model: GPTModel,
  rows: readonly ScoreRow[],
  length: number,
): Promise<number[][]> {
  const vocab = model.config.vocab_size;
  const ids = new Int32Array(rows.length * length); // padding: token 0, never read
  rows.forEach((row, b) => ids.set(row.input, b * length));
  // The distinct (row, position) pairs whose distributions are needed.
  const positions: number[] = [];
  const slot = new Map<number, number>();
  for (const [b, row] of rows.entries()) {
    for (const { position } of row.picks) {
      const flat = b * length + position;
      if (!slot.has(flat)) slot.set(flat, positions.push(flat) - 1);
    }
  }
  const input = tf.tensor2d(ids, [rows.length, length], "int32");
  let logProbs: tf.Tensor2D | undefined;
  try {
    // Only the positions read go through the output head (its [positions, vocab] product is
    // the largest of the forward pass).
    const logits = model.forward(input, { gather: positions });
    try {
      logProbs = tf.tidy(() =>
        tf.logSoftmax(tf.reshape(logits, [positions.length, vocab])) as tf.Tensor2D
      );
    } finally {
      logits.dispose();
    }
    const values = (await logProbs.data()) as Float32Array;
    return rows.map((row, b) =>
      row.picks.map(({ position, token }) =>
        values[slot.get(b * length + position)! * vocab + token]
      )
    );
  } finally {
    input.dispose();
    logProbs?.dispose();
  }
}

/** The general path: each request's continuation log-likelihood, one row per request. */
export async function loglikelihoods(
  model: GPTModel,
  requests: readonly TokenizedRequest[],
  options: ScoreOptions,
): Promise<number[]> {
  const rows = requests.map((r) => requestRow(r, model.config.context_length));
  const scored = await scoreRows(model, rows, options);
  return scored.map((picks) => picks.reduce((sum, value) => sum + value, 0));
}
