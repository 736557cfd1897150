/**
 * Stage `instructions` (book ch07, workshop part 6): read the instruction data
 * (`{instruction, input, output}` records, JSON or JSONL), split it in file order, format each
 * entry with a prompt template and tokenize it with GPT-2's BPE, or with the tokenizer of the
 * model upstream (`tokenizer: model`, an open model): then `template: chat` formats each entry in
 * that model's own chat template.
 *
 * Artifact: train.json / val.json / test.json (the entries themselves, which `responses`
 * answers), train.bin / val.bin / test.bin (+ .json, .index.json: token ids and each example's
 * offset and prompt length), template.json (name + source), the tokenizer (tokenizer_spec.json
 * for GPT-2; the model's tokenizer.json, tokenizer_config.json, generation_config.json and
 * chat_template.jinja when it has them), stats.json (per split: count, mean/max length,
 * truncated; the duplicates report; the collate's pad and end ids).
 */
import { join } from "node:path";
import { z } from "zod";
import { DATASETS } from "../datasets/catalog.ts";
import { resolvePath, writeFileAtomic } from "../util/files.ts";
import {
  findDuplicates,
  type InstructionSplit,
  type PromptTemplate,
  promptTemplate,
  readInstructionData,
  type SplitFractions,
  splitInstructionData,
  tokenizeSplits,
} from "../llm/data/instructions.ts";
import { writeTemplateFile, writeTokenizedExamples } from "../llm/data/instruction_files.ts";
import { createTokenizer, type Tokenizer } from "../llm/tokenizer/mod.ts";
import { writeTokenizerSpec } from "../llm/tokenizer/files.ts";
import { HfTokenizer } from "../llm/tokenizer/hf.ts";
import { readModelTokenizer } from "../llm/infer/model_folder.ts";
import { chatEndTokenId, chatFormatFor, chatPromptTemplate } from "../llm/chat/mod.ts";
import { defineStage, type PipelineSettings, type StageDefinition } from "../runner/stage.ts";
import { fetchForStage, modelInput } from "./common.ts";

const SPLITS: readonly InstructionSplit[] = ["train", "val", "test"];

/** The named splits: the book's 85/10/rest (935/110/55) and the workshop's 85/15. */
const NAMED_SPLITS: Record<string, SplitFractions> = {
  book: { train: 0.85, test: 0.1 },
  workshop: { train: 0.85, test: 0.15 },
};

/** Split fractions of the data: what trains and what tests; the rest validates. */
const SplitFractionsParams = z.strictObject({
  train: z.number().min(0).max(1).describe("Fraction of the entries that train."),
  test: z.number().min(0).max(1).describe("Fraction that tests; the rest validates."),
}).refine((f) => f.train + f.test <= 1, {
  error: (issue) => {
    const f = issue.input as { train: number; test: number };
    return `train ${f.train} + test ${f.test} = ${
      Math.round((f.train + f.test) * 1e6) / 1e6
    }: the two fractions must sum to at most 1 (the rest validates)`;
  },
});

export const InstructionsParams = z.strictObject({
  corpus: z.string().min(1).default("instruction-data").describe(
    "`instruction-data` (the book's 1,100 entries, downloaded or mirrored, checksum verified) " +
      "or the path of a local JSON array / JSONL file of `{instruction, input, output}` records.",
  ),
  split: z.union([z.enum(["book", "workshop"]), SplitFractionsParams]).default("book").describe(
    "In file order: `book` 85% train / 10% test / rest validation (935/110/55), `workshop` " +
      "85/15 (no validation part), or `{train, test}` fractions.",
  ),
  val_split_fraction: z.number().min(0).lt(1).optional().describe(
    "Take this fraction of the training entries for validation (LitGPT's " +
      "`--data.val_split_fraction`; the workshop's part 6: 0.1 of its 935): the last " +
      "floor(train × fraction) in file order (LitGPT picks them at random). Only with a split " +
      "that leaves no validation part (`workshop`, or fractions summing to 1).",
  ),
  template: z.string().min(1).default("alpaca").superRefine((value, issue) => {
    if (value === "chat") return;
    try {
      promptTemplate(value);
    } catch (error) {
      issue.addIssue({ code: "custom", message: (error as Error).message });
    }
  }).describe(
    "Prompt template: `alpaca` (the book's), `phi3` (exercise 7.1), `chat` (the upstream " +
      "model's own chat template: the instruction and input as the user's message, the output " +
      "as the assistant's reply; needs `tokenizer: model`) or a custom template string with " +
      "`{instruction}`, `[[...{input}...]]` and a final `{output}`.",
  ),
  allowed_max_length: z.number().int().min(2).default(1024).describe(
    "Batches keep at most this many positions (the book's 1024); longer examples are counted " +
      "as truncated. A fine-tune also cuts at its model's context length.",
  ),
  limit: z.number().int().min(1).optional().describe(
    "Use only the first N entries (smoke tests, the book's --test_mode).",
  ),
  tokenizer: z.enum(["gpt2", "model"]).default("gpt2").describe(
    "`gpt2` (GPT-2's BPE) or `model`: the tokenizer of the model stage in `needs` (an open " +
      "model's tokenizer.json), whose end-of-text (or, with `template: chat`, end-of-turn) " +
      "token ends every example and whose pad token pads the batches.",
  ),
}).refine((p) => p.template !== "chat" || p.tokenizer === "model", {
  message: "template: chat is the upstream model's chat template: it needs tokenizer: model",
  path: ["template"],
});
export type InstructionsParams = z.infer<typeof InstructionsParams>;

