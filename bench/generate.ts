/**
 * Generation speed for GPT-2 124M shapes (context 1024, qkv bias, random weights, eval mode):
 * --new-tokens greedy tokens after "Hello, I am", without the key/value cache (the whole window
 * recomputed per token) and with it; the two outputs must be identical.
 *
 *   deno run -A bench/generate.ts [--new-tokens 200] [--backend cpu] [--torch on|off]
 *
 * Prints one JSON line per mode (tokens/s, peak RSS so far) and a summary line with the cache
 * speed-up. With --torch on (default, where Debian's PyTorch is installed) tools/torch_bench.py
 * times the book's generate_text_simple and its cached variant side by side, and the summary
 * compares our cached speed with PyTorch's no-cache speed (issue 4's target); speed_ratio_* =
 * our tokens/s ÷ PyTorch's (above 1: we are faster).
 */
import { gpt2Config } from "../llm/model/gpt2_sizes.ts";
import * as tf from "@tensorflow/tfjs";
import { type BackendChoice, describeEngine, initEngine } from "../llm/engine/backend.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import type { GPTConfig } from "../llm/model/config.ts";
import { generate } from "../llm/model/generate.ts";
import { flag, peakRssMb, runTorchBench } from "./common.ts";

const newTokens = Number(flag("new-tokens", "200"));
const backend = flag("backend", "cpu") as BackendChoice;
const withTorch = flag("torch", "on") === "on";

// GPT-2 124M as the pretrained weights load (dropout is off at inference anyway).
const config: GPTConfig = gpt2Config("124M", 0.1);
const PROMPT_IDS = [15496, 11, 314, 716]; // "Hello, I am" in GPT-2 BPE, as tools/torch_bench.py

const engine = await initEngine({ backend, log: () => {} });
const model = new GPTModel(config, { seed: 123 });

// Warm-up: JIT and first-touch allocations of both paths.
await generate(model, PROMPT_IDS, { maxNewTokens: 2, useCache: false });
await generate(model, PROMPT_IDS, { maxNewTokens: 2, useCache: true });

const outputs = new Map<boolean, number[]>();
const speeds = new Map<boolean, number>();
for (const kvCache of [false, true]) {
  const start = performance.now();
  const tokens = await generate(model, PROMPT_IDS, { maxNewTokens: newTokens, useCache: kvCache });
  const seconds = (performance.now() - start) / 1e3;
  outputs.set(kvCache, tokens);
  speeds.set(kvCache, newTokens / seconds);
  const line: Record<string, unknown> = {
    bench: "generate",
    impl: "groundup",
    engine: describeEngine(engine),
    config: "gpt2-124M",
    context_length: config.context_length,
    kv_cache: kvCache,
    prompt_tokens: PROMPT_IDS.length,
    new_tokens: tokens.length,
    seconds: +seconds.toFixed(4),
    tokens_per_s: +(newTokens / seconds).toFixed(2),
  };
  if (kvCache) {
    line.identical_to_no_cache = JSON.stringify(tokens) === JSON.stringify(outputs.get(false));
  }
  line.loadavg = Deno.loadavg().map((x) => +x.toFixed(2));
  line.peak_rss_mb = peakRssMb();
  line.tensors = tf.memory().numTensors;
  console.log(JSON.stringify(line));
}

const summary: Record<string, unknown> = {
  bench: "generate_summary",
  cache_speedup: +(speeds.get(true)! / speeds.get(false)!).toFixed(2),
  cache_speedup_target: "≥ 5",
  identical: JSON.stringify(outputs.get(true)) === JSON.stringify(outputs.get(false)),
};
if (withTorch) {
  const torch = await runTorchBench(["--bench", "generate", "--new-tokens", String(newTokens)]);
  for (const line of torch) console.log(JSON.stringify(line));
  const torchNoCache = torch.find((r) => r.bench === "generate" && r.kv_cache === false);
  const torchCache = torch.find((r) => r.bench === "generate" && r.kv_cache === true);
  if (torchNoCache && torchCache) {
    summary.ours_cached_vs_pytorch_no_cache = +(speeds.get(true)! /
      (torchNoCache.tokens_per_s as number)).toFixed(2);
    summary.ours_cached_vs_pytorch_no_cache_target = "≥ 1";
    summary.speed_ratio_no_cache = +(speeds.get(false)! / (torchNoCache.tokens_per_s as number))
      .toFixed(3);
    summary.speed_ratio_cached = +(speeds.get(true)! / (torchCache.tokens_per_s as number)).toFixed(
      3,
    );
  }
}
console.log(JSON.stringify(summary));
if (!summary.identical) {
  console.error("generate: the KV-cache output differs from the no-cache output");
  Deno.exit(1);
}
