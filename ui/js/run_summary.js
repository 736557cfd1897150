// @ts-check
/** What the runs list and a run's page say about a run, its steps and an artifact. No DOM here. */
import { fmtSeconds } from "./format.js";

/** @typedef {import("./types.js").RunSummary} RunSummary */
/** @typedef {import("./types.js").RunStep} RunStep */
/** @typedef {import("./types.js").Manifest} Manifest */

/**
 * The runs list's headline metrics: the server's, from the kinds of artifact the run wrote
 * (final losses, MMLU accuracy, judge means); from a server that sends none (before the
 * artifact kinds), the metrics of the last two steps that have any.
 * @param {RunSummary} run
 * @returns {import("./types.js").Headline[]}
 */
export function headlineMetrics(run) {
  return run.headline ??
    run.steps.filter((s) => Object.keys(s.metrics ?? {}).length).slice(-2)
      .map((s) => ({ stage: s.stage, metrics: s.metrics }));
}

/** Whether any run is still in progress (the list then refreshes every second). */
/** @param {RunSummary[]} runs */
export const anyRunning = (runs) => runs.some((r) => r.status === "running");

/** A step's chip in the runs list: its outcome, and the error of a failed one. */
/** @param {RunStep} s */
export const stepTitle = (s) => `${s.stage}: ${s.outcome}${s.error ? ` — ${s.error}` : ""}`;

/** Whether the step's time is worth showing (it did work: not cached, skipped or pending). */
/** @param {RunStep} s */
export const ranOrFailed = (s) => s.outcome === "ran" || s.outcome === "failed";

/**
 * The stage a run's page opens on: the running one, else the last one whose artifact has
 * something to show besides the report, else the last.
 * @param {RunStep[]} steps
 */
export function defaultStage(steps) {
  return steps.find((s) => s.outcome === "running")?.stage ??
    steps.findLast((s) => s.artifact?.views?.some((v) => v !== "report"))
      ?.stage ??
    steps.at(-1)?.stage;
}

/** How long a finished run took, in seconds (NaN without both times). */
/** @param {RunSummary} run */
export const runSeconds = (run) =>
  (Date.parse(run.finishedAt ?? "") - Date.parse(run.startedAt ?? "")) / 1000;

/** The second line of a stage's box: "ran · 4.20 s · 1a2b3c4d". */
/** @param {RunStep} step */
export function stageBoxText(step) {
  return `${step.outcome}${step.seconds ? " · " + fmtSeconds(step.seconds) : ""} · ${
    (step.key ?? "").slice(0, 8)
  }`;
}

/**
 * An artifact's environment table: the engine's backend, BLAS and adapter first (older
 * manifests have them at the top level), the rest of the environment, the versions, and the
 * time it took and when it finished.
 * @param {Manifest} manifest
 * @returns {Record<string, unknown>}
 */
export function environmentRows(manifest) {
  const env = manifest.environment ?? {};
  const engine = /** @type {Record<string, unknown>} */ (env.engine ?? env);
  return {
    ...(engine.backend ? { backend: engine.backend } : {}),
    ...(engine.blas ? { BLAS: engine.blas } : {}),
    ...(engine.adapter ? { adapter: engine.adapter } : {}),
    ...Object.fromEntries(Object.entries(env).filter(([k]) => k !== "engine")),
    ...(manifest.versions ?? {}),
    seconds: manifest.seconds,
    finished: manifest.finishedAt,
  };
}
