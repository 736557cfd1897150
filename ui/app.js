// groundup's run browser: a single page over the JSON endpoints of server/ui_api.ts.
// No build step: plain modules, uPlot (window.uPlot) for the charts, hash routes:
//   #/  #/run/<id>  #/artifact/<stage>/<key>  #/compare?ref=..&ref=..  #/artifacts  #/chat?model=..

const view = document.getElementById("view");
let pollTimer = 0;
let routeToken = 0;

// ---------------------------------------------------------------------------------------------
// small helpers

/** Builds an element: h("td", {class: "x"}, "text", child). Text is always set as text. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

async function api(path, init) {
  const response = await fetch(path, init);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error ?? `${response.status} ${response.statusText}`);
  return body;
}

function fmtNumber(v) {
  if (typeof v !== "number") return String(v ?? "");
  if (Number.isInteger(v)) return v.toLocaleString("en");
  return Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4);
}

function fmtSeconds(s) {
  if (typeof s !== "number" || !Number.isFinite(s)) return "";
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`.replace(/^0\.00 s$/, "< 0.01 s");
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

function fmtBytes(n) {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

function fmtWhen(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const ago = (Date.now() - d.getTime()) / 1000;
  const rel = ago < 90
    ? `${Math.round(ago)} s ago`
    : ago < 5400
    ? `${Math.round(ago / 60)} min ago`
    : ago < 129600
    ? `${Math.round(ago / 3600)} h ago`
    : `${Math.round(ago / 86400)} d ago`;
  return `${d.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" })} (${rel})`;
}

function badge(outcome) {
  return h("span", { class: `badge ${outcome}` }, outcome);
}

function metricsText(metrics) {
  return Object.entries(metrics ?? {}).map(([k, v]) => `${k} ${fmtNumber(v)}`).join(" · ");
}

function progressText(p) {
  if (!p) return "";
  const pct = p.total > 0 ? Math.min(100, (100 * p.done) / p.total) : 0;
  const values = Object.entries(p.values ?? {}).map(([k, v]) => `${k} ${fmtNumber(v)}`).join(
    " · ",
  );
  const eta = p.etaSeconds === null ? "?" : fmtSeconds(p.etaSeconds);
  return `${p.label} ${pct.toFixed(0)}% (${p.done}/${p.total} ${p.unit}) · ETA ${eta}${
    values ? " · " + values : ""
  }`;
}

function progressBar(p) {
  const pct = p && p.total > 0 ? Math.min(100, (100 * p.done) / p.total) : 0;
  return h(
    "div",
    { class: "progress", title: progressText(p) },
    h("div", { class: "bar", style: `width:${pct.toFixed(1)}%` }),
    h("span", {}, progressText(p)),
  );
}

function setLive(on) {
  document.getElementById("live").textContent = on ? "● live" : "";
}

/** Re-runs `load` every `ms` while it returns true and the route has not changed. */
function poll(token, ms, load) {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(async () => {
    if (token !== routeToken) return;
    let again = false;
    try {
      again = await load();
    } catch { /* keep the last good view */ }
    setLive(again);
    if (again && token === routeToken) poll(token, ms, load);
  }, ms);
}

function table(headers, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows),
  );
}

function kvTable(object) {
  const rows = Object.entries(object ?? {}).map(([k, v]) =>
    h(
      "tr",
      {},
      h("th", {}, k),
      h("td", {}, typeof v === "object" && v !== null ? JSON.stringify(v) : fmtNumber(v)),
    )
  );
  return rows.length ? h("table", { class: "kv" }, h("tbody", {}, rows)) : h("p", {
    class: "muted",
  }, "none");
}

// ---------------------------------------------------------------------------------------------
// the runs list

