/**
 * The web UI's JSON endpoints, served in-process (Deno.serve on port 0) over a cache the runner
 * made: runs and their pages, 100k-point histories downsampled, the evaluation views, the chat
 * stream, and paths from the browser that try to leave the cache.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { withTempDir } from "../fixtures.ts";
import { useCpuBackend } from "../llm/model/tf_setup.ts";
import { parityWords, writeParityModelFolder } from "../stages/parity_checkpoints.ts";
import { UiApi } from "../../server/ui_api.ts";
import { ChatService } from "../../server/ui_chat.ts";
import { expectedScore, FIELDS, runUiPipeline, uiResponses, UNSCORED_ENTRY } from "./ui_cache.ts";

await useCpuBackend();

const HISTORY_KEY = "aaaaaaaaaaaaaaaa";
const MODEL_KEY = "bbbbbbbbbbbbbbbb";
const N_POINTS = 100_000;

/** A pretrain-like artifact with a 100k-point history (one spike at step 77,777). */
async function writeLongHistory(cache: string) {
  const dir = join(cache, "pretrain", HISTORY_KEY);
  await Deno.mkdir(dir, { recursive: true });
  const evaluations = Array.from({ length: N_POINTS }, (_, i) => ({
    step: i * 10,
    epoch: i / 1000,
    tokens_seen: i * 1280,
    train_loss: i === 77_777 ? 20 : 10 * Math.exp(-i / 20_000) + 1,
    val_loss: 10 * Math.exp(-i / 20_000) + 1.2,
  }));
  await Deno.writeTextFile(
    join(dir, "history.json"),
    JSON.stringify({ initial: { train_loss: 11, val_loss: 11 }, evaluations, samples: [] }),
  );
  await Deno.writeTextFile(
    join(dir, "manifest.json"),
    JSON.stringify({
      format: 1,
      stage: "pretrain",
      type: "pretrain",
      key: HISTORY_KEY.repeat(4),
      params: { lr: 0.0004 },
      metrics: { train_loss: 1.0 },
      finishedAt: "2026-01-01T00:00:00.000Z",
      // no inputs, environment, files, versions: older or newer manifests may lack them
    }),
  );
}

async function withUi(
  fn: (
    base: string,
    ctx: { cache: string; dir: string; outside: string; cases: ParityCase[] },
  ) => Promise<void>,
) {
  await withTempDir(async (dir) => {
    const cache = join(dir, "cache");
    await runUiPipeline(dir, cache, { train: false, name: "evals" });
    await writeLongHistory(cache);
    const modelDir = join(cache, "parity", MODEL_KEY);
    const { cases } = await writeParityModelFolder(modelDir);
    await Deno.writeTextFile(
      join(modelDir, "manifest.json"),
      JSON.stringify({ stage: "parity", type: "parity", key: MODEL_KEY, metrics: {} }),
    );
    // A secret next to the cache, and links that point at it from inside.
    const outside = join(dir, "secret.txt");
    await Deno.writeTextFile(outside, "do not serve");
    await Deno.symlink(outside, join(cache, "pretrain", HISTORY_KEY, "leak.txt"));
    await Deno.symlink(dir, join(cache, "pretrain", "cccccccccccccccc"));

    const chat = new ChatService("cpu");
    const api = new UiApi({ cacheDir: cache, chat });
    const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, api.handler);
    try {
      await fn(`http://127.0.0.1:${server.addr.port}`, { cache, dir, outside, cases });
    } finally {
      chat.dispose();
      await server.shutdown();
    }
  });
}

type ParityCase = { prompt: number[]; max_new_tokens: number; expected_new_tokens: number[] };

async function getJson(url: string) {
  const response = await fetch(url);
  const body = await response.json();
  assert.equal(response.status, 200, `${url}: ${JSON.stringify(body)}`);
  return body;
}

