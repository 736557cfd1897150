/**
 * Instruction data (book ch07): the `{instruction, input, output}` entries of
 * `instruction-data.json`, the Alpaca prompt template, and the book's in-order split.
 */
import { readJsonFile } from "../../util/files.ts";

/** One entry of `instruction-data.json` (book ch07, Alpaca style). */
export interface InstructionEntry {
  /** The task, e.g. "Convert the active sentence to passive". */
  instruction: string;
  /** Its input; "" when the task needs none. */
  input: string;
  /** The desired response. */
  output: string;
}

const PREAMBLE = "Below is an instruction that describes a task. " +
  "Write a response that appropriately completes the request.";
const RESPONSE_HEADER = "### Response:";

/**
 * The book's `format_input`: the preamble and the instruction, plus the input when it is not
 * empty. This is the prompt a model sees at generation time.
 */
export function formatInstructionPrompt(entry: { instruction: string; input?: string }): string {
  const input = entry.input ? `\n\n### Input:\n${entry.input}` : "";
  return `${PREAMBLE}\n\n### Instruction:\n${entry.instruction}${input}`;
}

/** A full training example: the prompt, then the response header and the expected output. */
export function formatInstructionExample(entry: InstructionEntry): string {
  return `${formatInstructionPrompt(entry)}\n\n${RESPONSE_HEADER}\n${entry.output}`;
}

/**
 * The answer inside a model's continuation of {@link formatInstructionPrompt}: as the book
 * does, drop the "### Response:" header the model writes first and trim the whitespace.
 */
export function extractResponse(continuation: string): string {
  return continuation.replace(RESPONSE_HEADER, "").trim();
}

/**
 * How errors name an entry of a data file: people count from 1, so the first entry is
 * "entry 1", and the message says so.
 */
export function entryName(index: number): string {
  return `entry ${index + 1} (counting from 1)`;
}

/**
 * Checks parsed JSON and returns it as entries; errors name the source and the entry. A
 * missing `input` is an empty one (as in LitGPT's JSON data and the judge's responses files).
 */
export function parseInstructionData(
  value: unknown,
  source = "<instruction data>",
): InstructionEntry[] {
  if (!Array.isArray(value)) {
    throw new Error(`${source}: expected a JSON array of {instruction, input, output} entries`);
  }
  return value.map((item, index) => {
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      throw new Error(`${source}: ${entryName(index)} is not an object`);
    }
    const record = item as Record<string, unknown>;
    for (const key of ["instruction", "input", "output"]) {
      if (key === "input" && record.input === undefined) continue;
      if (typeof record[key] !== "string") {
        throw new Error(
          `${source}: ${entryName(index)} has ${
            key in record ? `a non-string "${key}"` : `no "${key}"`
          } (expected a string)`,
        );
      }
    }
    return {
      instruction: record.instruction as string,
      input: (record.input as string | undefined) ?? "",
      output: record.output as string,
    };
  });
}

/**
 * Reads a JSON array (`.json`) or JSON Lines (`.jsonl`, one record a line, blank lines skipped)
 * of `{instruction, input, output}` records, as LitGPT's `--data JSON` does. Errors name the
 * file, the record (and for JSONL its line) and the field.
 */
export async function readInstructionData(path: string): Promise<InstructionEntry[]> {
  if (path.toLowerCase().endsWith(".jsonl")) {
    return parseInstructionJsonl(await Deno.readTextFile(path), path);
  }
  return parseInstructionData(await readJsonFile(path), path);
}

/** JSON Lines: each non-blank line is one record; errors name the line. */
export function parseInstructionJsonl(
  text: string,
  source = "<instruction data>",
): InstructionEntry[] {
  const records: unknown[] = [];
  const lineOf: number[] = [];
  const lines = text.split("\n");
  lines.forEach((line, lineIndex) => {
    if (line.trim() === "") return;
    try {
      records.push(JSON.parse(line));
      lineOf.push(lineIndex + 1);
    } catch (error) {
      throw new Error(
        `${source}: line ${lineIndex + 1} is not valid JSON: ${(error as Error).message}`,
      );
    }
  });
  try {
    return parseInstructionData(records, source);
  } catch (error) {
    // A JSONL file's entries are its lines: name the line rather than the record's position.
    const message = (error as Error).message.replace(
      /entry (\d+) \(counting from 1\)/,
      (_, n) => `line ${lineOf[Number(n) - 1]}`,
    );
    throw new Error(message);
  }
}

export interface DuplicateReport {
  /** Entries equal (instruction, input and output) to an earlier entry. */
  count: number;
  /** Index of each such entry and of the first entry it repeats (at most 20 listed). */
  examples: { index: number; firstIndex: number }[];
  /** Entries whose instruction and input repeat an earlier entry's (any output). */
  repeatedPrompts: number;
}

