/**
 * Greedy responses on the instruction test split, ours vs the book's PyTorch KV-cache code
 * (ch04/03_kv-cache, in tools/torch_gpt.py), on the same model: a random GPT-2 124M (or 355M,
 * pretrained-weights config) saved once and loaded by both, the first --entries test prompts
 * (Alpaca format) tokenized once, --new-tokens greedy tokens each (no stop at end-of-text on
 * either side, so both do the same work).
 *
 *   deno task bench responses-torch [--size 124M|355M] [--entries 16] [--new-tokens 32]
 *                                   [--batch 8] [--rounds 2] [--threads 0] [--settle 3]
 *                                   [--helper-thread on|off]
 *
 * Modes, each timed on both sides in every round (which side goes first alternates):
 *   one at a time  ours: batchGenerateRows (the engine of the `responses` stage) with one row;
 *                  PyTorch: generate_text_cached per prompt. The new tokens are compared.
 *   batched        ours: --batch rows, left-padded with per-row positions and masks, continuous
 *                  batching; PyTorch: the book's code takes no padding mask, so its rows in a
 *                  group are cut from the left to the group's shortest prompt (see
 *                  tools/torch_responses_bench.py) — less prefill work than ours.
 *   batched, same prompts
 *                  ours fed the prompts cut exactly as the book's code cuts them: equal work
 *                  (PyTorch runs its batched mode again).
 *
 * Prints one JSON line per round, mode and side, then a summary with tokens/s (median over the
 * rounds) and the ratio of our tokens/s to PyTorch's (≥ 1.0: ours at least as fast).
 */
import { join } from "node:path";
import { describeEngine, initEngine } from "../llm/engine/backend.ts";
import {
  formatInstructionPrompt,
  readInstructionData,
  splitInstructionData,
} from "../llm/data/instructions.ts";
import { batchGenerateRows } from "../llm/infer/batch_generate.ts";
import { gpt2Config } from "../llm/model/gpt2_sizes.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import { saveModel, WEIGHTS_FILE } from "../llm/model/weights_io.ts";
import { Gpt2Tokenizer } from "../llm/tokenizer/gpt2.ts";
import { sharedFixture } from "../tests/fixtures.ts";
import { flag, median, peakRssMb, startTorchWorker } from "./common.ts";

const size = flag("size", "124M");
const entriesWanted = Number(flag("entries", "16"));
const newTokens = Number(flag("new-tokens", "32"));
const batchSize = Number(flag("batch", "8"));
const rounds = Number(flag("rounds", "2"));
// PyTorch's intra-op threads; 0 leaves its default (1 on Debian's torch 1.13, whose matrix
// products still run on OpenBLAS's 2 threads). 2 slows its one-row decoding ~3× (measured).
const threads = flag("threads", "0");
// Seconds of rest before each timed side (an OpenBLAS pool that just finished still spins).
const settleSeconds = Number(flag("settle", "3"));
// off: our few-row products on BLAS's own threads, without the helper thread (the before).
const helperThread = flag("helper-thread", "on");
if (size !== "124M" && size !== "355M") throw new Error(`--size ${size}: expected 124M or 355M`);

const config = gpt2Config(size);
if (helperThread !== "on" && helperThread !== "off") {
  throw new Error(`--helper-thread ${helperThread}: expected on or off`);
}
const engine = await initEngine({
  backend: "cpu",
  log: () => {},
  helperThread: helperThread === "on",
});
const model = new GPTModel(config, { seed: 123 });
const tokenizer = new Gpt2Tokenizer();
const data = await readInstructionData(sharedFixture("workshop", "instruction-data.json"));
const entries = splitInstructionData(data).test.slice(0, entriesWanted);
const prompts = entries.map((e) => tokenizer.encode(formatInstructionPrompt(e)));
// Shortest first, as the responses stage orders them (a batch then holds similar lengths).
const order = prompts.map((_, i) => i).sort((a, b) => prompts[a].length - prompts[b].length);

/**
 * The prompts as the book's batched code takes them (tools/torch_responses_bench.py): longest
 * first, in groups of `rows`, each prompt cut from the left to its group's shortest.
 */
function cutAsTheBook(rows: number): number[][] {
  const longestFirst = prompts.map((_, i) => i).sort((a, b) =>
    prompts[b].length - prompts[a].length || a - b
  );
  const cut: number[][] = new Array(prompts.length);
  for (let first = 0; first < longestFirst.length; first += rows) {
    const group = longestFirst.slice(first, first + rows);
    const shortest = Math.min(...group.map((i) => prompts[i].length));
    for (const i of group) cut[i] = prompts[i].slice(prompts[i].length - shortest);
  }
  return cut;
}

