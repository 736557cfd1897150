/**
 * A model's responses to a list of instruction entries (book ch07, "Extracting and saving
 * responses"): each entry's prompt is formatted, continued greedily (by default) until
 * end-of-text or `maxNewTokens`, and the text after "### Response:" is kept, stripped.
 *
 * Entries are decoded `batchSize` at a time (llm/infer/batch_generate.ts), sorted by prompt
 * length so that little of a batch is padding; when an entry finishes, the next waiting one
 * takes its row (continuous batching), so short answers do not leave the batch half empty. Results come out as soon as each
 * entry finishes, tagged with the entry's index, so a caller can append each to a JSONL file
 * and, after an interruption, pass the indices it already has as `skip` to resume.
 */
import { extractResponse, formatInstructionPrompt } from "../data/instructions.ts";
import type { SamplingOptions } from "../model/generate.ts";
import type { GPTModel } from "../model/gpt.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { batchGenerateRows } from "./batch_generate.ts";

/** The fields a prompt template reads (Alpaca's). */
export interface InstructionPromptFields {
  /** The task. */
  instruction: string;
  /** Its input, if any ("" and absent both mean none). */
  input?: string;
}

/** Options of `generateResponses`: sampling, batching, templates and resuming. */
export interface ResponseOptions extends SamplingOptions {
  /** New tokens per entry at most (default 256, the book's). */
  maxNewTokens?: number;
  /** Entries decoded together at most (default 8). */
  batchSize?: number;
  /** Stop token (default: the tokenizer's end-of-text, else 50256). */
  eosId?: number;
  /** More stop tokens, with `eosId` (a chat template's end of turn, further end-of-text ids). */
  stopIds?: Iterable<number>;
  /** Sample only among ids below this (a vocabulary padded past the tokenizer's ids). */
  vocabLimit?: number;
  /** Sampling seed (see BatchGenerateOptions.seed); unused when greedy. */
  seed?: number;
  /** Window size; default and maximum: the model's context_length. */
  contextSize?: number;
  /** The prompt of an entry (default: the book's `format_input`, Alpaca). */
  formatPrompt?: (entry: InstructionPromptFields) => string;
  /**
   * The prompt's ids of an entry, when they are not `tokenizer.encode(formatPrompt(entry))`: a
   * chat template's rendering (control tokens where the template put them, BOS once).
   */
  encodePrompt?: (entry: InstructionPromptFields) => number[];
  /** The answer in the text after the prompt (default: drop "### Response:", trim). */
  extract?: (continuation: string) => string;
  /** Indices of entries already answered (resuming): they are not generated again. */
  skip?: ReadonlySet<number>;
  /** Aborting stops at the next decode step (throws the signal's reason). */
  signal?: AbortSignal;
  /** Called after each finished entry. */
  onProgress?: (progress: ResponseProgress) => void;
}

/** One entry's answer. */
export interface ResponseResult {
  /** The entry's index in the list given. */
  index: number;
  /** The extracted answer. */
  response: string;
  /** New tokens generated for it (the stop token excluded). */
  newTokens: number;
  /** Whether it stopped at end-of-text (false: it ran out of `maxNewTokens`). */
  stopped: boolean;
}

/** Where a `generateResponses` run stands, after each finished entry. */
export interface ResponseProgress {
  /** Entries finished in this run (skipped ones not counted) and how many this run has. */
  done: number;
  /** Entries this run generates (skipped ones not counted). */
  total: number;
  /** Tokens decoded so far in this run, every row of every step (padding excluded). */
  tokens: number;
  /** Seconds since this run started. */
  elapsedSeconds: number;
  /** `tokens` / `elapsedSeconds`. */
  tokensPerSecond: number;
  /** Remaining time at the entry rate so far (prompts are sorted short to long, so optimistic). */
  etaSeconds: number;
}

/**
 * Yields every entry's response (except the skipped ones) as it finishes: roughly from the
 * shortest prompts to the longest, in finishing order.
 */
export async function* generateResponses(
  model: GPTModel,
  tokenizer: Tokenizer,
  entries: readonly InstructionPromptFields[],
  options: ResponseOptions = {},
): AsyncGenerator<ResponseResult> {
  const {
    maxNewTokens = 256,
    batchSize = 8,
    formatPrompt = formatInstructionPrompt,
    extract = extractResponse,
    skip,
    onProgress,
  } = options;
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) {
    throw new Error(`generateResponses: batchSize ${batchSize} must be an integer ≥ 1`);
  }
  const eosId = options.eosId ?? tokenizer.endOfTextId ?? 50256;
  const encode = options.encodePrompt ?? ((entry) => tokenizer.encode(formatPrompt(entry)));
  const todo = entries
    .map((entry, index) => ({ index, prompt: encode(entry) }))
    .filter(({ index }) => !skip?.has(index))
    // Stable: equal lengths keep the entries' order.
    .sort((a, b) => a.prompt.length - b.prompt.length);

  const started = performance.now();
  let done = 0;
  let tokens = 0;
  const rows = batchGenerateRows(model, todo.map((item) => item.prompt), {
    ...options,
    maxNewTokens,
    eosId,
    maxRows: batchSize,
    onStep: ({ newTokens }) => tokens += newTokens,
  });
  for await (const { row, tokens: generated } of rows) {
    const { index, prompt } = todo[row];
    // As the book: decode prompt and answer together and cut the prompt's text off (a
    // character split across the boundary then decodes whole).
    const continuation = tokenizer.decode([...prompt, ...generated])
      .slice(tokenizer.decode(prompt).length);
    done++;
    const elapsedSeconds = (performance.now() - started) / 1000;
    onProgress?.({
      done,
      total: todo.length,
      tokens,
      elapsedSeconds,
      tokensPerSecond: elapsedSeconds > 0 ? tokens / elapsedSeconds : 0,
      etaSeconds: (elapsedSeconds / done) * (todo.length - done),
    });
    yield {
      index,
      response: extract(continuation),
      newTokens: generated.length,
      stopped: generated.length < maxNewTokens,
    };
  }
}
