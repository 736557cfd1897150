/**
 * One generation as the HTTP layer needs it: the same decoding as `complete()` (stages/generate.ts:
 * `generate()` with a fresh RNG from the seed, text decoded incrementally), plus what a server
 * must add: stop ids (the tokenizer's end of text and the chat format's end of turn), stop
 * strings (the text is cut before the first one and held back while it could still be the
 * start of one), an abort signal (a client that hangs up stops the model at the next token) and
 * exact token counts for `usage`. The prompt arrives as ids: server/prompt.ts builds them.
 */
import { nextTurn, sleep } from "../util/timers.ts";
import { generate } from "../llm/model/generate.ts";
import type { GPTModel } from "../llm/model/gpt.ts";
import { SeededRandom } from "../llm/random.ts";
import type { Tokenizer } from "../llm/tokenizer/mod.ts";
import { IncrementalDecoder } from "../llm/tokenizer/stream.ts";

export interface GenerationRequest {
  /** The prompt's token ids (server/prompt.ts). */
  ids: readonly number[];
  maxTokens: number;
  temperature: number;
  topK?: number;
  topP?: number;
  seed: number;
  /** Generation ends before the first of these strings; it is not part of the text. */
  stop: string[];
}

export interface GenerationResult {
  text: string;
  promptTokens: number;
  completionTokens: number;
  /** "stop": end of text or a stop string; "length": max tokens reached. */
  finishReason: "stop" | "length";
  seconds: number;
}

/** Thrown out of the token callback to end generation at a stop string. */
class StopReached extends Error {}

/** How many characters at the end of `text` could be the start of one of `stops`. */
function heldBack(text: string, stops: readonly string[]): number {
  let hold = 0;
  for (const stop of stops) {
    for (let n = Math.min(stop.length - 1, text.length); n > hold; n--) {
      if (text.endsWith(stop.slice(0, n))) {
        hold = n;
        break;
      }
    }
  }
  return hold;
}

/** What generation needs besides the request: the model, its tokenizer and its limits. */
export interface GenerationModel {
  model: GPTModel;
  tokenizer: Tokenizer;
  /** Ids that end the answer (the chat format's; default: the tokenizer's eos ids). */
  stopIds?: ReadonlySet<number>;
  /** Ids the model may emit: below the tokenizer's vocabulary (default: every row). */
  vocabLimit?: number;
}

/** Checks prompt ids: non-empty and inside the model's vocabulary. */
export function checkPromptIds(model: GPTModel, ids: readonly number[]): void {
  if (ids.length === 0) throw new RangeError("the prompt has no tokens");
  const outside = ids.find((id) => id >= model.config.vocab_size);
  if (outside !== undefined) {
    throw new RangeError(
      `prompt token id ${outside} is outside the model's vocabulary of ${model.config.vocab_size}`,
    );
  }
}

/** Characters tokenized at a time while a prompt's tokens are counted (a few ms each). */
const COUNT_SLICE_CHARS = 4096;

/**
 * Where the slice of `text` that ends at `end` starts: just before a single space that
 * follows a non-space and precedes one (GPT-2's pre-tokenizer starts a piece there, so the
 * tokens of what follows the cut are the last tokens of the whole text), else at the plain
 * length.
 */
function sliceStart(text: string, end: number): number {
  const start = end - COUNT_SLICE_CHARS;
  if (start <= 0) return 0;
  for (let at = start; at < end - COUNT_SLICE_CHARS / 2; at++) {
    if (text[at] === " " && /\S/.test(text[at - 1]) && /\S/.test(text[at + 1])) return at;
  }
  return start;
}

/**
 * The prompt a generation may start from, given that the model sees at most `limit` tokens:
 * the prompt itself when it fits; when it does not, a 400-worthy RangeError naming both
 * counts, or with `truncate` the end of the prompt whose last `limit` tokens are the whole
 * prompt's (generation keeps the last `limit` tokens, as the book's `generate` crops).
 *
 * Tokens are counted from the end a slice of text at a time, with an event-loop turn between
 * slices, and counting stops as soon as they pass `limit`: a 900 KB prompt costs the time of
 * a few thousand characters, not of all of them, and other requests are answered meanwhile.
 */
