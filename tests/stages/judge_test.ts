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
import { chatReply, scriptedJudge } from "../llm/eval/scripted_judge.ts";
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
    model: judge
    retries: 0
`,
    );
    assert.equal(report.ok, false);
    assert.match(report.error!.message, new RegExp(`cannot reach the judge at ${url}`));
    assert.match(report.error!.message, /ollama serve/);
    // As the smoke pipeline's judge: a name no Ollama model need have is not to be pulled.
    assert.doesNotMatch(report.error!.message, /ollama pull/);
    assert.match(report.error!.message, /the model "judge"/);
  });
});

/** A free loopback port (so several servers in turn keep one judge URL, a parameter). */
function freePort(): number {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  return port;
}

async function runWith(dir: string, yaml: string, sets: string[] = []) {
  const file = await writePipeline(dir, yaml);
  const registry = new StageRegistry().register(responsesStage).register(judgeStage);
  const pipeline = await loadPipeline(file, registry, { baseDir: dir, sets });
  return await runPipeline(pipeline, { cacheDir: join(dir, "cache"), out: quietOutput });
}

function onePortPipeline(responses: string, port: number) {
  return `name: j
stages:
  responses:
    uses: test-responses
    file: ${responses}
  judge:
    uses: judge
    needs: responses
    api: ollama
    url: http://127.0.0.1:${port}
    fields: [base]
    pairwise: false
    concurrency: 1
    retries: 0
`;
}

Deno.test("judge stage: concurrency, retries and timeout_s stay out of the key; a partial run's answers are reused whatever they are; a finished artifact is reused with the judge down", async () => {
  await withTempDir(async (dir) => {
    const responses = join(dir, "responses-src.json");
    await Deno.writeTextFile(responses, JSON.stringify(await twoFieldResponses()));
    const port = freePort();
    const yaml = onePortPipeline(responses, port);
    // The first run: the judge refuses its third question, so two answers are in the ledger.
    const failing = scriptedJudge(
      (seen, n) => n === 2 ? new Response("no", { status: 400 }) : chatReply(seen.path, "85"),
      { port },
    );
    const first = await runWith(dir, yaml).finally(() => failing.close());
    assert.equal(first.ok, false);
    assert.equal(failing.requests.length, 3);

    const judge = scriptedJudge((seen) => chatReply(seen.path, "85"), { port });
    try {
      const other = ["judge.concurrency=3", "judge.retries=2", "judge.timeout_s=30"];
      const resumed = await runWith(dir, yaml, other);
      assert.ok(resumed.ok, resumed.error?.message ?? "");
      assert.equal(judge.requests.length, 1, "only the unanswered question is asked");
      const step = resumed.steps.find((s) => s.stage === "judge")!;
      assert.equal(step.outcome, "ran");
      assert.equal(step.key, first.steps.find((s) => s.stage === "judge")!.key);
      assert.equal(resumed.artifacts.judge.manifest.metrics.scored, "3/3");

      const again = await runWith(dir, yaml, ["judge.concurrency=8", "judge.retries=5"]);
      assert.equal(again.steps.find((s) => s.stage === "judge")!.outcome, "cached");
      assert.equal(judge.requests.length, 1, "a cached artifact asks nothing");
    } finally {
      await judge.close();
    }
    // Nobody listens on the port now: the key needs no server, the artifact is reused.
    const down = await runWith(dir, yaml, ["judge.timeout_s=5"]);
    assert.ok(down.ok, down.error?.message ?? "");
    assert.equal(down.steps.find((s) => s.stage === "judge")!.outcome, "cached");
  });
});

Deno.test("judge stage (ollama API): the weights digest is recorded, not keyed; answers of other weights under the same name are asked again", async () => {
  await withTempDir(async (dir) => {
    const responses = join(dir, "responses-src.json");
    await Deno.writeTextFile(responses, JSON.stringify(await twoFieldResponses()));
    const port = freePort();
    const yaml = onePortPipeline(responses, port);
    const failing = scriptedJudge(
      (seen, n) => n === 2 ? new Response("no", { status: 400 }) : chatReply(seen.path, "85"),
      { port, digest: "old-weights" },
    );
    const first = await runWith(dir, yaml).finally(() => failing.close());
    assert.equal(first.ok, false);
    // `ollama pull` fetched other weights under the same name: the ledger's answers do not count.
    const judge = scriptedJudge((seen) => chatReply(seen.path, "85"), {
      port,
      digest: "new-weights",
    });
    try {
      const report = await runWith(dir, yaml);
      assert.ok(report.ok, report.error?.message ?? "");
      assert.equal(judge.requests.length, 3);
      const artifact = report.artifacts.judge;
      const recorded = JSON.parse(await Deno.readTextFile(join(artifact.dir, "judge.json")));
      assert.equal(recorded.judge.digest, "new-weights");
      assert.equal(
        (artifact.manifest.environment.judge as { digest: string }).digest,
        "new-weights",
      );
      const lines = (await Deno.readTextFile(join(artifact.dir, "scores.jsonl"))).trim().split(
        "\n",
      );
      // Every answer as asked, the earlier weights' two first: the last three are the new ones.
      assert.deepEqual(lines.map((l) => JSON.parse(l).digest), [
        "old-weights",
        "old-weights",
        "new-weights",
        "new-weights",
        "new-weights",
      ]);
    } finally {
      await judge.close();
    }
  });
});

Deno.test("judge stage (ollama API): a server without /api/tags still judges, and the run says the weights were not checked", async () => {
  await withTempDir(async (dir) => {
    const responses = join(dir, "responses-src.json");
    await Deno.writeTextFile(responses, JSON.stringify((await twoFieldResponses()).slice(0, 1)));
    // An OpenAI-style proxy in front of Ollama's chat: /api/tags is a 404.
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
      const path = new URL(request.url).pathname;
      return path === "/api/tags"
        ? new Response("not found", { status: 404 })
        : chatReply(path, "70");
    });
    const lines: string[] = [];
    try {
      const file = await writePipeline(dir, onePortPipeline(responses, server.addr.port));
      const registry = new StageRegistry().register(responsesStage).register(judgeStage);
      const pipeline = await loadPipeline(file, registry, { baseDir: dir });
      const report = await runPipeline(pipeline, {
        cacheDir: join(dir, "cache"),
        out: { write: (line: string) => void lines.push(line), isTerminal: false },
      });
      assert.ok(report.ok, report.error?.message ?? "");
      const environment = report.artifacts.judge.manifest.environment.judge as {
        digest?: string;
        digest_unchecked?: string;
      };
      assert.equal(environment.digest, undefined);
      assert.match(environment.digest_unchecked ?? "", /api\/tags: HTTP 404/);
      assert.match(lines.join(""), /the judge's weights could not be identified/);
    } finally {
      await server.shutdown();
    }
  });
});

Deno.test("judge stage: pairwise with every reply unparseable says so", async () => {
  await withTempDir(async (dir) => {
    const responses = join(dir, "responses.json");
    await Deno.writeTextFile(responses, JSON.stringify(await twoFieldResponses()));
    const judge = scriptedJudge((seen) => chatReply(seen.path, "85"));
    const lines: string[] = [];
    try {
      const file = await writePipeline(
        dir,
        `name: j