Deno.test("ui api: runs, a run's stages with files and sizes, artifacts, static files", async () => {
  await withUi(async (base, { cache }) => {
    const runs = await getJson(`${base}/api/ui/runs`);
    assert.equal(runs.total, 1);
    const [run] = runs.runs;
    assert.equal(run.pipeline, "evals");
    assert.equal(run.status, "ok");
    assert.deepEqual(run.steps.map((s: { outcome: string }) => s.outcome), ["ran", "ran", "ran"]);

    const detail = await getJson(`${base}/api/ui/runs/${encodeURIComponent(run.id)}`);
    const [mmluStep, step, judgeStep] = detail.steps;
    assert.equal(step.artifact.ref, step.ref);
    assert.deepEqual(mmluStep.artifact.views, ["mmlu"]);
    assert.deepEqual(step.artifact.views, ["responses"]);
    assert.deepEqual(judgeStep.artifact.views, ["judge", "pairwise", "responses"]);
    const responses = step.artifact.files.find((f: { name: string }) =>
      f.name === "responses.json"
    );
    assert.equal(responses.size, (await Deno.stat(join(cache, step.ref, "responses.json"))).size);
    assert.deepEqual(step.artifact.manifest.metrics, { entries: (await uiResponses()).length });
    assert.deepEqual(
      judgeStep.artifact.files.map((f: { name: string }) => f.name),
      [
        "histogram-response_after.svg",
        "histogram-response_before.svg",
        "judge.json",
        "manifest.json",
        "pairwise.json",
        "scores.jsonl",
      ],
    );

    const artifacts = await getJson(`${base}/api/ui/artifacts`);
    assert.deepEqual(
      artifacts.artifacts.map((a: { ref: string }) => a.ref).sort(),
      [
        mmluStep.ref,
        step.ref,
        judgeStep.ref,
        `parity/${MODEL_KEY}`,
        `pretrain/${HISTORY_KEY}`,
      ].sort(),
      "the symlink to a folder outside is not listed",
    );
    const models = await getJson(`${base}/api/ui/models`);
    assert.deepEqual(models.models.map((m: { ref: string }) => m.ref), [`parity/${MODEL_KEY}`]);

    for (const path of ["/", "/app.js", "/style.css", "/vendor/uPlot.iife.min.js"]) {
      const response = await fetch(base + path);
      assert.equal(response.status, 200, path);
      assert.ok((await response.text()).length > 100, path);
    }
  });
});

Deno.test("ui api: run lists are paged, newest first, and tolerate odd records", async () => {
  await withUi(async (base, { cache }) => {
    const runsDir = join(cache, "runs");
    for (let i = 0; i < 130; i++) {
      const stamp = `2025-01-01T00-00-${String(i).padStart(3, "0")}-000Z`;
      // An older record without status/startedAt/needs, as the first runner version wrote.
      await Deno.writeTextFile(
        join(runsDir, `${stamp}-old.json`),
        JSON.stringify({
          pipeline: "old",
          ok: i % 2 === 0,
          steps: [{ stage: "x", outcome: "ran" }],
        }),
      );
    }
    await Deno.writeTextFile(join(runsDir, "2024-01-01T00-00-00-000Z-broken.json"), "{ not json");
    const first = await getJson(`${base}/api/ui/runs?limit=50`);
    assert.equal(first.total, 132);
    assert.equal(first.runs.length, 50);
    assert.equal(first.runs[0].pipeline, "evals", "the newest run comes first");
    assert.equal(first.runs[1].id, "2025-01-01T00-00-129-000Z-old");
    assert.equal(first.runs[1].status, "failed");
    assert.equal(first.runs[2].status, "ok");
    const last = await getJson(`${base}/api/ui/runs?offset=100&limit=50`);
    assert.equal(last.runs.length, 31, "the unreadable record is left out of the page");
    const capped = await getJson(`${base}/api/ui/runs?limit=100000`);
    assert.equal(capped.limit, 200);
    const bad = await fetch(`${base}/api/ui/runs?limit=-3`);
    assert.equal(bad.status, 400);
    await bad.body?.cancel();
  });
});

Deno.test("ui api: a 100k-point history reaches the page as the requested number of points", async () => {
  await withUi(async (base) => {
    const ref = `pretrain/${HISTORY_KEY}`;
    const data = await getJson(`${base}/api/ui/history?ref=${ref}&points=1000`);
    const [series] = data.series;
    assert.equal(series.total, N_POINTS);
    const { step, train_loss, val_loss, epoch, tokens_seen } = series.columns;
    for (const column of [step, train_loss, val_loss, epoch, tokens_seen]) {
      assert.equal(column.length, 1000);
    }
    assert.equal(step[0], 0);
    assert.equal(step.at(-1), (N_POINTS - 1) * 10, "the last point is kept");
    assert.ok(step.every((s: number, i: number) => i === 0 || s > step[i - 1]), "in step order");
    assert.ok(train_loss.includes(20), "the spike survives downsampling");
    // Rows stay aligned: each kept row is the original row.
    const i = step.indexOf(777_770);
    assert.equal(val_loss[i], 10 * Math.exp(-77_777 / 20_000) + 1.2);
    assert.equal(tokens_seen[i], 77_777 * 1280);

    const all = await getJson(`${base}/api/ui/history?ref=${ref}&points=100000`);
    assert.equal(all.series[0].columns.step.length, 10_000, "at most 10,000 points per series");
  });
});

