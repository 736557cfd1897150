/**
 * Decoding and prefill speed, ours vs llama.cpp, on the same weights: a random model (seed 123)
 * written once as GGUF F32 (llm/export/gguf.ts) and run by llama.cpp through node-llama-cpp
 * 3.21.1 (tools/llama-cpp/bench.mjs, its prebuilt CPU binary, F32 key/value cache) and by us
 * in this process (the cpu engine: BLAS + fused kernels, the in-place KV cache).
 *
 *   deno task bench llama-cpp [--models gpt2-124M,qwen3-0.6B,llama-3.2-1B] [--new-tokens 200]
 *                             [--prefill 128] [--rounds 2] [--threads 2] [--settle 2] [--dir D]
 *
 * Per model and round (which side goes first alternates): prefill of a --prefill-token prompt
 * (one forward pass, tokens/s), then greedy decoding of --new-tokens tokens after a 4-token
 * prompt; decode tokens/s is timed from the first generated token to the last (the first pays
 * the prompt). Both sides must produce the same tokens (reported as same_tokens / first
 * difference). Prints one JSON line per side and round, then a summary of medians with
 * ours ÷ llama.cpp (≥ 1.0: ours at least as fast).
 */
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { describeEngine, initEngine } from "../llm/engine/backend.ts";
import { exportGguf } from "../llm/export/gguf.ts";
import { gpt2Vocabulary } from "../llm/export/vocab.ts";
import type { GgufVocabulary } from "../llm/export/vocab.ts";
import type { GPTConfig } from "../llm/model/config.ts";
import { generate } from "../llm/model/generate.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import { gpt2Config } from "../llm/model/gpt2_sizes.ts";
import { flag, median, peakRssMb } from "./common.ts";

const modelNames = flag("models", "gpt2-124M").split(",");
const newTokens = Number(flag("new-tokens", "200"));
const prefillTokens = Number(flag("prefill", "128"));
const rounds = Number(flag("rounds", "2"));
const threads = Number(flag("threads", "2"));
const settleSeconds = Number(flag("settle", "2"));
const dir = flag("dir", "/tmp/groundup-llama-cpp-bench");
const PROMPT = [15496, 11, 314, 716]; // "Hello, I am" in GPT-2 BPE

/** The shapes compared; random weights, so only the architecture and sizes matter. */
const MODELS: Record<string, { config: GPTConfig; tiedHead: boolean }> = {
  "gpt2-124M": { config: gpt2Config("124M", 0), tiedHead: false },
  "qwen3-0.6B": {
    config: {
      family: "qwen3",
      vocab_size: 151_936,
      context_length: 1024,
      emb_dim: 1024,
      n_heads: 16,
      n_layers: 28,
      drop_rate: 0,
      qkv_bias: false,
      head_dim: 128,
      n_kv_groups: 8,
      hidden_dim: 3072,
      mlp: "swiglu",
      norm: "rmsnorm",
      norm_eps: 1e-6,
      pos_emb: "rope",
      rope_theta: 1_000_000,
      qk_norm: true,
      attn_out_bias: false,
    },
    tiedHead: true,
  },
  "llama-3.2-1B": {
    config: {
      family: "llama",
      vocab_size: 128_256,
      context_length: 1024,
      emb_dim: 2048,
      n_heads: 32,
      n_layers: 16,
      drop_rate: 0,
      qkv_bias: false,
      n_kv_groups: 8,
      hidden_dim: 8192,
      mlp: "swiglu",
      norm: "rmsnorm",
      norm_eps: 1e-5,
      pos_emb: "rope",
      rope_theta: 500_000,
      rope_scaling: {
        factor: 32,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_context_length: 8192,
      },
      attn_out_bias: false,
    },
    tiedHead: true,
  },
};

/** GPT-2's vocabulary, padded with placeholder tokens to `size` rows: random weights need no more. */
function vocabularyFor(size: number): GgufVocabulary {
  const gpt2 = gpt2Vocabulary();
  if (size <= gpt2.tokens.length) return gpt2;
  const extra = size - gpt2.tokens.length;
  return {
    ...gpt2,
    tokens: [...gpt2.tokens, ...Array.from({ length: extra }, (_, i) => `<extra_${i}>`)],
    tokenTypes: [...gpt2.tokenTypes, ...new Array(extra).fill(gpt2.tokenTypes[0])],
  };
}

const pause = (s: number) => new Promise((resolve) => setTimeout(resolve, s * 1000));

interface SideResult {
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  first_token_s: number;
  tokens: number[];
  load_s?: number;
}

