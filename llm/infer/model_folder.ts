/**
 * Model folders: what a stage that produces a model leaves behind (model.safetensors +
 * gpt_config.json, the tokenizer's files, the runner's manifest.json), and how to read back which
 * tokenizer and prompt template go with it. Folders written before our files had their own names
 * (`config.json`, `tokenizer.json`) are read too, when those files hold our formats.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { modelConfigPath, WEIGHTS_FILE } from "../model/weights_io.ts";
import { isHfModelFolder } from "../families/load.ts";
import { createTokenizer, type Tokenizer } from "../tokenizer/mod.ts";
import {
  LEGACY_TOKENIZER_FILE,
  readTokenizerFolder,
  tokenizerSpecPath,
} from "../tokenizer/files.ts";
import { hasHfTokenizer, loadHfTokenizer } from "../tokenizer/hf.ts";
import { readTemplateFile, TEMPLATE_FILE } from "../data/instruction_files.ts";
import { type PromptTemplate, promptTemplate } from "../data/instructions.ts";

/** The manifest the pipeline runner writes into every artifact (runner/cache.ts). */
const MANIFEST_FILE = "manifest.json";

/**
/**
 * True when `dir` holds a saved model: ours (model.safetensors + gpt_config.json, or an old
 * folder's config.json with our keys) or a Hugging Face folder (config.json with `model_type`).
 */
export function isModelFolder(dir: string): boolean {
  if (isHfModelFolder(dir)) return true;
  return existsSync(join(dir, WEIGHTS_FILE)) && modelConfigPath(dir) !== undefined;
}

/**
 * The tokenizer of a model folder: a Hugging Face tokenizer.json (an HF model), the one our
 * tokenizer_spec.json (or an old folder's tokenizer.json) + vocab.json names, or GPT-2's BPE
 * when it names none.
 */
export async function readModelTokenizer(dir: string): Promise<Tokenizer> {
  if (await hasHfTokenizer(dir)) return await loadHfTokenizer(dir);
  if (!tokenizerSpecPath(dir) && !existsSync(join(dir, LEGACY_TOKENIZER_FILE))) {
    return createTokenizer({ kind: "gpt2" });
  }
  return (await readTokenizerFolder(dir)).tokenizer;
}

/**
 * Whether the model was instruction-finetuned, so prompts get its template: it carries a
 * template.json (what `finetune` / `lora-finetune` write), its manifest names one with
 * `metrics.prompt_template` (alpaca, phi3, custom), or it was trained on the instruction dataset
 * (`params.dataset: instruction-data`).
 */
export async function isInstructionTuned(dir: string): Promise<boolean> {
  if (existsSync(join(dir, TEMPLATE_FILE))) return true;
  try {
    const manifest = JSON.parse(await Deno.readTextFile(join(dir, MANIFEST_FILE)));
    return ["alpaca", "phi3", "custom"].includes(manifest?.metrics?.prompt_template) ||
      manifest?.params?.dataset === "instruction-data";
  } catch {
    return false; // no manifest: a folder saved outside the runner
  }
}

/**
 * The prompt template a model was instruction-finetuned with: its template.json, else Alpaca
 * when {@link isInstructionTuned} says it was tuned; undefined for a base model.
 */
export async function readModelTemplate(
  dir: string,
  tokenizer?: Tokenizer,
): Promise<PromptTemplate | undefined> {
  const path = join(dir, TEMPLATE_FILE);
  if (existsSync(path)) {
    // Only a chat template needs the tokenizer (its special tokens): read it only then.
    const chat = /"name"\s*:\s*"chat"/.test(await Deno.readTextFile(path));
    return await readTemplateFile(
      path,
      chat ? tokenizer ?? await readModelTokenizer(dir) : tokenizer,
    );
  }
  return (await isInstructionTuned(dir)) ? promptTemplate("alpaca") : undefined;
}
