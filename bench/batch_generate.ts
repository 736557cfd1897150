/**
 * Responses on the instruction test split, one at a time vs batched: greedy decoding with the
 * key/value cache through llm/infer/responses.ts (batch size 1 vs --batch), GPT-2 124M shapes
 * (context 1024, qkv bias, random weights, eval mode) on the cpu engine.
 *
 *   deno task bench batch [--entries 16] [--new-tokens 32] [--batch 8]
 *   (= deno run -A bench/batch_generate.ts ...)
 *
 * Entries: the first --entries of the book's test split (entries 935..1044 of
 * ../shared/fixtures/workshop/instruction-data.json). A random model never says end-of-text, so
 * every entry gets exactly --new-tokens tokens: both modes do the same work, and their responses
 * must be identical (checked). Prints one JSON line per mode (wall and CPU seconds, tokens/s, load
 * average) and a summary with the speed-up.
 */
import { gpt2Config } from "../llm/model/gpt2_sizes.ts";
import { describeEngine, initEngine } from "../llm/engine/backend.ts";
import {
  formatInstructionPrompt,
  readInstructionData,
  splitInstructionData,
} from "../llm/data/instructions.ts";
import { generateResponses } from "../llm/infer/responses.ts";
import type { GPTConfig } from "../llm/model/config.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import { Gpt2Tokenizer } from "../llm/tokenizer/gpt2.ts";
import { sharedFixture } from "../tests/fixtures.ts";
import { flag, peakRssMb } from "./common.ts";

const entriesWanted = Number(flag("entries", "16"));
const newTokens = Number(flag("new-tokens", "32"));
const batchSize = Number(flag("batch", "8"));

// GPT-2 124M as the pretrained weights load (dropout is off at inference anyway).
const config: GPTConfig = gpt2Config("124M", 0.1);

const loadAverage = () => Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");

/**
 * CPU seconds this process has used (user + system, every thread: BLAS's too), from
 * /proc/self/stat in clock ticks of 1/100 s (Linux's USER_HZ). On a shared machine this is the
 * fairer measure of work; wall time also counts the time other processes had the cores.
 */
function cpuSeconds(): number {
  const fields = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime: fields 14 and 15
}

const engine = await initEngine({ backend: "cpu", log: () => {} });
const model = new GPTModel(config, { seed: 123 });
const tokenizer = new Gpt2Tokenizer();
const data = await readInstructionData(sharedFixture("workshop", "instruction-data.json"));
const entries = splitInstructionData(data).test.slice(0, entriesWanted);
const promptTokens = entries.map((e) => tokenizer.encode(formatInstructionPrompt(e)).length);

// Warm-up: JIT and first-touch allocations of both paths.
for (const size of [1, 2]) {
  for await (
    const _ of generateResponses(model, tokenizer, entries.slice(0, 2), {
      maxNewTokens: 2,
      batchSize: size,
    })
  ) { /* discard */ }
}

const responses = new Map<number, string[]>();
const speeds = new Map<number, number>();
for (const size of [1, batchSize]) {
  const loadBefore = loadAverage();
  const cpuBefore = cpuSeconds();
  const start = performance.now();
  const got: string[] = new Array(entries.length);
  let generated = 0;
  for await (
    const r of generateResponses(model, tokenizer, entries, {
      maxNewTokens: newTokens,
      batchSize: size,
    })
  ) {
    got[r.index] = r.response;
    generated += r.newTokens;
  }
  const seconds = (performance.now() - start) / 1e3;
  responses.set(size, got);
  speeds.set(size, generated / seconds);
  console.log(JSON.stringify({
    bench: "batch_generate",
    engine: describeEngine(engine),
    config: "gpt2-124M",
    batch_size: size,
    entries: entries.length,
    prompt_tokens: { min: Math.min(...promptTokens), max: Math.max(...promptTokens) },
    new_tokens: generated,
    seconds: +seconds.toFixed(2),
    cpu_seconds: +(cpuSeconds() - cpuBefore).toFixed(2),
    tokens_per_s: +(generated / seconds).toFixed(2),
    peak_rss_mb: peakRssMb(),
    load_before: loadBefore,
    load_after: loadAverage(),
  }));
}
const identical = JSON.stringify(responses.get(1)) === JSON.stringify(responses.get(batchSize));
console.log(JSON.stringify({
  bench: "batch_generate",
  summary: true,
  speedup: +(speeds.get(batchSize)! / speeds.get(1)!).toFixed(2),
  identical_responses: identical,
}));
if (!identical) {
  console.error("batched responses differ from one-at-a-time responses");
  Deno.exit(1);
}
model.dispose();
