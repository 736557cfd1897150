/**
 * Preference data for DPO (book ch07, `dpo-from-scratch.ipynb`): entries with a `chosen` and a
 * `rejected` response to one instruction, tokenized as the book's `PreferenceDataset` (the prompt
 * followed by each response) and collated as its `custom_collate_fn` (both sequences padded to one
 * length, a mask per sequence that keeps only the response's tokens).
 */
import { readJsonFile } from "../../util/files.ts";
import { deriveSeed, permutation, SeededRandom } from "../random.ts";
import type { PromptTemplate, TokenizedExample } from "./instructions.ts";

/** One entry of `instruction-data-with-preference.json`. */
export interface PreferenceEntry {
  /** The task. */
  instruction: string;
  /** Its input; "" when the task needs none. */
  input: string;
  /** The response to prefer. */
  chosen: string;
  /** The response to move away from. */
  rejected: string;
  /** The original instruction data's answer, when the file carries it (the book's does). */
  output?: string;
}

const REQUIRED = ["instruction", "chosen", "rejected"] as const;

/**
 * Checks parsed JSON and returns it as preference entries. `instruction`, `chosen` and
 * `rejected` must be non-empty strings, `input` a string (empty when the task has none, absent
 * read as ""), `output` a string when present. Errors name the source, the 1-based entry number
 * and the field.
 */
export function parsePreferenceData(
  value: unknown,
  source = "<preference data>",
): PreferenceEntry[] {
  if (!Array.isArray(value)) {
    throw new Error(
      `${source}: expected a JSON array of {instruction, input, chosen, rejected} entries`,
    );
  }
  return value.map((item, index) => {
    const where = `${source}: entry ${index + 1}`;
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      throw new Error(`${where} is not an object`);
    }
    const record = item as Record<string, unknown>;
    for (const key of REQUIRED) {
      const v = record[key];
      if (v === undefined) {
        throw new Error(`${where} has no "${key}" (expected a non-empty string)`);
      }
      if (typeof v !== "string") throw new Error(`${where}: "${key}" is not a string`);
      if (v.trim() === "") throw new Error(`${where}: "${key}" is empty`);
    }
    for (const key of ["input", "output"]) {
      if (record[key] !== undefined && typeof record[key] !== "string") {
        throw new Error(`${where}: "${key}" is not a string`);
      }
    }
    const entry: PreferenceEntry = {
      instruction: record.instruction as string,
      input: (record.input as string | undefined) ?? "",
      chosen: record.chosen as string,
      rejected: record.rejected as string,
    };
    if (typeof record.output === "string") entry.output = record.output;
    return entry;
  });
}

/** Reads a JSON array (`.json`) or JSON Lines (`.jsonl`) file of preference records. */
export async function readPreferenceData(path: string): Promise<PreferenceEntry[]> {
  if (!path.toLowerCase().endsWith(".jsonl")) {
    return parsePreferenceData(await readJsonFile(path), path);
  }
  const records: unknown[] = [];
  (await Deno.readTextFile(path)).split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    try {
      records.push(JSON.parse(line));
    } catch (error) {
      throw new Error(
        `${path}: record ${records.length + 1} (line ${i + 1}) is not valid JSON: ${
          (error as Error).message
        }`,
      );
    }
  });
  return parsePreferenceData(records, path);
}

/** One tokenized preference pair: the prompt + chosen and the prompt + rejected ids. */
export interface TokenizedPair {
  /** Ids of the prompt followed by the response header and the chosen response. */
  chosen: TokenizedExample;
  /** Ids of the prompt followed by the response header and the rejected response. */
  rejected: TokenizedExample;
}

/**
 * The book's `PreferenceDataset`: each response formatted after the prompt with the template
 * (`template.example` with the response as output), and the prompt's own token count, which the
 * collate uses to hide the prompt from the log-probabilities.
 */
export function tokenizePreferences(
  entries: readonly PreferenceEntry[],
  template: PromptTemplate,
  tokenizer: { encode(text: string): number[] },
): TokenizedPair[] {
  return entries.map((entry) => {
    const promptLength = tokenizer.encode(template.prompt(entry)).length;
    const full = (output: string) => ({
      ids: tokenizer.encode(template.example({ ...entry, output })),
      promptLength,
    });
    return { chosen: full(entry.chosen), rejected: full(entry.rejected) };
  });
}

/**
 * A DPO batch: `batchSize` rows of `seqLen` ids for the chosen and the rejected sequences, and a
 * mask each (1 = a response token whose log-probability counts), row-major.
 */
export interface PreferenceBatch {
  /** [batchSize, seqLen] prompt + chosen response, padded. */
  chosen: Int32Array;
  /** [batchSize, seqLen] prompt + rejected response, padded. */
  rejected: Int32Array;
  /** [batchSize, seqLen] 1 on the chosen response's tokens, 0 on the prompt and the padding. */
  chosenMask: Uint8Array;
  /** [batchSize, seqLen] 1 on the rejected response's tokens. */
  rejectedMask: Uint8Array;
  /** Rows. */
  batchSize: number;
  /** Tokens per row (the same for both sequences). */
  seqLen: number;
}

