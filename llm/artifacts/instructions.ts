/**
 * Artifact kind `instructions`: what the `instructions` stage writes: each split's entries
 * (<split>.json, the book's instruction format) and tokenized examples (<split>.bin), the
 * prompt template (template.json), the tokenizer's files and stats.json.
 */
import { join } from "node:path";
import { readJsonFile } from "../../util/files.ts";
import {
  type InstructionEntry,
  type InstructionSplit,
  parseInstructionData,
  type PromptTemplate,
  type TokenizedExample,
} from "../data/instructions.ts";
import {
  readTemplateFile,
  readTokenizedExamples,
  TEMPLATE_FILE,
} from "../data/instruction_files.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { readModelTokenizer } from "../infer/model_folder.ts";
import { hasFile } from "./check.ts";

export function hasInstructions(dir: string): boolean {
  return hasFile(dir, "train.bin") && hasFile(dir, "train.json");
}

/** What an `instructions` stage wrote, read back. */
export interface InstructionsArtifact {
  /** The artifact folder. */
  dir: string;
  /** The prompt template the examples were formatted with (template.json). */
  template: PromptTemplate;
  /** The tokenizer of the token ids (tokenizer_spec.json). */
  tokenizer: Tokenizer;
  /** The stage's `allowed_max_length`. */
  allowedMaxLength: number;
  /** The id the collate pads with (GPT-2's 50256; an open model's pad token or eos). */
  padId: number;
  /** The id appended to every example (the eos, or a chat template's end of turn). */
  endId: number;
  /** The entries of a split (train.json, val.json, test.json). */
  entries(split: InstructionSplit): Promise<InstructionEntry[]>;
  /** The tokenized examples of a split. */
  examples(split: InstructionSplit): Promise<TokenizedExample[]>;
}

/** Read back what an `instructions` stage wrote in `dir`. */
export async function openInstructionsArtifact(dir: string): Promise<InstructionsArtifact> {
  const tokenizer = await readModelTokenizer(dir);
  const template = await readTemplateFile(join(dir, TEMPLATE_FILE), tokenizer);
  const stats = await readJsonFile(join(dir, "stats.json")) as {
    splits: Record<string, { allowedMaxLength: number }>;
    collate?: { pad_id: number; end_id: number };
  };
  // Artifacts written before open models: GPT-2's end of text for both.
  const eot = tokenizer.endOfTextId ?? 50256;
  return {
    dir,
    template,
    tokenizer,
    allowedMaxLength: stats.splits.train.allowedMaxLength,
    padId: stats.collate?.pad_id ?? eot,
    endId: stats.collate?.end_id ?? eot,
    entries: async (split) =>
      parseInstructionData(
        await readJsonFile(join(dir, `${split}.json`)),
        join(dir, `${split}.json`),
      ),
    examples: (split) => readTokenizedExamples(join(dir, `${split}.bin`)),
  };
}
