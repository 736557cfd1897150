/**
 * Artifact kinds `model` and `adapter`: a saved model (ours: model.safetensors +
 * gpt_config.json, with the tokenizer's files and a template.json once instruction-tuned; or a
 * Hugging Face folder: config.json with `model_type`, *.safetensors, tokenizer.json) and a LoRA
 * adapter (ours: adapter.safetensors + adapter.json, naming its base; or PEFT's
 * adapter_model.safetensors + adapter_config.json).
 *
 * The writers are the model code's own (llm/model/weights_io.ts `saveModel`,
 * llm/families/save.ts `saveHfModel`, llm/model/lora.ts `saveAdapter`, llm/families/peft.ts
 * `savePeftAdapter`); a model is opened with llm/infer/open_model.ts `openModelFolder`. This
 * module says which files make each kind and reads the config the page shows.
 */
import { join } from "node:path";
import { isModelFolder } from "../infer/model_folder.ts";
import { CONFIG_FILE, modelConfigPath, WEIGHTS_FILE } from "../model/weights_io.ts";
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from "../model/lora.ts";
import { PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE } from "../families/peft.ts";
import { hasFile, type Json, object, readJsonIn } from "./check.ts";

export { isModelFolder };

/** A Hugging Face folder's config (ours is gpt_config.json, or config.json in old folders). */
const HF_CONFIG_FILE = "config.json";

/** Whether `dir` holds a model: ours or a Hugging Face folder. */
export function hasModel(dir: string): boolean {
  return isModelFolder(dir);
}

/** Whether `dir` holds a LoRA adapter: ours or PEFT's. */
export function hasAdapter(dir: string): boolean {
  return (hasFile(dir, ADAPTER_WEIGHTS_FILE) && hasFile(dir, ADAPTER_CONFIG_FILE)) ||
    (hasFile(dir, PEFT_WEIGHTS_FILE) && hasFile(dir, PEFT_CONFIG_FILE));
}

/** The files that mark a model of ours (a Hugging Face folder is recognised by its config). */
export const MODEL_FILES = [WEIGHTS_FILE, CONFIG_FILE] as const;
export const ADAPTER_FILES = [ADAPTER_WEIGHTS_FILE, ADAPTER_CONFIG_FILE] as const;

/**
 * The model's config as written: ours (gpt_config.json, or an old folder's config.json with our
 * keys) or a Hugging Face config.json; undefined when `dir` holds no model.
 */
export async function readModelConfig(dir: string): Promise<Json | undefined> {
  if (!hasModel(dir)) return undefined;
  const ours = modelConfigPath(dir);
  const file = ours ? ours.slice(dir.length + 1) : HF_CONFIG_FILE;
  return object(await readJsonIn(dir, file), join(dir, file));
}
