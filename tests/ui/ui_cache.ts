/**
 * Caches for the web UI's tests, made by the real runner and the real evaluation stages:
 *
 * - `ui-fixture-responses` lays out a responses.json as the `responses` stage writes it (the
 *   book's entries, one field per model: `response_before` is the book's model_response,
 *   `response_after` the first half of the reference's words), without training two models.
 * - the real `judge` stage scores both fields and compares them pairwise, talking HTTP to a
 *   scripted judge (tests/llm/eval/scripted_judge.ts) that answers each judge prompt with the
 *   word overlap of the response with the reference (0-100, so a test can recompute every
 *   score), "no idea" for entry 2's `response_before` (an unscored reply), and each pairwise
 *   prompt with the answer of higher overlap.
 * - `ui-fixture-mmlu` writes an MMLU results.json in lm-eval-harness layout with a group (the
 *   smoke pipeline's real `evaluate` has no group to show); the e2e cache runs the real one.
 * - `ui-wait`, a stage that reports progress and waits until the test lets it finish (a run in
 *   progress, for the live view).
 * - `runUiPipeline` runs the smoke pipeline (tokenize → dataloader → pretrain → evaluate) plus
 *   the responses, the judge and the report into a cache; `train: false`: no training (and no
 *   report), the MMLU stand-in instead of `evaluate`.
 */
import { join } from "node:path";
import { z } from "zod";
import { judgePrompt, parseResponses, type ResponseEntry } from "../../llm/eval/judge.ts";
import { pairwisePrompt } from "../../llm/eval/pairwise.ts";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { defineStage } from "../../runner/stage.ts";
import { builtinStages } from "../../stages/mod.ts";
import { REPO_ROOT, sharedFixture } from "../fixtures.ts";
import { chatReply, scriptedJudge } from "../llm/eval/scripted_judge.ts";
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

/** The two response fields, as the smoke pipeline's `responses` stage names them. */
export const FIELDS = ["response_before", "response_after"] as const;
/** The entry whose `response_before` the scripted judge answers with no number. */
export const UNSCORED_ENTRY = 2;

/** The responses.json the fixture stage writes: the book's entries with both fields. */
export async function uiResponses(limit?: number): Promise<Record<string, string>[]> {
  const book: Record<string, string>[] = JSON.parse(await Deno.readTextFile(RESPONSES_FIXTURE));
  return book.slice(0, limit).map((e) => {
    const words = e.output.split(/\s+/);
    return {
      instruction: e.instruction,
      input: e.input,
      output: e.output,
      response_before: e.model_response,
      response_after: words.slice(0, Math.ceil(words.length / 2)).join(" "),
    };
  });
}

/** The score the scripted judge gives entry `index`'s `field` (null: it replied no number). */
export function expectedScore(entry: Record<string, string>, index: number, field: string) {
  if (index === UNSCORED_ENTRY && field === "response_before") return null;
  return overlapScore(entry.output, entry[field]);
}

export const responsesFixtureStage = defineStage({
  type: "ui-fixture-responses",
  version: "1",
  description: "responses.json in the responses stage's format (web UI tests)",
  params: z.strictObject({ limit: z.number().int().min(1).optional() }),
  async run(ctx) {
    const entries = await uiResponses(ctx.params.limit);
    await Deno.writeTextFile(join(ctx.outDir, "responses.json"), JSON.stringify(entries));
    return { metrics: { entries: entries.length } };
  },
});

/** A judge on loopback answering the book's prompts for `entries` as described above. */
export function startUiJudge(entries: Record<string, string>[]) {
  const parsed: ResponseEntry[] = parseResponses(entries, "ui responses");
  const replies = new Map<string, string>();
  parsed.forEach((entry, index) => {
    for (const field of FIELDS) {
      const score = expectedScore(entries[index], index, field);
      replies.set(judgePrompt(entry, field), score === null ? "no idea" : String(score));
    }
    const [a, b] = FIELDS.map((f) => overlapScore(entry.output, entry[f]));
    const verdict = (first: number, second: number) =>
      first > second ? "A" : first < second ? "B" : "tie";
    replies.set(pairwisePrompt(entry, FIELDS[0], FIELDS[1]), verdict(a, b));
    replies.set(pairwisePrompt(entry, FIELDS[1], FIELDS[0]), verdict(b, a));
  });
  return scriptedJudge((request) => {
    const reply = replies.get(request.content);
    if (reply === undefined) return new Response("unknown prompt", { status: 400 });
    return chatReply(request.path, reply, "llama3:latest");
  });
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

export const mmluFixtureStage = defineStage({
  type: "ui-fixture-mmlu",
  version: "1",
  description: "an MMLU results.json with a group, in harness layout (web UI tests)",
  params: z.strictObject({}),
  async run(ctx) {
    await Deno.writeTextFile(join(ctx.outDir, "results.json"), JSON.stringify(MMLU_RESULTS));
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
  const registry = builtinStages().register(responsesFixtureStage).register(mmluFixtureStage);
  if (gate) registry.register(waitStage(gate));
  return registry;
}

const TRAIN_STAGES = `
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
    needs: pretrain
    tasks: [mmlu_philosophy]
    limit: 4
    batch_size: 4
`;

const evaluationStages = (judgeUrl: string, mmlu: boolean) =>
  `${mmlu ? "  mmlu:\n    uses: ui-fixture-mmlu\n" : ""}  responses:
    uses: ui-fixture-responses
  judge:
    needs: responses
    api: ollama
    url: ${judgeUrl}
    model: llama3
    timeout_s: 30
    retries: 0
`;

/**
 * Writes a pipeline file into `dir` and runs it into `cacheDir` with the scripted judge up;
 * returns the report. `train: false`: only the evaluation stages (with the MMLU stand-in).
 */
export async function runUiPipeline(
  dir: string,
  cacheDir: string,
  options: { train?: boolean; sets?: string[]; name?: string; gate?: Gate } = {},
) {
  const name = options.name ?? "smoke";
  const judge = startUiJudge(await uiResponses());
  try {
    const stages = options.gate
      ? `  wait:\n    uses: ui-wait\n`
      : options.train === false
      ? evaluationStages(judge.url, true)
      : TRAIN_STAGES + evaluationStages(judge.url, false) +
        `  report:\n    needs: [pretrain, evaluate, responses, judge]\n`;
    const text = `name: ${name}\nseed: 123\nbackend: cpu\nmodel: ${
      join(REPO_ROOT, "configs", "models", "tiny.yaml")
    }\nstages:\n${stages}`;
    const file = join(dir, `${name}.yaml`);
    await Deno.writeTextFile(file, text);
    const pipeline = await loadPipeline(file, uiRegistry(options.gate), { sets: options.sets });
    const report = await runPipeline(pipeline, { cacheDir, out: quietOutput });
    if (!report.ok) throw report.error;
    return report;
  } finally {
    await judge.close();
  }
}
