/**
 * Gemma 3 text models (`model_type: gemma3_text`: gemma-3-270m, gemma-3-1b). A Llama-style
 * decoder with Gemma's particulars:
 *   - four RMSNorms per block, "sandwich" style: the attention and MLP outputs are normed again
 *     before the residual add; norm weights are stored zero-centred and applied as (1 + w);
 *   - QK-norm; GeGLU MLP with the tanh GELU (`gelu_pytorch_tanh`);
 *   - local sliding-window layers (window 512, their own RoPE θ 10,000) and a global layer every
 *     sixth (θ 1,000,000); attention scaled by query_pre_attn_scalar^-0.5;
 *   - token embeddings multiplied by sqrt(hidden) rounded to the checkpoint's dtype, as
 *     transformers does (bf16: 25.25 for 640, not 25.298).
 */
import type { GPTConfig } from "../model/config.ts";
import type { FamilyConfig, ModelFamily, WeightRule } from "./family.ts";
import {
  type HfConfig,
  HfConfigReader,
  readRope,
  readSpecialTokens,
  roundToDtype,
} from "./hf_config.ts";
import { LLAMA_RULES, ROTARY_BUFFERS } from "./llama.ts";
import { ruleTableConverter } from "./rules.ts";

const norm = (hf: string, ours: string): WeightRule => ({
  hf: `model.layers.{i}.${hf}.weight`,
  ours: `trf_blocks.{i}.${ours}.scale`,
});

/** Llama's names with Gemma's four block norms and QK-norm. */
export const GEMMA3_RULES: readonly WeightRule[] = [
  ...LLAMA_RULES.filter((rule) => !/layernorm/.test(rule.hf)),
  norm("input_layernorm", "norm1"),
  norm("post_attention_layernorm", "post_att_norm"),
  norm("pre_feedforward_layernorm", "norm2"),
  norm("post_feedforward_layernorm", "post_ff_norm"),
  norm("self_attn.q_norm", "att.q_norm"),
  norm("self_attn.k_norm", "att.k_norm"),
];

/** Which layers are local: `layer_types`, else every layer but each `pattern`-th. */
function layerTypes(r: HfConfigReader, layers: number): ("full" | "sliding")[] {
  const given = r.hf.layer_types;
  if (given !== undefined && given !== null) {
    if (
      !Array.isArray(given) || given.length !== layers ||
      !given.every((t) => t === "sliding_attention" || t === "full_attention")
    ) {
      throw new Error(
        `${r.source}: "layer_types" must list ${layers} of "sliding_attention" / ` +
          `"full_attention", got ${JSON.stringify(given)}`,
      );
    }
    return given.map((t) => t === "sliding_attention" ? "sliding" : "full");
  }
  // Older configs give the period (6: five local layers, then one global).
  const period = r.has("sliding_window_pattern")
    ? r.int("sliding_window_pattern")
    : r.int("_sliding_window_pattern", 6);
  return Array.from({ length: layers }, (_, i) => (i + 1) % period !== 0 ? "sliding" : "full");
}

function toConfig(hf: HfConfig, source: string): FamilyConfig {
  const r = new HfConfigReader(hf, source);
  const activation = r.str("hidden_activation") ?? r.str("hidden_act", "gelu_pytorch_tanh");
  if (activation !== "gelu_pytorch_tanh") {
    throw new Error(
      `${source}: hidden_activation ${JSON.stringify(activation)} is not supported ` +
        `(Gemma 3 uses gelu_pytorch_tanh)`,
    );
  }
  r.unsupported("final_logit_softcapping", null, "logit soft-capping is not implemented");
  r.unsupported("attn_logit_softcapping", null, "logit soft-capping is not implemented");
  r.unsupported("use_bidirectional_attention", false, "only causal attention is implemented");
  const heads = r.int("num_attention_heads");
  const emb = r.int("hidden_size");
  const layers = r.int("num_hidden_layers");
  const global = readRope(r, { layerType: "full_attention", defaultTheta: 1_000_000 });
  const local = readRope(r, {
    layerType: "sliding_attention",
    legacyThetaKey: "rope_local_base_freq",
    defaultTheta: 10_000,
    legacyScaling: false,
  });
  if (local.scaling) {
    throw new Error(`${source}: RoPE scaling on Gemma 3's sliding layers is not supported`);
  }
  const attentionBias = r.bool("attention_bias", false);
  const dtype = r.dtype();
  const config: GPTConfig = {
    family: "gemma3",
    vocab_size: r.int("vocab_size"),
    context_length: r.int("max_position_embeddings"),
    emb_dim: emb,
    n_heads: heads,
    n_layers: layers,
    drop_rate: 0,
    qkv_bias: attentionBias,
    // transformers' Gemma3TextConfig defaults head_dim to 256, not hidden/heads.
    head_dim: r.int("head_dim", 256),
    n_kv_groups: r.int("num_key_value_heads", heads),
    hidden_dim: r.int("intermediate_size"),
    mlp: "geglu",
    mlp_bias: false,
    norm: "rmsnorm",
    norm_eps: r.num("rms_norm_eps", 1e-6),
    norm_unit_offset: true,
    block: "sandwich",
    pos_emb: "rope",
    rope_theta: global.theta,
    rope_local_theta: local.theta,
    qk_norm: true,
    attn_out_bias: attentionBias,
    sliding_window: r.int("sliding_window", 4096),
    layer_types: layerTypes(r, layers),
    query_pre_attn_scalar: r.num("query_pre_attn_scalar", 256),
    emb_scale: roundToDtype(Math.sqrt(emb), dtype, source),
  };
  if (global.scaling) config.rope_scaling = global.scaling;
  if (heads % config.n_kv_groups! !== 0) {
    throw new Error(
      `${source}: num_attention_heads (${heads}) must be a multiple of num_key_value_heads ` +
        `(${config.n_kv_groups})`,
    );
  }
  return { config, tiedHead: r.tiedHead() };
}

/** Gemma 3 text-only checkpoints (`Gemma3ForCausalLM`). */
export const gemma3: ModelFamily = {
  name: "gemma3",
  modelTypes: ["gemma3_text"],
  toConfig,
  weightRules: GEMMA3_RULES,
  ignoredTensors: [ROTARY_BUFFERS],
  converter: (context) => ruleTableConverter(GEMMA3_RULES, [ROTARY_BUFFERS], context),
  specialTokens: (hf, source) => readSpecialTokens(new HfConfigReader(hf, source)),
};
