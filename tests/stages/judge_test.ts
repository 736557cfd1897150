/**
 * Stage judge: responses from a path or from an upstream artifact's responses.json, judged
 * over HTTP by `serve` running a model that always answers "85"; the artifact's files; the
 * judge recorded in the manifest; the API key nowhere in the artifact; an unreachable judge.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { z } from "zod";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { defineStage, StageRegistry } from "../../runner/stage.ts";
import { judgeStage, RESPONSES_FILE } from "../../stages/judge.ts";
import { WEIGHTS_FILE } from "../../llm/model/weights_io.ts";
import { fileDigest } from "../../server/app.ts";
import { sharedFixture, withTempDir } from "../fixtures.ts";
import { useCpuBackend } from "../llm/model/tf_setup.ts";
import { quietOutput, writePipeline } from "../runner/helpers.ts";
import { serveTiny, writeConstantModelFolder } from "../server/helpers.ts";

await useCpuBackend();

async function twoFieldResponses(): Promise<Record<string, string>[]> {
  const book = JSON.parse(
    await Deno.readTextFile(sharedFixture("workshop", "instruction-data-with-response.json")),
  );
  return book.slice(0, 3).map((e: Record<string, string>) => ({
    instruction: e.instruction,
    input: e.input,
    output: e.output,
    base: e.model_response,
    tuned: e.output,
  }));
}

/** Stands in for the fine-tuning issue's `responses` stage: writes responses.json. */
const responsesStage = defineStage({
  type: "test-responses",
  version: "1",
  description: "writes responses.json for tests",
  params: z.strictObject({ file: z.string() }),
  async run(ctx) {
    await Deno.copyFile(ctx.params.file, join(ctx.outDir, RESPONSES_FILE));
  },
});

async function run(dir: string, yaml: string) {
  const file = await writePipeline(dir, yaml);
  const registry = new StageRegistry().register(responsesStage).register(judgeStage);
  const pipeline = await loadPipeline(file, registry, { baseDir: dir });
  return await runPipeline(pipeline, { cacheDir: join(dir, "cache"), out: quietOutput });
}

Deno.test("judge stage: scores, histograms and pairwise from an upstream responses.json, judged by serve", async () => {
  await withTempDir(async (dir) => {
    const modelDir = join(dir, "model");
    await writeConstantModelFolder(modelDir, 5332); // always "85"
    const served = await serveTiny(modelDir, {
      defaultMaxTokens: 1,
      digest: await fileDigest(join(modelDir, WEIGHTS_FILE)),
      apiKey: "stage-secret-key",
    });
    Deno.env.set("TEST_JUDGE_KEY", "stage-secret-key");
    try {
      const responses = join(dir, "responses-src.json");
      await Deno.writeTextFile(responses, JSON.stringify(await twoFieldResponses()));
      const report = await run(
        dir,
        `name: j
stages:
  responses:
    uses: test-responses
    file: ${responses}
  judge:
    uses: judge
    needs: responses
    url: ${served.url}
    model: tiny
    api_key_env: TEST_JUDGE_KEY
`,
      );
      assert.ok(report.ok, report.error?.message ?? "");
      const artifact = report.artifacts.judge;
      const files = [...Deno.readDirSync(artifact.dir)].map((f) => f.name).sort();
      assert.deepEqual(files, [
        "histogram-base.svg",
        "histogram-tuned.svg",
        "judge.json",
        "manifest.json",
        "pairwise.json",
        "scores.jsonl",
      ]);
      const judge = JSON.parse(await Deno.readTextFile(join(artifact.dir, "judge.json")));
      assert.deepEqual(
        judge.fields.map((f: { field: string; mean: number }) => [f.field, f.mean]),
        [
          ["base", 85],
          ["tuned", 85],
        ],
      );
      const digest = (await fileDigest(join(modelDir, WEIGHTS_FILE))).replace("sha256:", "");
      assert.equal(judge.judge.digest, digest);
      assert.equal(
        artifact.manifest.environment.judge &&
          (artifact.manifest.environment.judge as { digest: string }).digest,
        digest,
      );
      assert.equal(artifact.manifest.metrics.mean_base, 85);
      assert.equal(artifact.manifest.metrics.scored_tuned, "3/3");
      // "85" is no verdict: the pairwise comparison lists every entry as unparsed.
      const pairwise = JSON.parse(await Deno.readTextFile(join(artifact.dir, "pairwise.json")));
      assert.equal(pairwise.unparsed.length, 3);
      assert.equal(artifact.manifest.metrics.win_rate, "n/a");
      const scores = (await Deno.readTextFile(join(artifact.dir, "scores.jsonl"))).trim().split(
        "\n",
      );
      assert.equal(scores.length, 3 * 2 + 3 * 2);
      for (const name of files) {
        const text = await Deno.readTextFile(join(artifact.dir, name));
        assert.ok(!text.includes("stage-secret-key"), `${name} holds the API key`);
      }
    } finally {
      Deno.env.delete("TEST_JUDGE_KEY");
      await served.close();
    }
  });
});

