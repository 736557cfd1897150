/**
 * Stage report through the runner on real upstream artifacts: a tiny GPT pretrained on "The
 * Verdict" (loss history), MMLU on it and on a random model (two `evaluate` instances told
 * apart by `from:`), the judge on a responses file (a scripted judge over HTTP: fixed scores
 * per field, the reference-like answer always preferred), and the report gathering them all.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { z } from "zod";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { defineStage } from "../../runner/stage.ts";
import { builtinStages } from "../../stages/mod.ts";
import { useEngine } from "../../stages/engine.ts";
import { loadModelConfig } from "../../llm/model/config.ts";
import { GPTModel } from "../../llm/model/gpt.ts";
import { saveModel } from "../../llm/model/weights_io.ts";
import { REPO_ROOT, SHARED_FIXTURES, sharedFixture, withTempDir } from "../fixtures.ts";
import { quietOutput, writePipeline } from "../runner/helpers.ts";
import { chatReply, scriptedJudge } from "../llm/eval/scripted_judge.ts";
import { gatherReport } from "../../llm/report/gather.ts";

Deno.env.set("GROUNDUP_MIRROR", SHARED_FIXTURES);

const randomModelStage = defineStage({
  type: "random-model",
  version: "1",
  description: "writes a random tiny GPT-2 model folder",
  params: z.strictObject({}),
  async run(ctx) {
    await useEngine(ctx);
    const model = new GPTModel(await loadModelConfig("tiny"), { seed: 7 });
    await saveModel(ctx.outDir, model);
    model.dispose();
  },
});

/** Stands in for the fine-tuning chain's `responses` stage: writes responses.json. */
const responsesStage = defineStage({
  type: "test-responses",
  version: "1",
  description: "writes responses.json",
  params: z.strictObject({ file: z.string(), n: z.number().int() }),
  async run(ctx) {
    const book = JSON.parse(await Deno.readTextFile(ctx.params.file));
    const entries = book.slice(0, ctx.params.n).map((e: Record<string, string>) => ({
      instruction: e.instruction,
      input: e.input,
      output: e.output,
      response_before: e.model_response,
      response_after: e.output,
    }));
    await Deno.writeTextFile(join(ctx.outDir, "responses.json"), JSON.stringify(entries));
  },
});

const pipelineYaml = (judgeUrl: string, responses: string) =>
  `name: report-test
seed: 123
backend: cpu
model: ${join(REPO_ROOT, "configs", "models", "tiny.yaml")}
stages:
  tokenize:
    corpus: the-verdict
    tokenizer: gpt2
  dataloader:
    needs: tokenize
    batch_size: 4
    max_length: 32
    stride: 32
  pretrain:
    needs: dataloader
    model:
      drop_rate: 0.0
    epochs: 1
    lr: 1.0e-3
    eval_freq: 5
    eval_iter: 1
    sample_tokens: 3
  random:
    uses: random-model
  evaluate-pretrained:
    uses: evaluate
    needs: [pretrain, random]
    from: pretrain
    tasks: [mmlu_philosophy]
    limit: 3
  evaluate-random:
    uses: evaluate
    needs: [pretrain, random]
    from: random
    tasks: [mmlu_philosophy, mmlu_formal_logic]
    limit: 2
  responses:
    uses: test-responses
    file: ${responses}
    n: 4
  judge:
    needs: responses
    api: openai
    url: ${judgeUrl}
    model: scripted
  report:
    needs: [pretrain, evaluate-pretrained, evaluate-random, responses, judge]
    title: Workshop <report>
    responses_shown: 3
`;

