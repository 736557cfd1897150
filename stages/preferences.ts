/**
 * Stage `preferences` (book ch07, DPO bonus): read preference data (`{instruction, input,
 * chosen, rejected}` records, JSON or JSONL; the book's `instruction-data-with-preference` by
 * default), split it in file order as chapter 7, format each response after its prompt with a
 * template and tokenize both.
 *
 * Artifact: train.json / val.json / test.json (the entries), `<split>.chosen.bin` and
 * `<split>.rejected.bin` (+ .json, .index.json: the token ids of prompt + response and the
 * prompt's length), template.json, tokenizer.json, stats.json.
 */
import { join } from "node:path";
import { z } from "zod";
import { DATASETS } from "../datasets/catalog.ts";
import { resolvePath, writeFileAtomic } from "../util/files.ts";
import {
  type InstructionSplit,
  promptTemplate,
  type SplitFractions,
  splitInstructionData,
  tokenLengthStats,
} from "../llm/data/instructions.ts";
import { writeTemplateFile, writeTokenizedExamples } from "../llm/data/instruction_files.ts";
import { readPreferenceData, tokenizePreferences } from "../llm/data/preferences.ts";
import { createTokenizer } from "../llm/tokenizer/mod.ts";
import { defineStage, type PipelineSettings, type StageDefinition } from "../runner/stage.ts";
import { fetchForStage } from "./common.ts";

const SPLITS: readonly InstructionSplit[] = ["train", "val", "test"];
const BOOK_SPLIT: SplitFractions = { train: 0.85, test: 0.1 };

export const PreferencesParams = z.strictObject({
  corpus: z.string().min(1).default("instruction-data-with-preference").describe(
    "`instruction-data-with-preference` (the book's 1,100 entries with `chosen` and " +
      "`rejected`, downloaded or mirrored, checksum verified) or the path of a local JSON array " +
      "/ JSONL file of `{instruction, input, chosen, rejected}` records.",
  ),
  split: z.union([
    z.literal("book"),
    z.strictObject({
      train: z.number().min(0).max(1).describe("Fraction of the entries that train."),
      test: z.number().min(0).max(1).describe("Fraction that tests; the rest validates."),
    }),
  ]).default("book").describe(
    "In file order: `book` 85% train / 10% test / rest validation (935/110/55), or " +
      "`{train, test}` fractions.",
  ),
  template: z.string().min(1).default("alpaca").superRefine((value, issue) => {
    try {
      promptTemplate(value);
    } catch (error) {
      issue.addIssue({ code: "custom", message: (error as Error).message });
    }
  }).describe(
    "Prompt template: `alpaca` (the book's), `phi3` or a custom template string (as the " +
      "`instructions` stage's); each response takes the place of `{output}`.",
  ),
  allowed_max_length: z.number().int().min(2).default(1024).describe(
    "Batches keep at most this many positions (the book's 1024); `dpo` also cuts at its " +
      "model's context length.",
  ),
  limit: z.number().int().min(1).optional().describe(
    "Use only the first N entries (smoke tests).",
  ),
  tokenizer: z.enum(["gpt2"]).default("gpt2").describe("GPT-2's BPE (the only one so far)."),
});
export type PreferencesParams = z.infer<typeof PreferencesParams>;

function isLocal(corpus: string): boolean {
  return !(corpus in DATASETS);
}

function localPath(corpus: string, pipeline: PipelineSettings): string {
  return resolvePath(corpus, pipeline.baseDir);
}

/** Stage `preferences`: split, format and tokenize preference pairs (the book's DPO data). */
export const preferencesStage: StageDefinition = defineStage({
  type: "preferences",
  version: "1",
  description: "Split preference data (chosen / rejected responses), format and tokenize it",
  params: PreferencesParams,
  outputs: ["preferences"],
  headline: ["train", "val", "test", "max_length"],
  localFiles: (p, pipeline) => isLocal(p.corpus) ? [localPath(p.corpus, pipeline)] : [],
  async run(ctx) {
    const p = ctx.params;
    const path = isLocal(p.corpus)
      ? localPath(p.corpus, ctx.pipeline)
      : await fetchForStage(ctx, DATASETS[p.corpus]);
    let entries = await readPreferenceData(path);
    if (p.limit !== undefined) entries = entries.slice(0, p.limit);
    if (entries.length === 0) throw new Error(`${path}: no entries`);
    const splits = splitInstructionData(entries, p.split === "book" ? BOOK_SPLIT : p.split);
    if (splits.train.length === 0) {
      throw new Error(`${path}: ${entries.length} entries leave no training entries`);
    }
    const template = promptTemplate(p.template);
    const tokenizer = createTokenizer({ kind: "gpt2" });
    const stats: Record<string, unknown> = {};
    let maxLength = 0, truncated = 0;
    for (const split of SPLITS) {
      const pairs = tokenizePreferences(splits[split], template, tokenizer);
      await writeFileAtomic(
        join(ctx.outDir, `${split}.json`),
        JSON.stringify(splits[split], null, 1) + "\n",
      );
      for (const side of ["chosen", "rejected"] as const) {
        await writeTokenizedExamples(
          join(ctx.outDir, `${split}.${side}.bin`),
          pairs.map((pair) => pair[side]),
          tokenizer.vocabSize,
        );
      }
      // The collate pads both sequences of a pair to the longer one: that length is what counts.
      const lengths = tokenLengthStats(
        pairs.map((pair) =>
          pair.chosen.ids.length > pair.rejected.ids.length ? pair.chosen : pair.rejected
        ),
        p.allowed_max_length,
      );
      stats[split] = lengths;
      maxLength = Math.max(maxLength, lengths.maxLength);
      truncated += lengths.truncated;
      ctx.log.info(
        `${split}: ${pairs.length} pairs, longest sequence ${lengths.maxLength} tokens` +
          (lengths.truncated > 0
            ? `, ${lengths.truncated} longer than ${p.allowed_max_length}`
            : ""),
      );
    }
    await writeTemplateFile(ctx.outDir, template);
    await Deno.writeTextFile(
      join(ctx.outDir, "tokenizer.json"),
      JSON.stringify({ kind: "gpt2" }) + "\n",
    );
    await Deno.writeTextFile(
      join(ctx.outDir, "stats.json"),
      JSON.stringify(
        {
          source: path,
          entries: entries.length,
          allowedMaxLength: p.allowed_max_length,
          splits: stats,
        },
        null,
        2,
      ) + "\n",
    );
    return {
      metrics: {
        train: splits.train.length,
        val: splits.val.length,
        test: splits.test.length,
        max_length: maxLength,
        truncated,
        prompt_template: template.name,
        allowed_max_length: p.allowed_max_length,
      },
    };
  },
});

/** The reader of this stage's artifact (its kind's module). */
export { openPreferencesArtifact, type PreferencesArtifact } from "../llm/artifacts/preferences.ts";
