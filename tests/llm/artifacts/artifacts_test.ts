/**
 * The artifact readers (llm/artifacts): what each kind's writer writes reads back as the same
 * typed values; a missing file, text that is not JSON, or a value of the wrong shape is an error
 * naming the file and the place; the registry tells the kinds a folder holds.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { withTempDir } from "../../fixtures.ts";
import {
  artifactKinds,
  finalLosses,
  headlineAccuracy,
  locateJudgedResponses,
  parseFileRef,
  readGenerations,
  readJudgeScores,
  readMmluResults,
  readPairwise,
  readReportData,
  readResponseEntries,
  readTrainingHistory,
  resolveFileRef,
  writeGenerations,
  writeJudgeScores,
  writeMmluResults,
  writePairwise,
  writeReport,
  writeResponses,
  writeTrainingHistory,
} from "../../../llm/artifacts/mod.ts";
import { readResponses as readResponsesFile, summarizeScores } from "../../../llm/eval/judge.ts";
import { type PairJudgment, summarizePairs } from "../../../llm/eval/pairwise.ts";
import { harnessResults } from "../../../llm/eval/mmlu/results.ts";
import type { MmluEvaluation } from "../../../llm/eval/mmlu/evaluate.ts";
import { mmluTask } from "../../../llm/eval/mmlu/subjects.ts";
import type { TrainingState } from "../../../llm/train/loop.ts";
import { RESPONSES_FIXTURE } from "../../ui/ui_cache.ts";

/** Two fields of three entries, judged: one unscored reply. */
function judged() {
  const after = summarizeScores("after", [90, 70, 40], ["90", "70", "40"]);
  const before = summarizeScores("before", [60, null, 20], ["60", "no idea", "20"]);
  const scores = {
    after: [90, 70, 40].map((score) => ({ score, reply: String(score) })),
    before: [
      { score: 60, reply: "60" },
      { score: null, reply: "no idea" },
      { score: 20, reply: "20" },
    ],
  };
  return { fields: [after, before], scores };
}

Deno.test("artifacts: judge scores and pairwise read back as written", async () => {
  await withTempDir(async (dir) => {
    const { fields, scores } = judged();
    const judge = { api: "ollama", url: "http://x", model: "llama3", answered_by: ["llama3"] };
    const responses = { stage: "responses", key: "ab".repeat(32), file: "responses.json" };
    await writeJudgeScores(dir, { judge, responses, lenient: false, fields, scores, ledger: "" });
    const read = await readJudgeScores(dir);
    assert.deepEqual(read.fields, fields);
    assert.deepEqual(read.scores, scores);
    assert.deepEqual(read.responses, responses);
    assert.equal(read.judge.model, "llama3");
    assert.equal(read.judge.digest, null);
    assert.deepEqual(read.judge.answered_by, ["llama3"]);
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["histogram-after.svg", "histogram-before.svg", "judge.json", "scores.jsonl"],
    );

    // A wins entry 0, ties entry 1 (one order says A, the other B: a contradiction), loses 2.
    const judgments: PairJudgment[] = [
      { index: 0, verdicts: ["A", "B"], replies: ["A", "B"], score: 1, contradiction: false },
      { index: 1, verdicts: ["A", "A"], replies: ["A", "A"], score: 0.5, contradiction: true },
      { index: 2, verdicts: ["B", "A"], replies: ["B", "A"], score: 0, contradiction: false },
    ];
    const result = summarizePairs("after", "before", judgments);
    await writePairwise(dir, judge, result);
    const pairwise = await readPairwise(dir);
    assert.equal(pairwise.judge, "llama3");
    assert.equal(pairwise.win_rate, result.win_rate);
    assert.deepEqual([pairwise.wins, pairwise.ties, pairwise.losses], [
      result.wins,
      result.ties,
      result.losses,
    ]);
    assert.equal(pairwise.contradictions, 1);
    assert.deepEqual(artifactKinds(dir), ["judge", "pairwise"]);
  });
});

