/**
 * The judge and pairwise preference against a scripted server on loopback: the book's prompt
 * and request, numeric replies → mean / stderr / histogram, unscored replies kept, retries on
 * 500 and 429 (Retry-After honoured), timeouts, an unreachable judge, the API key kept out of
 * every message and record, and resuming an interrupted run.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  judgePrompt,
  parseScore,
  readResponses,
  type ResponseEntry,
  responseFields,
} from "../../../llm/eval/judge.ts";
import {
  JudgeRequestError,
  JudgeUnreachableError,
  retryAfterMs,
} from "../../../llm/eval/judge_client.ts";
import { runJudge } from "../../../llm/eval/judge_run.ts";
import { parseVerdict } from "../../../llm/eval/pairwise.ts";
import { scoreHistogramSvg } from "../../../llm/eval/histogram_svg.ts";
import { sharedFixture, withTempDir } from "../../fixtures.ts";
import { chatReply, scriptedJudge } from "./scripted_judge.ts";

const RESPONSES = sharedFixture("workshop", "instruction-data-with-response.json");

/** Records the backoff instead of sleeping. */
function recordingSleep() {
  const waits: number[] = [];
  return { waits, sleep: (ms: number) => (waits.push(ms), Promise.resolve()) };
}

Deno.test("judge: the book's prompt, character for character, and its responses file", async () => {
  const entries = await readResponses(RESPONSES, ["model_response"]);
  assert.equal(entries.length, 110);
  assert.deepEqual(responseFields(entries), ["model_response"]);
  assert.equal(
    judgePrompt(entries[0], "model_response"),
    "Given the input `Below is an instruction that describes a task. Write a response that " +
      "appropriately completes the request.\n\n### Instruction:\nRewrite the sentence using a " +
      "simile.\n\n### Input:\nThe car is very fast.` and correct output `The car is as fast as " +
      "lightning.`, score the model response `The car is as fast as a bullet.` on a scale from 0 " +
      "to 100, where 100 is the best score. Respond with the integer number only.",
  );
  await withTempDir(async (dir) => {
    const bad = join(dir, "bad.json");
    await Deno.writeTextFile(
      bad,
      JSON.stringify([{ instruction: "x", output: "y" }, { instruction: "x", output: 3 }]),
    );
    await assert.rejects(
      readResponses(bad),
      /bad\.json: entry 2 \(counting from 1\): "output" must be a string \(got number\)/,
    );
    await assert.rejects(
      readResponses(RESPONSES, ["tuned"]),
      /entry 1 \(counting from 1\): "tuned" must be a string \(got nothing\)/,
    );
  });
});

Deno.test("judge: strict and lenient score parsing; verdict parsing; Retry-After", () => {
  const strict: [string, number | null][] = [
    ["85", 85],
    [" 85\n", 85],
    ["+7", 7],
    ["0", 0],
    ["100", 100],
    ["101", null],
    ["-5", null],
    ["85.5", null],
    ["Score: 85", null],
    ["eighty", null],
    ["", null],
  ];
  for (const [reply, score] of strict) {
    assert.equal(parseScore(reply), score, JSON.stringify(reply));
  }
  const lenient: [string, number | null][] = [
    ["Score: 85", 85],
    ["**Score:** 72", 72],
    ["85/100", 85],
    ["I would give it 60.", 60],
    ["The score is 90 out of 100", 90],
    ["Between 60 and 70", null],
    ["85.5", null],
    ["no idea", null],
    ["Score: 150", null],
  ];
  for (const [reply, score] of lenient) {
    assert.equal(parseScore(reply, true), score, JSON.stringify(reply));
  }
  const verdicts: [string, string | null][] = [
    ["A", "A"],
    ["b", "B"],
    [' "A". ', "A"],
    ["Response B", "B"],
    ["Tie", "tie"],
    ["**tie**", "tie"],
    ["A or B", null],
    ["Both are good", null],
  ];
  for (const [reply, verdict] of verdicts) assert.equal(parseVerdict(reply), verdict, reply);
  assert.equal(retryAfterMs("3"), 3000);
  assert.equal(retryAfterMs(new Date(10_000).toUTCString(), 4000), 6000);
  assert.equal(retryAfterMs("soon"), undefined);
});

