/**
 * A judge records the responses it judged by stage and cache key, not by path: after the cache
 * folder is moved, the page's API and the report still find them (and the runs page's headline
 * numbers come from the artifacts: the judge's means, MMLU accuracy).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { withTempDir } from "../fixtures.ts";
import { UiApi } from "../../server/ui_api.ts";
import { readJudgeScores } from "../../llm/artifacts/mod.ts";
import { gatherReport } from "../../llm/report/gather.ts";
import { FIELDS, runUiPipeline, uiResponses } from "./ui_cache.ts";

async function get(api: UiApi, path: string) {
  const response = await api.handler(new Request(`http://127.0.0.1${path}`));
  const body = await response.json();
  assert.equal(response.status, 200, `${path}: ${JSON.stringify(body)}`);
  return body;
}

Deno.test("moved cache: the judged responses are found by stage and key; headline numbers from the artifacts", async () => {
  await withTempDir(async (dir) => {
    const first = join(dir, "cache");
    const report = await runUiPipeline(dir, first, { train: false });
    const judgeKey = report.artifacts.judge.key;
    const responses = report.artifacts.responses;
    const recorded = (await readJudgeScores(report.artifacts.judge.dir)).responses;
    assert.deepEqual(recorded, {
      stage: "responses",
      key: responses.key,
      file: "responses.json",
    });
    assert.doesNotMatch(
      await Deno.readTextFile(join(report.artifacts.judge.dir, "judge.json")),
      new RegExp(first.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")),
      "judge.json names no path of the cache it was written in",
    );

    const moved = join(dir, "elsewhere", "cache");
    await Deno.mkdir(join(dir, "elsewhere"));
    await Deno.rename(first, moved);
    const api = new UiApi({ cacheDir: moved });
    const ref = `judge/${judgeKey.slice(0, 16)}`;
    const page = await get(api, `/api/ui/responses?ref=${ref}&limit=2`);
    const entries = await uiResponses();
    assert.equal(page.total, entries.length);
    assert.deepEqual(page.fields, FIELDS);
    assert.equal(page.rows[1].responses.response_after.text, entries[1].response_after);
    assert.equal(typeof page.rows[1].responses.response_after.score, "number");

    const judgeDir = join(moved, "judge", judgeKey.slice(0, 16));
    const data = await gatherReport([{ stage: "judge", dir: judgeDir }], "t", { cacheDir: moved });
    assert.equal(data.responses?.entries.length, entries.length);
    assert.deepEqual(data.responses?.fields, FIELDS);

    // The runs page: MMLU accuracy from results.json, the judge's mean per field and the win
    // rate from judge.json and pairwise.json: not the last stage's metrics.
    const { runs: [run] } = await get(api, "/api/ui/runs");
    const judge = await get(api, `/api/ui/judge?ref=${ref}`);
    const { comparisons: [pair] } = await get(api, `/api/ui/pairwise?ref=${ref}`);
    assert.deepEqual(run.headline, [
      { stage: "mmlu", kind: "mmlu", metrics: { task: "mmlu_demo", acc: 0.4672 } },
      {
        stage: "judge",
        kind: "judge",
        metrics: Object.fromEntries(
          judge.models.map((m: { field: string; mean: number }) => [`mean ${m.field}`, m.mean]),
        ),
      },
      { stage: "judge", kind: "pairwise", metrics: { [`win_rate ${FIELDS[0]}`]: pair.win_rate } },
    ]);
  });
});
