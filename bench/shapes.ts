/**
 * The model shapes the speed benchmarks compare (bench/llama_cpp.ts, quantized_decode.ts,
 * block_profile.ts): random weights, so only the architecture and the sizes matter. The open
 * shapes follow the Hub configs of Qwen/Qwen3-0.6B and meta-llama/Llama-3.2-1B (tied heads).
 */
import type { GPTConfig } from "../llm/model/config.ts";
import { gpt2Config } from "../llm/model/gpt2_sizes.ts";

/** A shape to benchmark: the config and whether the head is the embedding. */
export interface BenchShape {
  config: GPTConfig;
  tiedHead: boolean;
}

const SWIGLU_ROPE = {
  context_length: 1024,
  drop_rate: 0,
  qkv_bias: false,
  mlp: "swiglu",
  norm: "rmsnorm",
  pos_emb: "rope",
  attn_out_bias: false,
} as const;

const qwen3: GPTConfig = {
  ...SWIGLU_ROPE,
  family: "qwen3",
  vocab_size: 151_936,
  emb_dim: 1024,
  n_heads: 16,
  n_layers: 28,
  head_dim: 128,
  n_kv_groups: 8,
  hidden_dim: 3072,
  norm_eps: 1e-6,
  rope_theta: 1_000_000,
  qk_norm: true,
};

const llama: GPTConfig = {
  ...SWIGLU_ROPE,
  family: "llama",
  vocab_size: 128_256,
  emb_dim: 2048,
  n_heads: 32,
  n_layers: 16,
  head_dim: 64,
  n_kv_groups: 8,
  hidden_dim: 8192,
  norm_eps: 1e-5,
  rope_theta: 500_000,
  rope_scaling: {
    factor: 32,
    low_freq_factor: 1,
    high_freq_factor: 4,
    original_context_length: 8192,
  },
};

/**
 * Every shape by name. The tiny ones are 2-layer twins of the open shapes (same vocabularies,
 * RoPE and norms), small enough to check a benchmark's flow in seconds.
 */
export const BENCH_SHAPES: Record<string, BenchShape> = {
  "gpt2-124M": { config: gpt2Config("124M", 0), tiedHead: false },
  "qwen3-0.6B": { config: qwen3, tiedHead: true },
  "llama-3.2-1B": { config: llama, tiedHead: true },
  "qwen3-tiny": {
    config: {
      ...qwen3,
      emb_dim: 64,
      n_heads: 4,
      head_dim: 32,
      n_kv_groups: 2,
      hidden_dim: 128,
      n_layers: 2,
    },
    tiedHead: true,
  },
  "llama-tiny": {
    config: {
      ...llama,
      emb_dim: 64,
      n_heads: 4,
      head_dim: 16,
      n_kv_groups: 2,
      hidden_dim: 128,
      n_layers: 2,
    },
    tiedHead: true,
  },
};

/** The shape called `name` (a fresh copy of its config), or an error naming `flagName` and the choices. */
export function benchShape(name: string, flagName: string): BenchShape {
  const shape = BENCH_SHAPES[name];
  if (!shape) {
    throw new Error(
      `${flagName}: unknown shape "${name}" (known: ${Object.keys(BENCH_SHAPES).join(", ")})`,
    );
  }
  return { config: structuredClone(shape.config), tiedHead: shape.tiedHead };
}
