/**
 * Phi-3 (`model_type: phi3`): a Llama whose checkpoint fuses the attention projections into one
 * `qkv_proj` (rows Q; K; V) and the MLP's gate and up projections into one `gate_up_proj`
 * (first half gate, second half up). They are split into our separate tensors on load; the
 * model itself is the Llama-style decoder with an untied head.
 *
 * transformers applies `sliding_window` (2047 for Phi-3-mini-4k) to every layer; we do the same,
 * which matters only for prompts longer than the window.
 */
import type { FamilyConfig, ModelFamily, WeightRule } from "./family.ts";
import { type HfConfig, HfConfigReader, readSpecialTokens } from "./hf_config.ts";
import { LLAMA_RULES, llamaStyleConfig, ROTARY_BUFFERS } from "./llama.ts";
import { ruleTableConverter } from "./rules.ts";

const block = (name: string) => `trf_blocks.{i}.${name}`;

/** Phi-3's names: Llama's, with the fused tensors in place of the separate projections. */
export const PHI3_RULES: readonly WeightRule[] = [
  {
    hf: "model.layers.{i}.self_attn.qkv_proj.weight",
    ours: [block("att.W_query.weight"), block("att.W_key.weight"), block("att.W_value.weight")],
  },
  {
    hf: "model.layers.{i}.mlp.gate_up_proj.weight",
    ours: [block("ff.fc1.weight"), block("ff.fc2.weight")],
  },
  ...LLAMA_RULES.filter((rule) => !/\.(q_proj|k_proj|v_proj|gate_proj|up_proj)\./.test(rule.hf)),
];

function toConfig(hf: HfConfig, source: string): FamilyConfig {
  const r = new HfConfigReader(hf, source);
  // Phi-3's config has no mlp_bias; attention_bias would apply to the fused qkv_proj.
  r.unsupported("attention_bias", false, "Phi-3's fused qkv_proj has no bias here");
  const config = llamaStyleConfig(r, "phi3");
  if (r.has("sliding_window") && r.int("sliding_window") < config.context_length) {
    config.sliding_window = r.int("sliding_window");
    config.layer_types = Array.from({ length: config.n_layers }, () => "sliding" as const);
  }
  return { config, tiedHead: r.tiedHead() };
}

/** Phi-3 / Phi-3.5 mini (and any `Phi3ForCausalLM` without long-RoPE scaling). */
export const phi3: ModelFamily = {
  name: "phi3",
  modelTypes: ["phi3"],
  toConfig,
  weightRules: PHI3_RULES,
  ignoredTensors: [ROTARY_BUFFERS],
  converter: (context) => ruleTableConverter(PHI3_RULES, [ROTARY_BUFFERS], context),
  specialTokens: (hf, source) => readSpecialTokens(new HfConfigReader(hf, source)),
};
