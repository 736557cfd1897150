// @ts-check
/** The runs list (#/), newest first, refreshed while a run is in progress. */
import { api, runsPath } from "./api.js";
import { badge, h, progressBar, table } from "./dom.js";
import { fmtSeconds, fmtWhen, metricsText } from "./format.js";
import { isCurrent, schedule, setLive, view } from "./page.js";
import { pageLinks, runHref, runsPageHref } from "./routes.js";
import { anyRunning, headlineMetrics, ranOrFailed, stepTitle } from "./run_summary.js";

/** @typedef {import("./types.js").RunList} RunList */
/** @typedef {import("./types.js").RunSummary} RunSummary */

const PAGE = 50;

/** @param {number} token @param {URLSearchParams} params */
export async function showRuns(token, params) {
  const offset = Number(params.get("offset") ?? 0);
  const container = h("section", {});
  view.replaceChildren(h("h1", {}, "Runs"), container);

  /** Draws the list; true while a run is in progress. */
  const render = async () => {
    /** @type {RunList} */
    const data = await api(runsPath(offset, PAGE));
    if (!isCurrent(token)) return false;
    if (data.total === 0) {
      container.replaceChildren(noRuns());
      return false;
    }
    const pages = pageLinks(offset, PAGE, data.runs.length, data.total);
    const pager = h(
      "p",
      { class: "pager" },
      pages.newer !== undefined ? h("a", { href: runsPageHref(pages.newer) }, "← newer") : null,
      ` runs ${pages.first}–${pages.last} of ${data.total} `,
      pages.older !== undefined ? h("a", { href: runsPageHref(pages.older) }, "older →") : null,
    );
    container.replaceChildren(
      table(
        ["pipeline", "started", "status", "stages", "headline metrics"],
        data.runs.map(runRow),
        { class: "runs" },
      ),
      pager,
    );
    return anyRunning(data.runs);
  };
  // Every second while a run is in progress, every five otherwise (new runs appear too).
  const loop = async () => {
    let live = false;
    try {
      live = await render();
    } catch { /* keep the last good view */ }
    if (!isCurrent(token)) return;
    setLive(live);
    schedule(loop, live ? 1000 : 5000);
  };
  await loop();
}

function noRuns() {
  return h(
    "p",
    { class: "muted" },
    "No runs recorded in this cache yet. Run a pipeline (deno task smoke) and they appear here; ",
    h("a", { href: "#/artifacts" }, "artifacts"),
    " already in the cache are listed separately.",
  );
}

/** A run: its pipeline, start, status, a chip per stage and the headline metrics. */
/** @param {RunSummary} run */
function runRow(run) {
  return h(
    "tr",
    { class: "run-row", dataset: { run: run.id } },
    h("td", {}, h("a", { href: runHref(run.id) }, run.pipeline)),
    h("td", { class: "when" }, fmtWhen(run.startedAt)),
    h("td", {}, badge(run.status)),
    h(
      "td",
      { class: "stages" },
      run.steps.map((s) =>
        h(
          "span",
          { class: `stage-chip ${s.outcome}`, title: stepTitle(s) },
          s.stage,
          ranOrFailed(s) ? h("small", {}, " " + fmtSeconds(s.seconds)) : null,
          s.outcome === "running" && s.progress ? progressBar(s.progress) : null,
        )
      ),
    ),
    h(
      "td",
      { class: "metrics" },
      headlineMetrics(run).map((m) =>
        h("div", {}, h("b", {}, m.stage), " ", metricsText(m.metrics))
      ),
    ),
  );
}
