// @ts-check
/** One run (#/run/<id>): the stage graph, and the selected stage's details below it. */
import { api, reportHref, runPath } from "./api.js";
import { artifactBody } from "./artifact_view.js";
import { badge, h, progressBar, svg } from "./dom.js";
import { fmtSeconds, fmtWhen } from "./format.js";
import { isCurrent, poll, setLive, view } from "./page.js";
import { artifactHref } from "./routes.js";
import { defaultStage, runSeconds, stageBoxText } from "./run_summary.js";
import { BOX, layoutStages } from "./stage_layout.js";

/** @typedef {import("./types.js").RunDetail} RunDetail */
/** @typedef {import("./types.js").RunStep} RunStep */

/** @param {number} token @param {string} id */
export async function showRun(token, id) {
  /** @type {RunDetail} */
  let run = await api(runPath(id));
  if (!isCurrent(token)) return;
  let selected = defaultStage(run.steps);
  const header = h("div", {});
  const graph = h("div", { class: "graph-wrap" });
  const details = h("section", { class: "stage-details" });

  const renderHeader = () => header.replaceChildren(...runHeader(run));
  const renderGraph = () =>
    graph.replaceChildren(stageGraph(run, selected, (name) => {
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
      run = await api(runPath(id));
      if (!isCurrent(token)) return false;
      renderHeader();
      renderGraph();
      // The running stage's bar moves in place; a stage that finished redraws its details.
      const step = run.steps.find((s) => s.stage === selected);
      const live = details.querySelector(".live-progress");
      if (live && step?.progress) {
        live.replaceChildren(progressBar(step.progress));
      } else if (before !== run.steps.map((s) => s.outcome).join()) {
        renderDetails();
      }
      return run.status === "running";
    });
  }
}

/** The run's name and status, its times and record, and the link to its report. */
/** @param {RunDetail} run */
function runHeader(run) {
  return [
    h("h1", {}, run.pipeline, " ", badge(run.status)),
    h(
      "p",
      { class: "muted" },
      `${run.file ?? ""} · started ${fmtWhen(run.startedAt)}`,
      run.finishedAt ? ` · took ${fmtSeconds(runSeconds(run))}` : "",
      ` · record ${run.id}`,
    ),
    // The report stage's page of the whole run (loss curves, MMLU, judge, responses).
    ...run.steps.flatMap((s) =>
      s.artifact?.views?.includes("report")
        ? [h(
          "p",
          { class: "report-link" },
          h(
            "a",
            { href: reportHref(s.artifact.ref), target: "_blank" },
            "report.html",
          ),
          ` (stage ${s.stage})`,
        )]
        : []
    ),
  ];
}

/**
 * The stages as boxes by depth (stage_layout.js) with arrows along the needs; a click selects.
 * @param {RunDetail} run
 * @param {string | undefined} selected
 * @param {(stage: string) => void} onSelect
 */
function stageGraph(run, selected, onSelect) {
  const layout = layoutStages(run.steps, run.edges);
  const { width, height } = layout;
  const graph = svg("svg", {
    class: "graph",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
  });
  graph.append(
    svg(
      "defs",
      {},
      svg(
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
        svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#7a8599" }),
      ),
    ),
  );
  for (const d of layout.edgePaths) {
    graph.append(
      svg("path", { class: "edge", d, "marker-end": "url(#arrow)" }),
    );
  }
  for (const step of run.steps) {
    const p = layout.position.get(step.stage) ?? { x: 0, y: 0 };
    const node = svg("g", {
      class: `node ${step.outcome}${step.stage === selected ? " selected" : ""}`,
      transform: `translate(${p.x},${p.y})`,
      "data-stage": step.stage,
    });
    node.append(
      svg(
        "title",
        {},
        `${step.stage} (${step.type}): ${step.outcome}, key ${step.key ?? ""}`,
      ),
      svg("rect", { width: BOX.width, height: BOX.height, rx: 7 }),
      svg("text", { x: 10, y: 20, class: "name" }, step.stage),
      svg("text", { x: 10, y: 38, class: "sub" }, stageBoxText(step)),
    );
    node.addEventListener("click", () => onSelect(step.stage));
    graph.append(node);
  }
  return graph;
}

/** A stage: its key, error or progress, and its artifact (or why there is none). */
/** @param {RunStep} step @param {number} token */
function stageDetails(step, token) {
  const a = step.artifact;
  /** @type {HTMLElement[]} */
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
    parts.push(
      h("div", { class: "live-progress" }, progressBar(step.progress)),
    );
  }
  if (!a) {
    parts.push(
      h(
        "p",
        { class: "muted" },
        "no finished artifact for this stage in the cache",
      ),
    );
    return h("div", {}, parts);
  }
  parts.push(
    h(
      "p",
      {},
      h(
        "a",
        { href: artifactHref(a.ref) },
        "open the artifact on its own page →",
      ),
    ),
  );
  parts.push(artifactBody(a, token));
  return h("div", {}, parts);
}