async function showRuns(token, params) {
  const offset = Number(params.get("offset") ?? 0);
  const limit = 50;
  const container = h("section", {});
  view.replaceChildren(h("h1", {}, "Runs"), container);

  const render = async () => {
    const data = await api(`/api/ui/runs?offset=${offset}&limit=${limit}`);
    if (token !== routeToken) return false;
    if (data.total === 0) {
      container.replaceChildren(
        h(
          "p",
          { class: "muted" },
          "No runs recorded in this cache yet. Run a pipeline (deno task smoke) and they appear here; ",
          h("a", { href: "#/artifacts" }, "artifacts"),
          " already in the cache are listed separately.",
        ),
      );
      return false;
    }
    const rows = data.runs.map((run) =>
      h(
        "tr",
        { class: "run-row", dataset: { run: run.id } },
        h("td", {}, h("a", { href: `#/run/${encodeURIComponent(run.id)}` }, run.pipeline)),
        h("td", { class: "when" }, fmtWhen(run.startedAt)),
        h("td", {}, badge(run.status)),
        h(
          "td",
          { class: "stages" },
          run.steps.map((s) =>
            h(
              "span",
              {
                class: `stage-chip ${s.outcome}`,
                title: `${s.stage}: ${s.outcome}${s.error ? ` — ${s.error}` : ""}`,
              },
              s.stage,
              s.outcome === "ran" || s.outcome === "failed"
                ? h("small", {}, " " + fmtSeconds(s.seconds))
                : null,
              s.outcome === "running" && s.progress ? progressBar(s.progress) : null,
            )
          ),
        ),
        h(
          "td",
          { class: "metrics" },
          // From the kinds of artifact the run wrote (final losses, MMLU accuracy, judge
          // means), not from whichever stage ran last.
          (run.headline ?? []).map((m) =>
            h("div", {}, h("b", {}, m.stage), " ", metricsText(m.metrics))
          ),
        ),
      )
    );
    const pager = h(
      "p",
      { class: "pager" },
      offset > 0 ? h("a", { href: `#/?offset=${Math.max(0, offset - limit)}` }, "← newer") : null,
      ` runs ${offset + 1}–${offset + data.runs.length} of ${data.total} `,
      offset + limit < data.total
        ? h("a", { href: `#/?offset=${offset + limit}` }, "older →")
        : null,
    );
    container.replaceChildren(
      table(["pipeline", "started", "status", "stages", "headline metrics"], rows, {
        class: "runs",
      }),
      pager,
    );
    return data.runs.some((r) => r.status === "running");
  };
  // Every second while a run is in progress, every five otherwise (new runs appear too).
  const loop = async () => {
    let live = false;
    try {
      live = await render();
    } catch { /* keep the last good view */ }
    if (token !== routeToken) return;
    setLive(live);
    clearTimeout(pollTimer);
    pollTimer = setTimeout(loop, live ? 1000 : 5000);
  };
  await loop();
}

// ---------------------------------------------------------------------------------------------
// one run: the stage graph and each stage's details

/** Lays the stages out by depth (longest chain of needs) and draws boxes and arrows in SVG. */
function stageGraph(steps, edges, selected, onSelect) {
  const depth = new Map();
  const byName = new Map(steps.map((s) => [s.stage, s]));
  const depthOf = (name, seen = new Set()) => {
    if (depth.has(name)) return depth.get(name);
    if (seen.has(name)) return 0;
    seen.add(name);
    const needs = (byName.get(name)?.needs ?? []).filter((n) => byName.has(n));
    const d = needs.length ? 1 + Math.max(...needs.map((n) => depthOf(n, seen))) : 0;
    depth.set(name, d);
    return d;
  };
  steps.forEach((s) => depthOf(s.stage));
  const columns = [];
  for (const s of steps) (columns[depth.get(s.stage)] ??= []).push(s);
  const W = 170, H = 52, GX = 60, GY = 18;
  const pos = new Map();
  columns.forEach((col, x) =>
    col.forEach((s, y) => pos.set(s.stage, { x: 10 + x * (W + GX), y: 10 + y * (H + GY) }))
  );
  const width = 20 + columns.length * (W + GX) - GX;
  const height = 20 + Math.max(...columns.map((c) => c.length)) * (H + GY) - GY;
  const NS = "http://www.w3.org/2000/svg";
  const s = (tag, attrs, ...kids) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    for (const kid of kids) el.append(kid instanceof Node ? kid : document.createTextNode(kid));
    return el;
  };
  const svg = s("svg", {
    class: "graph",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
  });
  svg.append(
    s(
      "defs",
      {},
      s(
        "marker",
        {
          id: "arrow",
          viewBox: "0 0 10 10",
          refX: 10,
          refY: 5,
          markerWidth: 7,
          markerHeight: 7,
          orient: "auto",
        },
        s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#7a8599" }),
      ),
    ),
  );
  for (const [from, to] of edges) {
    const a = pos.get(from), b = pos.get(to);
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    svg.append(s("path", {
      class: "edge",
      d: `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`,
      "marker-end": "url(#arrow)",
    }));
  }
  for (const step of steps) {
    const p = pos.get(step.stage);
    const g = s("g", {
      class: `node ${step.outcome}${step.stage === selected ? " selected" : ""}`,
      transform: `translate(${p.x},${p.y})`,
      "data-stage": step.stage,
    });
    g.append(
      s("title", {}, `${step.stage} (${step.type}): ${step.outcome}, key ${step.key ?? ""}`),
      s("rect", { width: W, height: H, rx: 7 }),
      s("text", { x: 10, y: 20, class: "name" }, step.stage),
      s(
        "text",
        { x: 10, y: 38, class: "sub" },
        `${step.outcome}${step.seconds ? " · " + fmtSeconds(step.seconds) : ""} · ${
          (step.key ?? "").slice(0, 8)
        }`,
      ),
    );
    g.addEventListener("click", () => onSelect(step.stage));
    svg.append(g);
  }
  return svg;
}