Deno.test("ui api: MMLU table; the judge stage's scores, histogram, pairwise; responses filtered by score", async () => {
  await withUi(async (base) => {
    const { runs: [run] } = await getJson(`${base}/api/ui/runs`);
    const [mmluRef, responsesRef, ref] = run.steps.map((s: { ref: string }) => s.ref);
    const mmlu = await getJson(`${base}/api/ui/mmlu?ref=${mmluRef}`);
    assert.deepEqual(mmlu.rows.map((r: { task: string }) => r.task), [
      "mmlu_astronomy",
      "mmlu_philosophy",
      "mmlu_demo",
    ]);
    const philosophy = mmlu.rows[1];
    assert.deepEqual([philosophy.acc, philosophy.stderr, philosophy.n], [0.5691, 0.0281, 311]);
    assert.deepEqual([mmlu.rows[2].group, mmlu.rows[2].n], [true, 311 + 152]);

    // The scores the scripted judge gave, recomputed here; the judge stage wrote them.
    const entries = await uiResponses();
    const expected = Object.fromEntries(
      FIELDS.map((f) => [f, entries.map((e, i) => expectedScore(e, i, f))]),
    );
    const judge = await getJson(`${base}/api/ui/judge?ref=${ref}`);
    assert.equal(judge.judge.model, "llama3");
    assert.deepEqual(judge.judge.answered_by, ["llama3:latest"]);
    assert.deepEqual(judge.models.map((m: { field: string }) => m.field), FIELDS);
    for (const m of judge.models) {
      const scores = expected[m.field].filter((s): s is number => s !== null);
      assert.equal(m.judge, "llama3");
      assert.equal(m.total, entries.length);
      assert.equal(m.scored, scores.length);
      assert.equal(m.unscored, entries.length - scores.length);
      assert.ok(Math.abs(m.mean - scores.reduce((a, b) => a + b) / scores.length) < 1e-9);
      assert.ok(m.stderr > 0);
      assert.equal(m.histogram.reduce((a: number, b: number) => a + b), scores.length);
      assert.equal(m.histogram[9], scores.filter((s) => s >= 90).length);
    }
    assert.equal(judge.models[0].unscored, 1, `entry ${UNSCORED_ENTRY}'s reply was no number`);

    // Pairwise: the judge prefers the answer of higher overlap in both orders.
    const [before, after] = FIELDS.map((f) =>
      entries.map((e) => expectedScore(e, -1, f) as number)
    );
    const wins = before.filter((b, i) => b > after[i]).length;
    const losses = before.filter((b, i) => b < after[i]).length;
    const ties = entries.length - wins - losses;
    const { comparisons: [pair] } = await getJson(`${base}/api/ui/pairwise?ref=${ref}`);
    assert.deepEqual(
      [pair.a, pair.b, pair.wins, pair.losses, pair.ties, pair.judged, pair.total],
      [FIELDS[0], FIELDS[1], wins, losses, ties, entries.length, entries.length],
    );
    assert.ok(Math.abs(pair.win_rate - (wins + ties / 2) / entries.length) < 1e-9);
    assert.equal(pair.contradictions, 0);
    assert.equal(pair.judge, "llama3");

    // The judge artifact lists the responses it judged, each with its score and reply.
    const page = await getJson(`${base}/api/ui/responses?ref=${ref}&limit=5`);
    assert.deepEqual(page.fields, FIELDS);
    assert.equal(page.judge, "llama3");
    assert.equal(page.total, entries.length);
    assert.equal(page.rows.length, 5);
    assert.equal(page.rows[0].output, entries[0].output);
    assert.deepEqual(page.rows[0].responses.response_after, {
      text: entries[0].response_after,
      score: expected.response_after[0],
      reply: String(expected.response_after[0]),
    });
    assert.deepEqual(page.rows[UNSCORED_ENTRY].responses.response_before, {
      text: entries[UNSCORED_ENTRY].response_before,
      score: null,
      reply: "no idea",
    });
    for (const field of FIELDS) {
      const high = await getJson(
        `${base}/api/ui/responses?ref=${ref}&field=${field}&min=60&max=100&limit=200`,
      );
      const want = expected[field].flatMap((s, i) => (s !== null && s >= 60 ? [i] : []));
      assert.deepEqual(high.rows.map((r: { index: number }) => r.index), want, field);
      assert.ok(want.length > 0 && want.length < entries.length, field);
    }
    // The responses artifact itself: the same entries, unscored unless a judge is named.
    const plain = await getJson(`${base}/api/ui/responses?ref=${responsesRef}&limit=1`);
    assert.equal(plain.scored, false);
    assert.equal(plain.rows[0].responses.response_after.score, null);
    const named = await getJson(
      `${base}/api/ui/responses?ref=${responsesRef}&scores=${ref}&limit=1`,
    );
    assert.equal(named.rows[0].responses.response_after.score, expected.response_after[0]);

    const none = await fetch(`${base}/api/ui/mmlu?ref=pretrain/${HISTORY_KEY}`);
    assert.equal(none.status, 404, "a view that is absent is a 404 with a message");
    assert.match((await none.json()).error, /results\.json/);
  });
});