Deno.test("judge stage: a responses path, one field; an unreachable judge fails naming the URL", async () => {
  await withTempDir(async (dir) => {
    const gone = Deno.serve({ port: 0, onListen() {} }, () => new Response());
    const url = `http://127.0.0.1:${gone.addr.port}`;
    await gone.shutdown();
    const report = await run(
      dir,
      `name: j
stages:
  judge:
    uses: judge
    responses: ${sharedFixture("workshop", "instruction-data-with-response.json")}
    limit: 2
    url: ${url}
    retries: 0
`,
    );
    assert.equal(report.ok, false);
    assert.match(report.error!.message, new RegExp(`cannot reach the judge at ${url}`));
    assert.match(report.error!.message, /ollama serve/);
  });
});

Deno.test("judge stage (ollama API): the judge's weights digest is part of the cache key; an unreachable judge blocks only what needs it", async () => {
  await withTempDir(async (dir) => {
    const responses = join(dir, "responses-src.json");
    await Deno.writeTextFile(responses, JSON.stringify((await twoFieldResponses()).slice(0, 1)));
    const pipelineFor = (url: string) =>
      `name: j
stages:
  responses:
    uses: test-responses
    file: ${responses}
  judge:
    uses: judge
    needs: responses
    api: ollama
    url: ${url}
    model: tiny
    fields: [base]
    pairwise: false
    retries: 0
`;
    // One port for every server, so the judge's URL (a parameter) stays the same.
    const probe = Deno.serve({ port: 0, onListen() {} }, () => new Response());
    const port = probe.addr.port;
    await probe.shutdown();
    const keyWith = async (token: number) => {
      const modelDir = join(dir, `model-${token}`);
      await writeConstantModelFolder(modelDir, token);
      const served = await serveTiny(modelDir, {
        defaultMaxTokens: 1,
        digest: await fileDigest(join(modelDir, WEIGHTS_FILE)),
        port,
      });
      try {
        const report = await run(dir, pipelineFor(served.url));
        assert.ok(report.ok, report.error?.message ?? "");
        const judge = report.steps.find((s) => s.stage === "judge")!;
        return { key: judge.key, outcome: judge.outcome };
      } finally {
        await served.close();
      }
    };
    const first = await keyWith(5332);
    const again = await keyWith(5332); // same weights, a new server: cached
    const other = await keyWith(5333); // other weights under the same model name: judged again
    assert.equal(first.outcome, "ran");
    assert.deepEqual(again, { key: first.key, outcome: "cached" });
    assert.notEqual(other.key, first.key);
    assert.equal(other.outcome, "ran");

    const gone = Deno.serve({ port: 0, onListen() {} }, () => new Response());
    const url = `http://127.0.0.1:${gone.addr.port}`;
    await gone.shutdown();
    const report = await run(dir, pipelineFor(url));
    assert.equal(report.ok, false);
    const outcome = Object.fromEntries(report.steps.map((s) => [s.stage, s.outcome]));
    assert.deepEqual(outcome, { responses: "cached", judge: "failed" });
    assert.match(report.error!.message, new RegExp(`${url}`));
    assert.match(report.error!.message, /ollama serve/);
  });
});
