/**
 * A tiny GPT whose greedy answer depends on how its weights are held: in fp32 (and bf16) it
 * always says `fp32Token`, with `quantize: int8` always `int8Token`. A random tiny model does
 * not show the option at all (its greedy tokens are the same in every precision), so a test
 * that generated text comes from rounded weights needs a model built to tell them apart.
 *
 * How: the final layer norm's scale is zeroed and its shift set to 1, so every position feeds
 * the head the vector of ones, and a token's logit is the sum of its head row. Each head row is
 * one Q8_0 block of 32 (emb_dim 32) whose largest value 127·s fixes the block scale to s:
 * - `fp32Token`: 127·s and 31 values of 0.49·s, which Q8_0 rounds to 0: 142.19·s in fp32, 127·s
 *   in int8;
 * - `int8Token`: 127·s and 20 values of 0.5·s, which Q8_0 rounds up to s: 137·s in fp32, 147·s
 *   in int8.
 * bf16 keeps 8 significant bits, so it keeps fp32's order. Every other row is zero.
 */
import { loadModelConfig } from "../../llm/model/config.ts";
import { GPTModel } from "../../llm/model/gpt.ts";
import { getStateDict, loadStateDict, saveModel } from "../../llm/model/weights_io.ts";

/** The block scale: a power of two, exact in fp16 (Q8_0's scale) and bf16. */
const S = 1 / 128;

/** Writes the model into `dir` (context `contextLength`, default the tiny config's 32). */
export async function writeRoundingSensitiveModel(
  dir: string,
  tokens: { fp32Token: number; int8Token: number },
  contextLength?: number,
): Promise<void> {
  const overrides = contextLength ? { context_length: contextLength } : {};
  const model = new GPTModel(await loadModelConfig("tiny", overrides), { seed: 7 });
  const state = await getStateDict(model);
  const d = model.config.emb_dim;
  if (d !== 32) throw new Error(`the construction needs rows of one Q8_0 block (emb_dim ${d})`);
  state.get("final_norm.scale")!.data.fill(0);
  state.get("final_norm.shift")!.data.fill(1);
  const head = state.get("out_head.weight")!.data;
  head.fill(0);
  const row = (token: number, small: number, count: number) => {
    head[token * d] = 127 * S;
    head.fill(small * S, token * d + 1, token * d + 1 + count);
  };
  row(tokens.fp32Token, 0.49, 31);
  row(tokens.int8Token, 0.5, 20);
  loadStateDict(model, state, "rounding-sensitive model");
  await saveModel(dir, model);
  model.dispose();
}