stages:
  judge:
    uses: judge
    responses: ${responses}
    api: openai
    url: ${judge.url}
    fields: [base, tuned]
`,
      );
      const registry = new StageRegistry().register(judgeStage);
      const report = await runPipeline(await loadPipeline(file, registry, { baseDir: dir }), {
        cacheDir: join(dir, "cache"),
        out: { write: (line: string) => void lines.push(line), isTerminal: false },
      });
      assert.ok(report.ok, report.error?.message ?? "");
      assert.equal(report.artifacts.judge.manifest.metrics.win_rate, "n/a");
    } finally {
      await judge.close();
    }
    assert.match(
      lines.join(""),
      /warning: pairwise base vs tuned: no win rate: all of the judge's 6 replies were unparseable \(it must answer "A", "B" or "tie"; it said "85"\)/,
    );
  });
});

Deno.test("judge stage: with the default fields, an entry whose answer is missing or not text fails naming it, and nothing is asked", async () => {
  await withTempDir(async (dir) => {
    const good = (await twoFieldResponses()).map((e) => ({
      instruction: e.instruction,
      input: e.input,
      output: e.output,
      response_before: e.base,
      response_after: e.tuned,
    }));
    const judge = scriptedJudge((seen) => chatReply(seen.path, "50"));
    try {
      for (const [bad, got] of [[undefined, "nothing"], [42, "number"]] as const) {
        const entries = structuredClone(good) as Record<string, unknown>[];
        if (bad === undefined) delete entries[1].response_after;
        else entries[1].response_after = bad;
        const responses = join(dir, "responses.json");
        await Deno.writeTextFile(responses, JSON.stringify(entries));
        const report = await run(
          dir,
          `name: j
stages:
  judge:
    uses: judge
    responses: ${responses}
    api: openai
    url: ${judge.url}
`,
        );
        assert.equal(report.ok, false, `response_after = ${bad}: must fail`);
        assert.match(
          report.error!.message,
          new RegExp(
            `responses\\.json: entry 2 \\(counting from 1\\): "response_after" must be a string \\(got ${got}\\)`,
          ),
        );
      }
      assert.equal(judge.requests.length, 0, 'no answer was judged as the text "undefined"');
    } finally {
      await judge.close();
    }
  });
});
