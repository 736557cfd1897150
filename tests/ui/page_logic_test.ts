/**
 * The page's logic without a browser: the DOM-free modules of ui/js/ (formatting, routes,
 * the stage graph's layout, chart data, server-sent events, the chat's replies) imported as
 * they are served. The Chromium test (e2e_test.ts) covers the drawing.
 */
import assert from "node:assert/strict";
import { parse } from "yaml";
import { join } from "node:path";
import { REPO_ROOT } from "../fixtures.ts";
import { createProgress, type ProgressState } from "../../util/progress.ts";
import { dataEvent, namedEvent } from "../../server/sse.ts";
import {
  fmtBytes,
  fmtNumber,
  fmtSeconds,
  fmtWhen,
  metricsText,
  progressPercent,
  progressText,
} from "../../ui/js/format.js";
import { artifactHref, compareHref, pageLinks, parseRoute, runHref } from "../../ui/js/routes.js";
import { historyPath, RESPONSES_PAGE, responsesPath } from "../../ui/js/api.js";
import { readEvents, type ServerEvent, splitEvents } from "../../ui/js/sse.js";
import { BOX, layoutStages, stageDepths } from "../../ui/js/stage_layout.js";
import {
  chartWidth,
  COLORS,
  downsampleNote,
  lossLines,
  lossTables,
  scoreClass,
  scoreHistogram,
  withRewardMargins,
} from "../../ui/js/chart_data.js";
import {
  defaultStage,
  environmentRows,
  headlineMetrics,
  runSeconds,
  stageBoxText,
} from "../../ui/js/run_summary.js";
import {
  applyChatEvent,
  chatRequest,
  modelLabel,
  templateDescription,
  WAITING,
} from "../../ui/js/chat_logic.js";
import type { HistorySeries, RunStep, RunSummary } from "../../ui/js/types.js";

Deno.test("page logic: numbers, durations, sizes and times", () => {
  assert.equal(fmtNumber(1234567), "1,234,567");
  assert.equal(fmtNumber(3.14159), "3.142");
  assert.equal(fmtNumber(-0.000123456), "-0.0001235");
  assert.equal(fmtNumber(1234.56), "1234.6");
  assert.equal(fmtNumber("gpt2"), "gpt2");
  assert.equal(fmtNumber(undefined), "");
  assert.equal(fmtSeconds(0.001), "< 0.01 s");
  assert.equal(fmtSeconds(4.2), "4.20 s");
  assert.equal(fmtSeconds(12.34), "12.3 s");
  assert.equal(fmtSeconds(185), "3m05s");
  assert.equal(fmtSeconds(7265), "2h01m");
  assert.equal(fmtSeconds(NaN), "");
  assert.equal(fmtSeconds(undefined), "");
  assert.equal(fmtBytes(512), "512 B");
  assert.equal(fmtBytes(2048), "2.0 KiB");
  assert.equal(fmtBytes(5 * 2 ** 20), "5.0 MiB");
  assert.equal(fmtBytes(3 * 2 ** 30), "3.00 GiB");
  const start = Date.parse("2026-12-04T03:00:00Z");
  const iso = "2026-12-04T03:00:00.000Z";
  assert.match(fmtWhen(iso, start + 30_000), /2026.*\(30 s ago\)$/);
  assert.match(fmtWhen(iso, start + 20 * 60_000), /\(20 min ago\)$/);
  assert.match(fmtWhen(iso, start + 2 * 3600_000), /\(2 h ago\)$/);
  assert.match(fmtWhen(iso, start + 3 * 86400_000), /\(3 d ago\)$/);
  assert.equal(fmtWhen("not a date"), "not a date");
  assert.equal(fmtWhen(undefined), "");
  assert.equal(metricsText({ val_loss: 3.51234, tokens: 4096 }), "val_loss 3.512 · tokens 4,096");
  assert.equal(metricsText(undefined), "");
});

Deno.test("page logic: the progress line of the runner's own progress states", () => {
  // The states the runner records (util/progress.ts), with a clock the test moves. Passing
  // them to the page's functions also checks, at type-check time, that the page's
  // ProgressState typedef accepts the runner's.
  const states: ProgressState[] = [];
  let now = 0;
  const progress = createProgress("test", {
    out: { write() {}, isTerminal: false },
    onState: (s) => states.push(s),
    now: () => now,
  });
  progress.start("training", 50, "steps");
  now = 8000;
  progress.update(20, { loss: 4.12345 });
  now = 9000;
  progress.update(50);
  progress.finish();
  assert.equal(progressPercent(states[0]), 40);
  assert.equal(progressText(states[0]), "training 40% (20/50 steps) · ETA 12.0 s · loss 4.123");
  assert.equal(progressPercent(states[1]), 100);
  assert.equal(progressText(states[1]), "training 100% (50/50 steps) · ETA < 0.01 s · loss 4.123");
  // Before any rate is known the ETA is unknown; without a total there is no percentage.
  const unknown = { ...states[0], etaSeconds: null, total: 0, values: undefined };
  assert.equal(progressText(unknown), "training 0% (20/0 steps) · ETA ?");
  assert.equal(progressText(undefined), "");
});

