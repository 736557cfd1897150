/** A tiny random GPT-2-vocabulary model saved to a folder, and `serve` running it in-process. */
import { loadModelConfig } from "../../llm/model/config.ts";
import { GPTModel } from "../../llm/model/gpt.ts";
import { loadModel, saveModel } from "../../llm/model/weights_io.ts";
import { createTokenizer, type Tokenizer } from "../../llm/tokenizer/mod.ts";
import { type RunningServer, type ServeOptions, startServer } from "../../server/app.ts";

/** Writes the tiny config's random model (seed 7) to `dir`, as a training stage would. */
export async function writeTinyModelFolder(dir: string): Promise<void> {
  const model = new GPTModel(await loadModelConfig("tiny"), { seed: 7 });
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
  options: Partial<ServeOptions> = {},
): Promise<TinyServer> {
  const model = await loadModel(dir);
  const tokenizer = createTokenizer({ kind: "gpt2" });
  const running = startServer({ model, tokenizer, modelName: "tiny", alpaca: false, ...options });
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
