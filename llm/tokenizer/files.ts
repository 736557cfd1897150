/**
 * A tokenizer on disk: `tokenizer.json` holds its spec, `vocab.json` the regex tokenizer's
 * vocabulary. Every folder that carries a model or token ids carries these two files, so
 * whatever reads the folder decodes with the tokenizer it was made with.
 */
import { join } from "node:path";
import { createTokenizer, type Tokenizer, type TokenizerSpec } from "./mod.ts";

/** The files that describe a tokenizer. */
const TOKENIZER_FILES: readonly string[] = ["tokenizer.json", "vocab.json"];

/** A tokenizer read back from a folder, with the spec it was built from. */
export interface TokenizerFolder {
  /** What tokenizer.json (+ vocab.json) say. */
  spec: TokenizerSpec;
  /** The tokenizer built from it. */
  tokenizer: Tokenizer;
}

/** The tokenizer described by `tokenizer.json` (+ `vocab.json` for the regex tokenizer) in `dir`. */
export async function readTokenizerFolder(dir: string): Promise<TokenizerFolder> {
  const specPath = join(dir, "tokenizer.json");
  let spec: TokenizerSpec;
  try {
    spec = JSON.parse(await Deno.readTextFile(specPath));
    if (spec.kind === "simple") {
      spec.vocabulary = JSON.parse(await Deno.readTextFile(join(dir, "vocab.json")));
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

/** Copies the tokenizer files that exist in `fromDir` to `toDir`. */
export async function copyTokenizerFiles(fromDir: string, toDir: string): Promise<void> {
  for (const file of TOKENIZER_FILES) {
    await Deno.copyFile(join(fromDir, file), join(toDir, file)).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
  }
}
