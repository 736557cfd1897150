/** The model configuration as stage parameters: the book's keys, validated like any other. */
import { z } from "zod";

export const ModelConfigSchema = z.strictObject({
  vocab_size: z.number().int().min(1).describe("Tokens in the vocabulary (GPT-2: 50,257)."),
  context_length: z.number().int().min(1).describe("Longest input, in tokens."),
  emb_dim: z.number().int().min(1).describe("Embedding width."),
  n_heads: z.number().int().min(1).describe("Attention heads; must divide `emb_dim`."),
  n_layers: z.number().int().min(1).describe("Transformer blocks."),
  drop_rate: z.number().min(0).lt(1).describe("Dropout rate."),
  qkv_bias: z.boolean().describe("Bias in the query, key and value projections."),
}).refine((c) => c.emb_dim % c.n_heads === 0, {
  message: "emb_dim must be divisible by n_heads",
  path: ["n_heads"],
});
export type ModelConfigParams = z.infer<typeof ModelConfigSchema>;
