/**
 * `deno task serve`: one model behind the OpenAI-compatible and Ollama HTTP APIs, so that
 * other tools (the `openai` and `ollama` clients, the judge, editors) can talk to it.
 *
 *   deno task serve --model 124M --port 8000
 *   deno task serve --model .groundup/lora-finetune/<key> --api-key-env GROUNDUP_API_KEY
 */
import { existsSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { WEIGHTS_FILE } from "../llm/model/weights_io.ts";
import { fileDigest, type RunningServer, startServer } from "../server/app.ts";
import {
  checkCommonFlags,
  COMMON_OPTIONS,
  MODEL_USAGE,
  openModel,
  runCommand,
  UsageError,
} from "./common.ts";
import { isGpt2Size } from "../llm/model/gpt2_sizes.ts";
import { ensureCanListen, listenProblem } from "./listen.ts";

const USAGE = `usage: deno task serve --model M [options]

Serves the model over HTTP: OpenAI-compatible /v1/models, /v1/completions,
/v1/chat/completions (server-sent events when streaming) and Ollama's /api/tags, /api/show,
/api/generate, /api/chat, /api/version (NDJSON when streaming). Chat requests are the whole
conversation in the model's chat template; one generation runs at a time, the others wait.

${MODEL_USAGE}
  --host H             address to listen on (default 127.0.0.1)
  --port N             port (default 8000; 0: any free port, printed at start)
  --name NAME          the model id clients use (default: gpt2-<size> or the folder's name)
  --api-key-env VAR    require "Authorization: Bearer <key>", the key read from \$VAR
  --max-body-bytes N   largest request body (default 1048576)
  --max-tokens N       max_tokens when a request gives none (default 256, at most the context)
  --stream-turn-ms N   when streaming, let the server's I/O run at least every N ms (default 5)
  --truncate-prompts   OpenAI API: keep the end of a prompt longer than the context (its last
                       context-length tokens) instead of refusing it (400); Ollama's API
                       always keeps the end, as Ollama does
  --thinking on|off    Qwen3's enable_thinking when a chat request does not say (requests:
                       chat_template_kwargs.enable_thinking, Ollama's think); default: the
                       template's own (on for Qwen3)
  -h, --help           this text
`;

function intFlag(
  raw: string | undefined,
  name: string,
  min: number,
  max: number,
): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (raw.trim() === "" || !Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(
      `--${name} ${JSON.stringify(raw)}: expected an integer from ${min} to ${max}`,
    );
  }
  return value;
}

async function main(args: string[]): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        ...COMMON_OPTIONS,
        host: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: "8000" },
        name: { type: "string" },
        "api-key-env": { type: "string" },
        "max-body-bytes": { type: "string" },
        "max-tokens": { type: "string" },
        "stream-turn-ms": { type: "string" },
        "truncate-prompts": { type: "boolean", default: false },
        thinking: { type: "string" },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return void console.log(USAGE);
  checkCommonFlags(values);
  const port = intFlag(values.port, "port", 0, 65535)!;
  const maxBodyBytes = intFlag(values["max-body-bytes"], "max-body-bytes", 1, 2 ** 30);
  const defaultMaxTokens = intFlag(values["max-tokens"], "max-tokens", 1, 1 << 20);
  const streamTurnMs = intFlag(values["stream-turn-ms"], "stream-turn-ms", 0, 1000);
  const thinking = values.thinking;
  if (thinking !== undefined && thinking !== "on" && thinking !== "off") {
    throw new UsageError(`--thinking ${JSON.stringify(thinking)}: expected on or off`);
  }
  let apiKey: string | undefined;
  const keyVar = values["api-key-env"];
  if (keyVar !== undefined) {
    apiKey = Deno.env.get(keyVar);
    if (!apiKey) throw new UsageError(`--api-key-env ${keyVar}: the variable is not set or empty`);
  }

  // A busy port fails now, not after the model has loaded.
  ensureCanListen(values.host, port);
  const { dir, model, tokenizer, chat, family, vocabLimit, quantize } = await openModel(values);
  const spec = String(values.model);
  const modelName = values.name ?? (isGpt2Size(spec) ? `gpt2-${spec}` : basename(resolve(dir)));
  // A sharded Hugging Face model is named by its index (which lists every shard).
  const weights = [WEIGHTS_FILE, "model.safetensors.index.json"].map((f) => join(dir, f))
    .find((path) => existsSync(path));
  const digest = weights ? await fileDigest(weights) : undefined;
  const stop = new AbortController();
  let running: RunningServer;
  try {
    running = startServer({
      model,
      tokenizer,
      chat,
      family,
      vocabLimit,
      quantize,
      enableThinking: thinking === undefined ? undefined : thinking === "on",
      modelName,
      digest,
      apiKey,
      maxBodyBytes,
      defaultMaxTokens,
      streamTurnMs,
      truncatePrompts: values["truncate-prompts"],
      hostname: values.host,
      port,
      signal: stop.signal,
      log: (line) => console.error(line),
    });
  } catch (error) {
    model.dispose();
    throw new Error(listenProblem(error, values.host, port)); // taken since the check
  }
  const { url, server } = running;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => stop.abort());
  }
  // A line a script can wait for (tests and .ci/run read the URL from it).
  const format = chat.name === "none"
    ? "base model"
    : chat.name === "jinja"
    ? "its chat template for chat"
    : `${chat.name} template for chat`;
  console.error(
    `serving ${modelName} (${format}, ${family}, context ${model.config.context_length}${
      quantize === "none" ? "" : `, ${quantize} weights`
    }${apiKey ? ", API key required" : ""}) at ${url}`,
  );
  await server.finished;
  model.dispose();
}

if (import.meta.main) Deno.exit(await runCommand(USAGE, () => main(Deno.args)));