Deno.test("ui api: paths from the browser never reach outside the cache", async () => {
  await withUi(async (base, { outside }) => {
    const ok = await fetch(`${base}/api/ui/file?ref=pretrain/${HISTORY_KEY}&path=manifest.json`);
    assert.equal(ok.status, 200);
    assert.match(ok.headers.get("content-security-policy")!, /sandbox/, "no script in our origin");
    assert.equal((await ok.json()).key, HISTORY_KEY.repeat(4));

    const attempts = [
      `file?ref=pretrain/${HISTORY_KEY}&path=../../runs`,
      `file?ref=pretrain/${HISTORY_KEY}&path=..%2F..%2F..%2Fsecret.txt`,
      `file?ref=pretrain/${HISTORY_KEY}&path=%2E%2E/%2E%2E/%2E%2E/secret.txt`,
      `file?ref=pretrain/${HISTORY_KEY}&path=${encodeURIComponent(outside)}`,
      `file?ref=pretrain/${HISTORY_KEY}&path=/etc/passwd`,
      `file?ref=pretrain/${HISTORY_KEY}&path=%2Fetc%2Fpasswd`,
      `file?ref=pretrain/${HISTORY_KEY}&path=a/../../../secret.txt`,
      `file?ref=pretrain/${HISTORY_KEY}&path=..%5C..%5C..%5Csecret.txt`,
      `file?ref=pretrain/${HISTORY_KEY}&path=%252e%252e%252f%252e%252e%252fsecret.txt`,
      `file?ref=pretrain/${HISTORY_KEY}&path=leak.txt`, // a symlink to the secret
      `file?ref=pretrain/cccccccccccccccc&path=secret.txt`, // a symlinked folder
      `file?ref=..%2F..&path=secret.txt`,
      `file?ref=%2Fetc/passwd&path=x`,
      `file?ref=pretrain/..&path=secret.txt`,
      `history?ref=..%2F${HISTORY_KEY}`,
      `responses?ref=pretrain/${HISTORY_KEY}&scores=../..`,
      `runs/..%2F..%2Fsecret`,
      `runs/%2E%2E%2Fsecret`,
      `runs/${encodeURIComponent(outside)}`,
      `runs/%E0%A4%A`, // not valid percent-encoding
    ];
    for (const attempt of attempts) {
      const response = await fetch(`${base}/api/ui/${attempt}`);
      const text = await response.text();
      assert.ok([400, 404].includes(response.status), `${attempt}: ${response.status} ${text}`);
      assert.ok(!text.includes("do not serve"), attempt);
    }
    // Raw `../` in the URL path itself is resolved by the URL parser before routing: it can
    // only name another endpoint, never a file.
    const raw = await fetch(`${base}/api/ui/file/../../../secret.txt`);
    assert.equal(raw.status, 404);
    assert.ok(!(await raw.text()).includes("do not serve"));
  });
});