/** Counts repeats; the data is kept as it is (the book trains on it unchanged). */
export function findDuplicates(entries: readonly InstructionEntry[]): DuplicateReport {
  const first = new Map<string, number>();
  const prompts = new Set<string>();
  const report: DuplicateReport = { count: 0, examples: [], repeatedPrompts: 0 };
  entries.forEach((entry, index) => {
    const prompt = JSON.stringify([entry.instruction, entry.input]);
    if (prompts.has(prompt)) report.repeatedPrompts += 1;
    prompts.add(prompt);
    const key = JSON.stringify([entry.instruction, entry.input, entry.output]);
    const seen = first.get(key);
    if (seen === undefined) {
      first.set(key, index);
      return;
    }
    report.count += 1;
    if (report.examples.length < 20) report.examples.push({ index, firstIndex: seen });
  });
  return report;
}

/** The three parts of the book's in-order split. */
export type InstructionSplit = "train" | "test" | "val";

/** Fractions of the data for training and test; validation gets the rest. */
export interface SplitFractions {
  /** Default 0.85 (book and workshop). */
  train?: number;
  /** Default 0.10 (book); the workshop uses 0.15 and no validation part. */
  test?: number;
}

/**
 * The book's split, in file order (no shuffling): the first `floor(n * train)` entries train,
 * the next `floor(n * test)` test, the rest validate. 1,100 entries → 935 / 110 / 55.
 */
export function splitInstructionData<T>(
  entries: readonly T[],
  fractions: SplitFractions = {},
): Record<InstructionSplit, T[]> {
  const train = fractions.train ?? 0.85;
  const test = fractions.test ?? 0.1;
  if (!(train >= 0 && test >= 0 && train + test <= 1)) {
    throw new Error(`split fractions train ${train} and test ${test} must be ≥ 0 and sum to ≤ 1`);
  }
  const trainEnd = Math.floor(entries.length * train);
  const testEnd = trainEnd + Math.floor(entries.length * test);
  return {
    train: entries.slice(0, trainEnd),
    test: entries.slice(trainEnd, testEnd),
    val: entries.slice(testEnd),
  };
}

/**
 * How an entry becomes text. `prompt` is what a model is given at generation time (the book's
 * `format_input`); `example` is the training text, the prompt followed by the response header and
 * the expected output; the prompt's tokens are the ones `mask_instructions` hides from the loss.
 */
export interface PromptTemplate {
  /** "alpaca", "phi3" or "custom". */
  readonly name: string;
  /** The template string (see {@link parsePromptTemplate}), stored with tokenized data. */
  readonly source: string;
  /** What the model sees at generation time (the book's `format_input`): no response header. */
  prompt(entry: { instruction: string; input?: string }): string;
  /** The prompt and the response header: the model's continuation is the answer itself. */
  query(entry: { instruction: string; input?: string }): string;
  /** A whole training example: the query followed by the expected output. */
  example(entry: InstructionEntry): string;
  /** The answer inside a continuation of `prompt`: the response header removed, trimmed. */
  extractResponse(continuation: string): string;
}

/** The book's `format_input` + `"\n\n### Response:\n{output}"` (the default template). */
export const ALPACA_TEMPLATE_SOURCE = `${PREAMBLE}\n\n### Instruction:\n{instruction}` +
  `[[\n\n### Input:\n{input}]]\n\n${RESPONSE_HEADER}\n{output}`;
/** The book's exercise 7.1 (`format_input_phi`), Phi-3's chat layout. */
export const PHI3_TEMPLATE_SOURCE =
  "<|user|>\n{instruction}[[\n{input}]]\n<|assistant|>:\n{output}";

const FIELD = /\{(instruction|input|output)\}/g;

/**
 * A template from a string with the named fields `{instruction}`, `{input}` and `{output}`.
 * `{output}` comes last, once; the part between `[[` and `]]` (which must hold `{input}`) is left
 * out when the input is empty. The text between the last other field (or the `]]`) and
 * `{output}` is the response header: it is part of the training text but not of the prompt, and
 * it is removed from generated answers (trimmed, e.g. "### Response:").
 */
export function parsePromptTemplate(source: string, name = "custom"): PromptTemplate {
  const fail = (why: string) => {
    throw new Error(`prompt template ${JSON.stringify(source)}: ${why}`);
  };
  if (!source.endsWith("{output}")) fail("must end with {output}");
  const body = source.slice(0, -"{output}".length);
  for (const unknown of body.matchAll(/\{([A-Za-z_]\w*)\}/g)) {
    if (!["instruction", "input"].includes(unknown[1])) {
      fail(`unknown field {${unknown[1]}} (the fields are {instruction}, {input}, {output})`);
    }
  }
  if (!body.includes("{instruction}")) fail("has no {instruction}");
  const open = body.indexOf("[["), close = body.indexOf("]]");
  let before = body, optional = "", after = "";
  if (open >= 0 || close >= 0) {
    if (!(open >= 0 && close > open)) fail("has an unmatched [[ or ]]");
    before = body.slice(0, open);
    optional = body.slice(open + 2, close);
    after = body.slice(close + 2);
    if (!optional.includes("{input}")) fail("the optional part [[...]] must contain {input}");
    if (after.includes("[[") || after.includes("]]")) fail("has more than one [[...]] part");
  }
  // The response header: what follows the last field (or the optional part) before {output}.
  const lastField = (text: string) => {
    let end = -1;
    for (const match of text.matchAll(FIELD)) end = match.index! + match[0].length;
    return end;
  };
  const tailStart = lastField(after);
  const promptAfter = tailStart >= 0 ? after.slice(0, tailStart) : "";
  const header = tailStart >= 0 ? after.slice(tailStart) : after;
  if (tailStart < 0 && optional === "") {
    // No optional part: the header follows the last field of `before`.
    const end = lastField(before);
    return buildTemplate(name, source, before.slice(0, end), "", "", before.slice(end));
  }
  return buildTemplate(name, source, before, optional, promptAfter, header);
}

