/**
 * Tiny random configs shaped like each open family (the keys their HF configs map to), shared by
 * the open-model tests.
 */
import type { GPTConfig } from "../../../llm/model/config.ts";

const BASE = {
  vocab_size: 61,
  context_length: 40,
  emb_dim: 24,
  n_heads: 4,
  n_layers: 2,
  drop_rate: 0,
  qkv_bias: false,
};

/**
 * One config per family, with its tied-head choice. RoPE bases are smaller than the real ones
 * so that positions move the logits of these short prompts (a wrong position must show).
 */
export const FAMILY_CONFIGS: { name: string; config: GPTConfig; tiedHead: boolean }[] = [
  { name: "gpt2", config: { ...BASE, qkv_bias: true }, tiedHead: true },
  {
    name: "llama",
    config: {
      ...BASE,
      family: "llama",
      n_kv_groups: 2,
      hidden_dim: 40,
      mlp: "swiglu",
      norm: "rmsnorm",
      pos_emb: "rope",
      rope_theta: 5000,
      // L0 small enough that the prompts reach the scaled band.
      rope_scaling: {
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_context_length: 16,
      },
      attn_out_bias: false,
    },
    tiedHead: true,
  },
  {
    name: "qwen3",
    config: {
      ...BASE,
      family: "qwen3",
      head_dim: 10, // ≠ emb_dim / n_heads
      n_kv_groups: 2,
      hidden_dim: 36,
      mlp: "swiglu",
      norm: "rmsnorm",
      norm_eps: 1e-6,
      pos_emb: "rope",
      rope_theta: 1000,
      qk_norm: true,
      attn_out_bias: false,
    },
    tiedHead: true,
  },
  {
    name: "gemma3",
    config: {
      ...BASE,
      family: "gemma3",
      n_layers: 3,
      head_dim: 8,
      n_kv_groups: 1,
      hidden_dim: 32,
      mlp: "geglu",
      norm: "rmsnorm",
      norm_eps: 1e-6,
      norm_unit_offset: true,
      block: "sandwich",
      pos_emb: "rope",
      rope_theta: 1000,
      rope_local_theta: 100,
      qk_norm: true,
      attn_out_bias: false,
      sliding_window: 3, // smaller than the prompts
      layer_types: ["sliding", "sliding", "full"],
      query_pre_attn_scalar: 12,
      emb_scale: 4.875,
    },
    tiedHead: true,
  },
  {
    name: "phi3",
    config: {
      ...BASE,
      family: "phi3",
      hidden_dim: 40,
      mlp: "swiglu",
      norm: "rmsnorm",
      pos_emb: "rope",
      attn_out_bias: false,
    },
    tiedHead: false,
  },
  {
    name: "phi2",
    config: {
      ...BASE,
      family: "phi2",
      qkv_bias: true,
      hidden_dim: 48,
      mlp: "gelu",
      block: "parallel",
      pos_emb: "rope",
      rotary_dim: 4, // partial: 4 of 6 dims
      head_bias: true,
    },
    tiedHead: false,
  },
];
