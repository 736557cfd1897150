/**
 * Qwen3 (`model_type: qwen3`): a Llama with RMSNorm over head_dim on queries and keys before
 * RoPE (QK-norm), an explicit `head_dim` that need not be hidden/heads (Qwen3-0.6B: 16 heads of
 * 128 on a 1024-wide model), θ 1,000,000 and a tied head on the small sizes.
 */
import type { FamilyConfig, ModelFamily, WeightRule } from "./family.ts";
import { type HfConfig, HfConfigReader, readSpecialTokens } from "./hf_config.ts";
import { LLAMA_RULES, llamaStyleConfig, ROTARY_BUFFERS } from "./llama.ts";
import { ruleTableConverter } from "./rules.ts";

/** Llama's names plus the two QK-norm weights. */
export const QWEN3_RULES: readonly WeightRule[] = [
  ...LLAMA_RULES,
  { hf: "model.layers.{i}.self_attn.q_norm.weight", ours: "trf_blocks.{i}.att.q_norm.scale" },
  { hf: "model.layers.{i}.self_attn.k_norm.weight", ours: "trf_blocks.{i}.att.k_norm.scale" },
];

function toConfig(hf: HfConfig, source: string): FamilyConfig {
  const r = new HfConfigReader(hf, source);
  r.unsupported("use_sliding_window", false, "Qwen3's sliding-window layers are not implemented");
  // transformers' Qwen3Config defaults head_dim to 128, not hidden/heads.
  const withHeadDim = r.has("head_dim") ? hf : { ...hf, head_dim: 128 };
  const config = llamaStyleConfig(new HfConfigReader(withHeadDim, source), "qwen3");
  return { config: { ...config, qk_norm: true }, tiedHead: r.tiedHead() };
}

/** Qwen3 dense models (0.6B ... 32B). */
export const qwen3: ModelFamily = {
  name: "qwen3",
  modelTypes: ["qwen3"],
  toConfig,
  weightRules: QWEN3_RULES,
  ignoredTensors: [ROTARY_BUFFERS],
  converter: (context) => ruleTableConverter(QWEN3_RULES, [ROTARY_BUFFERS], context),
  specialTokens: (hf, source) => readSpecialTokens(new HfConfigReader(hf, source)),
};
