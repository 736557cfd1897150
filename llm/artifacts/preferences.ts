/**
 * Artifact kind `preferences`: what the `preferences` stage writes: each split's entries
 * (<split>.json: instruction, input, chosen, rejected), the tokenized pairs
 * (<split>.chosen.bin, <split>.rejected.bin), the prompt template and the tokenizer.
 */
import { join } from "node:path";
import { readJsonFile } from "../../util/files.ts";
import type { InstructionSplit, PromptTemplate } from "../data/instructions.ts";
import {
  readTemplateFile,
  readTokenizedExamples,
  TEMPLATE_FILE,
} from "../data/instruction_files.ts";
import {
  parsePreferenceData,
  type PreferenceEntry,
  type TokenizedPair,
} from "../data/preferences.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { readTokenizerFolder } from "../tokenizer/files.ts";
import { hasFile } from "./check.ts";

export function hasPreferences(dir: string): boolean {
  return hasFile(dir, "train.chosen.bin");
}

/** What a `preferences` stage wrote, read back. */
export interface PreferencesArtifact {
  /** The artifact folder. */
  dir: string;
  /** The prompt template the pairs were formatted with. */
  template: PromptTemplate;
  /** The tokenizer of the token ids. */
  tokenizer: Tokenizer;
  /** The stage's `allowed_max_length`. */
  allowedMaxLength: number;
  /** The entries of a split. */
  entries(split: InstructionSplit): Promise<PreferenceEntry[]>;
  /** The tokenized pairs of a split. */
  pairs(split: InstructionSplit): Promise<TokenizedPair[]>;
}

/** Read back what a `preferences` stage wrote in `dir`. */
export async function openPreferencesArtifact(dir: string): Promise<PreferencesArtifact> {
  const template = await readTemplateFile(join(dir, TEMPLATE_FILE));
  const { tokenizer } = await readTokenizerFolder(dir);
  const statsPath = join(dir, "stats.json");
  const stats = await readJsonFile(statsPath) as { allowedMaxLength?: unknown };
  if (typeof stats?.allowedMaxLength !== "number") {
    throw new Error(`${statsPath}: expected a number "allowedMaxLength"`);
  }
  return {
    dir,
    template,
    tokenizer,
    allowedMaxLength: stats.allowedMaxLength,
    entries: async (split) =>
      parsePreferenceData(
        await readJsonFile(join(dir, `${split}.json`)),
        join(dir, `${split}.json`),
      ),
    pairs: async (split) => {
      const chosen = await readTokenizedExamples(join(dir, `${split}.chosen.bin`));
      const rejected = await readTokenizedExamples(join(dir, `${split}.rejected.bin`));
      if (chosen.length !== rejected.length) {
        throw new Error(
          `${dir}: ${split}.chosen.bin has ${chosen.length} examples, ${split}.rejected.bin ` +
            `${rejected.length}`,
        );
      }
      return chosen.map((c, i) => ({ chosen: c, rejected: rejected[i] }));
    },
  };
}
