/**
 * Artifact kind `tokens`: what the `tokenize` stage writes: the corpus as read (corpus.txt),
 * its token ids (tokens.bin, llm/data/token_file.ts), the tokenizer's description
 * (tokenizer_spec.json, and vocab.json for the simple tokenizer) and stats.json.
 */
import { join } from "node:path";
import { readTokenizerFolder, type TokenizerFolder } from "../tokenizer/files.ts";
import { hasFile } from "./check.ts";

export const CORPUS_FILE = "corpus.txt";
export const TOKENS_FILE = "tokens.bin";

export function hasTokens(dir: string): boolean {
  return hasFile(dir, TOKENS_FILE);
}

/** A tokenize artifact read back: the tokenizer and the corpus text it tokenized. */
export interface TokenizeArtifact extends TokenizerFolder {
  /** The corpus, as read (`corpus.txt`). */
  text: string;
}

/** Read back what a tokenize stage wrote. */
export async function openTokenizeArtifact(dir: string): Promise<TokenizeArtifact> {
  return {
    ...(await readTokenizerFolder(dir)),
    text: await Deno.readTextFile(join(dir, CORPUS_FILE)),
  };
}
