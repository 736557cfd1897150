/**
 * Decoding and prefill speed on the same weights: ours vs llama.cpp, and for the open models
 * (Qwen3, Llama 3) vs the book's PyTorch KV-cache code too. A random model (seed 123) is
 * written once as GGUF F32 (llm/export/gguf.ts) for llama.cpp and, for Qwen3/Llama shapes, once
 * as a Hugging Face folder (llm/export/hf.ts: config.json + model.safetensors) for PyTorch:
 *
 *   ours        this process: the cpu engine (BLAS + fused kernels, the in-place KV cache)
 *   llama.cpp   node-llama-cpp 3.21.1 (tools/llama-cpp/bench.mjs, its prebuilt CPU binary, F32
 *               key/value cache), a fresh process per round
 *   pytorch     rasbt/LLMs-from-scratch kv_cache/qwen3.py / kv_cache/llama3.py loaded by the
 *               book's load_weights_into_* (tools/torch_decode_open.py, Debian's torch 1.13,
 *               torch.set_num_threads(--threads)), a fresh process per round
 *
 *   deno task bench llama-cpp [--models gpt2-124M,qwen3-0.6B,llama-3.2-1B] [--new-tokens 200]
 *                             [--prefill 128] [--rounds 2] [--threads 2] [--settle 2] [--dir D]
 *                             [--sides ours,llama.cpp,pytorch] [--embedding-std 0.02]
 *                             [--quantize none|int8|bf16]
 *
 * --quantize int8: llama.cpp reads the GGUF exported as Q8_0 (llm/export/gguf.ts's rule) and
 * ours holds the same model packed (llm/model/precision.ts `packModel`, the same Q8_0 bytes);
 * bf16: ours packs bf16, llama.cpp reads F16 (the export writes no BF16: the same 2 bytes a
 * weight, rounded differently, so tokens may differ). PyTorch always runs fp32 weights.
 *
 * qwen3-tiny and llama-tiny (2 layers, the real vocabularies and RoPE settings) check the whole
 * flow in seconds. Per model and round (the order of the sides rotates): prefill of a
 * --prefill-token prompt (one forward pass, tokens/s), then greedy decoding of --new-tokens
 * tokens after a 4-token prompt; decode tokens/s is timed from the first generated token to the
 * last (the first pays the prompt). Every side must produce our tokens (same_tokens / first
 * difference per side). Prints one JSON line per side and round, then a summary of medians with
 * ours ÷ theirs (≥ 1.0: ours at least as fast). The PyTorch side is skipped for GPT-2 (its
 * comparison with the book's GPT-2 is `deno task bench generate`).
 */
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { describeEngine, initEngine } from "../llm/engine/backend.ts";
import { exportGguf } from "../llm/export/gguf.ts";
import { exportHf } from "../llm/export/hf.ts";
import { gpt2Vocabulary } from "../llm/export/vocab.ts";
import type { GgufVocabulary } from "../llm/export/vocab.ts";
import { generate } from "../llm/model/generate.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import { Embedding } from "../llm/model/layers.ts";
import { packModel, parseQuantization, weightBytes } from "../llm/model/precision.ts";
import { flag, median, peakRssMb, settleWriteback, timePrefill } from "./common.ts";
import { benchShape } from "./shapes.ts";

const modelNames = flag("models", "gpt2-124M").split(",");
const newTokens = Number(flag("new-tokens", "200"));
const prefillTokens = Number(flag("prefill", "128"));
const rounds = Number(flag("rounds", "2"));
const threads = Number(flag("threads", "2"));
const settleSeconds = Number(flag("settle", "2"));
const dir = flag("dir", "/tmp/groundup-llama-cpp-bench");
const embeddingStd = Number(flag("embedding-std", "0.02"));
const quantize = parseQuantization(flag("quantize", "none"), "--quantize");
const ggufDtype = quantize === "int8" ? "q8_0" : quantize === "bf16" ? "f16" : "f32";
const SIDES = ["ours", "llama.cpp", "pytorch"] as const;
type Side = typeof SIDES[number];
const sides = flag("sides", SIDES.join(",")).split(",") as Side[];
for (const side of sides) {
  if (!SIDES.includes(side)) throw new Error(`--sides: unknown "${side}" (known: ${SIDES})`);
}
if (!sides.includes("ours")) throw new Error(`--sides: "ours" is the reference; keep it`);
const PROMPT = [15496, 11, 314, 716]; // "Hello, I am" in GPT-2 BPE

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

