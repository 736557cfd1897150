/** The model configuration as stage parameters: the book's keys, validated like any other. */
import { z } from "zod";

export const ModelConfigSchema = z.strictObject({
  vocab_size: z.number().int().min(1),
  context_length: z.number().int().min(1),
  emb_dim: z.number().int().min(1),
  n_heads: z.number().int().min(1),
  n_layers: z.number().int().min(1),
  drop_rate: z.number().min(0).lt(1),
  qkv_bias: z.boolean(),
}).refine((c) => c.emb_dim % c.n_heads === 0, {
  message: "emb_dim must be divisible by n_heads",
  path: ["n_heads"],
});
export type ModelConfigParams = z.infer<typeof ModelConfigSchema>;