Deno.test("artifacts: responses, generations and training history read back as written", async () => {
  await withTempDir(async (dir) => {
    const entries = (await readResponsesFile(RESPONSES_FIXTURE)).slice(0, 3);
    await writeResponses(dir, entries, { entries: 3 });
    assert.deepEqual(await readResponseEntries(dir), entries);
    // The book's layout: indented by 4.
    assert.match(await Deno.readTextFile(join(dir, "responses.json")), /^\[\n {4}\{\n {8}"/);

    const generations = [{ prompt: "Every effort", response: " moves you", tokens: 3 }];
    await writeGenerations(dir, generations);
    assert.deepEqual(await readGenerations(dir), generations);

    const state = {
      initial: { train_loss: 10.9, val_loss: 10.95 },
      history: [
        { step: 5, epoch: 1, tokens_seen: 640, train_loss: 7.5, val_loss: 7.8 },
        { step: 10, epoch: 2, tokens_seen: 1280, train_loss: 6.25, val_loss: NaN },
      ],
      samples: [{ step: 10, text: "Every effort moves you" }],
    } as unknown as TrainingState;
    await writeTrainingHistory(dir, state, "t");
    const history = await readTrainingHistory(dir);
    assert.deepEqual(history.initial, state.initial);
    assert.equal(history.evaluations.length, 2);
    assert.deepEqual(history.samples, state.samples);
    // NaN is written as null (JSON has none) and reads back as "no number".
    assert.deepEqual(finalLosses(history), { train_loss: 6.25, val_loss: null });
    assert.deepEqual(artifactKinds(dir), ["history", "responses", "generations"]);
    // What a stage declares narrows what is looked for.
    assert.deepEqual(artifactKinds(dir, ["responses", "model"]), ["responses"]);
  });
});

Deno.test("artifacts: MMLU results in the harness layout read back; the group is the headline", async () => {
  await withTempDir(async (dir) => {
    const philosophy = mmluTask("mmlu_philosophy");
    const religions = mmluTask("mmlu_world_religions");
    const group = {
      kind: "group" as const,
      name: "mmlu_two",
      alias: "two",
      children: [philosophy.name, religions.name],
    };
    const evaluation = {
      tasks: [philosophy, religions, group],
      results: {
        mmlu_philosophy: { alias: "philosophy", acc: 0.75, acc_stderr: 0.25, samples: 4 },
        // One question: the harness's stderr is "N/A".
        mmlu_world_religions: { alias: "world religions", acc: 1, acc_stderr: NaN, samples: 1 },
        mmlu_two: { alias: "two", acc: 0.8, acc_stderr: 0.2, samples: 5 },
      },
      samples: [],
      singleTokenContinuations: true,
      seconds: 1,
    } as unknown as MmluEvaluation;
    const results = harnessResults(evaluation, {
      model: "groundup",
      model_args: { stage: "pretrain" },
      batch_size: 4,
      limit: null,
      num_fewshot: 0,
      data_source: "test",
    });
    await writeMmluResults(dir, results, [{ task: "mmlu_philosophy", doc_id: 0 }]);
    const read = await readMmluResults(dir);
    const byTask = Object.fromEntries(read.tasks.map((t) => [t.task, t]));
    assert.deepEqual(byTask.mmlu_world_religions, {
      task: "mmlu_world_religions",
      group: false,
      acc: 1,
      stderr: null,
      acc_norm: null,
      questions: 1,
    });
    assert.equal(byTask.mmlu_two.group, true);
    assert.equal(byTask.mmlu_two.questions, 5, "a group counts its subtasks' questions");
    assert.deepEqual(headlineAccuracy(read), { task: "mmlu_two", acc: 0.8 });
    assert.equal((read.config.model_args as { stage: string }).stage, "pretrain");
    assert.equal(
      await Deno.readTextFile(join(dir, "samples.jsonl")),
      `{"task":"mmlu_philosophy","doc_id":0}\n`,
    );
    assert.deepEqual(artifactKinds(dir), ["mmlu"]);
  });
});

Deno.test("artifacts: the report's data reads back, numbers that are not finite as null", async () => {
  await withTempDir(async (dir) => {
    const data = {
      title: "t",
      createdAt: "2026-12-04T00:00:00Z",
      lossCurves: [],
      mmlu: [{ model: "m", task: "mmlu_philosophy", acc: 0.5, stderr: NaN, samples: 2 }],
      judge: [],
      pairwise: [],
    };
    await writeReport(dir, data, "<html></html>");
    const read = await readReportData(dir);
    assert.equal(read.mmlu[0].stderr, null);
    assert.equal(await Deno.readTextFile(join(dir, "report.html")), "<html></html>");
    assert.deepEqual(artifactKinds(dir), ["report"]);
  });
});

Deno.test("artifacts: a missing or damaged file is an error naming the file and the place", async () => {
  await withTempDir(async (dir) => {
    const at = (file: string) => join(dir, file).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    await assert.rejects(
      readJudgeScores(dir),
      new RegExp(`^Error: ${at("judge.json")}: no such file`),
    );
    await assert.rejects(
      readTrainingHistory(dir),
      new RegExp(`${at("history.json")}: no such file`),
    );

    await Deno.writeTextFile(join(dir, "results.json"), '{"results": {"mmlu_x": {"acc,none": 0.5}');
    await assert.rejects(readMmluResults(dir), new RegExp(`${at("results.json")}: not valid JSON`));
    await Deno.writeTextFile(
      join(dir, "results.json"),
      '{"results": {"mmlu_x": {"acc,none": "high"}}}',
    );
    await assert.rejects(
      readMmluResults(dir),
      new RegExp(`${at("results.json")}: results\\["mmlu_x"\\]\\["acc,none"\\]: expected a number`),
    );

    const { fields, scores } = judged();
    await writeJudgeScores(dir, {
      judge: { model: "llama3" },
      responses: "/elsewhere/responses.json",
      lenient: false,
      fields,
      scores,
      ledger: "",
    });
    const file = JSON.parse(await Deno.readTextFile(join(dir, "judge.json")));
    file.fields[1].mean = "sixty";
    await Deno.writeTextFile(join(dir, "judge.json"), JSON.stringify(file));
    await assert.rejects(
      readJudgeScores(dir),
      new RegExp(`${at("judge.json")}: fields\\[1\\]\\.mean: expected a number`),
    );
    file.fields[1].mean = 40;
    file.scores.before[2] = { score: "20" };
    await Deno.writeTextFile(join(dir, "judge.json"), JSON.stringify(file));
    await assert.rejects(
      readJudgeScores(dir),
      new RegExp(`${at("judge.json")}: scores\\["before"\\]\\[2\\]\\.score: expected a number`),
    );
    file.scores.before[2] = { score: 20, reply: "20" };
    file.responses = { stage: "responses", key: "ab".repeat(8), file: "../../secret.txt" };
    await Deno.writeTextFile(join(dir, "judge.json"), JSON.stringify(file));
    await assert.rejects(
      readJudgeScores(dir),
      new RegExp(`${at("judge.json")}: responses: expected a file inside an artifact folder`),
    );

    await Deno.writeTextFile(
      join(dir, "history.json"),
      JSON.stringify({ evaluations: [{ epoch: 1, train_loss: 2 }, { epoch: 2, train_loss: "3" }] }),
    );
    await assert.rejects(
      readTrainingHistory(dir),
      new RegExp(`${at("history.json")}: evaluations\\[1\\]\\.train_loss: expected a number`),
    );
    await Deno.writeTextFile(join(dir, "pairwise.json"), JSON.stringify({ judge: { model: "j" } }));
    await assert.rejects(
      readPairwise(dir),
      new RegExp(`${at("pairwise.json")}: "first": expected a string`),
    );
    await Deno.writeTextFile(join(dir, "responses.json"), JSON.stringify([{ instruction: "i" }]));
    await assert.rejects(
      readResponseEntries(dir),
      new RegExp(`${at("responses.json")}: entry 1 .*"output" must be a string`),
    );
  });
});

Deno.test("artifacts: references resolve by stage and key against the cache they are read from", async () => {
  await withTempDir(async (dir) => {
    const key = "0123456789abcdef".repeat(4);
    const ref = parseFileRef({ stage: "responses", key, file: "responses.json" }, "judge.json");
    const cacheA = join(dir, "a");
    const cacheB = join(dir, "b");
    assert.equal(
      resolveFileRef(ref, cacheB),
      join(cacheB, "responses", key.slice(0, 16), "responses.json"),
    );
    await Deno.mkdir(join(cacheB, "responses", key.slice(0, 16)), { recursive: true });
    await Deno.writeTextFile(resolveFileRef(ref, cacheB), "[]");
    assert.equal(locateJudgedResponses(ref, cacheA), undefined);
    assert.equal(locateJudgedResponses(ref, cacheB), resolveFileRef(ref, cacheB));
    // An artifact written before references recorded the absolute path in the old cache: the
    // same <stage>/<key>/<file> in the cache it is read from is found.
    const old = join(cacheA, "responses", key.slice(0, 16), "responses.json");
    assert.equal(locateJudgedResponses(old, cacheB), resolveFileRef(ref, cacheB));
    // A file outside any cache, given by path, is found where it is.
    const own = join(dir, "mine.json");
    await Deno.writeTextFile(own, "[]");
    assert.equal(locateJudgedResponses(own, cacheB), own);
  });
});