/**
 * PyTorch's default init gives the token embedding N(0, 1) rows, far larger than what the
 * blocks add: with a tied head every step then predicts its own input token again, and "same
 * tokens" would compare one repeated id. Scaled to HF's initializer_range (std 0.02), the blocks
 * steer the output and greedy decoding walks through many tokens. GPT-2 keeps its init (its
 * head is untied here, and its earlier numbers were taken so).
 */
function scaleEmbedding(model: GPTModel, family: string): void {
  if (family === "gpt2" || !(model.tok_emb instanceof Embedding)) return;
  const weight = model.tok_emb.weight;
  const scaled = tf.tidy(() => tf.mul(weight, embeddingStd));
  weight.assign(scaled);
  scaled.dispose();
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
  const prefillSeconds = await timePrefill(model, prefill);

  let firstTokenSeconds = 0;
  let start = performance.now();
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

/** A side's answer (tools/llama-cpp/bench.mjs and tools/torch_decode_open.py answer alike). */
interface SideAnswer {
  load_s: number;
  prefill_s: number;
  prefill_tokens: number;
  first_token_s: number;
  decode_s: number;
  decoded_tokens: number;
  tokens: number[];
}

/** Runs one side in its own process on a request file; its JSON answer → a SideResult. */
async function runProcess(
  what: string,
  command: string,
  args: string[],
  request: Record<string, unknown>,
): Promise<SideResult> {
  const file = join(dir, "request.json");
  await Deno.writeTextFile(file, JSON.stringify(request));
  const out = await new Deno.Command(command, { args: [...args, file], stderr: "inherit" })
    .output();
  if (!out.success) throw new Error(`${what} run failed (exit ${out.code})`);
  const answer: SideAnswer = JSON.parse(new TextDecoder().decode(out.stdout));
  return {
    prefill_tokens_per_s: answer.prefill_tokens / answer.prefill_s,
    decode_tokens_per_s: answer.decoded_tokens / answer.decode_s,
    first_token_s: answer.first_token_s,
    tokens: answer.tokens,
    load_s: answer.load_s,
  };
}

function runLlamaCpp(gguf: string, prefill: number[]): Promise<SideResult> {
  const script = new URL("../tools/llama-cpp/bench.mjs", import.meta.url).pathname;
  return runProcess("llama.cpp", "node", [script], {
    model: gguf,
    threads,
    contextSize: 1024,
    prefill,
    prompt: PROMPT,
    newTokens,
  });
}

/** The book's KV-cache Qwen3 / Llama 3 under Debian's PyTorch (not the pyenv python3). */
function runTorch(hfDir: string, prefill: number[]): Promise<SideResult> {
  const script = new URL("../tools/torch_decode_open.py", import.meta.url).pathname;
  return runProcess("PyTorch", "/usr/bin/python3", [script, hfDir], {
    threads,
    prefill,
    prompt: PROMPT,
    newTokens,
  });
}

const engine = await initEngine({ backend: "cpu", blasThreads: threads, log: () => {} });
await Deno.mkdir(dir, { recursive: true });
const summary: Record<string, unknown>[] = [];
const round2 = (x: number, digits: number) => +x.toFixed(digits);
for (const name of modelNames) {
  const spec = benchShape(name, "--models");
  const family = spec.config.family ?? "gpt2";
  const modelSides = sides.filter((side) =>
    side !== "pytorch" || family === "qwen3" || family === "llama"
  );
  const model = new GPTModel(spec.config, { seed: 123, tiedHead: spec.tiedHead });
  scaleEmbedding(model, family);
  const gguf = join(dir, `${name}-${ggufDtype}.gguf`);
  const hfDir = join(dir, `${name}-hf`);
  if (modelSides.includes("llama.cpp")) {
    const written = await exportGguf(model, vocabularyFor(spec.config.vocab_size), gguf, {
      dtype: ggufDtype,
    });
    console.log(`# ${name}: ${gguf} (${(written.bytes / 2 ** 20).toFixed(0)} MiB)`);
  }
  if (modelSides.includes("pytorch")) {
    await Deno.remove(hfDir, { recursive: true }).catch(() => {});
    await exportHf(model, hfDir);
    console.log(`# ${name}: ${hfDir} (HF layout, F32)`);
  }
  // The files just written must be on disk before anything is timed (writeback competes).
  console.log(`# ${name}: page cache written back in ${(await settleWriteback()).toFixed(1)} s`);
  // Ours holds the same numbers the GGUF does (PyTorch's folder above stays fp32).
  packModel(model, quantize);
  const prefill = Array.from({ length: prefillTokens }, (_, i) => (i * 7919 + 13) % 50_000);
  await runOurs(model, prefill.slice(0, 8)); // warm-up: JIT, first touch of the weights
  const results = Object.fromEntries(modelSides.map((side) => [side, [] as SideResult[]]));
  for (let round = 0; round < rounds; round++) {
    // Rotate the order so that no side always runs first (or right after another's load).
    const order = modelSides.map((_, i) => modelSides[(i + round) % modelSides.length]);
    for (const side of order) {
      await pause(settleSeconds);
      const result = side === "ours"
        ? await runOurs(model, prefill)
        : side === "llama.cpp"
        ? await runLlamaCpp(gguf, prefill)
        : await runTorch(hfDir, prefill);
      results[side].push(result);
      const { tokens, ...numbers } = result;
      console.log(JSON.stringify({
        bench: "llama-cpp",
        model: name,
        round,
        side,
        ...Object.fromEntries(
          Object.entries(numbers).map(([k, v]) => [k, round2(v as number, 3)]),
        ),
        new_tokens: tokens.length,
        loadavg: Deno.loadavg().map((x) => round2(x, 2)),
      }));
    }
  }
  const med = (side: Side, key: "decode_tokens_per_s" | "prefill_tokens_per_s") =>
    median(results[side].map((r) => r[key]));
  const ours = results.ours.at(-1)!.tokens;
  const line: Record<string, unknown> = {
    bench: "llama-cpp",
    summary: true,
    model: name,
    engine: describeEngine(engine),
    threads,
    quantize,
    weight_mb: round2(weightBytes(model) / 2 ** 20, 1),
    new_tokens: newTokens,
    prefill_tokens: prefillTokens,
    decode_ours: round2(med("ours", "decode_tokens_per_s"), 2),
    prefill_ours: round2(med("ours", "prefill_tokens_per_s"), 1),
    // A random model may repeat one token: how many distinct ones says what "same" is worth.
    distinct_tokens: new Set(ours).size,
  };
  for (const side of modelSides.filter((s) => s !== "ours")) {
    const key = side === "llama.cpp" ? "llama_cpp" : side;
    const theirs = results[side].at(-1)!.tokens;
    const firstDifference = ours.findIndex((t, i) => t !== theirs[i]);
    line[`decode_${key}`] = round2(med(side, "decode_tokens_per_s"), 2);
    line[`decode_ratio_${key}`] = round2(
      med("ours", "decode_tokens_per_s") / med(side, "decode_tokens_per_s"),
      2,
    );
    line[`prefill_${key}`] = round2(med(side, "prefill_tokens_per_s"), 1);
    line[`prefill_ratio_${key}`] = round2(
      med("ours", "prefill_tokens_per_s") / med(side, "prefill_tokens_per_s"),
      2,
    );
    line[`same_tokens_${key}`] = firstDifference === -1 && ours.length === theirs.length;
    line[`first_difference_${key}`] = firstDifference;
  }
  line.peak_rss_mb = peakRssMb();
  console.log(JSON.stringify(line));
  summary.push(line);
  model.dispose();
  await Deno.remove(gguf).catch(() => {});
  await Deno.remove(hfDir, { recursive: true }).catch(() => {});
}
