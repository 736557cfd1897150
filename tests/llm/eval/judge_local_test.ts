/**
 * The local judge (api: local): a model run in this process answers through the same rules as
 * a server judge. With a tiny model built to write "85" and stop, every entry scores 85 and the
 * prompts are exactly those a server judge gets; with one that writes "A", pairwise asks both
 * orders; a random model's replies are unscored, kept, and exactly what one-by-one greedy
 * decoding writes, whatever the number of prompts decoded together; an interrupted run resumes
 * from its ledger and asks only what is missing.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { judgePrompt, readResponses, type ResponseEntry } from "../../../llm/eval/judge.ts";
import type { Judge } from "../../../llm/eval/judge_asker.ts";
import { LocalJudge, weightsDigest } from "../../../llm/eval/judge_local.ts";
import { runJudge } from "../../../llm/eval/judge_run.ts";
import { pairwisePrompt } from "../../../llm/eval/pairwise.ts";
import { openModelFolder } from "../../../llm/infer/open_model.ts";
import { generate } from "../../../llm/model/generate.ts";
import { createTokenizer } from "../../../llm/tokenizer/mod.ts";
import { sharedFixture, withTempDir } from "../../fixtures.ts";
import { useCpuBackend } from "../model/tf_setup.ts";
import { writeTinyHfModel } from "../../stages/tiny_hf_model.ts";
import { chatReply, scriptedJudge } from "./scripted_judge.ts";
import { writeScriptedAnswerModel } from "./scripted_model.ts";

await useCpuBackend();

const RESPONSES = sharedFixture("workshop", "instruction-data-with-response.json");
const gpt2 = createTokenizer({ kind: "gpt2" });

/** A judge that records every prompt it is given, then lets `judge` answer. */
function recording(judge: LocalJudge, seen: string[]): Judge {
  return {
    model: judge.model,
    digest: judge.digest,
    identify: () => judge.identify(),
    ask: (content, signal) => (seen.push(content), judge.ask(content, signal)),
    askEach: (contents, options) => (seen.push(...contents), judge.askEach(contents, options)),
  };
}

Deno.test("local judge (a model that writes 85 and stops): every entry 85, the same prompts a server judge gets", async () => {
  assert.deepEqual(gpt2.encode("85"), [5332]);
  const entries = (await readResponses(RESPONSES)).slice(0, 4);
  await withTempDir(async (dir) => {
    await writeScriptedAnswerModel(dir, [5332]);
    const local = new LocalJudge(await openModelFolder(dir), { name: "scripted-85" });
    const seen: string[] = [];
    const server = scriptedJudge((request) => chatReply(request.path, "85"));
    try {
      const report = await runJudge(entries, recording(local, seen), {
        fields: ["model_response"],
        concurrency: 3,
      });
      // LitGPT's 50 new tokens: the model stops by itself after "85".
      assert.equal(local.maxNewTokens, 50);
      assert.deepEqual(
        report.scores.model_response,
        entries.map(() => ({ score: 85, reply: "85" })),
      );
      const [summary] = report.fields;
      assert.deepEqual([summary.scored, summary.total, summary.mean], [4, 4, 85]);
      assert.deepEqual(report.judge.answered_by, ["scripted-85"]);
      assert.equal(report.judge.api, "local");
      assert.equal(report.judge.url, undefined);

      const remote = await runJudge(entries, { api: "openai", url: server.url, model: "m" }, {
        fields: ["model_response"],
      });
      assert.deepEqual(remote.scores, report.scores);
      assert.deepEqual([...seen].sort(), server.requests.map((r) => r.content).sort());
      assert.deepEqual(seen.sort(), entries.map((e) => judgePrompt(e, "model_response")).sort());
      // A GPT-2 folder without a template continues the prompt as it is (as `serve` does).
      assert.equal(local.render(seen[0]), seen[0]);
      assert.deepEqual(local.encode(seen[0]), gpt2.encode(seen[0]));
    } finally {
      local.dispose();
      await server.close();
    }
  });
});

Deno.test("local judge (a model that writes A): pairwise asks both orders and reads the verdicts", async () => {
  assert.deepEqual(gpt2.encode("A"), [32]);
  const entries = (await readResponses(RESPONSES)).slice(0, 3).map((e) => ({
    ...e,
    other: e.output,
  }));
  await withTempDir(async (dir) => {
    await writeScriptedAnswerModel(join(dir, "model"), [32]);
    const local = new LocalJudge(await openModelFolder(join(dir, "model")), { name: "says-a" });
    const seen: string[] = [];
    try {
      const ledgerPath = join(dir, "scores.jsonl");
      const report = await runJudge(entries, recording(local, seen), {
        fields: ["model_response", "other"],
        pairwise: true,
        ledgerPath,
      });
      // "A" is no score: every score reply is unscored and kept.
      for (const field of report.fields) assert.equal(field.unscored.length, 3);
      const w = report.pairwise!;
      assert.equal(w.judged, 3);
      // Always "A": each field wins once per entry, the order flip contradicts every time.
      assert.deepEqual(w.judgments.map((j) => j.verdicts), entries.map(() => ["A", "A"]));
      assert.deepEqual([w.win_rate, w.contradictions, w.first_position_rate], [0.5, 3, 1]);
      const ledger = (await Deno.readTextFile(ledgerPath)).trim().split("\n").map((line) =>
        JSON.parse(line)
      );
      const pairs = ledger.filter((r) => r.kind === "pair");
      assert.deepEqual(
        [...new Set(pairs.map((r) => r.key))].sort(),
        ["model_response|other", "other|model_response"],
      );
      assert.equal(pairs.length, 6);
      // Both orders were asked: each field shown first.
      for (const entry of entries) {
        assert.ok(seen.includes(pairwisePrompt(entry, "model_response", "other")));
        assert.ok(seen.includes(pairwisePrompt(entry, "other", "model_response")));
      }
    } finally {
      local.dispose();
    }
  });
});

