/**
 * A small random model written in exact Hugging Face layout (config.json as transformers writes
 * it, safetensors with HF's tensor names, the real tokenizer files beside them): what the smoke
 * pipeline and the tests load through the same path as a model from the Hub, offline and in
 * seconds. The weights are those of our own seeded initialisation, renamed with the family's
 * weight table read backwards, so loading the folder gives back exactly the model it came from.
 */
import { join } from "node:path";
import { resolveConfig } from "../model/config.ts";
import { GPTModel } from "../model/gpt.ts";
import { getStateDict } from "../model/weights_io.ts";
import { writeSafetensorsFile } from "../weights/safetensors.ts";
import type { ModelFamily } from "./family.ts";
import { llama, qwen3 } from "./mod.ts";
import { toHfStateDict } from "./save.ts";

/** The shape of the random model (small defaults: a few million parameters). */
export interface RandomHfModelOptions {
  /** `qwen3` (QK-norm, explicit head_dim) or `llama` (Llama 3 style). Default qwen3. */
  family?: "qwen3" | "llama";
  /** Folder holding the real tokenizer.json and tokenizer_config.json to copy. */
  tokenizerDir: string;
  /** Rows of the embedding: at least the tokenizer's ids (Qwen3's files: 151,669). */
  vocabSize: number;
  /** BOS and EOS ids of the tokenizer (written into config.json as transformers does). */
  bosTokenId?: number;
  /** End-of-text ids (config.json's `eos_token_id`, a list when several). */
  eosTokenIds: number[];
  /** Width (default 32). */
  hidden?: number;
  /** Blocks (default 2). */
  layers?: number;
  /** Query heads (default 4) and key/value heads (default 2). */
  heads?: number;
  /** Key/value heads (GQA; default 2). */
  kvHeads?: number;
  /** Width of each head (default 16). */
  headDim?: number;
  /** MLP width (default 64). */
  intermediate?: number;
  /** Longest context (default 2048). */
  contextLength?: number;
  /** Seed of the initial weights (default 123). */
  seed?: number;
}

const ARCHITECTURES = { qwen3: "Qwen3ForCausalLM", llama: "LlamaForCausalLM" } as const;
const FAMILIES: Record<"qwen3" | "llama", ModelFamily> = { qwen3, llama };

/** Writes the model into `dir` (which must exist and be empty); returns its config.json. */
export async function writeRandomHfModel(
  dir: string,
  options: RandomHfModelOptions,
): Promise<Record<string, unknown>> {
  const familyName = options.family ?? "qwen3";
  const family = FAMILIES[familyName];
  const hidden = options.hidden ?? 32;
  const heads = options.heads ?? 4;
  const kvHeads = options.kvHeads ?? 2;
  const headDim = options.headDim ?? 16;
  const ropeTheta = familyName === "qwen3" ? 1_000_000 : 500_000;
  const normEps = familyName === "qwen3" ? 1e-6 : 1e-5;
  const hfConfig: Record<string, unknown> = {
    architectures: [ARCHITECTURES[familyName]],
    model_type: familyName,
    vocab_size: options.vocabSize,
    hidden_size: hidden,
    intermediate_size: options.intermediate ?? 64,
    num_hidden_layers: options.layers ?? 2,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    hidden_act: "silu",
    max_position_embeddings: options.contextLength ?? 2048,
    rms_norm_eps: normEps,
    rope_theta: ropeTheta,
    rope_scaling: null,
    attention_bias: false,
    tie_word_embeddings: true,
    torch_dtype: "float32",
    bos_token_id: options.bosTokenId ?? null,
    eos_token_id: options.eosTokenIds.length === 1 ? options.eosTokenIds[0] : options.eosTokenIds,
  };
  // Our config from the family's own mapping: the weights we write are exactly what it loads.
  const { config, tiedHead } = family.toConfig(hfConfig, join(dir, "config.json"));
  const model = new GPTModel(config, { seed: options.seed ?? 123, tiedHead });
  try {
    const ours = await getStateDict(model);
    await writeSafetensorsFile(
      join(dir, "model.safetensors"),
      toHfStateDict(ours, family, resolveConfig(config).n_layers, tiedHead),
      { format: "pt" },
    );
  } finally {
    model.dispose();
  }
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(hfConfig, null, 2) + "\n");
  await Deno.writeTextFile(
    join(dir, "generation_config.json"),
    JSON.stringify({ bos_token_id: hfConfig.bos_token_id, eos_token_id: hfConfig.eos_token_id }) +
      "\n",
  );
  for (const file of ["tokenizer.json", "tokenizer_config.json"]) {
    await Deno.copyFile(join(options.tokenizerDir, file), join(dir, file));
  }
  return hfConfig;
}