function isLocal(corpus: string): boolean {
  return !(corpus in DATASETS);
}

function localPath(corpus: string, pipeline: PipelineSettings): string {
  return resolvePath(corpus, pipeline.baseDir);
}

/** The files of an HF model folder that make its tokenizer and chat template (not config.json). */
const HF_TOKENIZER_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "generation_config.json",
  "chat_template.jinja",
];

/** Copies the tokenizer files `from` has into `to`. */
export async function copyHfTokenizerFiles(from: string, to: string): Promise<void> {
  for (const file of HF_TOKENIZER_FILES) {
    await Deno.copyFile(join(from, file), join(to, file)).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
  }
}

/**
 * The tokenizer and template the entries are formatted with, and the ids the collate appends
 * and pads with: GPT-2's end of text for both (the book), or the upstream model's tokenizer with
 * its pad token (else its end of text) and the template's end of turn (chat) or end of text.
 */
async function tokenizerAndTemplate(
  stage: string,
  p: InstructionsParams,
  ctx: Parameters<typeof modelInput>[0],
): Promise<{ tokenizer: Tokenizer; template: PromptTemplate; padId: number; endId: number }> {
  if (p.tokenizer === "gpt2") {
    const tokenizer = createTokenizer({ kind: "gpt2" });
    const eot = tokenizer.endOfTextId!;
    return { tokenizer, template: promptTemplate(p.template), padId: eot, endId: eot };
  }
  const dir = modelInput(ctx).dir;
  const tokenizer = await readModelTokenizer(dir);
  if (!(tokenizer instanceof HfTokenizer)) {
    throw new Error(
      `${stage}: tokenizer: model reads an open model's tokenizer.json, but ${dir} has the ` +
        `${tokenizer.name} tokenizer (use tokenizer: gpt2 for GPT-2 models)`,
    );
  }
  const eos = tokenizer.endOfTextId;
  if (eos === undefined) {
    throw new Error(`${stage}: the tokenizer of ${dir} has no eos_token to end examples with`);
  }
  const padToken = tokenizer.config.pad_token;
  const padText = typeof padToken === "string"
    ? padToken
    : (padToken as { content?: string } | null)?.content;
  const padId = (padText !== undefined ? tokenizer.tokenId(padText) : undefined) ?? eos;
  if (p.template !== "chat") {
    return { tokenizer, template: promptTemplate(p.template), padId, endId: eos };
  }
  const chat = await chatFormatFor(dir, tokenizer);
  if (chat.name !== "jinja") {
    throw new Error(
      `${stage}: template: chat needs the model's chat template, but ${dir} has none ` +
        `(tokenizer_config.json chat_template or chat_template.jinja); use template: alpaca`,
    );
  }
  const endId = chatEndTokenId(chat, tokenizer.specialTokens) ?? eos;
  return { tokenizer, template: chatPromptTemplate(chat), padId, endId };
}

/** Whether a split leaves entries to validate on (fractions that sum to less than 1). */
export function leavesValidation(split: InstructionsParams["split"]): boolean {
  const f = typeof split === "string" ? NAMED_SPLITS[split] : split;
  return (f.train ?? 0) + (f.test ?? 0) < 1 - 1e-9;
}

