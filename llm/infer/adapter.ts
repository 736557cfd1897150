/**
 * `--adapter DIR`: a LoRA adapter applied on top of an opened base model, for generate, chat and
 * serve. A PEFT adapter (adapter_config.json + adapter_model.safetensors) on a Hugging Face
 * model, or the book's format (adapter.json + adapter.safetensors) on one of our GPT-2 folders.
 * The adapter is folded into the weights where it can be (llm/model/lora.ts `mergeLoraInPlace`),
 * so generation runs at the base model's speed.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FAMILIES } from "../families/mod.ts";
import { isPeftAdapterFolder, loadPeftAdapter, PEFT_CONFIG_FILE } from "../families/peft.ts";
import {
  ADAPTER_CONFIG_FILE,
  loadAdapter,
  type LoraAdapters,
  mergeLoraInPlace,
} from "../model/lora.ts";
import type { OpenedModelFolder } from "./open_model.ts";

/**
 * The name a model folder is known by, for matching adapters to their base: the Hub repository
 * (or local folder) its source.json records (the `load-hf-model` stage), else config.json's
 * `_name_or_path` (what transformers writes); undefined when neither says.
 */
export function modelFolderName(dir: string): string | undefined {
  const read = (file: string) => {
    try {
      return JSON.parse(readFileSync(join(dir, file), "utf8"));
    } catch {
      return undefined;
    }
  };
  const source = read("source.json");
  if (typeof source?.repo === "string" && source.repo !== "") return source.repo;
  if (typeof source?.path === "string" && source.path !== "") return source.path;
  const config = read("config.json");
  if (typeof config?._name_or_path === "string" && config._name_or_path !== "") {
    return config._name_or_path;
  }
  return undefined;
}

/**
 * Applies the adapter in `dir` to `opened.model` (in place) and returns it. An adapter made for
 * another base (another name, a module the model lacks, a shape that does not fit) is refused
 * naming both, before the model is changed.
 */
export async function applyAdapter(
  opened: Pick<OpenedModelFolder, "dir" | "model" | "family" | "layout">,
  dir: string,
): Promise<LoraAdapters> {
  let adapters: LoraAdapters;
  if (isPeftAdapterFolder(dir)) {
    const family = FAMILIES.find((f) => f.name === opened.family);
    if (opened.layout !== "hf" || !family || family.weightRules.length === 0) {
      throw new Error(
        `${join(dir, PEFT_CONFIG_FILE)}: a PEFT adapter applies to a Hugging Face model; the ` +
          `base model in ${opened.dir} is a ${opened.family} model in our own layout (its ` +
          `adapters are adapter.json + adapter.safetensors)`,
      );
    }
    adapters = await loadPeftAdapter(dir, opened.model, family, {
      name: modelFolderName(opened.dir),
      dir: opened.dir,
    });
  } else if (existsSync(join(dir, ADAPTER_CONFIG_FILE))) {
    adapters = await loadAdapter(dir, opened.model);
  } else {
    throw new Error(
      `${dir}: no adapter here (expected PEFT's ${PEFT_CONFIG_FILE} + adapter_model.safetensors, ` +
        `or our ${ADAPTER_CONFIG_FILE} + adapter.safetensors)`,
    );
  }
  mergeLoraInPlace(opened.model, adapters);
  return adapters;
}
