/**
 * What `quantize: bf16` and `int8` cost in quality at 124M (issue 19, item 2), against fp32:
 * - the workshop's own model: pipelines/workshop.yaml run through its `pretrain` stage (124M,
 *   context 256, 10 epochs on "The Verdict"; about 10 minutes on 2 quiet cores, cached after
 *   the first run in --cache-dir);
 * - a random GPT-2 124M (the OpenAI shapes: context 1024, qkv bias; seed 123).
 * For each: the validation loss on the workshop's validation split, next-token agreement at
 * those positions, 200 greedy tokens after "Every effort moves you" (identical until the first
 * difference, and overall), and MMLU philosophy 0-shot (311 questions, the mirror's CSV).
 * Each precision opens the model folder afresh through `openModelFolder`, as the stages do.
 *
 *   deno task bench quantize-quality [--models workshop,random] [--mmlu-limit N]
 *       [--cache-dir .groundup] [--mirror ../shared/fixtures] [--tokens 200]
 *
 * Prints one JSON line per model and a Markdown table for bench/RESULTS.md.
 */
import { join } from "node:path";
import { loadPipeline } from "../runner/pipeline.ts";
import { runPipeline } from "../runner/run.ts";
import { builtinStages, openDataloaderArtifact } from "../stages/mod.ts";
import { describeEngine, initEngine } from "../llm/engine/backend.ts";
import { readMmluCsvFile } from "../llm/eval/mmlu/data.ts";
import {
  measureQuality,
  type QualityDelta,
  qualityDelta,
  type QualityMeasure,
  type QualityProbe,
} from "../llm/eval/quantize_quality.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import { gpt2Config } from "../llm/model/gpt2_sizes.ts";
import { saveModel } from "../llm/model/weights_io.ts";
import { flag, peakRssMb } from "./common.ts";

const root = new URL("..", import.meta.url).pathname;
const models = flag("models", "workshop,random").split(",");
const cacheDir = flag("cache-dir", Deno.env.get("GROUNDUP_CACHE_DIR") ?? ".groundup");
const mirror = flag("mirror", Deno.env.get("GROUNDUP_MIRROR") ?? join(root, "../shared/fixtures"));
const mmluLimit = flag("mmlu-limit", "");
const newTokens = Number(flag("tokens", "200"));
const mmluDir = Deno.env.get("GROUNDUP_MMLU_DIR") ?? join(root, "../shared/fixtures/mmlu");

// The workshop's tokens and, for "workshop", its pretrained model: the pipeline's own stages,
// through the runner and its cache (the same key as `deno task run pipelines/workshop.yaml`
// with --backend cpu).
const pipeline = await loadPipeline(join(root, "pipelines/workshop.yaml"), builtinStages(), {
  sets: ["backend=cpu"],
  mirror,
});
const until = models.includes("workshop") ? "pretrain" : "dataloader";
const t0 = performance.now();
const report = await runPipeline(pipeline, { cacheDir, until });
if (!report.ok) throw report.error;
console.error(`workshop stages up to ${until}: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
const engine = await initEngine({ backend: "cpu", log: () => {} });
console.error(describeEngine(engine));

const data = await openDataloaderArtifact(report.artifacts.dataloader.dir);
const probe: QualityProbe = {
  valBatches: () => data.val.batches(0),
  prompt: data.tokenizer.encode("Every effort moves you"),
  newTokens,
  mmlu: {
    task: "mmlu_philosophy",
    load: (subject, split) => readMmluCsvFile(mmluDir, subject, split),
    limit: mmluLimit ? Number(mmluLimit) : undefined,
  },
};

async function randomGpt2Folder(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "quantize-quality-" });
  const model = new GPTModel(gpt2Config("124M", 0), { seed: 123 });
  await saveModel(dir, model);
  model.dispose();
  return dir;
}

const rows: string[] = [];
for (const name of models) {
  const isRandom = name === "random";
  if (!isRandom && name !== "workshop") throw new Error(`--models: unknown model "${name}"`);
  const dir = isRandom ? await randomGpt2Folder() : report.artifacts.pretrain.dir;
  const measured: Record<string, QualityMeasure> = {};
  const seconds: Record<string, number> = {};
  try {
    for (const quantize of ["none", "bf16", "int8"] as const) {
      const start = performance.now();
      measured[quantize] = await measureQuality(dir, quantize, probe);
      seconds[quantize] = Math.round((performance.now() - start) / 100) / 10;
      console.error(`${name} ${quantize}: ${seconds[quantize]} s`);
    }
  } finally {
    if (isRandom) await Deno.remove(dir, { recursive: true });
  }
  const fp32 = measured.none;
  const deltas: QualityDelta[] = (["bf16", "int8"] as const).map((q) =>
    qualityDelta(fp32, measured[q])
  );
  console.log(JSON.stringify({
    model: name,
    fp32: { valLoss: fp32.valLoss, mmluAcc: fp32.mmlu?.acc, questions: fp32.mmlu?.questions },
    valPositions: fp32.nextTokens.length,
    deltas,
    seconds,
    peakRssMb: peakRssMb(),
  }));
  const label = isRandom ? "random GPT-2 124M" : "workshop pretrain (124M, The Verdict)";
  rows.push(
    `| ${label} | fp32 | ${fp32.valLoss.toFixed(4)} | — | — | — | ${
      fp32.mmlu!.acc.toFixed(4)
    } | — |`,
  );
  for (const d of deltas) {
    const sign = (v: number, digits: number) => `${v >= 0 ? "+" : ""}${v.toFixed(digits)}`;
    rows.push(
      `| | ${d.quantize} | ${sign(d.valLossDelta, 5)} | ${d.nextTokenAgreement.toFixed(4)} | ${
        d.greedy.prefix.toFixed(3)
      } (${d.greedy.firstDifference ?? "none"}) | ${d.greedy.overall.toFixed(3)} | ${
        sign(d.mmluAccDelta!, 4)
      } | ${d.mmluFlipped} |`,
    );
  }
}
console.log(
  [
    "",
    `| model | weights | val loss (Δ vs fp32) | next-token agreement (${
      data.val.numBatches * data.manifest.batch_size * data.manifest.max_length
    } positions) | greedy ${newTokens}: identical until first difference (index) | greedy: identical overall | MMLU philosophy acc (Δ) | answers flipped |`,
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
  ].join("\n"),
);
