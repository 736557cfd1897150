/** A tiny random GPT-2-vocabulary model saved to a folder, and `serve` running it in-process. */
import { loadModelConfig } from "../../llm/model/config.ts";
import { GPTModel } from "../../llm/model/gpt.ts";
import { getStateDict, loadModel, loadStateDict, saveModel } from "../../llm/model/weights_io.ts";
import { createTokenizer, type Tokenizer } from "../../llm/tokenizer/mod.ts";
import { type RunningServer, type ServeOptions, startServer } from "../../server/app.ts";

/** Writes the tiny config's random model (seed 7) to `dir`, as a training stage would. */
export async function writeTinyModelFolder(dir: string): Promise<void> {
  const model = new GPTModel(await loadModelConfig("tiny"), { seed: 7 });
  await saveModel(dir, model);
  model.dispose();
}

/**
 * Writes a tiny model whose next token is always `token`, whatever the prompt: the final
 * layer norm's scale is zeroed (its output is the constant shift vector) and the head maps
 * that vector to a logit of 1 for `token`, 0 for every other. A judge served by it answers
 * with a number (e.g. GPT-2's token 5332, "85").
 */
export async function writeConstantModelFolder(dir: string, token: number): Promise<void> {
  const model = new GPTModel(await loadModelConfig("tiny"), { seed: 7 });
  const state = await getStateDict(model);
  const d = model.config.emb_dim;
  state.get("final_norm.scale")!.data.fill(0);
  state.get("final_norm.shift")!.data.fill(1);
  const head = state.get("out_head.weight")!.data;
  head.fill(0);
  head.fill(1 / d, token * d, (token + 1) * d);
  loadStateDict(model, state, "constant model");
  await saveModel(dir, model);
  model.dispose();
}

export interface TinyServer extends RunningServer {
  model: GPTModel;
  tokenizer: Tokenizer;
  close(): Promise<void>;
}

/** Loads the model in `dir` and serves it on a free loopback port. */
export async function serveTiny(
  dir: string,
  options: Partial<ServeOptions> & { port?: number } = {},
): Promise<TinyServer> {
  const model = await loadModel(dir);
  const tokenizer = createTokenizer({ kind: "gpt2" });
  const running = startServer({ model, tokenizer, modelName: "tiny", ...options });
  return {
    ...running,
    model,
    tokenizer,
    async close() {
      await running.server.shutdown();
      model.dispose();
    },
  };
}
