/**
 * MMLU scoring speed, ours vs the book's PyTorch model, on the same model and the same forward
 * passes: a random GPT-2 124M (or 355M) saved once and loaded by both, the questions of one
 * fixture subject turned into the rows our `evaluate` stage scores (one row per question, the
 * four single-token continuations " A"…" D" read at its last position), batched the same way
 * (longest first, --batch-size rows, padded on the right). PyTorch runs in a child process
 * (tools/torch_mmlu_bench.py) that stays up between rounds; the rounds alternate PyTorch and
 * ours (and which goes first) so that both see the same machine load. Both sides' log-likelihoods are compared.
 *
 *   deno run -A bench/mmlu_vs_torch.ts [--size 124M|355M] [--subject philosophy] [--limit 16]
 *                                      [--batch-size 8] [--rounds 4] [--threads 2] [--settle 3]
 *
 * Prints one JSON line per round and implementation, then a summary with the ratio of our
 * seconds to PyTorch's (median over rounds; ≤ 1.0: ours at least as fast).
 */
import { gpt2Config } from "../llm/model/gpt2_sizes.ts";
import { join } from "node:path";
import { describeEngine, initEngine } from "../llm/engine/backend.ts";
import { readMmluCsvFile } from "../llm/eval/mmlu/data.ts";
import { MMLU_CONTINUATIONS, mmluContext } from "../llm/eval/mmlu/prompt.ts";
import { scoreQuestions } from "../llm/eval/mmlu/evaluate.ts";
import { encodePair, sharedContextRow } from "../llm/eval/loglikelihood.ts";
import type { GPTConfig } from "../llm/model/config.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import { saveModel, WEIGHTS_FILE } from "../llm/model/weights_io.ts";
import { createTokenizer } from "../llm/tokenizer/mod.ts";
import { flag, median, peakRssMb, startTorchWorker } from "./common.ts";

const size = flag("size", "124M");
const subject = flag("subject", "philosophy");
const limit = Number(flag("limit", "16"));
const batchSize = Number(flag("batch-size", "8"));
const rounds = Number(flag("rounds", "4"));
// Seconds of rest before each timed side: an OpenBLAS pool that has just finished keeps its
// threads spinning for a while, and the other process's first products would pay for it.
const settleSeconds = Number(flag("settle", "3"));
const threads = flag("threads", "2");
const mmluDir = Deno.env.get("GROUNDUP_MMLU_DIR") ??
  new URL("../../shared/fixtures/mmlu", import.meta.url).pathname;
const LOGIT_BUDGET = 256 * 2 ** 20; // llm/eval/loglikelihood.ts's default

if (size !== "124M" && size !== "355M") throw new Error(`--size ${size}: expected 124M or 355M`);
const config: GPTConfig = gpt2Config(size);

const engine = await initEngine({ backend: "cpu", log: () => {} });
const model = new GPTModel(config, { seed: 123 });
const tokenizer = createTokenizer({ kind: "gpt2" });
const questions = (await readMmluCsvFile(mmluDir, subject, "test")).slice(0, limit);
const requests = questions.map((q) => {
  const prompt = mmluContext(q);
  return MMLU_CONTINUATIONS.map((c) => encodePair(tokenizer, prompt, c));
});
const rows = requests.map((r) => {
  const row = sharedContextRow(r[0].context, r.map((x) => x.continuation[0]), 1024);
  return { input: row.input, tokens: row.picks.map((p) => p.token) };
});

const dir = await Deno.makeTempDir({ prefix: "bench-mmlu-torch-" });
try {
  await saveModel(dir, model);
  const rowsFile = join(dir, "rows.json");
  await Deno.writeTextFile(
    rowsFile,
    JSON.stringify({
      config,
      batch_size: batchSize,
      logit_budget: Math.min(LOGIT_BUDGET, model.maxTensorBytes),
      rows,
    }),
  );
  const worker = startTorchWorker("torch_mmlu_bench.py", [
    join(dir, WEIGHTS_FILE),
    rowsFile,
    "--threads",
    threads,
  ]);
  const { send, nextLine } = worker;
  await nextLine(); // loaded

  // Warm-up for ours: JIT and first-touch allocations (PyTorch has neither to speak of).
  await scoreQuestions(model, requests.slice(0, 2), { batchSize });
  const ours: number[] = [], theirs: number[] = [];
  let maxDiff = 0;
  const tokens = rows.map((r) => r.input.length);
  // The order alternates (PyTorch first in even rounds, ours first in odd ones) so that a load
  // that drifts during the run favours neither side.
  const runTorch = async (round: number) => {
    await send("run");
    const torch = await nextLine();
    theirs.push(torch.seconds as number);
    const lls = torch.loglikelihoods as number[][];
    delete torch.loglikelihoods;
    console.log(JSON.stringify({ bench: "mmlu_vs_torch", round, ...torch }));
    return lls;
  };
  const runOurs = async (round: number) => {
    const t0 = performance.now();
    const lls = await scoreQuestions(model, requests, { batchSize });
    const seconds = (performance.now() - t0) / 1000;
    ours.push(seconds);
    console.log(JSON.stringify({
      bench: "mmlu_vs_torch",
      round,
      impl: "groundup",
      engine: describeEngine(engine),
      questions: rows.length,
      seconds: +seconds.toFixed(4),
      questions_per_second: +(rows.length / seconds).toFixed(3),
      peak_rss_mb: peakRssMb(),
    }));
    return lls;
  };
  const settle = () => new Promise((resolve) => setTimeout(resolve, settleSeconds * 1000));
  for (let round = 0; round < rounds; round++) {
    let torchLls: number[][] = [], oursLls: number[][] = [];
    const sides = round % 2 === 0 ? ["torch", "ours"] : ["ours", "torch"];
    for (const side of sides) {
      await settle();
      if (side === "torch") torchLls = await runTorch(round);
      else oursLls = await runOurs(round);
    }
    oursLls.forEach((q, i) =>
      q.forEach((v, c) => (maxDiff = Math.max(maxDiff, Math.abs(v - torchLls[i][c]))))
    );
  }
  await worker.close();
  console.log(JSON.stringify({
    bench: "mmlu_vs_torch",
    summary: true,
    config: `gpt2-${size}`,
    subject,
    questions: rows.length,
    batch_size: batchSize,
    torch_threads: Number(threads),
    mean_prompt_tokens: +(tokens.reduce((a, b) => a + b, 0) / tokens.length).toFixed(1),
    max_prompt_tokens: Math.max(...tokens),
    ours_questions_per_second: +(rows.length / median(ours)).toFixed(3),
    torch_questions_per_second: +(rows.length / median(theirs)).toFixed(3),
    ratio_seconds_ours_over_torch: +(median(ours) / median(theirs)).toFixed(3),
    max_abs_loglikelihood_diff: +maxDiff.toExponential(2),
  }));
} finally {
  model.dispose();
  await Deno.remove(dir, { recursive: true });
}