export async function fitPrompt(
  tokenizer: Tokenizer,
  prompt: string,
  limit: number,
  truncate = false,
): Promise<string> {
  let counted = 0;
  for (let end = prompt.length; end > 0;) {
    if (end < prompt.length) await nextTurn();
    const start = sliceStart(prompt, end);
    counted += tokenizer.encode(prompt.slice(start, end)).length;
    end = start;
    if (counted > limit && end > 0) {
      if (truncate) return prompt.slice(end);
      throw new RangeError(
        `the prompt is longer than the model's context of ${limit} tokens: its last ` +
          `${(prompt.length - end).toLocaleString("en")} of ` +
          `${prompt.length.toLocaleString("en")} characters are already ` +
          `${counted.toLocaleString("en")} tokens`,
      );
    }
  }
  if (!truncate) {
    const tokens = tokenizer.encode(prompt).length;
    if (tokens > limit) {
      throw new RangeError(
        `the prompt has ${tokens.toLocaleString("en")} tokens, more than the model's ` +
          `context of ${limit} tokens`,
      );
    }
  }
  return prompt;
}

/** About how long a slice of a prompt's prefill may hold the event loop, in ms (see generate). */
export const PREFILL_TURN_MS = 50;

/**
 * The pause between prefill slices. Not a bare timer turn: answering a request (accept, read,
 * handle, write) takes the event loop several rounds, and a turn of 0 ms gives it one, so a
 * request would be spread over several slices; waiting 2 ms lets those rounds run.
 */
const ioPause = () => sleep(2);

/**
 * Generates a continuation of `request.prompt`, calling `onText` with each new piece of text
 * (awaited, so a slow client slows the model instead of filling memory). Throws the signal's
 * reason when `signal` aborts.
 */
/** How often a streaming generation gives the event loop a turn, in ms (see generateText). */
export const DEFAULT_STREAM_TURN_MS = 5;

export async function generateText(
  target: GenerationModel,
  request: GenerationRequest,
  options: {
    signal?: AbortSignal;
    onText?: (text: string) => void | Promise<void>;
    /** Longest run of tokens without an event-loop turn when streaming (default 5 ms). */
    streamTurnMs?: number;
  } = {},
): Promise<GenerationResult> {
  const { signal, onText } = options;
  signal?.throwIfAborted();
  const { model, tokenizer } = target;
  const ids = [...request.ids];
  checkPromptIds(model, ids);
  const stops = request.stop.filter((s) => s.length > 0);
  const decoder = new IncrementalDecoder(tokenizer, ids);
  let text = "", sent = 0, tokens = 0, stopped = false;
  const t0 = performance.now();

  /** Adds decoded text; sends what can no longer turn into a stop string. */
  const accept = async (piece: string, final: boolean) => {
    const from = Math.max(0, text.length - Math.max(0, ...stops.map((s) => s.length - 1)));
    text += piece;
    let end = text.length;
    for (const stop of stops) {
      const at = text.indexOf(stop, from);
      if (at >= 0 && at < end) end = at, stopped = true;
    }
    if (stopped) text = text.slice(0, end);
    else if (!final) end -= heldBack(text, stops);
    if (end > sent) {
      const out = text.slice(sent, end);
      sent = end;
      await onText?.(out);
    }
    if (stopped) throw new StopReached();
  };

  // Between tokens, give the event loop a turn now and then: the tfjs CPU backend resolves
  // each step as a microtask, so without one the HTTP layer could not send a streamed piece
  // (nor notice a disconnect, nor read another request) until the whole generation is over.
  // Only a timer turn lets Deno poll its I/O (MessageChannel and setImmediate do not), and a
  // timer turn costs a few ms, so it is taken at most every 5 ms when streaming (the pieces
  // of faster tokens go out together) and every 25 ms otherwise.
  const yieldEveryMs = onText ? (options.streamTurnMs ?? DEFAULT_STREAM_TURN_MS) : 25;
  let lastTurn = performance.now();
  const maybeTurn = async () => {
    if (performance.now() - lastTurn < yieldEveryMs) return;
    await nextTurn();
    lastTurn = performance.now();
  };
  try {
    await generate(model, ids, {
      maxNewTokens: request.maxTokens,
      temperature: request.temperature,
      topK: request.topK,
      topP: request.topP,
      stopIds: target.stopIds ?? tokenizer.eosIds,
      vocabLimit: target.vocabLimit,
      rng: new SeededRandom(request.seed),
      // A long prompt's prefill takes turns too, so other requests are not held up by it.
      prefillTurnMs: PREFILL_TURN_MS,
      betweenSlices: ioPause,
      onToken: async (id) => {
        tokens++;
        signal?.throwIfAborted();
        const piece = decoder.push(id);
        if (piece) await accept(piece, false);
        await maybeTurn();
      },
    });
    await accept(decoder.flush(), true);
  } catch (error) {
    if (!(error instanceof StopReached)) throw error;
  }
  return {
    text,
    promptTokens: ids.length,
    completionTokens: tokens,
    finishReason: stopped || tokens < request.maxTokens ? "stop" : "length",
    seconds: (performance.now() - t0) / 1000,
  };
}