Deno.test("page logic: hash routes and the links to them", () => {
  assert.deepEqual(
    { ...parseRoute(""), params: undefined },
    { page: "runs", arg: "", nav: "runs", params: undefined },
  );
  assert.equal(parseRoute("#/?offset=50").params.get("offset"), "50");
  const id = "2026-12-04T03-00-00-000Z-smoke run/ü";
  const run = parseRoute(runHref(id));
  assert.equal(run.page, "run");
  assert.equal(run.nav, "runs");
  assert.equal(decodeURIComponent(run.arg), id);
  const artifact = parseRoute(artifactHref("pretrain/0123456789abcdef"));
  assert.deepEqual([artifact.page, artifact.arg, artifact.nav], [
    "artifact",
    "pretrain/0123456789abcdef",
    "artifacts",
  ]);
  const refs = ["pretrain/0123456789abcdef", "dpo/fedcba9876543210&x=1"];
  const compare = parseRoute(compareHref(new Set(refs)));
  assert.equal(compare.page, "compare");
  assert.deepEqual(compare.params.getAll("ref"), refs);
  assert.equal(parseRoute("#/chat?model=pretrain%2Fab").params.get("model"), "pretrain/ab");
  assert.equal(parseRoute("#/artifacts").page, "artifacts");
  // An unknown path shows the runs; its header link is its own name (none is marked).
  assert.deepEqual([parseRoute("#/nowhere").page, parseRoute("#/nowhere").nav], [
    "runs",
    "nowhere",
  ]);
  // 132 runs, 50 a page.
  assert.deepEqual(pageLinks(0, 50, 50, 132), {
    newer: undefined,
    older: 50,
    first: 1,
    last: 50,
  });
  assert.deepEqual(pageLinks(100, 50, 32, 132), {
    newer: 50,
    older: undefined,
    first: 101,
    last: 132,
  });
  assert.deepEqual(pageLinks(30, 50, 50, 132).newer, 0);
});

Deno.test("page logic: the endpoints' queries", () => {
  const history = new URL(historyPath(["pretrain/ab", "a b/c&d"], 1000), "http://x");
  assert.equal(history.pathname, "/api/ui/history");
  assert.deepEqual(history.searchParams.getAll("ref"), ["pretrain/ab", "a b/c&d"]);
  assert.equal(history.searchParams.get("points"), "1000");
  const page = new URL(
    responsesPath("judge/0123", { offset: 40, min: "", max: "80", field: "model 2" }),
    "http://x",
  );
  assert.deepEqual(Object.fromEntries(page.searchParams), {
    ref: "judge/0123",
    offset: "40",
    limit: String(RESPONSES_PAGE),
    field: "model 2",
    max: "80",
  });
  const open = new URL(
    responsesPath("r/1", { offset: 0, min: "0", max: "", field: "" }),
    "http://x",
  );
  assert.deepEqual([...open.searchParams.keys()], ["ref", "offset", "limit", "min"]);
});

Deno.test("page logic: server-sent events survive any split into chunks", async () => {
  // The text the server writes (server/sse.ts), with characters of two, three and four bytes.
  const events: ServerEvent[] = [
    { event: "meta", data: { prompt: "### Instruction:\nSay hi", template: "alpaca", queued: 0 } },
    { event: "token", data: { text: "héllo" } },
    { event: "token", data: { text: " wörld → ✓" } },
    { event: "token", data: { text: " 🙂\n\nnext" } },
    { event: "done", data: { tokens: 3, seconds: 0.5, stopped: "max_new_tokens" } },
  ];
  const text = events.map((e) => namedEvent(e.event, e.data)).join("");
  const bytes = new TextEncoder().encode(text);
  const streamOf = (chunks: Uint8Array[]) =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        for (const c of chunks) controller.enqueue(c);
        controller.close();
      },
    });
  // Every cut into two chunks (also inside a character), then a byte at a time.
  const cuts = [...Array.from({ length: bytes.length + 1 }, (_, i) => [i]), [
    ...bytes.keys(),
  ]];
  for (const cut of cuts) {
    const chunks = [0, ...cut].map((from, i, all) => bytes.slice(from, all[i + 1]));
    const seen: ServerEvent[] = [];
    await readEvents(streamOf(chunks), (e) => seen.push(e));
    assert.deepEqual(seen, events, `cut at ${cut.length > 1 ? "every byte" : cut[0]}`);
  }
  // An unfinished event waits; an unnamed one is a "message"; one without data has null.
  assert.deepEqual(splitEvents(`${dataEvent({ a: 1 })}event: ping\n\nevent: meta\ndata: {"pro`), {
    events: [{ event: "message", data: { a: 1 } }, { event: "ping", data: null }],
    rest: 'event: meta\ndata: {"pro',
  });
});

