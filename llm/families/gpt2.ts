/**
 * GPT-2 (`model_type: gpt2`, HF's GPT2LMHeadModel): the book's own model. The tensor mapping is
 * the one llm/model/gpt2_mapping.ts already implements for OpenAI's and Hugging Face's
 * checkpoints (Conv1D [in, out] matrices transposed, `c_attn` split into Q, K, V, the causal-mask
 * buffers and the tied `lm_head.weight` skipped); this file only plugs it into the family table.
 */
import type { GPTConfig } from "../model/config.ts";
import { convertGpt2Weights, planGpt2Weights } from "../model/gpt2_mapping.ts";
import type {
  ConverterContext,
  FamilyConfig,
  HfCheckpoint,
  ModelFamily,
  WeightConverter,
} from "./family.ts";
import { type HfConfig, HfConfigReader, readSpecialTokens } from "./hf_config.ts";

function toConfig(hf: HfConfig, source: string): FamilyConfig {
  const r = new HfConfigReader(hf, source);
  r.unsupported("activation_function", "gelu_new", "GPT-2 uses the tanh GELU, gelu_new");
  const config: GPTConfig = {
    family: "gpt2",
    vocab_size: r.int("vocab_size"),
    context_length: r.int("n_positions", r.has("n_ctx") ? r.int("n_ctx") : undefined),
    emb_dim: r.int("n_embd"),
    n_heads: r.int("n_head"),
    n_layers: r.int("n_layer"),
    drop_rate: 0,
    qkv_bias: true,
  };
  if (r.has("n_inner") && r.int("n_inner") !== 4 * config.emb_dim) {
    throw new Error(`${source}: "n_inner" must be 4 * n_embd (${4 * config.emb_dim}) for GPT-2`);
  }
  if (r.num("layer_norm_epsilon", 1e-5) !== 1e-5) {
    throw new Error(`${source}: "layer_norm_epsilon" must be 1e-5 for GPT-2`);
  }
  // GPT2LMHeadModel always ties its head to wte.
  return { config, tiedHead: true };
}

function converter(context: ConverterContext): WeightConverter {
  const options = { hparams: context.hfConfig, dropRate: context.config.drop_rate };
  return {
    plan: (checkpoint: HfCheckpoint) => {
      const plan = planGpt2Weights(checkpoint.shapes, options, checkpoint.description);
      return { outputs: plan.outputs };
    },
    convert: (checkpoint: HfCheckpoint) => convertGpt2Weights(checkpoint, options),
  };
}

/** GPT-2 from a Hugging Face folder (openai-community/gpt2 and its sizes). */
export const gpt2: ModelFamily = {
  name: "gpt2",
  modelTypes: ["gpt2"],
  toConfig,
  weightRules: [],
  ignoredTensors: [/\.attn\.(bias|masked_bias)$/],
  converter,
  specialTokens: (hf, source) => readSpecialTokens(new HfConfigReader(hf, source)),
  promptStyle: "alpaca",
};