Deno.test("ui api: read-only except the chat; the chat streams a model's reply token by token", async () => {
  await withUi(async (base, { cases }) => {
    for (const method of ["PUT", "DELETE", "POST"]) {
      const response = await fetch(`${base}/api/ui/runs`, { method });
      assert.equal(response.status, 405, method);
      await response.body?.cancel();
    }
    const form = await fetch(`${base}/api/ui/chat`, { method: "POST", body: "model=x" });
    assert.equal(form.status, 415, "a cross-site form post is refused");
    await form.body?.cancel();

    const post = (body: unknown) =>
      fetch(`${base}/api/ui/chat`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const badField = await post({
      model: `parity/${MODEL_KEY}`,
      messages: [{ role: "user", content: "t01" }],
      max_tokens: 1e9,
    });
    assert.equal(badField.status, 400);
    assert.match((await badField.json()).error, /max_tokens/);
    const outside = await post({ model: "../..", messages: [{ role: "user", content: "t01" }] });
    assert.equal(outside.status, 400);
    await outside.body?.cancel();

    // PyTorch's greedy continuation of the parity model, streamed as events.
    const { prompt, max_new_tokens, expected_new_tokens } = cases[0];
    const response = await post({
      model: `parity/${MODEL_KEY}`,
      messages: [{ role: "user", content: parityWords(prompt) }],
      temperature: 0,
      max_tokens: max_new_tokens,
      template: "auto",
    });
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type")!, /text\/event-stream/);
    const events = (await response.text()).trim().split("\n\n").map((block) => {
      const [event, data] = block.split("\n");
      return { event: event.slice(7), data: JSON.parse(data.slice(6)) };
    });
    assert.equal(events[0].event, "meta");
    assert.equal(events[0].data.template, "none");
    assert.equal(events[0].data.prompt, parityWords(prompt));
    const tokens = events.filter((e) => e.event === "token");
    assert.ok(tokens.length >= 2, "the reply comes in pieces");
    assert.equal(tokens.map((t) => t.data.text).join(""), " " + parityWords(expected_new_tokens));
    assert.deepEqual(events.at(-1)!.event, "done");
    assert.equal(events.at(-1)!.data.tokens, expected_new_tokens.length);
    assert.equal(
      events.at(-1)!.data.stopped,
      expected_new_tokens.length < max_new_tokens ? "stop_token" : "max_new_tokens",
    );
  });
});

Deno.test("ui api: a loopback server refuses other Host names (DNS rebinding)", async () => {
  await withTempDir(async (dir) => {
    const api = new UiApi({ cacheDir: dir, allowedHosts: ["127.0.0.1", "localhost"] });
    const ok = await api.handler(new Request("http://localhost:8077/api/ui/runs"));
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
    const rebound = await api.handler(new Request("http://evil.example:8077/api/ui/runs"));
    assert.equal(rebound.status, 403);
    await rebound.body?.cancel();
  });
});

Deno.test("ui api: a judge.json in another format, or judging responses outside the cache, is named", async () => {
  await withUi(async (base, { cache, dir }) => {
    const { runs: [run] } = await getJson(`${base}/api/ui/runs`);
    const judgeRef = run.steps[2].ref;
    const judged = JSON.parse(await Deno.readTextFile(join(cache, judgeRef, "judge.json")));
    const write = async (key: string, judge: unknown) => {
      const folder = join(cache, "judge", key);
      await Deno.mkdir(folder, { recursive: true });
      await Deno.writeTextFile(join(folder, "manifest.json"), JSON.stringify({ key }));
      await Deno.writeTextFile(join(folder, "judge.json"), JSON.stringify(judge));
      return `judge/${key}`;
    };
    // The format the UI once assumed: a map of field → summary, no per-entry scores.
    const old = await write("dddddddddddddddd", { model: "x", fields: { a: { mean: 1 } } });
    const bad = await fetch(`${base}/api/ui/judge?ref=${old}`);
    assert.equal(bad.status, 500);
    assert.match(
      (await bad.json()).error,
      /dddddddddddddddd\/judge\.json: expected \{judge, fields/,
    );

    const elsewhere = join(dir, "elsewhere.json");
    await Deno.writeTextFile(elsewhere, JSON.stringify(await uiResponses(3)));
    const moved = await write("eeeeeeeeeeeeeeee", { ...judged, responses: elsewhere });
    const outside = await fetch(`${base}/api/ui/responses?ref=${moved}`);
    assert.equal(outside.status, 404);
    assert.match((await outside.json()).error, /elsewhere\.json" is not in this cache/);
    // Its scores and pairwise still show.
    const scores = await getJson(`${base}/api/ui/judge?ref=${moved}`);
    assert.equal(scores.models.length, 2);
  });
});
