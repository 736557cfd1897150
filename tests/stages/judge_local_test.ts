/**
 * Stage judge with `api: local`: the judge model is an upstream stage's (a scripted model that
 * writes "85" and stops: every entry scores 85) or a Hub repository through the mirror folder
 * (a random Qwen3: unscored replies, kept); the key holds the model's artifact key, the
 * responses and the generation settings but not `concurrency`; Ctrl-C keeps the answers and the
 * next run asks only the rest; parameter mistakes are named before anything runs.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { z } from "zod";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { defineStage, StageRegistry } from "../../runner/stage.ts";
import { judgeStage, RESPONSES_FILE } from "../../stages/judge.ts";
import { sharedFixture, withTempDir } from "../fixtures.ts";
import { useCpuBackend } from "../llm/model/tf_setup.ts";
import { quietOutput, writePipeline } from "../runner/helpers.ts";
import { withEnv } from "../datasets/fake_hub.ts";
import { writeTinyHfModel } from "./tiny_hf_model.ts";
import { writeScriptedAnswerModel } from "../llm/eval/scripted_model.ts";

await useCpuBackend();

const BOOK = sharedFixture("workshop", "instruction-data-with-response.json");

/** The book's responses with a second field (the reference answer), `n` entries. */
async function writeResponses(path: string, n: number): Promise<void> {
  const book = JSON.parse(await Deno.readTextFile(BOOK)) as Record<string, string>[];
  const entries = book.slice(0, n).map((e) => ({
    instruction: e.instruction,
    input: e.input,
    output: e.output,
    base: e.model_response,
    tuned: e.output,
  }));
  await Deno.writeTextFile(path, JSON.stringify(entries));
}

/** A model-producing stage for tests: the tiny model that writes "85" and stops. */
const scriptedModelStage = defineStage({
  type: "scripted-model",
  version: "1",
  description: "writes a tiny model that answers 85",
  params: z.strictObject({ token: z.number().int().default(5332) }),
  producesModel: true,
  async run(ctx) {
    await writeScriptedAnswerModel(ctx.outDir, [ctx.params.token]);
  },
});

/** Stands in for `responses`: copies a responses file into its artifact. */
const responsesStage = defineStage({
  type: "test-responses",
  version: "1",
  description: "writes responses.json for tests",
  params: z.strictObject({ file: z.string() }),
  async run(ctx) {
    await Deno.copyFile(ctx.params.file, join(ctx.outDir, RESPONSES_FILE));
  },
});

const registry = () =>
  new StageRegistry().register(scriptedModelStage).register(responsesStage).register(judgeStage);

async function run(
  dir: string,
  yaml: string,
  options: { sets?: string[]; signal?: AbortSignal; lines?: string[] } = {},
) {
  const file = await writePipeline(dir, yaml);
  const pipeline = await loadPipeline(file, registry(), { baseDir: dir, sets: options.sets });
  const lines = options.lines;
  return await runPipeline(pipeline, {
    cacheDir: join(dir, "cache"),
    signal: options.signal,
    out: lines
      ? { write: (line: string) => void lines.push(line), isTerminal: false }
      : quietOutput,
  });
}

const sha256 = async (path: string) =>
  createHash("sha256").update(await Deno.readFile(path)).digest("hex");

Deno.test("judge stage (api: local, an upstream model): every entry 85 and pairwise both orders, no server; concurrency stays out of the key", async () => {
  await withTempDir(async (dir) => {
    await writeResponses(join(dir, "responses.json"), 3);
    const yaml = `name: j
backend: cpu
stages:
  answers:
    uses: test-responses
    file: ${join(dir, "responses.json")}
  judge-model:
    uses: scripted-model
  judge:
    needs: [answers, judge-model]
    api: local
    model: judge-model
`;
    const first = await run(dir, yaml);
    assert.ok(first.ok, first.error?.message ?? "");
    const artifact = first.artifacts.judge;
    assert.equal(artifact.manifest.metrics.scored_base, "3/3");
    assert.equal(artifact.manifest.metrics.mean_base, 85);
    assert.equal(artifact.manifest.metrics.mean_tuned, 85);
    assert.equal(artifact.manifest.metrics.win_rate, "n/a", '"85" is no verdict');
    const judged = JSON.parse(await Deno.readTextFile(join(artifact.dir, "judge.json")));
    const model = first.artifacts["judge-model"];
    assert.deepEqual(judged.judge.source, {
      stage: "judge-model",
      type: "scripted-model",
      key: model.key,
    });
    assert.equal(judged.judge.api, "local");
    assert.equal(judged.judge.model, "judge-model");
    assert.equal(
      judged.judge.digest,
      `sha256:${await sha256(join(model.dir, "model.safetensors"))}`,
    );
    assert.deepEqual(judged.judge.generation, {
      family: "gpt2",
      chat_format: "none",
      greedy: true,
      max_new_tokens: 50,
    });
    assert.deepEqual(artifact.manifest.environment.judge, judged.judge);
    const ledger = (await Deno.readTextFile(join(artifact.dir, "scores.jsonl"))).trim()
      .split("\n").map((line) => JSON.parse(line));
    assert.equal(ledger.length, 3 * 2 + 3 * 2, "two fields scored, two orders compared");

    const again = await run(dir, yaml, { sets: ["judge.concurrency=1"] });
    assert.equal(again.steps.find((s) => s.stage === "judge")!.outcome, "cached");
    const fewer = await run(dir, yaml, { sets: ["judge.max_new_tokens=1"] });
    const step = fewer.steps.find((s) => s.stage === "judge")!;
    assert.equal(step.outcome, "ran", "the generation settings are in the key");
    assert.notEqual(step.key, first.steps.find((s) => s.stage === "judge")!.key);
    assert.equal(fewer.artifacts.judge.manifest.metrics.mean_base, 85);
  });
});

