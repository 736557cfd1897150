/**
 * A tiny GPT-2-vocabulary model built to write a fixed answer and stop, whatever the prompt:
 * what a local judge test needs to see scores (and verdicts) come through as the real model
 * path produces them, with LitGPT's 50 new tokens and no `--max-tokens 1` to cut the answer.
 *
 * How: every block's output projection is zeroed, so the residual stream at the last position
 * is the embedding of the last token (the positional embedding is zeroed too); the final
 * layer norm passes it through (scale 1, shift 0); the head maps it to the next token. Each
 * step then depends only on the last token: any token outside the answer leads to its first
 * token, each answer token to the next one, the last to end-of-text. The embeddings are rows of
 * a 32×32 Hadamard matrix (mean 0, variance 1: the layer norm leaves them as they are;
 * mutually orthogonal: each picks exactly one head row).
 */
import { loadModelConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { getStateDict, loadStateDict, saveModel } from "../../../llm/model/weights_io.ts";

const END_OF_TEXT = 50256;

/** Row `i` of the Sylvester Hadamard matrix of order `n` (a power of two): ±1 entries. */
function hadamardRow(i: number, n: number): Float32Array {
  const row = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    let bits = i & j, parity = 0;
    while (bits) parity ^= bits & 1, bits >>= 1;
    row[j] = parity ? -1 : 1;
  }
  return row;
}

/** Writes into `dir` the tiny model that answers `answer` (GPT-2 token ids) then stops. */
export async function writeScriptedAnswerModel(
  dir: string,
  answer: readonly number[],
): Promise<void> {
  if (new Set([...answer, END_OF_TEXT]).size !== answer.length + 1) {
    throw new Error(`the answer's tokens must be distinct and not end-of-text: ${answer}`);
  }
  const model = new GPTModel(await loadModelConfig("tiny"), { seed: 7 });
  const state = await getStateDict(model);
  const d = model.config.emb_dim;
  if (answer.length + 2 > d) throw new Error(`an answer of at most ${d - 2} tokens`);
  // Direction 0: "answer not started"; direction k: "answer token k-1 written".
  const direction = (k: number) => hadamardRow(k + 1, d); // row 0 (all ones) has mean 1
  for (const [name, tensor] of state) {
    if (/att\.out_proj|ff\.layers\.2|pos_emb/.test(name)) tensor.data.fill(0);
  }
  state.get("final_norm.scale")!.data.fill(1);
  state.get("final_norm.shift")!.data.fill(0);
  const embedding = state.get("tok_emb.weight")!.data;
  const head = state.get("out_head.weight")!.data;
  for (let t = 0; t * d < embedding.length; t++) embedding.set(direction(0), t * d);
  head.fill(0);
  answer.forEach((token, k) => {
    embedding.set(direction(k + 1), token * d);
    head.set(direction(k), token * d); // after direction k comes answer token k
  });
  head.set(direction(answer.length), END_OF_TEXT * d);
  loadStateDict(model, state, "scripted answer model");
  await saveModel(dir, model);
  model.dispose();
}
