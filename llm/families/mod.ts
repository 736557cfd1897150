/**
 * The model families we read from Hugging Face folders, and which one a config.json belongs to
 * (its `model_type`). Each family lives in its own file: how its config becomes our GPTConfig
 * and how its tensor names become ours.
 */
import type { ModelFamily } from "./family.ts";
import { gemma3 } from "./gemma3.ts";
import { gpt2 } from "./gpt2.ts";
import type { HfConfig } from "./hf_config.ts";
import { llama } from "./llama.ts";
import { phi2 } from "./phi2.ts";
import { phi3 } from "./phi3.ts";
import { qwen3 } from "./qwen3.ts";

export type {
  ConverterContext,
  FamilyConfig,
  HfCheckpoint,
  ModelFamily,
  WeightConverter,
  WeightPlan,
  WeightRule,
} from "./family.ts";
export type { HfConfig, SpecialTokenIds } from "./hf_config.ts";
export { gemma3, gpt2, llama, phi2, phi3, qwen3 };

/** Every supported family, in the order they are listed to users. */
export const FAMILIES: readonly ModelFamily[] = [gpt2, llama, qwen3, gemma3, phi3, phi2];

/** The supported `model_type`s, each with its family: "llama (llama)", "phi (phi2)", ... */
function supportedList(): string {
  return FAMILIES.flatMap((f) => f.modelTypes.map((t) => `${t} (${f.name})`)).join(", ");
}

/**
 * The family of a parsed config.json, from its `model_type`. An unsupported or missing type is
 * an error naming it, the file (`source`) and the supported types.
 */
export function detectFamily(hfConfig: HfConfig, source: string): ModelFamily {
  const type = hfConfig.model_type;
  if (typeof type !== "string") {
    throw new Error(
      `${source}: no "model_type" string (got ${JSON.stringify(type)}); ` +
        `supported: ${supportedList()}`,
    );
  }
  const family = FAMILIES.find((f) => f.modelTypes.includes(type));
  if (!family) {
    throw new Error(
      `${source}: model_type "${type}" is not supported; supported: ${supportedList()}`,
    );
  }
  return family;
}