async function runOurs(model: GPTModel, prefill: number[]): Promise<SideResult> {
  // Prefill: one forward pass over the long prompt into a fresh cache.
  const cache = model.newCache({ rows: 1, capacity: prefill.length });
  const input = tf.tensor2d([prefill], undefined, "int32");
  let start = performance.now();
  const logits = model.forward(input, { cache, lastTokenOnly: true });
  await logits.data();
  const prefillSeconds = (performance.now() - start) / 1000;
  tf.dispose([input, logits]);
  cache.dispose();

  let firstTokenSeconds = 0;
  start = performance.now();
  const tokens = await generate(model, PROMPT, {
    maxNewTokens: newTokens,
    onToken: (_token, index) => {
      if (index === 0) {
        firstTokenSeconds = (performance.now() - start) / 1000;
        start = performance.now();
      }
    },
  });
  const decodeSeconds = (performance.now() - start) / 1000;
  return {
    prefill_tokens_per_s: prefill.length / prefillSeconds,
    decode_tokens_per_s: (tokens.length - 1) / decodeSeconds,
    first_token_s: firstTokenSeconds,
    tokens,
  };
}

async function runLlamaCpp(gguf: string, prefill: number[]): Promise<SideResult> {
  const request = join(dir, "request.json");
  await Deno.writeTextFile(
    request,
    JSON.stringify({ model: gguf, threads, contextSize: 1024, prefill, prompt: PROMPT, newTokens }),
  );
  const script = new URL("../tools/llama-cpp/bench.mjs", import.meta.url).pathname;
  const out = await new Deno.Command("node", { args: [script, request], stderr: "inherit" })
    .output();
  if (!out.success) throw new Error(`llama.cpp run failed (exit ${out.code})`);
  const answer = JSON.parse(new TextDecoder().decode(out.stdout));
  return {
    prefill_tokens_per_s: answer.prefill_tokens / answer.prefill_s,
    decode_tokens_per_s: answer.decoded_tokens / answer.decode_s,
    first_token_s: answer.first_token_s,
    tokens: answer.tokens,
    load_s: answer.load_s,
  };
}

const engine = await initEngine({ backend: "cpu", blasThreads: threads, log: () => {} });
await Deno.mkdir(dir, { recursive: true });
const summary: Record<string, unknown>[] = [];
for (const name of modelNames) {
  const spec = MODELS[name];
  if (!spec) throw new Error(`--models: unknown "${name}" (known: ${Object.keys(MODELS)})`);
  const model = new GPTModel(spec.config, { seed: 123, tiedHead: spec.tiedHead });
  const gguf = join(dir, `${name}-f32.gguf`);
  const written = await exportGguf(model, vocabularyFor(spec.config.vocab_size), gguf, {
    dtype: "f32",
  });
  console.log(`# ${name}: ${gguf} (${(written.bytes / 2 ** 20).toFixed(0)} MiB)`);
  const prefill = Array.from({ length: prefillTokens }, (_, i) => (i * 7919 + 13) % 50_000);
  await runOurs(model, prefill.slice(0, 8)); // warm-up: JIT, first touch of the weights
  const results: Record<"ours" | "llama.cpp", SideResult[]> = { ours: [], "llama.cpp": [] };
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? ["ours", "llama.cpp"] as const : ["llama.cpp", "ours"] as const;
    for (const side of order) {
      await pause(settleSeconds);
      const result = side === "ours"
        ? await runOurs(model, prefill)
        : await runLlamaCpp(gguf, prefill);
      results[side].push(result);
      const { tokens, ...numbers } = result;
      console.log(JSON.stringify({
        bench: "llama-cpp",
        model: name,
        round,
        side,
        ...Object.fromEntries(
          Object.entries(numbers).map(([k, v]) => [k, +(v as number).toFixed(3)]),
        ),
        new_tokens: tokens.length,
        loadavg: Deno.loadavg().map((x) => +x.toFixed(2)),
      }));
    }
  }
  const ours = results.ours.at(-1)!.tokens;
  const theirs = results["llama.cpp"].at(-1)!.tokens;
  const firstDifference = ours.findIndex((t, i) => t !== theirs[i]);
  const med = (side: "ours" | "llama.cpp", key: "decode_tokens_per_s" | "prefill_tokens_per_s") =>
    median(results[side].map((r) => r[key]));
  const line = {
    bench: "llama-cpp",
    summary: true,
    model: name,
    engine: describeEngine(engine),
    threads,
    decode_ours: +med("ours", "decode_tokens_per_s").toFixed(2),
    decode_llama_cpp: +med("llama.cpp", "decode_tokens_per_s").toFixed(2),
    decode_ratio: +(med("ours", "decode_tokens_per_s") / med("llama.cpp", "decode_tokens_per_s"))
      .toFixed(2),
    prefill_ours: +med("ours", "prefill_tokens_per_s").toFixed(1),
    prefill_llama_cpp: +med("llama.cpp", "prefill_tokens_per_s").toFixed(1),
    prefill_ratio: +(med("ours", "prefill_tokens_per_s") / med("llama.cpp", "prefill_tokens_per_s"))
      .toFixed(2),
    same_tokens: firstDifference === -1 && ours.length === theirs.length,
    first_difference: firstDifference,
    peak_rss_mb: peakRssMb(),
  };
  console.log(JSON.stringify(line));
  summary.push(line);
  model.dispose();
  await Deno.remove(gguf);
}
