/**
 * Llama 3.x (`model_type: llama`), and everything built as a Llama: SmolLM2 is a Llama with its
 * own sizes and θ, nothing else. Pre-norm blocks with RMSNorm, GQA, RoPE (Llama-3 frequency
 * scaling when `rope_type` is llama3), SwiGLU, no biases; tied head unless
 * `tie_word_embeddings` is false.
 *
 * The names and the config reading here are the template Qwen3, Phi-3 and Gemma 3 start from.
 */
import type { GPTConfig } from "../model/config.ts";
import type { FamilyConfig, ModelFamily, WeightRule } from "./family.ts";
import { type HfConfig, HfConfigReader, readRope, readSpecialTokens } from "./hf_config.ts";
import { ruleTableConverter } from "./rules.ts";

/** HF's Llama tensor names → ours (the book's Llama 3 names). */
export const LLAMA_RULES: readonly WeightRule[] = [
  { hf: "model.embed_tokens.weight", ours: "tok_emb.weight" },
  { hf: "model.layers.{i}.self_attn.q_proj.weight", ours: "trf_blocks.{i}.att.W_query.weight" },
  { hf: "model.layers.{i}.self_attn.q_proj.bias", ours: "trf_blocks.{i}.att.W_query.bias" },
  { hf: "model.layers.{i}.self_attn.k_proj.weight", ours: "trf_blocks.{i}.att.W_key.weight" },
  { hf: "model.layers.{i}.self_attn.k_proj.bias", ours: "trf_blocks.{i}.att.W_key.bias" },
  { hf: "model.layers.{i}.self_attn.v_proj.weight", ours: "trf_blocks.{i}.att.W_value.weight" },
  { hf: "model.layers.{i}.self_attn.v_proj.bias", ours: "trf_blocks.{i}.att.W_value.bias" },
  { hf: "model.layers.{i}.self_attn.o_proj.weight", ours: "trf_blocks.{i}.att.out_proj.weight" },
  { hf: "model.layers.{i}.self_attn.o_proj.bias", ours: "trf_blocks.{i}.att.out_proj.bias" },
  { hf: "model.layers.{i}.mlp.gate_proj.weight", ours: "trf_blocks.{i}.ff.fc1.weight" },
  { hf: "model.layers.{i}.mlp.gate_proj.bias", ours: "trf_blocks.{i}.ff.fc1.bias" },
  { hf: "model.layers.{i}.mlp.up_proj.weight", ours: "trf_blocks.{i}.ff.fc2.weight" },
  { hf: "model.layers.{i}.mlp.up_proj.bias", ours: "trf_blocks.{i}.ff.fc2.bias" },
  { hf: "model.layers.{i}.mlp.down_proj.weight", ours: "trf_blocks.{i}.ff.fc3.weight" },
  { hf: "model.layers.{i}.mlp.down_proj.bias", ours: "trf_blocks.{i}.ff.fc3.bias" },
  { hf: "model.layers.{i}.input_layernorm.weight", ours: "trf_blocks.{i}.norm1.scale" },
  { hf: "model.layers.{i}.post_attention_layernorm.weight", ours: "trf_blocks.{i}.norm2.scale" },
  { hf: "model.norm.weight", ours: "final_norm.scale" },
  { hf: "lm_head.weight", ours: "out_head.weight" },
];

/** Buffers older exports keep per layer (RoPE's inverse frequencies): no weights. */
export const ROTARY_BUFFERS = /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/;

/**
 * The keys every Llama-style config shares (sizes, GQA, head_dim, SwiGLU, RMSNorm, RoPE);
 * families override what differs. Attention biases follow `attention_bias` (q, k, v and o), MLP
 * biases `mlp_bias`.
 */
export function llamaStyleConfig(
  r: HfConfigReader,
  family: NonNullable<GPTConfig["family"]>,
): GPTConfig {
  r.unsupported("hidden_act", "silu", "a SwiGLU MLP needs silu");
  r.unsupported("rope_interleaved", false, "only rotate-half RoPE is implemented");
  const heads = r.int("num_attention_heads");
  const emb = r.int("hidden_size");
  const rope = readRope(r);
  const headDim = r.int("head_dim", emb / heads);
  if (!Number.isInteger(headDim)) {
    throw new Error(
      `${r.source}: no "head_dim" and hidden_size ${emb} is not divisible by ${heads} heads`,
    );
  }
  const kvHeads = r.int("num_key_value_heads", heads);
  if (heads % kvHeads !== 0) {
    throw new Error(
      `${r.source}: num_attention_heads (${heads}) must be a multiple of num_key_value_heads ` +
        `(${kvHeads})`,
    );
  }
  const attentionBias = r.bool("attention_bias", false);
  const config: GPTConfig = {
    family,
    vocab_size: r.int("vocab_size"),
    context_length: r.int("max_position_embeddings"),
    emb_dim: emb,
    n_heads: heads,
    n_layers: r.int("num_hidden_layers"),
    drop_rate: 0,
    qkv_bias: attentionBias,
    head_dim: headDim,
    n_kv_groups: kvHeads,
    hidden_dim: r.int("intermediate_size"),
    mlp: "swiglu",
    mlp_bias: r.bool("mlp_bias", false),
    norm: "rmsnorm",
    norm_eps: r.num("rms_norm_eps", 1e-6),
    pos_emb: "rope",
    rope_theta: rope.theta,
    attn_out_bias: attentionBias,
  };
  if (rope.scaling) config.rope_scaling = rope.scaling;
  if (rope.partialRotaryFactor !== undefined && rope.partialRotaryFactor !== 1) {
    config.rotary_dim = Math.floor(headDim * rope.partialRotaryFactor);
  }
  return config;
}

function toConfig(hf: HfConfig, source: string): FamilyConfig {
  const r = new HfConfigReader(hf, source);
  return { config: llamaStyleConfig(r, "llama"), tiedHead: r.tiedHead() };
}

/** Llama 3.x and SmolLM2 (any `LlamaForCausalLM`). */
export const llama: ModelFamily = {
  name: "llama",
  modelTypes: ["llama"],
  toConfig,
  weightRules: LLAMA_RULES,
  ignoredTensors: [ROTARY_BUFFERS],
  converter: (context) => ruleTableConverter(LLAMA_RULES, [ROTARY_BUFFERS], context),
  specialTokens: (hf, source) => readSpecialTokens(new HfConfigReader(hf, source)),
};
