/**
 * Text in, text out: continue a prompt with a model and stream the new text as it is decoded
 * (what the `generate` stage, `deno task generate` and `deno task chat` do for each prompt).
 */
import { generate } from "../model/generate.ts";
import type { GPTModel } from "../model/gpt.ts";
import { SeededRandom } from "../random.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { IncrementalDecoder } from "../tokenizer/stream.ts";

// The one incremental decoder lives with the tokenizers; callers that imported it from here
// keep working.
export { IncrementalDecoder };

/** How to sample (the names the pipeline's `generate` stage uses). */
export interface SamplingSettings {
  /** Tokens to generate at most. */
  max_new_tokens: number;
  /** 0: greedy decoding. */
  temperature: number;
  /** Sample only among the k most likely tokens. */
  top_k?: number;
  /** Sample only among the most likely tokens whose probabilities sum to p. */
  top_p?: number;
  /** Stop at this token; null: never stop early. */
  stop_token: number | null;
  /** Seed of the sampling RNG (each call starts its own). */
  seed: number;
}

/** What one `complete` call produced. */
export interface Completion {
  /** The decoded text after the prompt (the book's `generated_text[len(input_text):]`). */
  text: string;
  /** Tokens generated. */
  tokens: number;
  /** Why generation ended. */
  stopped: "stop_token" | "max_new_tokens";
  /** Wall-clock seconds spent generating. */
  seconds: number;
}

/** What `complete` needs besides the model. */
export interface CompleteOptions {
  /** Turns the prompt into ids and the ids back into text. */
  tokenizer: Tokenizer;
  /** The text to continue. */
  prompt: string;
  /** How to sample. */
  settings: SamplingSettings;
  /** Called with each piece of text as soon as it is decoded. */
  onText?: (text: string) => void;
  /**
   * The prompt's ids, when they are not `tokenizer.encode(prompt)`: a chat rendered by its
   * template (control tokens only where the template put them, BOS once).
   */
  promptIds?: readonly number[];
  /**
   * More ids that end the text, with `settings.stop_token`: a chat model's end of turn, an
   * open model's several end-of-text ids.
   */
  stopIds?: Iterable<number>;
  /** Sample only among ids below this (a vocabulary padded past the tokenizer's ids). */
  vocabLimit?: number;
}

/**
 * Continues `prompt` with `model`, calling `onText` with each piece of text as it is decoded.
 * Every call starts its own RNG from `settings.seed`, so a prompt's output does not depend on
 * what was generated before it.
 */
export async function complete(model: GPTModel, options: CompleteOptions): Promise<Completion> {
  const { tokenizer, prompt, settings, onText } = options;
  const ids = options.promptIds ? [...options.promptIds] : tokenizer.encode(prompt);
  if (ids.length === 0) throw new Error(`the prompt ${JSON.stringify(prompt)} has no tokens`);
  const vocab = model.config.vocab_size;
  const outside = ids.find((id) => id >= vocab);
  if (outside !== undefined) {
    throw new Error(
      `prompt token id ${outside} (${tokenizer.name} tokenizer) is outside the model's ` +
        `vocabulary of ${vocab}`,
    );
  }
  const stream = new IncrementalDecoder(tokenizer, ids);
  const t0 = performance.now();
  const generated = await generate(model, ids, {
    maxNewTokens: settings.max_new_tokens,
    temperature: settings.temperature,
    topK: settings.top_k,
    topP: settings.top_p,
    eosId: settings.stop_token ?? undefined,
    stopIds: options.stopIds,
    vocabLimit: options.vocabLimit,
    rng: new SeededRandom(settings.seed),
    onToken: (id) => {
      const piece = stream.push(id);
      if (piece) onText?.(piece);
    },
  });
  const rest = stream.flush();
  if (rest) onText?.(rest);
  const full = tokenizer.decode([...ids, ...generated]);
  return {
    text: full.slice(tokenizer.decode(ids).length),
    tokens: generated.length,
    stopped: generated.length < settings.max_new_tokens ? "stop_token" : "max_new_tokens",
    seconds: (performance.now() - t0) / 1000,
  };
}
