/**
 * Executing a plan: each stage that must run gets a temporary output folder, its inputs and
 * a progress folder; its artifact is committed only when it returns. A failure or Ctrl-C
 * removes the temporary folder, keeps the progress folder (so the next run resumes from the
 * last checkpoint) and skips everything downstream.
 */
import { relative } from "node:path";
import { ArtifactCache } from "./cache.ts";
import { StageFailedError } from "./errors.ts";
import type { ResolvedPipeline } from "./pipeline.ts";
import { type PlannedStep, planPipeline, type Selection } from "./plan.ts";
import { createLogger, createProgress, type Output, stderrOutput } from "./progress.ts";
import type { Artifact, Manifest, PipelineSettings } from "./stage.ts";
import { RunRecord } from "./run_record.ts";
import { formatMetric, table } from "./summary.ts";

export const GROUNDUP_VERSION = "0.1.0";

export interface RunOptions extends Selection {
  cacheDir: string;
  /** Only print the plan. */
  planOnly?: boolean;
  out?: Output;
  signal?: AbortSignal;
}

export type StepOutcome = "cached" | "ran" | "failed" | "skipped" | "planned";

export interface StepReport {
  stage: string;
  type: string;
  outcome: StepOutcome;
  seconds: number;
  metrics: Record<string, number | string>;
  dir?: string;
  key: string;
  error?: string;
}

export interface RunReport {
  pipeline: string;
  steps: StepReport[];
  artifacts: Record<string, Artifact>;
  ok: boolean;
  /** The first stage failure, with the stage named. */
  error?: StageFailedError;
}

function pipelineSettings(pipeline: ResolvedPipeline, cacheDir: string): PipelineSettings {
  return { ...pipeline.settings, cacheDir };
}

export function formatPlan(steps: PlannedStep[]): string {
  return table(
    ["stage", "type", "action", "why", "key"],
    steps.map((s) => [
      s.stage.name,
      s.stage.type,
      s.status === "run" ? "run" : s.status === "cached" ? "cached" : "skip",
      s.reason ?? "",
      s.key.slice(0, 16),
    ]),
  );
}

export function formatSummary(report: RunReport, cwd = Deno.cwd()): string {
  return table(
    ["stage", "status", "seconds", "metrics", "artifact"],
    report.steps.map((s) => {
      const headline = Object.entries(s.metrics).map(([k, v]) => `${k}=${formatMetric(v)}`).join(
        " ",
      );
      return [
        s.stage,
        s.outcome,
        s.outcome === "skipped" || s.outcome === "planned" ? "" : s.seconds.toFixed(2),
        s.error ? `error: ${s.error.split("\n")[0].slice(0, 80)}` : headline,
        s.dir ? relative(cwd, s.dir) || "." : "",
      ];
    }),
  );
}

function headlineOf(step: PlannedStep, metrics: Record<string, number | string>) {
  const keys = step.stage.definition.headline;
  if (!keys) return metrics;
  return Object.fromEntries(keys.filter((k) => k in metrics).map((k) => [k, metrics[k]]));
}

export async function runPipeline(
  pipeline: ResolvedPipeline,
  options: RunOptions,
): Promise<RunReport> {
  const out = options.out ?? stderrOutput;
  const cache = new ArtifactCache(options.cacheDir);
  const settings = pipelineSettings(pipeline, options.cacheDir);
  const steps = await planPipeline(pipeline, cache, settings, options);
  const report: RunReport = {
    pipeline: pipeline.settings.name,
    steps: [],
    artifacts: {},
    ok: true,
  };

  if (options.planOnly) {
    out.write(formatPlan(steps) + "\n");
    for (const s of steps) {
      report.steps.push({
        stage: s.stage.name,
        type: s.stage.type,
        outcome: s.status === "cached" ? "cached" : s.status === "skip" ? "skipped" : "planned",
        seconds: 0,
        metrics: s.cached ? headlineOf(s, s.cached.manifest.metrics) : {},
        dir: s.cached?.dir,
        key: s.key,
      });
    }
    return report;
  }

  const record = await RunRecord.begin(options.cacheDir, {
    name: pipeline.settings.name,
    file: pipeline.file,
  }, steps);
  let failed = false;
  for (const step of steps) {
    await record.sync(report.steps);
    const { stage } = step;
    const base = { stage: stage.name, type: stage.type, key: step.key };
    if (step.status === "skip" || failed) {
      report.steps.push({ ...base, outcome: "skipped", seconds: 0, metrics: {} });
      continue;
    }
    if (step.status === "cached" && step.cached) {
      report.artifacts[stage.name] = step.cached;
      report.steps.push({
        ...base,
        outcome: "cached",
        seconds: 0,
        metrics: headlineOf(step, step.cached.manifest.metrics),
        dir: step.cached.dir,
      });
      continue;
    }
    const inputs: Record<string, Artifact> = {};
    for (const need of stage.needs) inputs[need] = report.artifacts[need];

    const started = new Date();
    const t0 = performance.now();
    await cache.sweepTemp(stage.name);
    const outDir = await cache.createTemp(stage.name, step.key);
    const progressDir = await cache.ensureProgressDir(stage.name, step.key);
    const environment: Record<string, unknown> = {};
    const log = createLogger(stage.name, out);
    log.info(`running (${step.reason ?? "not cached"})`);
    await record.running(stage.name);
    try {
      const result = await stage.definition.run({
        name: stage.name,
        params: stage.params,
        inputs,
        outDir,
        progressDir,
        pipeline: settings,
        progress: createProgress(stage.name, {
          out,
          onState: record.progressListener(stage.name),
        }),
        log,
        signal: options.signal ?? new AbortController().signal,
        recordEnvironment: (facts) => Object.assign(environment, facts),
      });
      options.signal?.throwIfAborted();
      const seconds = (performance.now() - t0) / 1000;
      const metrics = result?.metrics ?? {};
      const manifest: Manifest = {
        format: 1,
        stage: stage.name,
        type: stage.type,
        version: stage.definition.version,
        key: step.key,
        params: stage.params,
        inputs: Object.fromEntries(
          Object.entries(inputs).map(([n, a]) => [n, { type: a.type, key: a.key }]),
        ),
        files: step.files,
        versions: { groundup: GROUNDUP_VERSION, deno: Deno.version.deno },
        environment,
        metrics,
        startedAt: started.toISOString(),
        finishedAt: new Date().toISOString(),
        seconds,
      };
      const artifact = await cache.commit(outDir, manifest);
      report.artifacts[stage.name] = artifact;
      report.steps.push({
        ...base,
        outcome: "ran",
        seconds,
        metrics: headlineOf(step, metrics),
        dir: artifact.dir,
      });
    } catch (error) {
      await Deno.remove(outDir, { recursive: true }).catch(() => {});
      failed = true;
      report.ok = false;
      const message = error instanceof Error ? error.message : String(error);
      report.steps.push({
        ...base,
        outcome: "failed",
        seconds: (performance.now() - t0) / 1000,
        metrics: {},
        error: message,
      });
      report.error = new StageFailedError(stage.name, error);
    }
  }
  await record.finish(report.steps, report.ok);
  return report;
}