Deno.test("report stage: loss curve, both MMLU rows, judge, pairwise and responses from real artifacts", async () => {
  const judge = scriptedJudge((request) => {
    const { content, path } = request;
    if (content.startsWith("You are comparing")) {
      // Prefers the answer that matches the reference, whichever position it is shown in.
      const reference = content.match(/A correct answer, for reference:\n```\n([^`]*)\n```/)![1];
      return chatReply(path, content.includes(`Response A:\n\`\`\`\n${reference}\n`) ? "A" : "B");
    }
    const answer = content.match(/score the model response `([^`]*)`/)![1];
    const reference = content.match(/correct output `([^`]*)`/)![1];
    return chatReply(path, answer === reference ? "90" : "40");
  });
  try {
    await withTempDir(async (dir) => {
      const registry = builtinStages().register(randomModelStage).register(responsesStage);
      const file = await writePipeline(
        dir,
        pipelineYaml(
          judge.url,
          sharedFixture("workshop", "instruction-data-with-response.json"),
        ),
      );
      const pipeline = await loadPipeline(file, registry, { baseDir: dir });
      const report = await runPipeline(pipeline, {
        cacheDir: join(dir, "cache"),
        out: quietOutput,
      });
      assert.ok(report.ok, report.error?.message ?? "");
      const out = report.artifacts.report.dir;
      const html = await Deno.readTextFile(join(out, "report.html"));
      const data = JSON.parse(await Deno.readTextFile(join(out, "report.json")));

      // Loss curve: the pretrain history, point for point.
      const history = JSON.parse(
        await Deno.readTextFile(join(report.artifacts.pretrain.dir, "history.json")),
      );
      assert.equal(data.lossCurves.length, 1);
      assert.equal(data.lossCurves[0].name, "pretrain");
      assert.deepEqual(
        data.lossCurves[0].curve.val,
        history.evaluations.map((e: { val_loss: number }) => e.val_loss),
      );

      // MMLU: one row per requested task, labelled with the model each instance evaluated.
      const results = JSON.parse(
        await Deno.readTextFile(join(report.artifacts["evaluate-random"].dir, "results.json")),
      );
      assert.deepEqual(
        data.mmlu.map((r: { model: string; task: string; samples: number }) => [
          r.model,
          r.task,
          r.samples,
        ]),
        [
          ["pretrain", "mmlu_philosophy", 3],
          ["random", "mmlu_philosophy", 2],
          ["random", "mmlu_formal_logic", 2],
        ],
      );
      assert.equal(data.mmlu[2].acc, results.results.mmlu_formal_logic["acc,none"]);
      assert.ok(html.includes(`<td>random</td><td>mmlu_formal_logic</td>`));

      // Judge: 40 for every "before", 90 for every "after"; the histogram bins hold them.
      assert.deepEqual(
        data.judge.map((f: { field: string; mean: number; scored: number }) => [
          f.field,
          f.mean,
          f.scored,
        ]),
        [["response_before", 40, 4], ["response_after", 90, 4]],
      );
      assert.equal(data.judge[1].histogram[9], 4);
      assert.equal(html.match(/class="bar"/g)?.length, 20);

      // Pairwise: "after" (the reference) wins every time, in both orders: no contradictions.
      assert.deepEqual(data.pairwise, [{
        a: "response_before",
        b: "response_after",
        judge: "scripted",
        winRate: 0,
        wins: 0,
        losses: 4,
        ties: 0,
        inconsistency: 0,
      }]);
      assert.ok(html.includes("<td>0.0%</td>"));

      // Responses side by side, the first 3 of 4, each with its judge score.
      assert.equal(data.responses.entries.length, 4);
      assert.deepEqual(data.responses.scores.response_after, [90, 90, 90, 90]);
      assert.ok(html.includes("The first 3 of 4 entries."));
      assert.ok(html.includes('<span class="score">40</span> '));
      assert.ok(html.includes("Workshop &lt;report&gt;"));
      assert.ok(!/<script|src=|href=/.test(html));
      assert.equal(
        report.artifacts.report.manifest.metrics.sections,
        "loss_curves mmlu_rows judge_fields pairwise responses",
      );

      // Run again: everything cached, the judge not asked again.
      const asked = judge.requests.length;
      const again = await runPipeline(pipeline, { cacheDir: join(dir, "cache"), out: quietOutput });
      assert.ok(again.steps.every((s) => s.outcome === "cached"));
      assert.equal(judge.requests.length, asked);
    });
  } finally {
    await judge.close();
  }
});

Deno.test("report: a malformed judge.json is an error naming the file and the field", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(
      join(dir, "judge.json"),
      JSON.stringify({ judge: { model: "x" }, responses: "r.json", fields: [{ field: "a" }] }),
    );
    await assert.rejects(
      () => gatherReport([{ stage: "judge", dir }], "t"),
      new RegExp(`${join(dir, "judge.json")}: fields\\[0\\]\\.histogram: expected a list`),
    );
  });
});

Deno.test("report stage: no needs is an error that says what to list", async () => {
  await withTempDir(async (dir) => {
    const file = await writePipeline(dir, "name: r\nstages:\n  report: {}\n");
    const pipeline = await loadPipeline(file, builtinStages(), { baseDir: dir });
    const report = await runPipeline(pipeline, { cacheDir: join(dir, "cache"), out: quietOutput });
    assert.equal(report.ok, false);
    assert.match(
      report.error!.message,
      /nothing to report: list the stages to gather under `needs`/,
    );
  });
});