async function showRun(token, id) {
  let run = await api(`/api/ui/runs/${encodeURIComponent(id)}`);
  if (token !== routeToken) return;
  let selected = run.steps.find((s) => s.outcome === "running")?.stage ??
    run.steps.findLast((s) => s.artifact?.views?.some((v) => v !== "report"))?.stage ??
    run.steps.at(-1)?.stage;
  const header = h("div", {});
  const graph = h("div", { class: "graph-wrap" });
  const details = h("section", { class: "stage-details" });

  const renderHeader = () =>
    header.replaceChildren(
      h("h1", {}, run.pipeline, " ", badge(run.status)),
      h(
        "p",
        { class: "muted" },
        `${run.file ?? ""} · started ${fmtWhen(run.startedAt)}`,
        run.finishedAt
          ? ` · took ${fmtSeconds((Date.parse(run.finishedAt) - Date.parse(run.startedAt)) / 1000)}`
          : "",
        ` · record ${run.id}`,
      ),
      // The report stage's page of the whole run (loss curves, MMLU, judge, responses).
      ...run.steps.filter((s) => s.artifact?.views?.includes("report")).map((s) =>
        h(
          "p",
          { class: "report-link" },
          h("a", { href: reportHref(s.artifact.ref), target: "_blank" }, "report.html"),
          ` (stage ${s.stage})`,
        )
      ),
    );
  const renderGraph = () =>
    graph.replaceChildren(stageGraph(run.steps, run.edges, selected, (name) => {
      selected = name;
      renderGraph();
      renderDetails();
    }));
  const renderDetails = () => {
    const step = run.steps.find((s) => s.stage === selected);
    details.replaceChildren(step ? stageDetails(step, token) : "");
  };
  renderHeader();
  renderGraph();
  renderDetails();
  view.replaceChildren(header, graph, details);

  if (run.status === "running") {
    setLive(true);
    poll(token, 1000, async () => {
      const before = run.steps.map((s) => s.outcome).join();
      run = await api(`/api/ui/runs/${encodeURIComponent(id)}`);
      if (token !== routeToken) return false;
      renderHeader();
      renderGraph();
      const step = run.steps.find((s) => s.stage === selected);
      const live = details.querySelector(".live-progress");
      if (live && step?.progress) live.replaceChildren(progressBar(step.progress));
      else if (before !== run.steps.map((s) => s.outcome).join()) renderDetails();
      return run.status === "running";
    });
  }
}

function stageDetails(step, token) {
  const a = step.artifact;
  const parts = [
    h(
      "h2",
      {},
      step.stage,
      " ",
      h("small", { class: "muted" }, step.type),
      " ",
      badge(step.outcome),
    ),
    h("p", { class: "key" }, "cache key ", h("code", {}, step.key ?? "")),
  ];
  if (step.error) parts.push(h("pre", { class: "error" }, step.error));
  if (step.outcome === "running") {
    parts.push(h("div", { class: "live-progress" }, progressBar(step.progress)));
  }
  if (!a) {
    parts.push(h("p", { class: "muted" }, "no finished artifact for this stage in the cache"));
    return h("div", {}, parts);
  }
  parts.push(
    h("p", {}, h("a", { href: `#/artifact/${a.ref}` }, "open the artifact on its own page →")),
  );
  parts.push(artifactBody(a, token));
  return h("div", {}, parts);
}

