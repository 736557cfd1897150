/**
 * MMLU evaluation speed for GPT-2 124M shapes (random weights, context 1024, qkv bias): the
 * questions of one fixture subject (0-shot by default) scored the way the stage does it, one
 * forward pass per question for the four single-token choices.
 *
 *   deno run -A bench/mmlu.ts [--subject philosophy] [--limit 40] [--num-fewshot 0]
 *                             [--batch-size 8] [--backend cpu]
 *
 * Prints one JSON line: questions/s, the prompt tokens, peak RSS. The same forward passes in
 * the book's PyTorch model, side by side: bench/mmlu_vs_torch.ts.
 */
import { gpt2Config } from "../llm/model/gpt2_sizes.ts";
import { type BackendChoice, describeEngine, initEngine } from "../llm/engine/backend.ts";
import { readMmluCsvFile } from "../llm/eval/mmlu/data.ts";
import { evaluateMmlu } from "../llm/eval/mmlu/evaluate.ts";
import type { GPTConfig } from "../llm/model/config.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import { createTokenizer } from "../llm/tokenizer/mod.ts";
import { flag, peakRssMb } from "./common.ts";

const subject = flag("subject", "philosophy");
const limit = Number(flag("limit", "40"));
const numFewshot = Number(flag("num-fewshot", "0"));
const batchSize = Number(flag("batch-size", "8"));
const backend = flag("backend", "cpu") as BackendChoice;
const mmluDir = new URL("../../shared/fixtures/mmlu", import.meta.url).pathname;

// GPT-2 124M as the pretrained weights load (dropout is off at inference anyway).
const config: GPTConfig = gpt2Config("124M", 0.1);
const engine = await initEngine({ backend, log: () => {} });
const model = new GPTModel(config, { seed: 123 });
const tokenizer = createTokenizer({ kind: "gpt2" });
const load = (s: string, split: "dev" | "validation" | "test") =>
  readMmluCsvFile(Deno.env.get("GROUNDUP_MMLU_DIR") ?? mmluDir, s, split);

// Warm-up: JIT and first-touch allocations.
await evaluateMmlu(model, tokenizer, {
  tasks: [`mmlu_${subject}`],
  numFewshot,
  limit: 2,
  batchSize,
  load,
});
const evaluation = await evaluateMmlu(model, tokenizer, {
  tasks: [`mmlu_${subject}`],
  numFewshot,
  limit,
  batchSize,
  load,
});
const tokens = evaluation.samples.map((s) => s.context_tokens);
console.log(JSON.stringify({
  bench: "mmlu",
  impl: "groundup",
  engine: describeEngine(engine),
  config: "gpt2-124M",
  subject,
  num_fewshot: numFewshot,
  batch_size: batchSize,
  questions: evaluation.samples.length,
  mean_prompt_tokens: +(tokens.reduce((a, b) => a + b, 0) / tokens.length).toFixed(1),
  max_prompt_tokens: Math.max(...tokens),
  seconds: +evaluation.seconds.toFixed(3),
  questions_per_second: +(evaluation.samples.length / evaluation.seconds).toFixed(3),
  single_token_continuations: evaluation.singleTokenContinuations,
  peak_rss_mb: peakRssMb(),
}));
model.dispose();
