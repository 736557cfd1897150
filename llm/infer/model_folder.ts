/**
 * Model folders: what a stage that produces a model leaves behind (model.safetensors +
 * config.json, the tokenizer's files, the runner's manifest.json), and how to read back which
 * tokenizer and prompt template go with it.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { CONFIG_FILE, WEIGHTS_FILE } from "../model/weights_io.ts";
import { createTokenizer, type Tokenizer } from "../tokenizer/mod.ts";
import { readTokenizerFolder } from "../tokenizer/files.ts";
import { hasHfTokenizer, loadHfTokenizer } from "../tokenizer/hf.ts";
import { readTemplateFile, TEMPLATE_FILE } from "../data/instruction_files.ts";
import { type PromptTemplate, promptTemplate } from "../data/instructions.ts";

/** The manifest the pipeline runner writes into every artifact (runner/cache.ts). */
const MANIFEST_FILE = "manifest.json";

/** True when `dir` holds a saved model (model.safetensors + config.json). */
export function isModelFolder(dir: string): boolean {
  return existsSync(join(dir, WEIGHTS_FILE)) && existsSync(join(dir, CONFIG_FILE));
}

/**
 * The tokenizer of a model folder: a Hugging Face tokenizer.json (an HF model), the one our
 * tokenizer.json (+ vocab.json) names, or GPT-2's BPE when there is none.
 */
export async function readModelTokenizer(dir: string): Promise<Tokenizer> {
  if (!existsSync(join(dir, "tokenizer.json"))) return createTokenizer({ kind: "gpt2" });
  if (await hasHfTokenizer(dir)) return await loadHfTokenizer(dir);
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
export async function readModelTemplate(dir: string): Promise<PromptTemplate | undefined> {
  const path = join(dir, TEMPLATE_FILE);
  if (existsSync(path)) return await readTemplateFile(path);
  return (await isInstructionTuned(dir)) ? promptTemplate("alpaca") : undefined;
}
