/**
 * The names and shapes of the tensors a model built from a config holds, worked out from the
 * config alone: what a checkpoint is checked against before anything is allocated. Building the
 * model to ask it would cost its full fp32 size (3 GB for Qwen3-0.6B) only to look at shapes.
 * The names are the state_dict's (llm/model/gpt.ts `stateTensors`); a test keeps the two equal
 * for every family.
 */
import { type GPTConfig, resolveConfig } from "../model/config.ts";

/** Our state_dict name → shape for the model `config` describes (the head listed even if tied). */
export function expectedStateShapes(config: GPTConfig): Map<string, number[]> {
  const c = resolveConfig(config);
  const D = c.emb_dim, H = c.hidden_dim;
  const q = c.n_heads * c.head_dim, kv = c.n_kv_groups * c.head_dim;
  const shapes = new Map<string, number[]>();
  const linear = (name: string, inDim: number, outDim: number, bias: boolean) => {
    shapes.set(`${name}.weight`, [outDim, inDim]);
    if (bias) shapes.set(`${name}.bias`, [outDim]);
  };
  const norm = (name: string, dim: number) => {
    shapes.set(`${name}.scale`, [dim]);
    if (c.norm === "layernorm") shapes.set(`${name}.shift`, [dim]);
  };

  shapes.set("tok_emb.weight", [c.vocab_size, D]);
  if (c.pos_emb === "learned") shapes.set("pos_emb.weight", [c.context_length, D]);
  for (let i = 0; i < c.n_layers; i++) {
    const block = `trf_blocks.${i}`;
    linear(`${block}.att.W_query`, D, q, c.qkv_bias);
    linear(`${block}.att.W_key`, D, kv, c.qkv_bias);
    linear(`${block}.att.W_value`, D, kv, c.qkv_bias);
    linear(`${block}.att.out_proj`, q, D, c.attn_out_bias);
    if (c.qk_norm) {
      // QK-norm is an RMSNorm over one head's width, whatever the block's norm is.
      shapes.set(`${block}.att.q_norm.scale`, [c.head_dim]);
      shapes.set(`${block}.att.k_norm.scale`, [c.head_dim]);
    }
    if (c.mlp === "gelu") {
      linear(`${block}.ff.layers.0`, D, H, c.mlp_bias);
      linear(`${block}.ff.layers.2`, H, D, c.mlp_bias);
    } else {
      linear(`${block}.ff.fc1`, D, H, c.mlp_bias);
      linear(`${block}.ff.fc2`, D, H, c.mlp_bias);
      linear(`${block}.ff.fc3`, H, D, c.mlp_bias);
    }
    norm(`${block}.norm1`, D);
    if (c.block !== "parallel") norm(`${block}.norm2`, D);
    if (c.block === "sandwich") {
      norm(`${block}.post_att_norm`, D);
      norm(`${block}.post_ff_norm`, D);
    }
  }
  norm("final_norm", D);
  linear("out_head", D, c.vocab_size, c.head_bias);
  return shapes;
}
