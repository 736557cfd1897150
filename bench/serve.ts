/**
 * `serve` against complete() on the same model: tokens/s of a streamed completion over HTTP
 * (SSE, read chunk by chunk as a client does) vs complete() called directly, interleaved and
 * repeated; then requests/s and latency with --clients concurrent clients (non-streamed).
 * The server runs as `deno task serve` does, in its own process (cli/serve.ts); with
 * --in-process on, in this one (client and server then share one event loop).
 *
 *   deno run -A bench/serve.ts [--model DIR] [--tokens N] [--repeats R] [--clients 4]
 *                              [--requests 20] [--in-process off]
 *
 * Default model: the tiny config (random weights; context 32, so at most ~28 new tokens).
 * Prints one JSON line per measurement and a summary line.
 */
import { initEngine } from "../llm/engine/backend.ts";
import { loadModelConfig } from "../llm/model/config.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import { loadModel, saveModel } from "../llm/model/weights_io.ts";
import { createTokenizer } from "../llm/tokenizer/mod.ts";
import { startServer } from "../server/app.ts";
import { complete } from "../llm/infer/complete.ts";
import { flag } from "./common.ts";

const modelDir = flag("model", "");
const repeats = Number(flag("repeats", "5"));
const clients = Number(flag("clients", "4"));
const requestsPerClient = Number(flag("requests", "20"));

await initEngine({ backend: "cpu", log: () => {} });
const model = modelDir
  ? await loadModel(modelDir)
  : new GPTModel(await loadModelConfig("tiny"), { seed: 7 });
const tokenizer = createTokenizer({ kind: "gpt2" });
const PROMPT = "Every effort moves you";
const promptTokens = tokenizer.encode(PROMPT).length;
const tokens = Number(flag("tokens", String(model.config.context_length - promptTokens)));

const inProcess = flag("in-process", "off") === "on";
let url: string, stopServer: () => Promise<void>;
if (inProcess) {
  const running = startServer({ model, tokenizer, modelName: "bench", alpaca: false });
  url = running.url;
  stopServer = () => running.server.shutdown();
} else {
  let dir = modelDir;
  if (!dir) {
    dir = await Deno.makeTempDir({ prefix: "bench-serve-" });
    await saveModel(dir, model);
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "cli/serve.ts",
      "--model",
      dir,
      "--port",
      "0",
      "--backend",
      "cpu",
      "--name",
      "bench",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  for (;;) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`serve exited:\n${seen}`);
    seen += value;
    const found = seen.match(/at (http:\/\/\S+)/)?.[1];
    if (found) {
      url = found;
      break;
    }
  }
  // Keep reading its request log so the pipe never fills.
  (async () => {
    while (!(await lines.read()).done);
  })();
  stopServer = async () => {
    child.kill("SIGTERM");
    await child.status;
    if (!modelDir) await Deno.remove(dir, { recursive: true });
  };
}

async function viaComplete(): Promise<{ tokens: number; seconds: number }> {
  const t0 = performance.now();
  const done = await complete(model, {
    tokenizer,
    prompt: PROMPT,
    settings: {
      max_new_tokens: tokens,
      temperature: 0,
      stop_token: tokenizer.endOfTextId ?? null,
      seed: 123,
    },
    onText: () => {},
  });
  return { tokens: done.tokens, seconds: (performance.now() - t0) / 1000 };
}

async function viaServe(): Promise<{ tokens: number; seconds: number; firstTokenMs: number }> {
  const t0 = performance.now();
  const response = await fetch(`${url}/v1/completions`, {
    method: "POST",
    body: JSON.stringify({
      model: "bench",
      prompt: PROMPT,
      max_tokens: tokens,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  let buffer = "", usage = 0, firstTokenMs = 0;
  for await (const chunk of response.body!.pipeThrough(new TextDecoderStream())) {
    if (!firstTokenMs) firstTokenMs = performance.now() - t0;
    buffer += chunk;
    const events = buffer.split("\n\n");
    buffer = events.pop()!;
    for (const event of events) {
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") continue;
      const parsed = JSON.parse(data);
      if (parsed.usage) usage = parsed.usage.completion_tokens;
    }
  }
  return { tokens: usage, seconds: (performance.now() - t0) / 1000, firstTokenMs };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
await viaComplete(), await viaServe(); // warm-up
const direct: number[] = [], served: number[] = [];
for (let r = 0; r < repeats; r++) {
  const a = await viaComplete();
  const b = await viaServe();
  direct.push(a.tokens / a.seconds), served.push(b.tokens / b.seconds);
  console.log(
    JSON.stringify({
      repeat: r,
      complete_tps: a.tokens / a.seconds,
      serve_tps: b.tokens / b.seconds,
      tokens: b.tokens,
      first_token_ms: b.firstTokenMs,
    }),
  );
}

// Concurrent clients, each sending its requests one after another.
const latencies: number[] = [];
const t0 = performance.now();
await Promise.all(Array.from({ length: clients }, async (_, c) => {
  for (let i = 0; i < requestsPerClient; i++) {
    const start = performance.now();
    const response = await fetch(`${url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({
        model: "bench",
        prompt: `${PROMPT} ${c} ${i}`,
        max_tokens: 16,
        temperature: 1,
        seed: i,
      }),
    });
    await response.json();
    latencies.push(performance.now() - start);
  }
}));
const wall = (performance.now() - t0) / 1000;
const sorted = [...latencies].sort((a, b) => a - b);
const summary = {
  model: modelDir || "tiny (random)",
  server: inProcess ? "in-process" : "subprocess",
  new_tokens: tokens,
  complete_tokens_per_s: Math.round(median(direct) * 10) / 10,
  serve_streamed_tokens_per_s: Math.round(median(served) * 10) / 10,
  serve_vs_complete: Math.round((median(served) / median(direct)) * 1000) / 1000,
  clients,
  requests: latencies.length,
  requests_per_s: Math.round((latencies.length / wall) * 10) / 10,
  latency_ms_p50: Math.round(sorted[Math.floor(sorted.length * 0.5)]),
  latency_ms_p95: Math.round(sorted[Math.floor(sorted.length * 0.95)]),
};
console.log(JSON.stringify(summary));
await stopServer();
model.dispose();