Deno.test("page logic: a chat reply built from its events", () => {
  let reply = WAITING;
  reply = applyChatEvent(reply, {
    event: "meta",
    data: { prompt: "User: hi\n", template: "chatml" },
  });
  assert.deepEqual(reply, {
    answer: "",
    pieces: 0,
    prompt: "User: hi\n",
    status: "generating (template chatml)…",
  });
  for (const text of ["Hel", "lo", "!"]) {
    reply = applyChatEvent(reply, { event: "token", data: { text } });
  }
  const done = applyChatEvent(reply, {
    event: "done",
    data: { tokens: 3, seconds: 0.25, stopped: "stop_token" },
  });
  assert.deepEqual(done, {
    answer: "Hello!",
    pieces: 3,
    prompt: "User: hi\n",
    status: "3 tokens in 0.25 s (stop token)",
  });
  // An error event ends the reply with the server's message; the text so far stays.
  assert.throws(
    () => applyChatEvent(reply, { event: "error", data: { error: "the model is gone" } }),
    /the model is gone/,
  );
  assert.equal(reply.answer, "Hello!");
  const model = {
    ref: "sft/0123456789abcdef",
    stage: "sft",
    type: "finetune",
    template: "alpaca",
    config: { n_layers: 2, emb_dim: 64 },
  };
  assert.equal(modelLabel(model), "sft/0123456789abcdef (finetune, 2 layers, emb 64)");
  assert.equal(
    modelLabel({ ...model, config: undefined }),
    "sft/0123456789abcdef (finetune, ? layers, emb ?)",
  );
  assert.match(templateDescription("auto", model), /^the alpaca template/);
  assert.match(templateDescription("auto", { ...model, template: "none" }), /no template/);
  assert.match(templateDescription("auto", undefined), /no template/);
  assert.match(templateDescription("jinja", model), /the model's own chat template/);
  assert.match(templateDescription("chatml", model), /^the chatml template/);
  const messages = [{ role: "user" as const, content: "hi" }];
  assert.deepEqual(
    chatRequest("sft/01", messages, "auto", { temperature: 0, top_k: 0, max_tokens: 8, seed: 1 }),
    {
      model: "sft/01",
      messages,
      template: "auto",
      temperature: 0,
      top_k: 0,
      max_tokens: 8,
      seed: 1,
    },
  );
});

Deno.test("page logic: the smoke pipeline's stage graph is laid out by depth", async () => {
  // The real pipeline's stages and needs, in file order, as a run lists its steps.
  const file = parse(await Deno.readTextFile(join(REPO_ROOT, "pipelines", "smoke.yaml")));
  const steps = Object.entries(file.stages as Record<string, { needs?: string | string[] }>)
    .map(([stage, s]) => ({ stage, needs: [s?.needs ?? []].flat() }));
  const edges = steps.flatMap((s) => s.needs.map((n) => [n, s.stage] as [string, string]));
  const depth = stageDepths(steps);
  for (const s of steps) {
    // Each stage sits one column right of its deepest need.
    const needs = s.needs.map((n) => depth.get(n)!);
    assert.equal(depth.get(s.stage), needs.length ? 1 + Math.max(...needs) : 0, s.stage);
  }
  assert.equal(depth.get("tokenize"), 0);
  assert.equal(depth.get("dataloader"), 1);
  assert.equal(depth.get("pretrain"), 2);
  assert.equal(depth.get("lora-finetune"), 3);
  const layout = layoutStages(steps, edges);
  const columns = Math.max(...depth.values()) + 1;
  const tallest = Math.max(
    ...[...Array(columns).keys()].map((c) => [...depth.values()].filter((d) => d === c).length),
  );
  assert.equal(layout.width, 20 + columns * (BOX.width + BOX.gapX) - BOX.gapX);
  assert.equal(layout.height, 20 + tallest * (BOX.height + BOX.gapY) - BOX.gapY);
  // No two boxes overlap; each column's boxes are in file order, top to bottom.
  const boxes = steps.map((s) => layout.position.get(s.stage)!);
  for (const [i, a] of boxes.entries()) {
    assert.equal(a.x, 10 + depth.get(steps[i].stage)! * (BOX.width + BOX.gapX));
    for (const b of boxes.slice(i + 1)) {
      assert.ok(a.x !== b.x || b.y >= a.y + BOX.height + BOX.gapY, `${steps[i].stage} overlaps`);
    }
  }
  // Each edge runs from the middle of its source's right side to its target's left side.
  assert.equal(layout.edgePaths.length, edges.length);
  for (const [i, [from, to]] of edges.entries()) {
    const a = layout.position.get(from)!, b = layout.position.get(to)!;
    const numbers = layout.edgePaths[i].match(/-?[\d.]+/g)!.map(Number);
    assert.deepEqual(numbers.slice(0, 2), [a.x + BOX.width, a.y + BOX.height / 2]);
    assert.deepEqual(numbers.slice(-2), [b.x, b.y + BOX.height / 2]);
  }
  // Needs outside the run are not drawn; a cycle (no valid pipeline has one) still ends.
  const odd = layoutStages(
    [{ stage: "a", needs: ["b", "gone"] }, { stage: "b", needs: ["a"] }],
    [["gone", "a"], ["b", "a"], ["a", "b"]],
  );
  assert.equal(odd.edgePaths.length, 2);
  assert.equal(odd.position.size, 2);
});

/** A history as the server sends it: `n` evaluations, `keep` of them drawn. */
function history(label: string, n: number, columns: HistorySeries["columns"]): HistorySeries {
  return { ref: `pretrain/${label}`, label, total: n, columns, samples: [] };
}

Deno.test("page logic: loss chart tables, lines and the judge's histogram", () => {
  const a = history("a", 3, {
    step: [0, 10, 20],
    epoch: [null, 1, null],
    tokens_seen: [0, 640, 1280],
    train_loss: [10.9, 6.5, 5.25],
    val_loss: [10.95, null, 6.1],
  });
  const b = history("b", 5000, {
    step: [null, 5],
    epoch: [1, 2],
    tokens_seen: [null, null],
    train_loss: [9, 8],
    val_loss: [9.5, 8.5],
    train_reward_margin: [0.1, 0.4],
    val_reward_margin: [0.05, null],
  });
  // x falls back to the step, then to the row.
  assert.deepEqual(lossTables([a, b], "epoch", "loss"), [
    [[0, 1, 20], [10.9, 6.5, 5.25], [10.95, null, 6.1]],
    [[1, 2], [9, 8], [9.5, 8.5]],
  ]);
  assert.deepEqual(lossTables([b], "tokens_seen", "loss")[0][0], [0, 5]);
  assert.deepEqual(lossTables([b], "step", "reward_margin"), [[[0, 5], [0.1, 0.4], [0.05, null]]]);
  assert.deepEqual(withRewardMargins([a, b]), [b]);

  const one = lossLines([a], "tokens_seen");
  assert.deepEqual(one.map((l) => l.label), ["tokens seen", "train", "val"]);
  assert.deepEqual(one[2].dash, [6, 4], "val is dashed");
  assert.equal(one[1].stroke, one[2].stroke);
  const two = lossLines([a, b], "step");
  assert.deepEqual(two.map((l) => l.label), ["step", "a train", "a val", "b train", "b val"]);
  assert.deepEqual(two.map((l) => l.stroke), [
    undefined,
    COLORS[0],
    COLORS[0],
    COLORS[1],
    COLORS[1],
  ]);
  const long = history("c", 61, { step: Array.from({ length: 61 }, (_, i) => i) });
  assert.equal(lossLines([long], "step")[1].points?.show, false, "61 points are not marked");
  assert.equal(two[1].points?.show, true);

  assert.equal(downsampleNote([a, b]), "b: 5,000 evaluations drawn as 2");
  assert.equal(downsampleNote([a]), "");
  assert.equal(chartWidth(undefined), 790);
  assert.equal(chartWidth(2000), 900);
  assert.equal(chartWidth(200), 360);
  assert.equal(chartWidth(610), 600);

  const fields = [
    { field: "model_response", mean: 55, stderr: 3, scored: 4, total: 4, unscored: 0 },
    { field: "base_response", mean: 20, stderr: 2, scored: 3, total: 4, unscored: 1 },
  ].map((f, i) => ({ ...f, histogram: Array.from({ length: 10 }, (_, j) => (i + j) % 3) }));
  const histogram = scoreHistogram(fields);
  assert.deepEqual(histogram.data[0], [5, 15, 25, 35, 45, 55, 65, 75, 85, 95]);
  assert.deepEqual(histogram.data.slice(1), fields.map((f) => f.histogram));
  assert.equal(histogram.barWidth, 0.4);
  assert.equal(scoreHistogram([]).barWidth, 0.8);
  assert.deepEqual(histogram.lines.map((l) => l.label), [
    "score",
    "model_response",
    "base_response",
  ]);
  assert.equal(histogram.lines[2].fill, COLORS[1] + "99");
  assert.deepEqual([0, 9, 10, 59, 99, 100].map(scoreClass), ["s0", "s0", "s1", "s5", "s9", "s9"]);
});

/** A step of a run record, with what the test needs. */
const step = (stage: string, outcome: string, extra: Partial<RunStep> = {}): RunStep => ({
  stage,
  type: stage,
  outcome,
  metrics: {},
  ...extra,
});

Deno.test("page logic: what a run's page opens on and says", () => {
  const views = (...v: ("history" | "report" | "mmlu")[]) => ({
    artifact: {
      ref: "x/0",
      stage: "x",
      type: "x",
      key: "0",
      manifest: { environment: {}, metrics: {} },
      files: [],
      views: v,
    },
  });
  const finished = [
    step("tokenize", "cached"),
    step("pretrain", "ran", views("history")),
    step("evaluate", "ran", views("mmlu")),
    step("report", "ran", views("report")),
  ];
  // The last stage with something to show besides the report.
  assert.equal(defaultStage(finished), "evaluate");
  // A running stage wins.
  assert.equal(defaultStage([...finished, step("judge", "running")]), "judge");
  assert.equal(defaultStage([step("a", "failed"), step("b", "skipped")]), "b");
  assert.equal(defaultStage([]), undefined);

  const run: RunSummary = {
    id: "r",
    pipeline: "smoke",
    status: "ok",
    startedAt: "2026-12-04T03:00:00.000Z",
    finishedAt: "2026-12-04T03:02:05.500Z",
    steps: [
      step("tokenize", "cached", { metrics: { tokens: 5145 } }),
      step("pretrain", "ran", { metrics: { val_loss: 6.5 } }),
      step("evaluate", "ran", { metrics: { acc: 0.25 } }),
      step("report", "ran"),
    ],
  };
  // The server's headline (from the artifact kinds) when it sends one, else the last two
  // steps with metrics.
  assert.deepEqual(headlineMetrics(run), [
    { stage: "pretrain", metrics: { val_loss: 6.5 } },
    { stage: "evaluate", metrics: { acc: 0.25 } },
  ]);
  const judged = [{ stage: "pretrain", kind: "history", metrics: { val_loss: 6.5 } }];
  assert.deepEqual(headlineMetrics({ ...run, headline: judged }), judged);
  assert.deepEqual(headlineMetrics({ ...run, headline: [] }), []);
  assert.equal(runSeconds(run), 125.5);
  assert.ok(Number.isNaN(runSeconds({ ...run, finishedAt: undefined })));
  assert.equal(
    stageBoxText(step("pretrain", "ran", { seconds: 4.2, key: "0123456789abcdef0123" })),
    "ran · 4.20 s · 01234567",
  );
  assert.equal(stageBoxText(step("pending", "pending")), "pending · ");

  // The engine's backend, BLAS and adapter first, whether nested (now) or flat (older).
  const nested = environmentRows({
    environment: { engine: { backend: "cpu", blas: "OpenBLAS", adapter: "x" }, deno: "2.9.6" },
    versions: { groundup: "0.1" },
    metrics: {},
    seconds: 12,
    finishedAt: "2026-12-04T03:02:05.500Z",
  });
  assert.deepEqual(nested, {
    backend: "cpu",
    BLAS: "OpenBLAS",
    adapter: "x",
    deno: "2.9.6",
    groundup: "0.1",
    seconds: 12,
    finished: "2026-12-04T03:02:05.500Z",
  });
  const flat = environmentRows({ environment: { backend: "wasm", deno: "2.9.6" }, metrics: {} });
  assert.deepEqual(Object.keys(flat), ["backend", "deno", "seconds", "finished"]);
});