/** Options of {@link collatePreferences}. */
export interface PreferenceCollateOptions {
  /** Default 50256 (GPT-2's `<|endoftext|>`). */
  padTokenId?: number;
  /** Keep only the first this many positions (the book passes 1024). Default: no limit. */
  allowedMaxLength?: number;
  /** Leave the prompt out of the mask (the book's `mask_prompt_tokens`, default true). */
  maskPromptTokens?: boolean;
}

/**
 * Positions after the prompt that the book's collate also masks: `mask[:prompt_len + 2] =
 * False` ("the 2 newline tokens before ### Response"; with GPT-2's BPE these are "\n\n" and
 * "###", so " Response:\n" counts as response, as in the book).
 */
export const BOOK_PROMPT_MASK_EXTRA = 2;

/**
 * The book's `custom_collate_fn`: both sequences of every pair are padded with `padTokenId` to
 * one length, the longest sequence + 1; a mask is 1 from the prompt's end + 2 up to the
 * sequence's own length; then everything is cut to `allowedMaxLength`.
 */
export function collatePreferences(
  pairs: readonly TokenizedPair[],
  options: PreferenceCollateOptions = {},
): PreferenceBatch {
  if (pairs.length === 0) throw new Error("collatePreferences: empty batch");
  const pad = options.padTokenId ?? 50256;
  const maskPrompt = options.maskPromptTokens ?? true;
  const common = Math.max(...pairs.flatMap((p) => [p.chosen.ids.length, p.rejected.ids.length])) +
    1;
  const seqLen = Math.min(common, options.allowedMaxLength ?? Infinity);
  if (seqLen < 2) {
    throw new Error(`collatePreferences: allowedMaxLength ${options.allowedMaxLength} < 2`);
  }
  const rows = pairs.length;
  const make = () => ({ ids: new Int32Array(rows * seqLen), mask: new Uint8Array(rows * seqLen) });
  const chosen = make(), rejected = make();
  pairs.forEach((pair, r) => {
    for (const [example, out] of [[pair.chosen, chosen], [pair.rejected, rejected]] as const) {
      const { ids, promptLength } = example;
      const responseStart = maskPrompt ? promptLength + BOOK_PROMPT_MASK_EXTRA : 0;
      for (let t = 0; t < seqLen; t++) {
        const real = t < ids.length;
        out.ids[r * seqLen + t] = real ? ids[t] : pad;
        out.mask[r * seqLen + t] = real && t >= responseStart ? 1 : 0;
      }
    }
  });
  return {
    chosen: chosen.ids,
    rejected: rejected.ids,
    chosenMask: chosen.mask,
    rejectedMask: rejected.mask,
    batchSize: rows,
    seqLen,
  };
}

/**
 * Whether both responses of `pair` keep at least one masked token within `allowedMaxLength`
 * positions. A pair that does not would give a log-probability of 0/0 (NaN, as in the book),
 * so a trainer leaves it out (a long prompt on a model with a short context).
 */
export function responsesFit(pair: TokenizedPair, allowedMaxLength: number): boolean {
  return [pair.chosen, pair.rejected].every((example) =>
    Math.min(example.ids.length, allowedMaxLength) >
      example.promptLength + BOOK_PROMPT_MASK_EXTRA
  );
}

/** Options of {@link PreferenceLoader}. */
export interface PreferenceLoaderOptions extends PreferenceCollateOptions {
  /** Default 8 (the book's). */
  batchSize?: number;
  /** Shuffle each epoch with its own seeded permutation (training). Default false. */
  shuffle?: boolean;
  /** Drop a last, smaller batch (training). Default false. */
  dropLast?: boolean;
  /** Default 123. */
  seed?: number;
}

/**
 * The book's `DataLoader` over a `PreferenceDataset`. Each epoch's order depends only on the seed
 * and the epoch (as `InstructionLoader`), so a resumed run sees the same batches; an
 * `EpochBatches` source for the training loop.
 */
export class PreferenceLoader {
  /** Pairs per batch. */
  readonly batchSize: number;

  /** A loader over `pairs`. */
  constructor(
    readonly pairs: readonly TokenizedPair[],
    readonly options: PreferenceLoaderOptions = {},
  ) {
    this.batchSize = options.batchSize ?? 8;
    if (!(Number.isInteger(this.batchSize) && this.batchSize >= 1)) {
      throw new Error(
        `PreferenceLoader: batchSize must be an integer ≥ 1, got ${options.batchSize}`,
      );
    }
  }

  /** Batches per epoch. */
  get numBatches(): number {
    const n = this.pairs.length;
    return this.options.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** Pair indices in the order epoch `epoch` visits them. */
  order(epoch: number): Uint32Array {
    const n = this.pairs.length;
    if (!this.options.shuffle) return Uint32Array.from({ length: n }, (_, i) => i);
    return permutation(n, new SeededRandom(deriveSeed(this.options.seed ?? 123, "epoch", epoch)));
  }

  /** The batches of `epoch` in order, from index `start`. */
  *batches(epoch = 0, start = 0): Generator<PreferenceBatch> {
    const order = this.order(epoch);
    for (let i = start; i < this.numBatches; i++) {
      const first = i * this.batchSize;
      const picked = Array.from(
        order.subarray(first, Math.min(first + this.batchSize, order.length)),
        (k) => this.pairs[k],
      );
      yield collatePreferences(picked, this.options);
    }
  }
}