Deno.test("judge: numeric replies give mean, standard error and histogram; unscored replies are kept", async () => {
  const entries = (await readResponses(RESPONSES)).slice(0, 5);
  const replies = ["85", "90", "40", "100", "I cannot score this"];
  const judge = scriptedJudge((seen) => {
    const index = entries.findIndex((e) => seen.content === judgePrompt(e, "model_response"));
    return chatReply(seen.path, replies[index]);
  }, { digest: "abc123" });
  try {
    const report = await runJudge(entries, { api: "ollama", url: judge.url }, {
      fields: ["model_response"],
    });
    assert.deepEqual(report.judge, {
      api: "ollama",
      url: judge.url,
      model: "llama3",
      digest: "abc123",
      answered_by: ["scripted-judge"],
    });
    // The book's request: /api/chat, stream false, seed 123, temperature 0, num_ctx 2048.
    assert.equal(judge.requests.length, 5);
    for (const seen of judge.requests) {
      assert.equal(seen.path, "/api/chat");
      assert.deepEqual(
        { ...seen.body, messages: undefined },
        {
          model: "llama3",
          stream: false,
          options: { seed: 123, temperature: 0, num_ctx: 2048 },
          messages: undefined,
        },
      );
      assert.equal(seen.authorization, null);
    }
    const [summary] = report.fields;
    assert.equal(summary.scored, 4);
    assert.equal(summary.total, 5);
    assert.equal(summary.mean, 78.75);
    // Sample standard deviation sqrt(2118.75 / 3) over sqrt(4).
    assert.ok(Math.abs(summary.stderr! - Math.sqrt(2118.75 / 3) / 2) < 1e-12);
    assert.deepEqual(summary.histogram, [0, 0, 0, 0, 1, 0, 0, 0, 1, 2]);
    assert.deepEqual(summary.unscored, [{ index: 4, reply: "I cannot score this" }]);
    assert.deepEqual(report.scores.model_response.map((s) => s.score), [85, 90, 40, 100, null]);
    const svg = scoreHistogramSvg(summary);
    assert.match(svg, /^<svg [^>]*>/);
    assert.match(svg, /model_response: 4\/5 scored, mean 78\.75 ± 13\.29/);
    assert.equal((svg.match(/<rect x=[^>]*fill="#1f77b4"/g) ?? []).length, 10);
  } finally {
    await judge.close();
  }
});

Deno.test("judge: every reply garbage: nothing scored, every reply listed; lenient parsing rescues 'Score: N'", async () => {
  const entries = (await readResponses(RESPONSES)).slice(0, 3);
  const judge = scriptedJudge((seen, n) => chatReply(seen.path, n % 2 ? `Score: ${50 + n}` : "🤷"));
  try {
    const strict = await runJudge(entries, { api: "openai", url: judge.url, model: "m" }, {
      fields: ["model_response"],
      concurrency: 1,
    });
    const [summary] = strict.fields;
    assert.equal(summary.scored, 0);
    assert.equal(summary.mean, null);
    assert.equal(summary.stderr, null);
    assert.deepEqual(summary.unscored.map((u) => u.index), [0, 1, 2]);
    assert.deepEqual(summary.unscored.map((u) => u.reply), ["🤷", "Score: 51", "🤷"]);
    assert.equal(judge.requests[0].path, "/v1/chat/completions");
    assert.equal(judge.requests[0].body.temperature, 0);
    assert.equal(judge.requests[0].body.seed, 123);
    assert.equal(strict.judge.digest, undefined, "OpenAI-compatible servers give no digest");

    const lenient = await runJudge(entries, { api: "openai", url: judge.url, model: "m" }, {
      fields: ["model_response"],
      concurrency: 1,
      lenient: true,
    });
    // This run's replies: "Score: 53", "🤷", "Score: 55".
    assert.equal(lenient.fields[0].scored, 2);
    assert.equal(lenient.fields[0].mean, 54);
  } finally {
    await judge.close();
  }
});