function buildTemplate(
  name: string,
  source: string,
  before: string,
  optional: string,
  after: string,
  header: string,
): PromptTemplate {
  const fill = (text: string, entry: { instruction: string; input?: string }) =>
    text.replace(
      FIELD,
      (_, field: string) => field === "instruction" ? entry.instruction : entry.input ?? "",
    );
  const prompt = (entry: { instruction: string; input?: string }) =>
    fill(before, entry) + (entry.input ? fill(optional, entry) : "") + fill(after, entry);
  const marker = header.trim();
  return {
    name,
    source,
    prompt,
    query: (entry) => prompt(entry) + header,
    example: (entry) => prompt(entry) + header + entry.output,
    // The book: `response_text.replace("### Response:", "").strip()`.
    extractResponse: (continuation) =>
      (marker === "" ? continuation : continuation.replace(marker, "")).trim(),
  };
}

/** `alpaca`, `phi3`, or any other string as a custom template ({@link parsePromptTemplate}). */
export function promptTemplate(nameOrSource: string = "alpaca"): PromptTemplate {
  if (nameOrSource === "alpaca") return parsePromptTemplate(ALPACA_TEMPLATE_SOURCE, "alpaca");
  if (nameOrSource === "phi3") return parsePromptTemplate(PHI3_TEMPLATE_SOURCE, "phi3");
  return parsePromptTemplate(nameOrSource, "custom");
}

/** One tokenized training example: its ids and how many of them are the prompt. */
export interface TokenizedExample {
  /** GPT-2 token ids of the whole example (prompt, response header and output). */
  ids: number[];
  /** Tokens of `template.prompt(entry)` alone: what `mask_instructions` hides from the loss. */
  promptLength: number;
}

export interface TokenLengthStats {
  count: number;
  meanLength: number;
  maxLength: number;
  /** Examples longer than `allowedMaxLength` tokens (the collate keeps only their start). */
  truncated: number;
  allowedMaxLength: number;
}

/**
 * The book's InstructionDataset: each entry's full text (`template.example`) encoded, with the
 * prompt's own token count for `mask_instructions` (exercise 7.2 encodes `format_input` alone).
 */
export function tokenizeInstructions(
  entries: readonly InstructionEntry[],
  template: PromptTemplate,
  tokenizer: { encode(text: string): number[] },
  options: { allowedMaxLength?: number } = {},
): { examples: TokenizedExample[]; stats: TokenLengthStats } {
  const allowedMaxLength = options.allowedMaxLength ?? 1024;
  const examples = entries.map((entry) => ({
    ids: tokenizer.encode(template.example(entry)),
    promptLength: tokenizer.encode(template.prompt(entry)).length,
  }));
  return { examples, stats: tokenLengthStats(examples, allowedMaxLength) };
}

export function tokenLengthStats(
  examples: readonly { ids: readonly number[] }[],
  allowedMaxLength = 1024,
): TokenLengthStats {
  const lengths = examples.map((e) => e.ids.length);
  const total = lengths.reduce((a, b) => a + b, 0);
  return {
    count: lengths.length,
    meanLength: lengths.length === 0 ? 0 : total / lengths.length,
    maxLength: lengths.length === 0 ? 0 : Math.max(...lengths),
    truncated: lengths.filter((n) => n > allowedMaxLength).length,
    allowedMaxLength,
  };
}

/** {@link tokenizeInstructions} over each split of {@link splitInstructionData}. */
export function tokenizeSplits(
  splits: Record<InstructionSplit, readonly InstructionEntry[]>,
  template: PromptTemplate,
  tokenizer: { encode(text: string): number[] },
  options: { allowedMaxLength?: number } = {},
): Record<InstructionSplit, { examples: TokenizedExample[]; stats: TokenLengthStats }> {
  return {
    train: tokenizeInstructions(splits.train, template, tokenizer, options),
    test: tokenizeInstructions(splits.test, template, tokenizer, options),
    val: tokenizeInstructions(splits.val, template, tokenizer, options),
  };
}