/**
 * Our greedy tokens for every prompt (in prompt order) and the seconds it took; `cut`: the
 * prompts cut as the book's batched code cuts them (the same work as its side).
 */
async function ours(rows: number, cut = false): Promise<{ seconds: number; tokens: number[][] }> {
  const fed = cut ? cutAsTheBook(rows) : prompts;
  const tokens: number[][] = new Array(prompts.length);
  const start = performance.now();
  for await (
    const done of batchGenerateRows(model, order.map((i) => fed[i]), {
      maxNewTokens: newTokens,
      maxRows: rows,
    })
  ) tokens[order[done.row]] = done.tokens;
  return { seconds: (performance.now() - start) / 1e3, tokens };
}

const dir = await Deno.makeTempDir({ prefix: "bench-responses-torch-" });
try {
  await saveModel(dir, model);
  const jobFile = join(dir, "prompts.json");
  await Deno.writeTextFile(jobFile, JSON.stringify({ config, prompts, new_tokens: newTokens }));
  const worker = startTorchWorker("torch_responses_bench.py", [
    join(dir, WEIGHTS_FILE),
    jobFile,
    "--threads",
    threads,
  ]);
  await worker.nextLine(); // ready
  await ours(1), await ours(2); // warm-up: JIT and first-touch allocations

  // The book's batched code cuts each group's prompts to the shortest: "batch N" compares each
  // side as it works (ours decodes the whole prompts: more prefill), "batch N, same prompts"
  // feeds ours the prompts cut the same way (equal work on both sides).
  const modes = [
    { name: "one at a time", rows: 1, cut: false },
    { name: `batch ${batchSize}`, rows: batchSize, cut: false },
    { name: `batch ${batchSize}, same prompts`, rows: batchSize, cut: true },
  ];
  const seconds: Record<string, { ours: number[]; torch: number[] }> = {};
  for (const mode of modes) seconds[mode.name] = { ours: [], torch: [] };
  // One-at-a-time greedy tokens of each side (the first run of each), compared at the end.
  let torchTokens: number[][] | undefined, ourTokens: number[][] | undefined;
  const settle = () => new Promise((resolve) => setTimeout(resolve, settleSeconds * 1000));
  const total = prompts.length * newTokens;
  for (let round = 0; round < rounds; round++) {
    for (const mode of modes) {
      const sides = round % 2 === 0 ? ["torch", "ours"] : ["ours", "torch"];
      for (const side of sides) {
        await settle();
        if (side === "torch") {
          await worker.send(mode.rows === 1 ? "single" : `batched ${mode.rows}`);
          const result = await worker.nextLine();
          seconds[mode.name].torch.push(result.seconds as number);
          if (result.tokens) torchTokens ??= result.tokens as number[][];
          delete result.tokens;
          console.log(JSON.stringify({ bench: "responses_vs_torch", round, ...result }));
        } else {
          const result = await ours(mode.rows, mode.cut);
          if (mode.rows === 1) ourTokens ??= result.tokens;
          seconds[mode.name].ours.push(result.seconds);
          console.log(JSON.stringify({
            bench: "responses_vs_torch",
            round,
            impl: "groundup",
            mode: mode.name,
            engine: describeEngine(engine),
            seconds: +result.seconds.toFixed(3),
            new_tokens: total,
            tokens_per_s: +(total / result.seconds).toFixed(2),
            peak_rss_mb: peakRssMb(),
          }));
        }
      }
    }
  }
  await worker.close();
  const sameTokens = (torchTokens ?? []).filter((t, i) =>
    JSON.stringify(t) === JSON.stringify(ourTokens?.[i])
  ).length;
  const lengths = prompts.map((p) => p.length);
  const summary: Record<string, unknown> = {
    bench: "responses_vs_torch",
    summary: true,
    config: `gpt2-${size}`,
    entries: prompts.length,
    prompt_tokens: { min: Math.min(...lengths), max: Math.max(...lengths) },
    new_tokens_each: newTokens,
    torch_threads: Number(threads),
    helper_thread: helperThread,
    same_tokens_one_at_a_time: `${sameTokens}/${torchTokens?.length ?? 0}`,
  };
  for (const mode of modes) {
    const s = seconds[mode.name];
    summary[mode.name] = {
      ours_tokens_per_s: +(total / median(s.ours)).toFixed(2),
      torch_tokens_per_s: +(total / median(s.torch)).toFixed(2),
      ratio_tokens_per_s_ours_over_torch: +(median(s.torch) / median(s.ours)).toFixed(3),
    };
  }
  console.log(JSON.stringify(summary));
} finally {
  model.dispose();
  await Deno.remove(dir, { recursive: true });
}
