/**
 * Phi-2 (`model_type: phi`): GPT-2's ingredients in a different arrangement. One LayerNorm (with
 * bias) per block feeds attention and the MLP in parallel (`x + attn(LN(x)) + mlp(LN(x))`),
 * every linear layer has a bias (the head too), the MLP is fc1 → GELU(tanh) → fc2, and RoPE
 * rotates only the first `partial_rotary_factor` of each head (32 of 80 dims).
 */
import type { GPTConfig } from "../model/config.ts";
import type { FamilyConfig, ModelFamily, WeightRule } from "./family.ts";
import { type HfConfig, HfConfigReader, readRope, readSpecialTokens } from "./hf_config.ts";
import { ROTARY_BUFFERS } from "./llama.ts";
import { ruleTableConverter } from "./rules.ts";

/** A linear layer of block i: its weight and bias. */
const linear = (hf: string, ours: string): WeightRule[] => [
  { hf: `model.layers.{i}.${hf}.weight`, ours: `trf_blocks.{i}.${ours}.weight` },
  { hf: `model.layers.{i}.${hf}.bias`, ours: `trf_blocks.{i}.${ours}.bias` },
];

/** A LayerNorm of block i: HF's weight and bias are our scale and shift. */
const layerNorm = (hf: string, ours: string): WeightRule[] => [
  { hf: `model.layers.{i}.${hf}.weight`, ours: `trf_blocks.{i}.${ours}.scale` },
  { hf: `model.layers.{i}.${hf}.bias`, ours: `trf_blocks.{i}.${ours}.shift` },
];

/** HF's Phi names → ours (GPT-2's names for the GELU MLP and LayerNorms). */
export const PHI2_RULES: readonly WeightRule[] = [
  { hf: "model.embed_tokens.weight", ours: "tok_emb.weight" },
  ...linear("self_attn.q_proj", "att.W_query"),
  ...linear("self_attn.k_proj", "att.W_key"),
  ...linear("self_attn.v_proj", "att.W_value"),
  ...linear("self_attn.dense", "att.out_proj"),
  ...linear("mlp.fc1", "ff.layers.0"),
  ...linear("mlp.fc2", "ff.layers.2"),
  ...layerNorm("input_layernorm", "norm1"),
  { hf: "model.final_layernorm.weight", ours: "final_norm.scale" },
  { hf: "model.final_layernorm.bias", ours: "final_norm.shift" },
  { hf: "lm_head.weight", ours: "out_head.weight" },
  { hf: "lm_head.bias", ours: "out_head.bias" },
];

function toConfig(hf: HfConfig, source: string): FamilyConfig {
  const r = new HfConfigReader(hf, source);
  r.unsupported("hidden_act", "gelu_new", "Phi-2's MLP uses the tanh GELU, gelu_new");
  r.unsupported("qk_layernorm", false, "Phi's optional QK LayerNorm is not implemented");
  const heads = r.int("num_attention_heads");
  const emb = r.int("hidden_size");
  if (emb % heads !== 0) {
    throw new Error(`${source}: hidden_size ${emb} is not divisible by ${heads} heads`);
  }
  const headDim = emb / heads;
  const kvHeads = r.int("num_key_value_heads", heads);
  const rope = readRope(r);
  if (rope.scaling) {
    throw new Error(`${source}: Phi-2 with RoPE scaling is not supported`);
  }
  const config: GPTConfig = {
    family: "phi2",
    vocab_size: r.int("vocab_size"),
    context_length: r.int("max_position_embeddings"),
    emb_dim: emb,
    n_heads: heads,
    n_layers: r.int("num_hidden_layers"),
    drop_rate: 0,
    qkv_bias: true,
    head_dim: headDim,
    n_kv_groups: kvHeads,
    hidden_dim: r.int("intermediate_size"),
    mlp: "gelu",
    mlp_bias: true,
    norm: "layernorm",
    norm_eps: r.num("layer_norm_eps", 1e-5),
    block: "parallel",
    pos_emb: "rope",
    rope_theta: rope.theta,
    // transformers' PhiConfig defaults partial_rotary_factor to 0.5 (Phi-2's file says 0.4).
    rotary_dim: Math.floor(headDim * (rope.partialRotaryFactor ?? 0.5)),
    attn_out_bias: true,
    head_bias: true,
  };
  return { config, tiedHead: r.tiedHead() };
}

/** Phi-1, Phi-1.5 and Phi-2 (`PhiForCausalLM`). */
export const phi2: ModelFamily = {
  name: "phi2",
  modelTypes: ["phi"],
  toConfig,
  weightRules: PHI2_RULES,
  ignoredTensors: [ROTARY_BUFFERS],
  converter: (context) => ruleTableConverter(PHI2_RULES, [ROTARY_BUFFERS], context),
  specialTokens: (hf, source) => readSpecialTokens(new HfConfigReader(hf, source)),
  promptStyle: "phi-2",
};