function artifactBody(a, token) {
  const env = a.manifest.environment ?? {};
  const engine = env.engine ?? env;
  const grid = h(
    "div",
    { class: "grid" },
    h("div", {}, h("h3", {}, "Metrics"), kvTable(a.manifest.metrics)),
    h(
      "div",
      {},
      h("h3", {}, "Parameters"),
      h("pre", { class: "params" }, JSON.stringify(a.manifest.params, null, 2)),
    ),
    h(
      "div",
      {},
      h("h3", {}, "Environment"),
      kvTable({
        ...(engine.backend ? { backend: engine.backend } : {}),
        ...(engine.blas ? { BLAS: engine.blas } : {}),
        ...(engine.adapter ? { adapter: engine.adapter } : {}),
        ...Object.fromEntries(Object.entries(env).filter(([k]) => k !== "engine")),
        ...(a.manifest.versions ?? {}),
        seconds: a.manifest.seconds,
        finished: a.manifest.finishedAt,
      }),
    ),
    h(
      "div",
      {},
      h("h3", {}, "Files"),
      table(
        ["file", "size"],
        a.files.map((f) =>
          h(
            "tr",
            {},
            h(
              "td",
              {},
              h("a", {
                href: `/api/ui/file?ref=${encodeURIComponent(a.ref)}&path=${
                  encodeURIComponent(f.name)
                }`,
                target: "_blank",
              }, f.name),
            ),
            h("td", { class: "num" }, fmtBytes(f.size)),
          )
        ),
        { class: "files" },
      ),
    ),
  );
  const views = h("div", { class: "views" });
  for (const v of a.views) {
    const box = h("section", { class: `view-${v}` }, h("p", { class: "muted" }, `loading ${v}…`));
    views.append(box);
    const render = {
      history: () => historyView(box, [a.ref], token),
      mmlu: () => mmluView(box, a.ref),
      judge: () => judgeView(box, a.ref),
      pairwise: () => pairwiseView(box, a.ref),
      responses: () => responsesView(box, a.ref),
      report: () =>
        box.replaceChildren(
          h("h3", {}, "Report"),
          h("p", {}, h("a", { href: reportHref(a.ref), target: "_blank" }, "open report.html →")),
        ),
      model: () =>
        box.replaceChildren(
          h("h3", {}, "Model"),
          h(
            "p",
            {},
            h("a", { href: `#/chat?model=${encodeURIComponent(a.ref)}` }, "chat with this model →"),
          ),
        ),
    }[v];
    Promise.resolve().then(render).catch((e) =>
      box.replaceChildren(h("p", { class: "error" }, `${v}: ${e.message}`))
    );
  }
  return h("div", {}, views, grid);
}

function reportHref(ref) {
  return `/api/ui/file?ref=${encodeURIComponent(ref)}&path=report.html`;
}

async function showArtifact(token, ref) {
  const a = await api(`/api/ui/artifact?ref=${encodeURIComponent(ref)}`);
  if (token !== routeToken) return;
  view.replaceChildren(
    h("h1", {}, a.stage, " ", h("small", { class: "muted" }, a.type)),
    h("p", { class: "key" }, "cache key ", h("code", {}, a.key)),
    artifactBody(a, token),
  );
}