Deno.test("local judge (a random Qwen3 through its chat template): replies unscored and kept, equal to one-by-one greedy decoding, whatever the rows decoded together", async () => {
  const entries = (await readResponses(RESPONSES)).slice(0, 5);
  await withTempDir(async (dir) => {
    await writeTinyHfModel(dir);
    const opened = await openModelFolder(dir);
    const local = new LocalJudge(opened, { name: "random-qwen3", maxNewTokens: 6 });
    try {
      const prompt = judgePrompt(entries[0], "model_response");
      // The judge's prompt is the user message of Qwen3's chat template, thinking off.
      const text = local.render(prompt);
      assert.ok(text.startsWith(`<|im_start|>user\n${prompt}<|im_end|>\n<|im_start|>assistant\n`));
      assert.ok(text.endsWith("<think>\n\n</think>\n\n"), JSON.stringify(text.slice(-40)));

      const expected: string[] = [];
      for (const entry of entries) {
        const ids = local.encode(judgePrompt(entry, "model_response"));
        const tokens = await generate(opened.model, ids, {
          maxNewTokens: 6,
          stopIds: opened.chat.stopIds,
          vocabLimit: opened.vocabLimit,
        });
        expected.push(opened.tokenizer.decode(tokens));
      }
      assert.ok(expected.every((reply) => reply.length > 0), JSON.stringify(expected));
      for (const concurrency of [1, 3, 8]) {
        const report = await runJudge(entries, local, { fields: ["model_response"], concurrency });
        assert.deepEqual(
          report.scores.model_response.map((s) => s.reply),
          expected,
          `concurrency ${concurrency}`,
        );
        const [summary] = report.fields;
        assert.equal(summary.scored, 0, `a random model wrote a number: ${expected}`);
        assert.deepEqual(summary.unscored, expected.map((reply, index) => ({ index, reply })));
      }
    } finally {
      local.dispose();
    }
  });
});

Deno.test("local judge: an interrupted run keeps its answers in the ledger and the next run asks only the rest", async () => {
  const entries: ResponseEntry[] = (await readResponses(RESPONSES)).slice(0, 6);
  await withTempDir(async (dir) => {
    await writeScriptedAnswerModel(join(dir, "model"), [5332]);
    const local = new LocalJudge(await openModelFolder(join(dir, "model")), {
      name: "scripted-85",
      digest: weightsDigest([{ name: "model.safetensors", sha256: "ab".repeat(32) }]),
    });
    const ledgerPath = join(dir, "scores.jsonl");
    try {
      const stop = new AbortController();
      const interrupted = runJudge(entries, local, {
        fields: ["model_response"],
        ledgerPath,
        concurrency: 2,
        signal: stop.signal,
        onProgress: (_what, done) => {
          if (done === 3) stop.abort(new Error("Ctrl-C"));
        },
      });
      await assert.rejects(interrupted, /Ctrl-C/);
      const kept = (await Deno.readTextFile(ledgerPath)).trim().split("\n").map((l) =>
        JSON.parse(l)
      );
      assert.ok(kept.length >= 3 && kept.length < 6, `${kept.length} answers kept`);
      assert.ok(kept.every((r) => r.reply === "85" && r.digest === local.digest));

      const seen: string[] = [];
      const resumed = await runJudge(entries, recording(local, seen), {
        fields: ["model_response"],
        ledgerPath,
        concurrency: 4,
      });
      assert.equal(resumed.reused, kept.length);
      assert.equal(resumed.asked, 6 - kept.length);
      assert.equal(seen.length, 6 - kept.length);
      assert.deepEqual(resumed.scores.model_response.map((s) => s.score), entries.map(() => 85));

      // Other weights under the same name are asked again.
      const other = new LocalJudge(await openModelFolder(join(dir, "model")), {
        name: "scripted-85",
        digest: weightsDigest([{ name: "model.safetensors", sha256: "cd".repeat(32) }]),
      });
      try {
        const again = await runJudge(entries, other, { fields: ["model_response"], ledgerPath });
        assert.equal(again.asked, 6);
      } finally {
        other.dispose();
      }
    } finally {
      local.dispose();
    }
  });
});

Deno.test("weightsDigest: one weights file is its sha256; shards are hashed together by name; other files do not count", () => {
  const a = { name: "model.safetensors", sha256: "a".repeat(64) };
  assert.equal(
    weightsDigest([a, { name: "config.json", sha256: "f".repeat(64) }]),
    `sha256:${a.sha256}`,
  );
  const shards = [
    { name: "model-00002-of-00002.safetensors", sha256: "2".repeat(64) },
    { name: "model-00001-of-00002.safetensors", sha256: "1".repeat(64) },
  ];
  const digest = weightsDigest(shards);
  assert.match(digest!, /^sha256:[0-9a-f]{64}$/);
  assert.equal(weightsDigest([...shards].reverse()), digest);
  assert.notEqual(weightsDigest([shards[0], { ...shards[1], sha256: "3".repeat(64) }]), digest);
  assert.equal(weightsDigest([{ name: "tokenizer.json", sha256: "0".repeat(64) }]), undefined);
});
