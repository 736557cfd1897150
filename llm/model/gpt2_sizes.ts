/**
 * The four sizes OpenAI published GPT-2 in (REFERENCE.md, "Architecture"): every size uses a
 * vocabulary of 50,257 tokens, a context of 1,024 and heads of 64 dimensions.
 */
import type { GPTConfig } from "./config.ts";

/** The published sizes, by their release names. */
export const GPT2_SIZES = ["124M", "355M", "774M", "1558M"] as const;
/** One of {@link GPT2_SIZES}. */
export type Gpt2Size = typeof GPT2_SIZES[number];

/** Width, depth and heads of one size, and where it lives outside this module. */
export interface Gpt2SizeInfo {
  emb_dim: number;
  n_layers: number;
  n_heads: number;
  /** The Hugging Face repository under `openai-community/`. */
  hfRepo: string;
  /** The matching config under `configs/models/`. */
  configName: string;
}

/** The four published sizes. */
export const GPT2_SIZE_INFO: Record<Gpt2Size, Gpt2SizeInfo> = {
  "124M": { emb_dim: 768, n_layers: 12, n_heads: 12, hfRepo: "gpt2", configName: "gpt2-small" },
  "355M": {
    emb_dim: 1024,
    n_layers: 24,
    n_heads: 16,
    hfRepo: "gpt2-medium",
    configName: "gpt2-medium",
  },
  "774M": {
    emb_dim: 1280,
    n_layers: 36,
    n_heads: 20,
    hfRepo: "gpt2-large",
    configName: "gpt2-large",
  },
  "1558M": { emb_dim: 1600, n_layers: 48, n_heads: 25, hfRepo: "gpt2-xl", configName: "gpt2-xl" },
};

/** GPT-2's vocabulary: 50,000 merges, 256 bytes and `<|endoftext|>`. */
export const GPT2_VOCAB_SIZE = 50257;
/** GPT-2's context length. */
export const GPT2_CONTEXT_LENGTH = 1024;

/** The size whose width and depth these are, if any. */
export function gpt2SizeFor(dims: { emb_dim: number; n_layers: number }): Gpt2Size | undefined {
  return GPT2_SIZES.find((size) =>
    GPT2_SIZE_INFO[size].emb_dim === dims.emb_dim &&
    GPT2_SIZE_INFO[size].n_layers === dims.n_layers
  );
}

/** The heads of the GPT-2 size this wide, if any (tensor shapes cannot tell the head count). */
export function gpt2HeadsForWidth(embDim: number): number | undefined {
  return Object.values(GPT2_SIZE_INFO).find((info) => info.emb_dim === embDim)?.n_heads;
}

/** Whether `value` names a published size. */
export function isGpt2Size(value: string): value is Gpt2Size {
  return (GPT2_SIZES as readonly string[]).includes(value);
}

/**
 * The config of OpenAI's pretrained GPT-2 of `size` (context 1024, qkv bias), as the checkpoints
 * load; `dropRate` is for training on from it (0 as the book's fine-tuning, default).
 */
export function gpt2Config(size: Gpt2Size, dropRate = 0): GPTConfig {
  const { emb_dim, n_layers, n_heads } = GPT2_SIZE_INFO[size];
  return {
    vocab_size: GPT2_VOCAB_SIZE,
    context_length: GPT2_CONTEXT_LENGTH,
    emb_dim,
    n_heads,
    n_layers,
    drop_rate: dropRate,
    qkv_bias: true,
  };
}