/** A split as the pipeline wrote it: `split "workshop"` or `split {train: 0.9, test: 0.1}`. */
export function describeSplit(split: InstructionsParams["split"]): string {
  return typeof split === "string"
    ? `split "${split}"`
    : `split {train: ${split.train}, test: ${split.test}}`;
}

/** Stage `instructions`: split, format and tokenize instruction data (book ch07). */
export const instructionsStage: StageDefinition = defineStage({
  type: "instructions",
  version: "1",
  description: "Split instruction data, format it with a prompt template and tokenize it",
  params: InstructionsParams,
  outputs: ["instructions"],
  headline: ["train", "val", "test", "max_length"],
  localFiles: (p, pipeline) => isLocal(p.corpus) ? [localPath(p.corpus, pipeline)] : [],
  async run(ctx) {
    const p = ctx.params;
    const path = isLocal(p.corpus)
      ? localPath(p.corpus, ctx.pipeline)
      : await fetchForStage(ctx, DATASETS[p.corpus]);
    let entries = await readInstructionData(path);
    if (p.limit !== undefined) entries = entries.slice(0, p.limit);
    if (entries.length === 0) throw new Error(`${path}: no entries`);
    const fractions = typeof p.split === "string" ? NAMED_SPLITS[p.split] : p.split;
    const splits = splitInstructionData(entries, fractions);
    if (p.val_split_fraction !== undefined) {
      if (splits.val.length > 0) {
        throw new Error(
          `${ctx.name}: val_split_fraction takes validation entries from the training part, but ` +
            `split ${JSON.stringify(p.split)} already leaves ${splits.val.length} for ` +
            `validation: use split workshop or {train, test} fractions summing to 1`,
        );
      }
      const moved = Math.floor(splits.train.length * p.val_split_fraction);
      splits.val = splits.train.slice(splits.train.length - moved);
      splits.train = splits.train.slice(0, splits.train.length - moved);
    }
    if (splits.train.length === 0) {
      throw new Error(
        `${path}: ${entries.length} entries leave no training entries with split ${
          JSON.stringify(p.split)
        }`,
      );
    }
    const { tokenizer, template, padId, endId } = await tokenizerAndTemplate(ctx.name, p, ctx);
    const tokenized = tokenizeSplits(splits, template, tokenizer, {
      allowedMaxLength: p.allowed_max_length,
    });
    const duplicates = findDuplicates(entries);

    for (const split of SPLITS) {
      await writeFileAtomic(
        join(ctx.outDir, `${split}.json`),
        JSON.stringify(splits[split], null, 1) + "\n",
      );
      await writeTokenizedExamples(
        join(ctx.outDir, `${split}.bin`),
        tokenized[split].examples,
        tokenizer.vocabSize,
      );
    }
    await writeTemplateFile(ctx.outDir, template);
    if (p.tokenizer === "gpt2") {
      await writeTokenizerSpec(ctx.outDir, { kind: "gpt2" });
    } else {
      await copyHfTokenizerFiles(modelInput(ctx).dir, ctx.outDir);
    }
    const stats = {
      source: path,
      entries: entries.length,
      splits: Object.fromEntries(SPLITS.map((s) => [s, tokenized[s].stats])),
      duplicates,
      collate: { pad_id: padId, end_id: endId },
    };
    await Deno.writeTextFile(join(ctx.outDir, "stats.json"), JSON.stringify(stats, null, 2) + "\n");
    for (const split of SPLITS) {
      const s = tokenized[split].stats;
      ctx.log.info(
        `${split}: ${s.count} entries, ${
          s.meanLength.toFixed(1)
        } tokens on average, longest ${s.maxLength}` +
          (s.truncated > 0 ? `, ${s.truncated} longer than ${s.allowedMaxLength}` : ""),
      );
    }
    if (duplicates.count > 0) {
      ctx.log.info(`${duplicates.count} entries repeat an earlier one (kept, as the book does)`);
    }
    return {
      metrics: {
        train: splits.train.length,
        val: splits.val.length,
        test: splits.test.length,
        max_length: Math.max(...SPLITS.map((s) => tokenized[s].stats.maxLength)),
        truncated: SPLITS.reduce((n, s) => n + tokenized[s].stats.truncated, 0),
        duplicates: duplicates.count,
        prompt_template: template.name,
        allowed_max_length: p.allowed_max_length,
        tokenizer: tokenizer.name,
      },
    };
  },
});

/** The reader of this stage's artifact (its kind's module). */
export {
  type InstructionsArtifact,
  openInstructionsArtifact,
} from "../llm/artifacts/instructions.ts";
