/**
 * Checks a Hugging Face model folder without reading a weight: everything `openModelFolder`
 * would trip over, found before a folder is accepted (the `load-hf-model` stage runs it before
 * anything lands in the cache).
 *
 *   1. config.json: a supported `model_type` (its family), and the family's mapping to our config;
 *   2. the weights' headers: every tensor the model needs, in the file the index names, with the
 *      shape config.json implies (errors name the tensor, the file and both shapes), F32/BF16/F16;
 *   3. tokenizer.json (+ tokenizer_config.json): loads, and its ids fit the model's vocabulary
 *      (a tokenizer with more ids than the embedding has rows belongs to another model);
 *   4. the chat template, when there is one: parses.
 */
import { join } from "node:path";
import { chatFormatFor } from "../chat/mod.ts";
import { checkPlan, HF_CONFIG_FILE, openHfCheckpoint, readHfConfig } from "../families/load.ts";
import { detectFamily } from "../families/mod.ts";
import type { ModelFamily } from "../families/family.ts";
import { expectedStateShapes } from "../families/state_shapes.ts";
import { countParameters, type GPTConfig } from "../model/config.ts";
import { type HfTokenizer, loadHfTokenizer } from "../tokenizer/hf.ts";

/** What a checked folder holds. */
export interface HfFolderReport {
  /** config.json's `model_type` (e.g. "qwen3", "llama", "gemma3_text"). */
  modelType: string;
  /** The family that reads it. */
  family: ModelFamily;
  /** Our config of the model. */
  config: GPTConfig;
  /** Whether the head shares the embedding. */
  tiedHead: boolean;
  /** config.json as parsed. */
  hfConfig: Record<string, unknown>;
  /** Parameters of the model (a tied head counted once). */
  parameters: number;
  /** Ids of the tokenizer (at most the model's vocabulary rows). */
  tokenizerVocab: number;
  /** "jinja" when the folder has a chat template, else "none". */
  chatTemplate: string;
  /** The checkpoint dtypes found (F32, BF16, F16). */
  dtypes: string[];
}

/** Checks the folder as the module comment says; throws naming the file and the place. */
export async function checkHfFolder(dir: string): Promise<HfFolderReport> {
  const configPath = join(dir, HF_CONFIG_FILE);
  const hfConfig = await readHfConfig(dir);
  const family = detectFamily(hfConfig, configPath);
  const { config, tiedHead } = family.toConfig(hfConfig, configPath);

  const expected = expectedStateShapes(config);
  let dtypes: string[];
  {
    await using checkpoint = await openHfCheckpoint(dir);
    const converter = family.converter({ config, tiedHead, hfConfig, expected });
    checkPlan(checkpoint, converter.plan(checkpoint).outputs, expected, tiedHead, family, dir);
    dtypes = [...new Set(checkpoint.dtypes.values())].sort();
  }

  const tokenizer = await loadHfTokenizer(dir);
  checkTokenizerFits(tokenizer, config, dir);
  const chat = await chatFormatFor(dir, tokenizer);
  return {
    modelType: String(hfConfig.model_type),
    family,
    config,
    tiedHead,
    hfConfig,
    parameters: countParameters(config, { tiedHead }),
    tokenizerVocab: tokenizer.vocabSize,
    chatTemplate: chat.name === "jinja" ? "jinja" : "none",
    dtypes,
  };
}

/**
 * A tokenizer whose ids go past the embedding's rows cannot be this model's: its text would
 * turn into ids the model has no vector for. (Fewer ids than rows is normal: Qwen3 pads its
 * embedding to a multiple of 128.)
 */
function checkTokenizerFits(tokenizer: HfTokenizer, config: GPTConfig, dir: string): void {
  const path = join(dir, "tokenizer.json");
  if (tokenizer.vocabSize > config.vocab_size) {
    throw new Error(
      `${path}: the tokenizer has ${tokenizer.vocabSize.toLocaleString("en")} ids but ` +
        `${join(dir, HF_CONFIG_FILE)} says the model has ${
          config.vocab_size.toLocaleString("en")
        } (vocab_size): the tokenizer belongs to another model`,
    );
  }
}
