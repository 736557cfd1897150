/**
 * Instruction data (book ch07): the `{instruction, input, output}` entries of
 * `instruction-data.json`, the Alpaca prompt template, and the book's in-order split.
 */
import { readJsonFile } from "../files.ts";

export interface InstructionEntry {
  instruction: string;
  input: string;
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

/**
 * The prompt followed by the response header, so that the model's continuation is the answer
 * itself (for interactive use, where the answer streams as it is generated).
 */
export function formatInstructionQuery(entry: { instruction: string; input?: string }): string {
  return `${formatInstructionPrompt(entry)}\n\n${RESPONSE_HEADER}\n`;
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

/** Checks parsed JSON and returns it as entries; errors name the source and the entry index. */
export function parseInstructionData(
  value: unknown,
  source = "<instruction data>",
): InstructionEntry[] {
  if (!Array.isArray(value)) {
    throw new Error(`${source}: expected a JSON array of {instruction, input, output} entries`);
  }
  return value.map((item, index) => {
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      throw new Error(`${source}: entry ${index} is not an object`);
    }
    const record = item as Record<string, unknown>;
    for (const key of ["instruction", "input", "output"]) {
      if (typeof record[key] !== "string") {
        throw new Error(
          `${source}: entry ${index} has ${
            key in record ? `a non-string "${key}"` : `no "${key}"`
          } (expected a string)`,
        );
      }
    }
    return {
      instruction: record.instruction as string,
      input: record.input as string,
      output: record.output as string,
    };
  });
}

export async function readInstructionData(path: string): Promise<InstructionEntry[]> {
  return parseInstructionData(await readJsonFile(path), path);
}

export type InstructionSplit = "train" | "test" | "val";

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
