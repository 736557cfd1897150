/**
 * `serve` against complete() on the same model: tokens/s of a streamed completion over HTTP
 * (SSE, read chunk by chunk as a client does) vs complete() called directly, interleaved and
 * repeated; then requests/s and latency with --clients concurrent clients (non-streamed).
 * The server runs as `deno task serve` does, in its own process (cli/serve.ts); with
 * --in-process on, in this one (client and server then share one event loop).
 *
 *   deno run -A bench/serve.ts [--model DIR] [--tokens N] [--repeats R] [--clients 4]
 *                              [--requests 20] [--in-process off] [--stream-turn-ms 5,20]
 *
 * --stream-turn-ms: one server per setting (how often a streaming generation lets the
 * server's I/O run), measured interleaved; per setting the streamed tokens/s, the time to the
 * first chunk and the longest wait between chunks (streaming latency). The concurrent-client
 * part uses the first setting's server.
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
// One server per setting of --stream-turn-ms (comma-separated), all up at once, so the
// settings are measured interleaved, under the same load.
const turnSettings = flag("stream-turn-ms", "5").split(",").map(Number);

interface Served {
  turnMs: number;
  url: string;
  stop(): Promise<void>;
}

let savedDir = modelDir;
async function startServe(turnMs: number): Promise<Served> {
  if (inProcess) {
    const running = startServer({
      model,
      tokenizer,
      modelName: "bench",
      streamTurnMs: turnMs,
    });
    return { turnMs, url: running.url, stop: () => running.server.shutdown() };
  }
  if (!savedDir) {
    savedDir = await Deno.makeTempDir({ prefix: "bench-serve-" });
    await saveModel(savedDir, model);
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "cli/serve.ts",
      "--model",
      savedDir,
      "--port",
      "0",
      "--backend",
      "cpu",
      "--name",
      "bench",
      "--stream-turn-ms",
      String(turnMs),
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "", url = "";
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
  return {
    turnMs,
    url,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}
const servers: Served[] = [];
for (const turnMs of turnSettings) servers.push(await startServe(turnMs));
const url = servers[0].url;

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

/** A streamed completion; `gapMs`: the longest wait between two chunks after the first. */
async function viaServe(
  url: string,
): Promise<{ tokens: number; seconds: number; firstTokenMs: number; maxGapMs: number }> {
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
  let buffer = "", usage = 0, firstTokenMs = 0, last = 0, maxGapMs = 0;
  for await (const chunk of response.body!.pipeThrough(new TextDecoderStream())) {
    const now = performance.now();
    if (!firstTokenMs) firstTokenMs = now - t0;
    else maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
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
  return { tokens: usage, seconds: (performance.now() - t0) / 1000, firstTokenMs, maxGapMs };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
await viaComplete();
for (const server of servers) await viaServe(server.url); // warm-up
const direct: number[] = [];
const served = new Map<number, { tps: number[]; firstMs: number[]; gapMs: number[] }>(
  servers.map((s) => [s.turnMs, { tps: [], firstMs: [], gapMs: [] }]),
);
for (let r = 0; r < repeats; r++) {
  const a = await viaComplete();
  direct.push(a.tokens / a.seconds);
  const row: Record<string, number> = { repeat: r, complete_tps: a.tokens / a.seconds };
  for (const server of servers) {
    const b = await viaServe(server.url);
    const m = served.get(server.turnMs)!;
    m.tps.push(b.tokens / b.seconds), m.firstMs.push(b.firstTokenMs), m.gapMs.push(b.maxGapMs);
    row[`serve_tps@${server.turnMs}ms`] = b.tokens / b.seconds;
    row[`first_token_ms@${server.turnMs}ms`] = b.firstTokenMs;
    row[`max_gap_ms@${server.turnMs}ms`] = b.maxGapMs;
    row.tokens = b.tokens;
  }
  console.log(JSON.stringify(row));
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
  ...Object.fromEntries([...served].flatMap(([turnMs, m]) => [
    [`serve_streamed_tokens_per_s@${turnMs}ms`, Math.round(median(m.tps) * 10) / 10],
    [`serve_vs_complete@${turnMs}ms`, Math.round((median(m.tps) / median(direct)) * 1000) / 1000],
    [`first_token_ms@${turnMs}ms`, Math.round(median(m.firstMs) * 10) / 10],
    [`max_gap_ms@${turnMs}ms`, Math.round(median(m.gapMs) * 10) / 10],
  ])),
  clients,
  requests: latencies.length,
  requests_per_s: Math.round((latencies.length / wall) * 10) / 10,
  latency_ms_p50: Math.round(sorted[Math.floor(sorted.length * 0.5)]),
  latency_ms_p95: Math.round(sorted[Math.floor(sorted.length * 0.95)]),
};
console.log(JSON.stringify(summary));
for (const server of servers) await server.stop();
if (!modelDir && savedDir) await Deno.remove(savedDir, { recursive: true });
model.dispose();