Deno.test("judge: 500s and 429 are retried with backoff (Retry-After honoured); other 4xx fail at once", async () => {
  const entries = (await readResponses(RESPONSES)).slice(0, 1);
  const statuses = [500, 503, 429, 200];
  const judge = scriptedJudge((seen, n) => {
    if (statuses[n] === 200) return chatReply(seen.path, "77");
    return new Response("busy", {
      status: statuses[n],
      headers: statuses[n] === 429 ? { "retry-after": "7" } : {},
    });
  });
  try {
    const { waits, sleep } = recordingSleep();
    const report = await runJudge(entries, { api: "ollama", url: judge.url, backoffMs: 100 }, {
      fields: ["model_response"],
    }, { sleep });
    assert.equal(report.fields[0].mean, 77);
    assert.equal(judge.requests.length, 4);
    assert.deepEqual(waits, [100, 200, 7000]);
  } finally {
    await judge.close();
  }

  const refusing = scriptedJudge(() =>
    new Response('{"error":"model not allowed"}', { status: 403 })
  );
  try {
    const { waits, sleep } = recordingSleep();
    await assert.rejects(
      runJudge(entries, { api: "ollama", url: refusing.url }, { fields: ["model_response"] }, {
        sleep,
      }),
      (error) =>
        error instanceof JudgeRequestError && error.status === 403 &&
        /model not allowed/.test(error.message),
    );
    assert.equal(refusing.requests.length, 1);
    assert.deepEqual(waits, []);
  } finally {
    await refusing.close();
  }

  const failing = scriptedJudge(() => new Response("down", { status: 502 }));
  try {
    const { waits, sleep } = recordingSleep();
    await assert.rejects(
      runJudge(entries, { api: "ollama", url: failing.url, retries: 2, backoffMs: 10 }, {
        fields: ["model_response"],
      }, { sleep }),
      /gave up after 3 attempts: HTTP 502: down/,
    );
    assert.equal(failing.requests.length, 3);
    assert.deepEqual(waits, [10, 20]);
  } finally {
    await failing.close();
  }
});

Deno.test("judge: a request that outlives its timeout is retried; one that always does fails naming the timeout", async () => {
  const entries = (await readResponses(RESPONSES)).slice(0, 1);
  const release = Promise.withResolvers<void>();
  const slowFirst = scriptedJudge(async (seen, n) => {
    if (n === 0) await release.promise; // never answers in time
    return chatReply(seen.path, "66");
  });
  const { sleep } = recordingSleep();
  try {
    const report = await runJudge(entries, { api: "ollama", url: slowFirst.url, timeoutMs: 300 }, {
      fields: ["model_response"],
    }, { sleep });
    assert.equal(report.fields[0].mean, 66);
    assert.equal(slowFirst.requests.length, 2);
  } finally {
    release.resolve();
    await slowFirst.close();
  }
  const hold = Promise.withResolvers<void>();
  const neverInTime = scriptedJudge(async (seen) => {
    await hold.promise;
    return chatReply(seen.path, "66");
  });
  try {
    await assert.rejects(
      runJudge(entries, { api: "ollama", url: neverInTime.url, timeoutMs: 200, retries: 1 }, {
        fields: ["model_response"],
      }, { sleep }),
      /gave up after 2 attempts: no reply within 0\.2 s/,
    );
    assert.equal(neverInTime.requests.length, 2);
  } finally {
    hold.resolve();
    await neverInTime.close();
  }
});