Deno.test("judge stage (api: local, a Hub repository through the mirror): a random Qwen3's replies are unscored and kept; Ctrl-C keeps the answers and the next run asks only the rest", async () => {
  await withTempDir(async (dir) => {
    const mirror = join(dir, "mirror");
    const modelDir = await writeTinyHfModel(join(mirror, "hf", "test-org", "tiny-judge"));
    await writeResponses(join(dir, "responses.json"), 8);
    const yaml = `name: j
backend: cpu
stages:
  judge:
    responses: ${join(dir, "responses.json")}
    api: local
    model: test-org/tiny-judge
    concurrency: 1
    pairwise: false
`;
    await withEnv(
      { GROUNDUP_MIRROR: mirror, GROUNDUP_DATA_DIR: join(dir, "downloads") },
      async () => {
        // Ctrl-C once the first answers are in the ledger.
        const stop = new AbortController();
        const progress = join(dir, "cache", "judge");
        const watch = setInterval(() => {
          try {
            for (const entry of Deno.readDirSync(progress)) {
              if (!entry.name.startsWith(".progress-")) continue;
              const text = Deno.readTextFileSync(join(progress, entry.name, "scores.jsonl"));
              if (text.split("\n").length > 3) stop.abort();
            }
          } catch { /* not there yet */ }
        }, 10);
        let interrupted;
        try {
          interrupted = await run(dir, yaml, { signal: stop.signal });
        } finally {
          clearInterval(watch);
        }
        assert.equal(interrupted.ok, false, "the run was interrupted");
        assert.equal(interrupted.steps[0].outcome, "interrupted");

        const lines: string[] = [];
        const resumed = await run(dir, yaml, { sets: ["judge.concurrency=4"], lines });
        assert.ok(resumed.ok, resumed.error?.message ?? "");
        const reused = Number(lines.join("").match(/(\d+) answer\(s\) reused/)?.[1]);
        assert.ok(reused >= 3 && reused < 16, `${reused} answers reused`);
        const artifact = resumed.artifacts.judge;
        assert.equal(artifact.manifest.metrics.scored_base, "0/8");
        const judged = JSON.parse(await Deno.readTextFile(join(artifact.dir, "judge.json")));
        assert.deepEqual(judged.judge.source, {
          repo: "test-org/tiny-judge",
          revision: "main",
          commit: null,
          from: "mirror",
        });
        assert.equal(
          judged.judge.digest,
          `sha256:${await sha256(join(modelDir, "model.safetensors"))}`,
        );
        assert.equal(judged.judge.generation.chat_format, "jinja");
        assert.equal(judged.fields[0].unscored.length, 8);
        assert.ok(judged.scores.base.every((s: { reply: string }) => s.reply.length > 0));

        // The same replies as a run that was never interrupted (rows decoded together or not).
        await Deno.mkdir(join(dir, "whole"));
        const whole = await run(join(dir, "whole"), yaml, { sets: ["judge.concurrency=8"] });
        assert.ok(whole.ok, whole.error?.message ?? "");
        const wholeJudged = JSON.parse(
          await Deno.readTextFile(join(whole.artifacts.judge.dir, "judge.json")),
        );
        assert.deepEqual(wholeJudged.scores, judged.scores);
      },
    );
  });
});

Deno.test("judge stage (api: local): mistakes are named before anything runs", async () => {
  await withTempDir(async (dir) => {
    await writeResponses(join(dir, "responses.json"), 1);
    const head = `name: j
backend: cpu
stages:
  answers:
    uses: test-responses
    file: ${join(dir, "responses.json")}
  judge-model:
    uses: scripted-model
  judge:
    needs: [answers, judge-model]
`;
    const cases: [string, RegExp][] = [
      ["    api: local\n", /api: local needs `model:`/],
      [
        "    api: local\n    model: judge-model\n    url: http://localhost:1\n",
        /`url` is only read with api: ollama or openai \(api is local\)/,
      ],
      [
        "    model: judge\n    max_new_tokens: 5\n",
        /`max_new_tokens` is only read with api: local/,
      ],
      [
        "    api: local\n    model: nobody\n",
        /"nobody" is neither a stage in needs \(answers, judge-model\) nor a Hub repository/,
      ],
      [
        "    api: local\n    model: answers\n",
        /stage "answers" \(test-responses\) produces no model/,
      ],
    ];
    for (const [tail, expected] of cases) {
      const file = await writePipeline(dir, head + tail);
      await assert.rejects(loadPipeline(file, registry(), { baseDir: dir }), expected, tail);
    }
  });
});
