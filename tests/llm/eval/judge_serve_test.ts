/**
 * The judge over HTTP against our own `serve` (a real server running a real, tiny model):
 * with a random model the replies are garbage, so they must come back unscored and listed,
 * each exactly what complete() writes for the book's prompt; with a model built to always
 * answer "85" (or "A") the scores (and the pairwise verdicts) come through as numbers.
 * Both APIs: Ollama's /api/chat (with the digest from /api/tags) and OpenAI's.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { judgePrompt, readResponses } from "../../../llm/eval/judge.ts";
import { runJudge } from "../../../llm/eval/judge_run.ts";
import { WEIGHTS_FILE } from "../../../llm/model/weights_io.ts";
import { fileDigest } from "../../../server/app.ts";
import { complete } from "../../../llm/infer/complete.ts";
import { sharedFixture, withTempDir } from "../../fixtures.ts";
import { useCpuBackend } from "../model/tf_setup.ts";
import { serveTiny, writeConstantModelFolder, writeTinyModelFolder } from "../../server/helpers.ts";

await useCpuBackend();

const RESPONSES = sharedFixture("workshop", "instruction-data-with-response.json");

Deno.test("judge → serve (random tiny model): garbage replies are unscored, listed, and exactly what the model writes", async () => {
  const entries = (await readResponses(RESPONSES)).slice(0, 3);
  await withTempDir(async (dir) => {
    await writeTinyModelFolder(dir);
    const digest = await fileDigest(join(dir, WEIGHTS_FILE));
    // The judge's prompts are longer than the tiny model's context: keep their ends.
    const served = await serveTiny(dir, { digest, defaultMaxTokens: 6, truncatePrompts: true });
    try {
      // What the model writes for each prompt: the judge sends seed 123 and temperature 0.
      const expected = [];
      for (const entry of entries) {
        const done = await complete(served.model, {
          tokenizer: served.tokenizer,
          prompt: judgePrompt(entry, "model_response"),
          settings: {
            max_new_tokens: 6,
            temperature: 0,
            stop_token: 50256,
            seed: 123,
          },
        });
        expected.push(done.text);
      }
      for (const api of ["ollama", "openai"] as const) {
        const report = await runJudge(entries, { api, url: served.url, model: "tiny" }, {
          fields: ["model_response"],
          ledgerPath: join(dir, `${api}.jsonl`),
        });
        assert.deepEqual(report.scores.model_response.map((s) => s.reply), expected, api);
        const [summary] = report.fields;
        assert.equal(summary.total, 3);
        assert.equal(summary.scored, 0, `a random model wrote a number: ${expected}`);
        assert.deepEqual(summary.unscored, expected.map((reply, index) => ({ index, reply })));
        assert.deepEqual(report.judge.answered_by, ["tiny"]);
        assert.equal(
          report.judge.digest,
          api === "ollama" ? digest.replace("sha256:", "") : undefined,
        );
      }
    } finally {
      await served.close();
    }
  });
});

Deno.test("judge → serve (a model that always says 85, then A): numeric scores and pairwise verdicts over HTTP", async () => {
  const entries = (await readResponses(RESPONSES)).slice(0, 4).map((e) => ({
    ...e,
    other: e.output,
  }));
  await withTempDir(async (dir) => {
    await writeConstantModelFolder(join(dir, "85"), 5332); // GPT-2's token "85"
    let served = await serveTiny(join(dir, "85"), { defaultMaxTokens: 1, truncatePrompts: true });
    try {
      for (const api of ["ollama", "openai"] as const) {
        const report = await runJudge(entries, { api, url: served.url, model: "tiny" }, {
          fields: ["model_response", "other"],
        });
        for (const summary of report.fields) {
          assert.equal(summary.scored, 4);
          assert.equal(summary.mean, 85);
          assert.equal(summary.stderr, 0);
          assert.deepEqual(summary.histogram, [0, 0, 0, 0, 0, 0, 0, 0, 4, 0]);
        }
      }
    } finally {
      await served.close();
    }
    // A judge that always answers "A" prefers whichever response is shown first: every
    // entry's verdict flips with the order, the win rate is exactly one half.
    await writeConstantModelFolder(join(dir, "A"), 32); // GPT-2's token "A"
    served = await serveTiny(join(dir, "A"), { defaultMaxTokens: 1 });
    try {
      const report = await runJudge(entries, { api: "ollama", url: served.url, model: "tiny" }, {
        fields: ["model_response", "other"],
        pairwise: true,
      });
      const p = report.pairwise!;
      assert.equal(p.judged, 4);
      assert.equal(p.win_rate, 0.5);
      assert.equal(p.contradictions, 4);
      assert.equal(p.first_position_rate, 1);
      assert.equal(report.fields[0].scored, 0, '"A" is not a score');
    } finally {
      await served.close();
    }
  });
});
