/**
 * Caches for the web UI's tests, made by the real runner:
 *
 * - `ui-fixture-eval`, a test stage that lays out evaluation files in the formats the
 *   evaluation stages write (being built now): the book's responses
 *   (../shared/fixtures/workshop/instruction-data-with-response.json) as responses.json, a score
 *   per response in scores.jsonl (word overlap with the reference, 0-100: deterministic, so a
 *   test can recompute it), judge.json, an MMLU results.json in lm-eval-harness layout and a
 *   pairwise.json.
 * - `ui-wait`, a stage that reports progress and waits until the test lets it finish (a run in
 *   progress, for the live view).
 * - `buildUiCache` runs the smoke pipeline (tokenize → dataloader → pretrain) plus the
 *   evaluation stage into a cache; `train: false` leaves out the training.
 */
import { join } from "node:path";
import { z } from "zod";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { defineStage } from "../../runner/stage.ts";
import { builtinStages } from "../../stages/mod.ts";
import { REPO_ROOT, sharedFixture } from "../fixtures.ts";
import { quietOutput } from "../runner/helpers.ts";

export const RESPONSES_FIXTURE = sharedFixture(
  "workshop",
  "instruction-data-with-response.json",
);

/** Share of the reference's words found in the response, as 0-100. */
export function overlapScore(reference: string, response: string): number {
  const words = (s: string) => s.toLowerCase().match(/[a-z0-9']+/g) ?? [];
  const ref = new Set(words(reference));
  if (ref.size === 0) return 0;
  const got = new Set(words(response));
  return Math.round((100 * [...ref].filter((w) => got.has(w)).length) / ref.size);
}

/** As llm/eval/mmlu/results.ts lays it out (the harness's layout). */
export const MMLU_RESULTS = {
  results: {
    mmlu_demo: { alias: "demo group", "acc,none": 0.4672, "acc_stderr,none": 0.0232 },
    mmlu_philosophy: { alias: "philosophy", "acc,none": 0.5691, "acc_stderr,none": 0.0281 },
    mmlu_astronomy: { alias: "astronomy", "acc,none": 0.25, "acc_stderr,none": 0.0352 },
  },
  groups: { mmlu_demo: { alias: "demo group", "acc,none": 0.4672, "acc_stderr,none": 0.0232 } },
  group_subtasks: { mmlu_demo: ["mmlu_philosophy", "mmlu_astronomy"] },
  "n-samples": {
    mmlu_philosophy: { original: 311, effective: 311 },
    mmlu_astronomy: { original: 152, effective: 152 },
  },
  model_name: "tiny",
};

export const evalFixtureStage = defineStage({
  type: "ui-fixture-eval",
  version: "1",
  description: "evaluation files in the evaluation stages' formats (web UI tests)",
  params: z.strictObject({ limit: z.number().int().min(1).optional() }),
  async run(ctx) {
    const entries: Record<string, string>[] = JSON.parse(
      await Deno.readTextFile(RESPONSES_FIXTURE),
    ).slice(0, ctx.params.limit);
    await Deno.writeTextFile(join(ctx.outDir, "responses.json"), JSON.stringify(entries));
    const lines = entries.map((e, index) =>
      JSON.stringify({
        index,
        field: "model_response",
        score: overlapScore(e.output, e.model_response),
      })
    );
    await Deno.writeTextFile(join(ctx.outDir, "scores.jsonl"), lines.join("\n") + "\n");
    await Deno.writeTextFile(
      join(ctx.outDir, "judge.json"),
      JSON.stringify({ model: "word-overlap", fields: { model_response: {} } }),
    );
    await Deno.writeTextFile(join(ctx.outDir, "results.json"), JSON.stringify(MMLU_RESULTS));
    await Deno.writeTextFile(
      join(ctx.outDir, "pairwise.json"),
      JSON.stringify({
        a: "model_response",
        b: "output",
        wins: 30,
        ties: 10,
        losses: 60,
        win_rate: 0.35,
        inconsistent: 0.12,
        total: 100,
      }),
    );
    return { metrics: { entries: entries.length } };
  },
});

/** Lets a test hold a stage open: `release()` lets the waiting stage finish. */
export class Gate {
  release!: () => void;
  readonly opened = new Promise<void>((resolve) => this.release = resolve);
  started!: () => void;
  readonly running = new Promise<void>((resolve) => this.started = resolve);
}

export function waitStage(gate: Gate) {
  return defineStage({
    type: "ui-wait",
    version: "1",
    description: "reports progress and waits for the test (web UI tests)",
    params: z.strictObject({ steps: z.number().int().default(10) }),
    async run(ctx) {
      ctx.progress.start("waiting", ctx.params.steps, "steps");
      ctx.progress.update(3, { loss: 4.25 });
      gate.started();
      await gate.opened;
      ctx.progress.update(ctx.params.steps, { loss: 3.5 });
      ctx.progress.finish();
      return { metrics: { loss: 3.5 } };
    },
  });
}

export function uiRegistry(gate?: Gate) {
  const registry = builtinStages().register(evalFixtureStage);
  if (gate) registry.register(waitStage(gate));
  return registry;
}

const SMOKE_STAGES = `
  tokenize:
    corpus: the-verdict
    tokenizer: gpt2
  dataloader:
    needs: tokenize
    train_ratio: 0.9
    batch_size: 4
    max_length: 32
    stride: 32
  pretrain:
    needs: dataloader
    model:
      drop_rate: 0.0
    epochs: 2
    lr: 1.0e-3
    eval_freq: 10
    eval_iter: 2
    sample_tokens: 10
  evaluate:
    uses: ui-fixture-eval
    needs: pretrain
`;

/** Writes a pipeline file into `dir` and runs it into `cacheDir`; returns the report. */
export async function runUiPipeline(
  dir: string,
  cacheDir: string,
  options: { train?: boolean; sets?: string[]; name?: string; gate?: Gate } = {},
) {
  const name = options.name ?? "smoke";
  const stages = options.gate
    ? `  wait:\n    uses: ui-wait\n`
    : options.train === false
    ? `  evaluate:\n    uses: ui-fixture-eval\n`
    : SMOKE_STAGES;
  const text = `name: ${name}\nseed: 123\nbackend: cpu\nmodel: ${
    join(REPO_ROOT, "configs", "models", "tiny.yaml")
  }\nstages:\n${stages}`;
  const file = join(dir, `${name}.yaml`);
  await Deno.writeTextFile(file, text);
  const pipeline = await loadPipeline(file, uiRegistry(options.gate), { sets: options.sets });
  const report = await runPipeline(pipeline, { cacheDir, out: quietOutput });
  if (!report.ok) throw report.error;
  return report;
}
