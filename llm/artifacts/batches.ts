/**
 * Artifact kind `batches`: what the `dataloader` stage writes: the token streams of the
 * training and validation parts (train.bin, val.bin), loader.json (how they are cut into
 * windows and batched) and the tokenizer's description. `openDataloaderArtifact` rebuilds the
 * exact batches, in the exact order, that downstream stages must read.
 */
import { join } from "node:path";
import { readTokenFile } from "../data/token_file.ts";
import { slidingWindows, WindowLoader } from "../data/windows.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { readTokenizerFolder } from "../tokenizer/files.ts";
import { hasFile, number, object, readJsonIn, string, writeJsonIn } from "./check.ts";

export const LOADER_FILE = "loader.json";

export function hasBatches(dir: string): boolean {
  return hasFile(dir, LOADER_FILE);
}

/** One part (train or validation) of a dataloader artifact, as `loader.json` records it. */
export interface SplitInfo {
  /** The token file in the artifact (`train.bin` / `val.bin`). */
  file: string;
  /** Characters of the corpus in this part. */
  characters: number;
  /** Tokens they encode to. */
  tokens: number;
  /** Sliding windows cut from them. */
  windows: number;
  /** Batches one epoch yields. */
  batches: number;
  /** Tokens inside the batches one epoch visits. */
  batch_tokens: number;
  /** Whether each epoch visits the windows in a new seeded order. */
  shuffle: boolean;
  /** Whether a last, smaller batch is dropped. */
  drop_last: boolean;
}

/** `loader.json`: everything needed to rebuild the batches exactly. */
export interface LoaderManifest {
  /** Windows per batch. */
  batch_size: number;
  /** Tokens per window. */
  max_length: number;
  /** Tokens between the starts of consecutive windows. */
  stride: number;
  /** Seed of the per-epoch shuffles. */
  seed: number;
  /** The training part. */
  train: SplitInfo;
  /** The validation part. */
  val: SplitInfo;
}

/** Writes loader.json. */
export async function writeLoaderManifest(dir: string, manifest: LoaderManifest): Promise<void> {
  await writeJsonIn(dir, LOADER_FILE, manifest);
}

/** loader.json of `dir`; errors name the file and the field. */
export async function readLoaderManifest(dir: string): Promise<LoaderManifest> {
  const path = join(dir, LOADER_FILE);
  const m = object(await readJsonIn(dir, LOADER_FILE), path);
  for (const key of ["batch_size", "max_length", "stride", "seed"]) {
    number(m[key], `${path}: "${key}"`);
  }
  for (const split of ["train", "val"]) {
    const info = object(m[split], `${path}: "${split}"`);
    const file = string(info.file, `${path}: ${split}.file`);
    if (/[\\/]/.test(file) || file.startsWith(".")) {
      throw new Error(`${path}: ${split}.file: expected a file of the artifact, got ${file}`);
    }
  }
  return m as unknown as LoaderManifest;
}

/** A dataloader artifact opened for training: its record, its tokenizer and the two loaders. */
export interface DataloaderArtifact {
  /** The artifact's `loader.json`. */
  manifest: LoaderManifest;
  /** The tokenizer the tokens were made with. */
  tokenizer: Tokenizer;
  /** Batches of the training part. */
  train: WindowLoader;
  /** Batches of the validation part. */
  val: WindowLoader;
}

/** Rebuild the loaders a dataloader stage described: same windows, same batches, same order. */
export async function openDataloaderArtifact(dir: string): Promise<DataloaderArtifact> {
  const manifest = await readLoaderManifest(dir);
  const open = async (split: "train" | "val") => {
    const info = manifest[split];
    const ids = await readTokenFile(join(dir, info.file));
    return new WindowLoader(slidingWindows(ids, manifest.max_length, manifest.stride), {
      batchSize: manifest.batch_size,
      shuffle: info.shuffle,
      dropLast: info.drop_last,
      seed: manifest.seed,
    });
  };
  const { tokenizer } = await readTokenizerFolder(dir);
  return { manifest, tokenizer, train: await open("train"), val: await open("val") };
}