async function showArtifacts(token, params) {
  const offset = Number(params.get("offset") ?? 0);
  const data = await api(`/api/ui/artifacts?offset=${offset}&limit=100`);
  if (token !== routeToken) return;
  const rows = data.artifacts.map((a) =>
    h(
      "tr",
      {},
      h("td", {}, h("a", { href: `#/artifact/${a.ref}` }, a.ref)),
      h("td", {}, a.type),
      h("td", { class: "when" }, fmtWhen(a.manifest.finishedAt)),
      h("td", { class: "num" }, fmtSeconds(a.manifest.seconds)),
      h("td", {}, a.views.join(", ")),
      h("td", { class: "metrics" }, metricsText(a.manifest.metrics)),
    )
  );
  view.replaceChildren(
    h("h1", {}, "Artifacts"),
    table(["artifact", "type", "finished", "took", "views", "metrics"], rows, { class: "runs" }),
    h(
      "p",
      { class: "pager" },
      offset > 0
        ? h("a", { href: `#/artifacts?offset=${Math.max(0, offset - 100)}` }, "← newer")
        : null,
      ` ${offset + 1}–${offset + data.artifacts.length} of ${data.total} `,
      offset + 100 < data.total
        ? h("a", { href: `#/artifacts?offset=${offset + 100}` }, "older →")
        : null,
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// loss curves (uPlot)

const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2"];

async function historyView(box, refs, token, xKey = "step") {
  const qs = refs.map((r) => `ref=${encodeURIComponent(r)}`).join("&");
  const data = await api(`/api/ui/history?${qs}&points=1000`);
  if (token !== routeToken) return;
  const chartBox = h("div", { class: "loss-chart" });
  const select = h(
    "select",
    {
      class: "x-axis",
      onchange: (e) => historyView(box, refs, token, e.target.value),
    },
    ["step", "epoch", "tokens_seen"].map((k) =>
      h("option", { value: k, selected: k === xKey }, k.replace("_", " "))
    ),
  );
  const samples = h(
    "div",
    { class: "samples" },
    h("h3", {}, "Samples after each epoch"),
    data.series.map((s) =>
      h(
        "div",
        {},
        data.series.length > 1 ? h("h4", {}, s.label) : null,
        (s.samples ?? []).length
          ? h(
            "ol",
            {},
            s.samples.map((x) =>
              h(
                "li",
                {},
                h("b", {}, `epoch ${x.epoch}`),
                h("small", { class: "muted" }, ` step ${x.step}`),
                h("p", {}, x.text),
              )
            ),
          )
          : h("p", { class: "muted" }, "no samples"),
      )
    ),
  );
  // DPO runs also have reward margins (chosen − rejected reward): a second chart, as the book's.
  const withMargins = data.series.filter((s) => s.columns.train_reward_margin);
  const marginBox = withMargins.length ? h("div", { class: "loss-chart" }) : null;
  const note = data.series.filter((s) => s.total > s.columns.step.length).map((s) =>
    `${s.label}: ${s.total.toLocaleString("en")} evaluations drawn as ${s.columns.step.length}`
  ).join("; ");
  box.replaceChildren(
    h("h3", {}, "Loss ", h("label", { class: "muted" }, "against ", select)),
    h(
      "div",
      { class: "loss-layout" },
      h(
        "div",
        {},
        chartBox,
        marginBox ? h("h3", {}, "Reward margins") : null,
        marginBox,
        note ? h("p", { class: "muted" }, note) : null,
      ),
      samples,
    ),
  );
  drawLoss(chartBox, data.series, xKey);
  if (marginBox) drawLoss(marginBox, withMargins, xKey, "reward_margin", "reward margin");
}

function drawLoss(el, seriesList, xKey, column = "loss", yLabel = "loss") {
  const tables = seriesList.map((s) => {
    const xs = s.columns[xKey].map((x, i) => x ?? s.columns.step[i] ?? i);
    return [xs, s.columns[`train_${column}`], s.columns[`val_${column}`]];
  });
  const data = tables.length === 1 ? tables[0] : uPlot.join(tables);
  const series = [{ label: xKey.replace("_", " ") }];
  seriesList.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const prefix = seriesList.length > 1 ? `${s.label} ` : "";
    series.push(
      {
        label: `${prefix}train`,
        stroke: color,
        width: 2,
        spanGaps: true,
        points: { show: s.columns.step.length <= 60 },
      },
      {
        label: `${prefix}val`,
        stroke: color,
        width: 2,
        dash: [6, 4],
        spanGaps: true,
        points: { show: s.columns.step.length <= 60 },
      },
    );
  });
  const width = Math.max(360, Math.min(900, (el.parentElement?.clientWidth || 800) - 10));
  const chart = new uPlot(
    {
      width,
      height: 320,
      series,
      scales: { x: { time: false } },
      axes: [{ label: xKey.replace("_", " ") }, { label: yLabel }],
      legend: { live: true },
    },
    data,
    el,
  );
  el._uplot = chart;
  el.dataset.points = String(data[0].length);
}

async function showCompare(token, params) {
  const chosen = new Set(params.getAll("ref"));
  const all = await api(`/api/ui/artifacts?limit=200`);
  if (token !== routeToken) return;
  const withHistory = all.artifacts.filter((a) => a.views.includes("history"));
  if (chosen.size === 0) withHistory.slice(0, 2).forEach((a) => chosen.add(a.ref));
  const pick = h(
    "div",
    { class: "picker" },
    withHistory.map((a) =>
      h(
        "label",
        {},
        h("input", {
          type: "checkbox",
          value: a.ref,
          checked: chosen.has(a.ref),
          onchange: (e) => {
            if (e.target.checked) chosen.add(a.ref);
            else chosen.delete(a.ref);
            location.hash = `#/compare?${
              [...chosen].map((r) => `ref=${encodeURIComponent(r)}`).join("&")
            }`;
          },
        }),
        ` ${a.ref} `,
        h(
          "small",
          { class: "muted" },
          `lr ${a.manifest.params?.lr ?? "?"} · ${
            metricsText({ val_loss: a.manifest.metrics.val_loss })
          } · ${fmtWhen(a.manifest.finishedAt)}`,
        ),
      )
    ),
  );
  const box = h("section", { class: "view-history" });
  view.replaceChildren(
    h("h1", {}, "Loss curves"),
    withHistory.length ? pick : h("p", { class: "muted" }, "no training histories in the cache"),
    box,
  );
  if (chosen.size) await historyView(box, [...chosen], token);
}

// ---------------------------------------------------------------------------------------------
// evaluations

async function mmluView(box, ref) {
  const data = await api(`/api/ui/mmlu?ref=${encodeURIComponent(ref)}`);
  box.replaceChildren(
    h("h3", {}, "MMLU"),
    table(
      ["task", "accuracy", "± stderr", "questions"],
      data.rows.map((r) =>
        h(
          "tr",
          { class: r.group ? "group" : "" },
          h("td", {}, r.task),
          h("td", { class: "num" }, r.acc === null ? "" : r.acc.toFixed(4)),
          h("td", { class: "num" }, r.stderr === null ? "" : r.stderr.toFixed(4)),
          h("td", { class: "num" }, r.n ?? ""),
        )
      ),
      { class: "mmlu" },
    ),
  );
}

async function judgeView(box, ref) {
  const data = await api(`/api/ui/judge?ref=${encodeURIComponent(ref)}`);
  const chartEl = h("div", { class: "histogram" });
  box.replaceChildren(
    h("h3", {}, "Judge scores"),
    table(
      ["response field", "mean", "± stderr", "scored", "judge"],
      data.models.map((m) =>
        h(
          "tr",
          {},
          h("td", {}, m.field),
          h("td", { class: "num" }, m.mean === null ? "" : m.mean.toFixed(2)),
          h("td", { class: "num" }, m.stderr === null ? "" : m.stderr.toFixed(2)),
          h("td", { class: "num" }, `${m.scored} / ${m.total}`),
          h("td", {}, typeof m.judge === "string" ? m.judge : ""),
        )
      ),
      { class: "judge" },
    ),
    chartEl,
  );
  const xs = Array.from({ length: 10 }, (_, i) => i * 10 + 5);
  const bars = uPlot.paths.bars({ size: [0.8 / Math.max(1, data.models.length), 100] });
  new uPlot(
    {
      width: 520,
      height: 220,
      scales: { x: { time: false, range: [0, 100] } },
      axes: [{ label: "score (bins of 10)" }, { label: "responses" }],
      series: [
        { label: "score" },
        ...data.models.map((m, i) => ({
          label: m.field,
          stroke: COLORS[i % COLORS.length],
          fill: COLORS[i % COLORS.length] + "99",
          paths: bars,
          points: { show: false },
        })),
      ],
    },
    [xs, ...data.models.map((m) => m.histogram)],
    chartEl,
  );
}

async function pairwiseView(box, ref) {
  const data = await api(`/api/ui/pairwise?ref=${encodeURIComponent(ref)}`);
  box.replaceChildren(
    h("h3", {}, "Pairwise preference"),
    table(
      ["A", "B", "A's win rate (ties ½)", "wins / ties / losses", "judged", "order flips disagree"],
      data.comparisons.map((c) =>
        h(
          "tr",
          {},
          h("td", {}, String(c.a ?? "")),
          h("td", {}, String(c.b ?? "")),
          h(
            "td",
            { class: "num" },
            typeof c.win_rate === "number" ? `${(100 * c.win_rate).toFixed(1)} %` : "",
            typeof c.win_rate === "number"
              ? h(
                "div",
                { class: "winbar" },
                h("div", { style: `width:${(100 * c.win_rate).toFixed(1)}%` }),
              )
              : null,
          ),
          h("td", { class: "num" }, [c.wins, c.ties, c.losses].map((x) => x ?? "?").join(" / ")),
          h("td", { class: "num" }, `${c.judged ?? "?"} / ${c.total ?? "?"}`),
          h(
            "td",
            { class: "num" },
            typeof c.contradiction_rate === "number"
              ? `${c.contradictions} (${(100 * c.contradiction_rate).toFixed(1)} %)`
              : "",
          ),
        )
      ),
    ),
  );
}

async function responsesView(box, ref, state = { offset: 0, min: "", max: "", field: "" }) {
  const qs = new URLSearchParams({ ref, offset: String(state.offset), limit: "20" });
  if (state.field) qs.set("field", state.field);
  if (state.min !== "") qs.set("min", state.min);
  if (state.max !== "") qs.set("max", state.max);
  const data = await api(`/api/ui/responses?${qs}`);
  const field = state.field || data.fields[0];
  const rerender = (patch) => responsesView(box, ref, { ...state, offset: 0, ...patch });
  const filters = h(
    "form",
    {
      class: "filters",
      onsubmit: (e) => {
        e.preventDefault();
        const f = new FormData(e.target);
        rerender({ min: f.get("min"), max: f.get("max"), field: f.get("field") });
      },
    },
    "score of ",
    h(
      "select",
      { name: "field" },
      data.fields.map((f) => h("option", { value: f, selected: f === field }, f)),
    ),
    " from ",
    h("input", { name: "min", type: "number", value: state.min, placeholder: "0", size: 4 }),
    " to ",
    h("input", { name: "max", type: "number", value: state.max, placeholder: "100", size: 4 }),
    " ",
    h("button", {}, "filter"),
    data.scored ? null : h("small", { class: "muted" }, " (no scores yet: nothing to filter on)"),
  );
  const rows = data.rows.map((r) =>
    h(
      "tr",
      { class: "response-row" },
      h("td", { class: "num" }, r.index + 1),
      h("td", {}, h("p", {}, r.instruction), r.input ? h("p", { class: "input" }, r.input) : null),
      h("td", { class: "reference" }, r.output),
      data.fields.map((f) => {
        const x = r.responses[f];
        return h(
          "td",
          {},
          x ? x.text : "",
          x && x.score !== null
            ? h(
              "span",
              {
                class: `score s${Math.min(9, Math.floor(x.score / 10))}`,
                title: `the judge's reply: ${x.reply}`,
              },
              String(x.score),
            )
            : x && x.reply !== null
            ? h("span", { class: "score unscored", title: `the judge's reply: ${x.reply}` }, "?")
            : null,
        );
      }),
    )
  );
  box.replaceChildren(
    h("h3", {}, data.judge ? `Responses, scored by ${data.judge}` : "Responses"),
    filters,
    h(
      "p",
      { class: "muted" },
      `${data.matched} of ${data.total} entries${data.matched !== data.total ? " match" : ""}`,
    ),
    table(["#", "instruction", "reference output", ...data.fields], rows, { class: "responses" }),
    h(
      "p",
      { class: "pager" },
      state.offset > 0
        ? h("button", {
          onclick: () => responsesView(box, ref, { ...state, offset: state.offset - 20 }),
        }, "← previous")
        : null,
      ` ${data.matched ? state.offset + 1 : 0}–${state.offset + data.rows.length} `,
      state.offset + 20 < data.matched
        ? h("button", {
          onclick: () => responsesView(box, ref, { ...state, offset: state.offset + 20 }),
        }, "next →")
        : null,
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// chat

/** Reads a server-sent event stream from a fetch response, calling onEvent(name, data). */
async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      onEvent(event, data ? JSON.parse(data) : null);
    }
  }
}

async function showChat(token, params) {
  const { models, templates } = await api("/api/ui/models");
  if (token !== routeToken) return;
  if (models.length === 0) {
    view.replaceChildren(
      h("h1", {}, "Chat"),
      h(
        "p",
        { class: "muted" },
        "no model in the cache (an artifact with model.safetensors + gpt_config.json)",
      ),
    );
    return;
  }
  let messages = [];
  const wanted = params.get("model");
  const model = h(
    "select",
    { name: "model", id: "chat-model" },
    models.map((m) =>
      h(
        "option",
        { value: m.ref, selected: m.ref === wanted },
        `${m.ref} (${m.type}, ${m.config?.n_layers ?? "?"} layers, emb ${
          m.config?.emb_dim ?? "?"
        })`,
      )
    ),
  );
  const templateNote = h("pre", { class: "template" });
  const templateSelect = h(
    "select",
    { name: "template" },
    templates.map((t) => h("option", { value: t }, t)),
  );
  // The prompt itself comes with each reply (the meta event): the whole conversation in the
  // chosen format, built by the server exactly as `deno task serve` builds it.
  const showTemplate = () => {
    const m = models.find((x) => x.ref === model.value);
    const t = templateSelect.value === "auto" ? m?.template ?? "none" : templateSelect.value;
    templateNote.textContent = t === "none"
      ? "{the conversation so far}\n{your message}   (no template: the model continues the text)"
      : t === "jinja"
      ? "the model's own chat template: the prompt sent is shown here with each reply"
      : `the ${t} template, the earlier turns as examples: the prompt sent is shown here with ` +
        "each reply";
  };
  model.addEventListener("change", () => {
    messages = [];
    log.replaceChildren();
    showTemplate();
  });
  templateSelect.addEventListener("change", showTemplate);
  const log = h("div", { class: "chat-log", id: "chat-log" });
  const input = h("textarea", {
    id: "chat-input",
    rows: 3,
    placeholder: "Type a message; Ctrl+Enter sends",
  });
  const status = h("span", { class: "muted", id: "chat-status" });
  const number = (name, value, attrs) =>
    h("label", {}, `${name} `, h("input", { name, type: "number", value, ...attrs }));
  const settings = h(
    "div",
    { class: "chat-settings" },
    h("label", {}, "model ", model),
    number("temperature", 0.7, { min: 0, max: 5, step: 0.1 }),
    number("top_k", 50, { min: 0, step: 1, title: "0: no top-k" }),
    number("max_tokens", 60, { min: 1, max: 1024, step: 1 }),
    number("seed", 123, { min: 0, step: 1 }),
    h("label", {}, "template ", templateSelect),
  );
  const send = h("button", { id: "chat-send" }, "Send");
  const reset = h("button", {
    type: "button",
    onclick: () => {
      messages = [];
      log.replaceChildren();
    },
  }, "Reset");
  const value = (name) => Number(settings.querySelector(`[name=${name}]`).value);
  const submit = async () => {
    const text = input.value.trim();
    if (!text || send.disabled) return;
    input.value = "";
    messages.push({ role: "user", content: text });
    log.append(h("div", { class: "msg user" }, text));
    const reply = h("div", { class: "msg assistant streaming" });
    log.append(reply);
    send.disabled = true;
    status.textContent = "waiting for the model…";
    let answer = "";
    try {
      const response = await fetch("/api/ui/chat", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: model.value,
          messages,
          template: templateSelect.value,
          temperature: value("temperature"),
          top_k: value("top_k"),
          max_tokens: value("max_tokens"),
          seed: value("seed"),
        }),
      });
      if (!response.ok) {
        throw new Error((await response.json().catch(() => ({}))).error ?? response.statusText);
      }
      await readEvents(response, (event, data) => {
        if (event === "meta") {
          templateNote.textContent = data.prompt;
          status.textContent = `generating (template ${data.template})…`;
        } else if (event === "token") {
          answer += data.text;
          reply.textContent = answer;
          reply.dataset.pieces = String(Number(reply.dataset.pieces ?? 0) + 1);
          log.scrollTop = log.scrollHeight;
        } else if (event === "done") {
          status.textContent = `${data.tokens} tokens in ${fmtSeconds(data.seconds)} (${
            data.stopped.replaceAll("_", " ")
          })`;
        } else if (event === "error") {
          throw new Error(data.error);
        }
      });
      messages.push({ role: "assistant", content: answer });
      reply.classList.remove("streaming");
      reply.classList.add("done");
    } catch (e) {
      reply.classList.add("error");
      reply.textContent = answer + ` [error: ${e.message}]`;
      status.textContent = "";
      messages.pop();
    } finally {
      send.disabled = false;
    }
  };
  send.addEventListener("click", (e) => {
    e.preventDefault();
    submit();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) submit();
  });
  showTemplate();
  view.replaceChildren(
    h("h1", {}, "Chat playground"),
    settings,
    h(
      "div",
      { class: "chat" },
      h(
        "div",
        {},
        log,
        h(
          "form",
          {
            class: "chat-form",
            onsubmit: (e) => {
              e.preventDefault();
              submit();
            },
          },
          input,
          h("div", {}, send, " ", reset, " ", status),
        ),
      ),
      h(
        "div",
        {},
        h("h3", {}, "Prompt template"),
        h("p", { class: "muted" }, "the text the model continues"),
        templateNote,
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// routing

async function route() {
  const token = ++routeToken;
  clearTimeout(pollTimer);
  setLive(false);
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const params = new URLSearchParams(query);
  const section = path.split("/")[1] || "runs";
  document.querySelectorAll("[data-nav]").forEach((a) =>
    a.classList.toggle(
      "active",
      a.dataset.nav ===
        (section === "run" ? "runs" : section === "artifact" ? "artifacts" : section),
    )
  );
  try {
    if (path.startsWith("/run/")) await showRun(token, decodeURIComponent(path.slice(5)));
    else if (path.startsWith("/artifact/")) await showArtifact(token, path.slice(10));
    else if (path === "/compare") await showCompare(token, params);
    else if (path === "/artifacts") await showArtifacts(token, params);
    else if (path === "/chat") await showChat(token, params);
    else await showRuns(token, params);
  } catch (e) {
    if (token === routeToken) view.replaceChildren(h("p", { class: "error" }, e.message));
  }
}

addEventListener("hashchange", route);
route();
