/**
 * A tokenizer on disk: `tokenizer_spec.json` holds its spec, `vocab.json` the regex tokenizer's
 * vocabulary. Every folder that carries a model or token ids carries these two files, so
 * whatever reads the folder decodes with the tokenizer it was made with.
 *
 * The spec has its own name because `tokenizer.json` is Hugging Face's. Folders written before
 * the rename keep the spec as `tokenizer.json`; it is still read there when it is ours (an object
 * with `kind`).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createTokenizer, type Tokenizer, type TokenizerSpec } from "./mod.ts";

/** Our tokenizer spec in a folder. */
export const TOKENIZER_SPEC_FILE = "tokenizer_spec.json";
/** Where folders written before the rename kept our spec (Hugging Face's name). */
export const LEGACY_TOKENIZER_FILE = "tokenizer.json";
/** The regex tokenizer's vocabulary. */
const VOCAB_FILE = "vocab.json";

/**
 * The file holding our tokenizer spec in `dir`: `tokenizer_spec.json`, else an old folder's
 * `tokenizer.json` when it is ours (has `kind`); undefined when there is neither.
 */
export function tokenizerSpecPath(dir: string): string | undefined {
  const path = join(dir, TOKENIZER_SPEC_FILE);
  if (existsSync(path)) return path;
  const legacy = join(dir, LEGACY_TOKENIZER_FILE);
  try {
    const spec = JSON.parse(readFileSync(legacy, "utf8"));
    if (spec !== null && typeof spec === "object" && typeof spec.kind === "string") return legacy;
  } catch { /* missing, or not ours */ }
  return undefined;
}

/** A tokenizer read back from a folder, with the spec it was built from. */
export interface TokenizerFolder {
  /** What tokenizer_spec.json (+ vocab.json) say. */
  spec: TokenizerSpec;
  /** The tokenizer built from it. */
  tokenizer: Tokenizer;
}

/**
 * The tokenizer described by `tokenizer_spec.json` (or an old folder's `tokenizer.json`), plus
 * `vocab.json` for the regex tokenizer, in `dir`.
 */
export async function readTokenizerFolder(dir: string): Promise<TokenizerFolder> {
  const specPath = tokenizerSpecPath(dir) ?? join(dir, TOKENIZER_SPEC_FILE);
  if (!existsSync(specPath) && existsSync(join(dir, LEGACY_TOKENIZER_FILE))) {
    throw new Error(
      `${specPath}: cannot read the tokenizer: no such file, and ${
        join(dir, LEGACY_TOKENIZER_FILE)
      } is not our tokenizer spec (a Hugging Face tokenizer?)`,
    );
  }
  let spec: TokenizerSpec;
  try {
    spec = JSON.parse(await Deno.readTextFile(specPath));
    if (spec.kind === "simple") {
      spec.vocabulary = JSON.parse(await Deno.readTextFile(join(dir, VOCAB_FILE)));
    }
  } catch (error) {
    throw new Error(`${specPath}: cannot read the tokenizer: ${(error as Error).message}`);
  }
  const kind: string = spec.kind;
  if (kind !== "gpt2" && kind !== "simple") {
    throw new Error(`${specPath}: unknown tokenizer kind ${JSON.stringify(kind)}`);
  }
  return { spec, tokenizer: createTokenizer(spec) };
}

/** Writes `spec` as `dir`'s tokenizer spec (the regex tokenizer's vocabulary goes to vocab.json). */
export async function writeTokenizerSpec(dir: string, spec: TokenizerSpec): Promise<void> {
  const onDisk = spec.kind === "simple" ? { kind: "simple" } : spec;
  await Deno.writeTextFile(join(dir, TOKENIZER_SPEC_FILE), JSON.stringify(onDisk) + "\n");
}

/**
 * Copies the tokenizer files that exist in `fromDir` to `toDir`; an old folder's spec
 * (`tokenizer.json`) arrives under the new name.
 */
export async function copyTokenizerFiles(fromDir: string, toDir: string): Promise<void> {
  const spec = tokenizerSpecPath(fromDir);
  if (spec) await Deno.copyFile(spec, join(toDir, TOKENIZER_SPEC_FILE));
  await Deno.copyFile(join(fromDir, VOCAB_FILE), join(toDir, VOCAB_FILE)).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
}
