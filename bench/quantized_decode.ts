/**
 * Decode and prefill speed of one model held three ways in one process: float32, bf16 and int8
 * (Q8_0) packed weights (llm/model/precision.ts `packModel`), rounds interleaved so that the
 * machine's load falls on all three alike. Random GPT-2-shaped (or Qwen3-shaped) weights.
 *
 *   deno run -A bench/quantized_decode.ts [--model gpt2-124M|qwen3-0.6B] [--new-tokens 64]
 *                                          [--prefill 64] [--rounds 3] [--threads 2]
 *
 * One JSON line per precision and round (with the load average), then the medians and each
 * precision's ratio to float32, its weight bytes and whether its greedy tokens equal float32's.
 */
import { initEngine } from "../llm/engine/backend.ts";
import { generate } from "../llm/model/generate.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import { packModel, type Quantization, weightBytes } from "../llm/model/precision.ts";
import { flag, median, peakRssMb, timePrefill } from "./common.ts";
import { benchShape } from "./shapes.ts";

const modelName = flag("model", "gpt2-124M");
const newTokens = Number(flag("new-tokens", "64"));
const prefillTokens = Number(flag("prefill", "64"));
const rounds = Number(flag("rounds", "3"));
const threads = Number(flag("threads", "2"));

const { config, tiedHead } = benchShape(modelName, "--model");

await initEngine({ backend: "cpu", blasThreads: threads, log: () => {} });
const PRECISIONS: Quantization[] = ["none", "bf16", "int8"];
const models = new Map<Quantization, GPTModel>();
for (const quantize of PRECISIONS) {
  const model = new GPTModel(config, { seed: 123, tiedHead });
  packModel(model, quantize);
  models.set(quantize, model);
}
const PROMPT = [15496, 11, 314, 716];
const prefill = Array.from({ length: prefillTokens }, (_, i) => (i * 7919 + 13) % 50_000);

async function run(model: GPTModel) {
  const prefillSeconds = await timePrefill(model, prefill);
  let start = performance.now();
  const tokens = await generate(model, PROMPT, {
    maxNewTokens: newTokens,
    onToken: (_t, index) => {
      if (index === 0) start = performance.now();
    },
  });
  return {
    prefill: prefill.length / prefillSeconds,
    decode: (tokens.length - 1) / ((performance.now() - start) / 1000),
    tokens,
  };
}

const round2 = (x: number) => +x.toFixed(2);
const results = new Map(PRECISIONS.map((q) => [q, [] as Awaited<ReturnType<typeof run>>[]]));
for (const quantize of PRECISIONS) await run(models.get(quantize)!); // warm-up
for (let round = 0; round < rounds; round++) {
  for (const quantize of PRECISIONS) {
    const result = await run(models.get(quantize)!);
    results.get(quantize)!.push(result);
    console.log(JSON.stringify({
      bench: "quantized-decode",
      model: modelName,
      quantize,
      round,
      decode_tokens_per_s: round2(result.decode),
      prefill_tokens_per_s: round2(result.prefill),
      loadavg: Deno.loadavg().map(round2),
    }));
  }
}
const fp32 = results.get("none")!;
for (const quantize of PRECISIONS) {
  const own = results.get(quantize)!;
  const decode = median(own.map((r) => r.decode));
  const prefillRate = median(own.map((r) => r.prefill));
  console.log(JSON.stringify({
    bench: "quantized-decode",
    summary: true,
    model: modelName,
    quantize,
    threads,
    weight_mb: round2(weightBytes(models.get(quantize)!) / 2 ** 20),
    decode_tokens_per_s: round2(decode),
    decode_vs_fp32: round2(decode / median(fp32.map((r) => r.decode))),
    prefill_tokens_per_s: round2(prefillRate),
    prefill_vs_fp32: round2(prefillRate / median(fp32.map((r) => r.prefill))),
    greedy_equal_to_fp32: own.at(-1)!.tokens.join() === fp32.at(-1)!.tokens.join(),
    peak_rss_mb: peakRssMb(),
  }));
}
for (const model of models.values()) model.dispose();