Deno.test("judge: an unreachable judge names its URL and how to start one; the API key never appears", async () => {
  const entries = (await readResponses(RESPONSES)).slice(0, 2);
  // A port nobody listens on: start a server, note its port, stop it.
  const gone = scriptedJudge(() => new Response());
  await gone.close();
  const { sleep } = recordingSleep();
  const key = "sk-very-secret-123";
  const env = (name: string) => (name === "JUDGE_KEY" ? key : undefined);
  const error = await runJudge(entries, {
    api: "ollama",
    url: gone.url,
    apiKeyEnv: "JUDGE_KEY",
    retries: 1,
  }, {
    fields: ["model_response"],
  }, { sleep, env }).then(() => undefined, (e) => e);
  assert.ok(error instanceof JudgeUnreachableError, String(error));
  assert.ok(error.message.includes(gone.url), error.message);
  assert.match(error.message, /ollama serve/);
  assert.match(
    error.message,
    /the model "llama3" \(Ollama: `OLLAMA_HOST=127.0.0.1:\d+ ollama serve`/,
  );
  assert.match(error.message, /set the judge's URL/);
  assert.ok(!error.message.includes(key));
  await assert.rejects(
    runJudge(entries, { api: "openai", url: gone.url, apiKeyEnv: "UNSET_JUDGE_KEY" }, {
      fields: ["model_response"],
    }, { env }),
    /UNSET_JUDGE_KEY is not set/,
  );

  // A server that echoes the key back in its error: the message and the ledger stay clean.
  const echo = scriptedJudge((seen) =>
    seen.content.includes("simile")
      ? chatReply(seen.path, "50")
      : new Response(`bad key ${seen.authorization}`, { status: 400 })
  );
  await withTempDir(async (dir) => {
    const ledgerPath = join(dir, "scores.jsonl");
    try {
      const failure = await runJudge(entries, {
        api: "openai",
        url: echo.url,
        model: "m",
        apiKeyEnv: "JUDGE_KEY",
      }, {
        fields: ["model_response"],
        ledgerPath,
        concurrency: 1,
      }, { env }).then(() => undefined, (e) => e);
      assert.ok(failure instanceof JudgeRequestError);
      assert.match(failure.message, /bad key Bearer \[API key\]/);
      assert.ok(!failure.message.includes(key));
      assert.equal(echo.requests[0].authorization, `Bearer ${key}`);
      const ledger = await Deno.readTextFile(ledgerPath);
      assert.equal(ledger.trim().split("\n").length, 1);
      assert.ok(!ledger.includes(key));
    } finally {
      await echo.close();
    }
  });
});

Deno.test("judge: an interrupted run resumes from scores.jsonl and asks only the rest", async () => {
  const entries = (await readResponses(RESPONSES)).slice(0, 6);
  await withTempDir(async (dir) => {
    const ledgerPath = join(dir, "scores.jsonl");
    const score = (content: string) =>
      String(entries.findIndex((e) => content === judgePrompt(e, "model_response")) * 10);
    // The first judge answers 4 questions, then stops working (a 400 is not retried).
    const first = scriptedJudge((seen, n) =>
      n < 4 ? chatReply(seen.path, score(seen.content)) : new Response("gone", { status: 400 })
    );
    try {
      await assert.rejects(
        runJudge(entries, { api: "ollama", url: first.url }, {
          fields: ["model_response"],
          ledgerPath,
          concurrency: 1,
        }),
      );
    } finally {
      await first.close();
    }
    // A torn last line, as if the process died while appending.
    await Deno.writeTextFile(ledgerPath, '{"kind":"sco', { append: true });
    const second = scriptedJudge((seen) => chatReply(seen.path, score(seen.content)));
    try {
      const report = await runJudge(entries, { api: "ollama", url: second.url }, {
        fields: ["model_response"],
        ledgerPath,
        concurrency: 2,
      });
      assert.equal(second.requests.length, 2);
      assert.equal(report.asked, 2);
      assert.equal(report.reused, 4);
      assert.deepEqual(report.scores.model_response.map((s) => s.score), [0, 10, 20, 30, 40, 50]);
      // A different judge model does not reuse another's answers.
      const other = await runJudge(entries, {
        api: "ollama",
        url: second.url,
        model: "llama3:latest",
      }, { fields: ["model_response"], ledgerPath });
      assert.equal(other.asked, 6);
    } finally {
      await second.close();
    }
    const lines = (await Deno.readTextFile(ledgerPath)).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    assert.equal(lines.length, 12);
  });
});

Deno.test("pairwise: both orders asked; win rate with ties as half; self-contradictions counted", async () => {
  const base = (await readResponses(RESPONSES)).slice(0, 4);
  // Field "x" is better on entries 0 and 1, "y" on entry 2; entry 3 is a toss-up where the
  // judge always picks whatever is shown first (a contradiction when the order flips).
  const better = ["x", "x", "y", null];
  const entries: ResponseEntry[] = base.map((e, i) => ({
    ...e,
    x: `x answer ${i}`,
    y: `y answer ${i}`,
  }));
  const judge = scriptedJudge((seen) => {
    if (!seen.content.includes("Response A:")) return chatReply(seen.path, "50"); // the scores
    const i = Number(seen.content.match(/Response A:\n```\n[xy] answer (\d)/)![1]);
    const shownA = seen.content.match(/Response A:\n```\n([xy])/)![1];
    if (better[i] === null) return chatReply(seen.path, "A");
    if (i === 1 && shownA === "y") return chatReply(seen.path, "tie"); // one tie for x on entry 1
    return chatReply(seen.path, better[i] === shownA ? "A" : "B");
  });
  try {
    const report = await runJudge(entries, { api: "ollama", url: judge.url }, {
      fields: ["x", "y"],
      pairwise: true,
    });
    const p = report.pairwise!;
    assert.equal(judge.requests.length, 8 + 8); // 4 scores per field, then 4 entries × 2 orders
    assert.equal(p.total, 4);
    assert.equal(p.judged, 4);
    // Entry scores for x: 1, (1 + ½)/2, 0, (1 + 0)/2 → mean 0.5625.
    assert.deepEqual(p.judgments.map((j) => j.score), [1, 0.75, 0, 0.5]);
    assert.equal(p.win_rate, 0.5625);
    assert.deepEqual([p.wins, p.losses, p.ties], [2, 1, 1]);
    assert.equal(p.contradictions, 1);
    assert.equal(p.contradiction_rate, 0.25);
    assert.deepEqual(p.judgments[3].verdicts, ["A", "A"]);
  } finally {
    await judge.close();
  }
});
