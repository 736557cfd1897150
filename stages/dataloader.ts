/**
 * Stage `dataloader`: split the tokenized corpus into training and validation text by
 * characters (as the workshop does: the first `train_ratio` of the characters train), encode
 * each part, cut sliding windows and group them into batches.
 *
 * Artifact: train.bin / val.bin (token streams), loader.json (window and batch
 * settings) and the tokenizer's description (tokenizer_spec.json, vocab.json). `openDataloaderArtifact` rebuilds the exact batches, in the exact order, that
 * downstream stages must read.
 */
import { join } from "node:path";
import { z } from "zod";
import { defineStage, type StageDefinition } from "../runner/stage.ts";
import { writeTokenFile } from "../llm/data/token_file.ts";
import { slidingWindows, WindowLoader } from "../llm/data/windows.ts";
import { inputOfType } from "./common.ts";
import { openTokenizeArtifact } from "./tokenize.ts";
import { copyTokenizerFiles } from "../llm/tokenizer/files.ts";
import {
  type LoaderManifest,
  type SplitInfo,
  writeLoaderManifest,
} from "../llm/artifacts/batches.ts";

export const DataloaderParams = z.strictObject({
  train_ratio: z.number().gt(0).lt(1).default(0.9).describe(
    "Fraction of the _characters_ that train (the rest validates), as the workshop splits.",
  ),
  batch_size: z.number().int().min(1).default(2).describe("Windows per batch."),
  max_length: z.number().int().min(1).default(256).describe("Tokens per window."),
  stride: z.number().int().min(1).optional().describe(
    "Step between window starts; default `max_length` (no overlap), as in the workshop's " +
      "pretraining.",
  ),
  shuffle: z.boolean().default(true).describe(
    "Shuffle the training batches with a seeded permutation per epoch (validation never).",
  ),
  drop_last: z.boolean().default(true).describe(
    "Drop an incomplete last training batch (validation keeps it).",
  ),
  seed: z.number().int().min(0).default(123).describe("Shuffle seed."),
});
export type DataloaderParams = z.infer<typeof DataloaderParams>;

/**
 * The `dataloader` stage (book ch02/ch05): splits the corpus by characters (`train_ratio`,
 * default 0.9), cuts each part into sliding windows and records how to batch them; downstream
 * stages rebuild the loaders with `openDataloaderArtifact`.
 */
export const dataloaderStage: StageDefinition = defineStage({
  type: "dataloader",
  version: "2",
  description: "Split by characters, cut sliding windows, batch (seeded shuffle)",
  params: DataloaderParams,
  outputs: ["batches"],
  inherits: ["seed"],
  requires: ["tokenize"],
  headline: ["train_tokens", "val_tokens", "train_batches", "val_batches"],
  async run(ctx) {
    const p = ctx.params;
    const stride = p.stride ?? p.max_length;
    const tokenizeDir = inputOfType(ctx, "tokenize").dir;
    const { text, tokenizer } = await openTokenizeArtifact(tokenizeDir);
    await copyTokenizerFiles(tokenizeDir, ctx.outDir);
    const splitAt = Math.floor(p.train_ratio * text.length);
    const parts = { train: text.slice(0, splitAt), val: text.slice(splitAt) };
    const info: Partial<Record<"train" | "val", SplitInfo>> = {};
    for (const split of ["train", "val"] as const) {
      const ids = tokenizer.encode(parts[split]);
      const windows = slidingWindows(ids, p.max_length, stride);
      if (windows.count === 0) {
        throw new Error(
          `the ${split} split has ${ids.length} tokens (${parts[split].length} characters), ` +
            `but a window needs max_length + 1 = ${
              p.max_length + 1
            }: lower max_length or change train_ratio`,
        );
      }
      const isTrain = split === "train";
      const loader = new WindowLoader(windows, {
        batchSize: p.batch_size,
        shuffle: isTrain && p.shuffle,
        dropLast: isTrain && p.drop_last,
        seed: p.seed,
      });
      if (loader.numBatches === 0) {
        throw new Error(
          `the ${split} split has ${windows.count} windows, fewer than batch_size ${p.batch_size} with drop_last: no batch remains`,
        );
      }
      const file = `${split}.bin`;
      await writeTokenFile(join(ctx.outDir, file), ids, tokenizer.vocabSize);
      info[split] = {
        file,
        characters: parts[split].length,
        tokens: ids.length,
        windows: windows.count,
        batches: loader.numBatches,
        batch_tokens: loader.tokensPerEpoch,
        shuffle: loader.options.shuffle,
        drop_last: loader.options.dropLast,
      };
    }
    const manifest: LoaderManifest = {
      batch_size: p.batch_size,
      max_length: p.max_length,
      stride,
      seed: p.seed,
      train: info.train!,
      val: info.val!,
    };
    await writeLoaderManifest(ctx.outDir, manifest);
    ctx.log.info(
      `train ${manifest.train.batch_tokens} tokens in ${manifest.train.batches} batches, ` +
        `validation ${manifest.val.batch_tokens} tokens in ${manifest.val.batches} batches`,
    );
    return {
      metrics: {
        train_tokens: manifest.train.batch_tokens,
        val_tokens: manifest.val.batch_tokens,
        train_windows: manifest.train.windows,
        val_windows: manifest.val.windows,
        train_batches: manifest.train.batches,
        val_batches: manifest.val.batches,
      },
    };
  },
});

/** The reader of this stage's artifact (its kind's module). */
export {
  type DataloaderArtifact,
  type LoaderManifest,
  openDataloaderArtifact,
  type SplitInfo,
} from "../llm/artifacts/batches.ts";
