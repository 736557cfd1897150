/**
 * Executing a plan: each stage that must run takes its key's lock (waiting while another
 * process computes the same key), gets a temporary output folder, its inputs (verified
 * against their manifests first) and a progress folder; its artifact is committed when it
 * returns, even if a Ctrl-C arrives in its last moments. A failure removes the temporary
 * folder, keeps the progress folder (so the next run resumes from the last checkpoint) and
 * blocks what depends on it; stages that do not depend on it still run. A Ctrl-C stops the
 * running stage (it checkpoints) and starts nothing more.
 */
import { relative } from "node:path";
import { describeFsError, ensureFreeSpace, ensureMemory, isDiskFull } from "../util/disk.ts";
import { ArtifactCache, checkFiles, isDamaged, UNVERIFIABLE } from "./cache.ts";
import { describeOwner } from "./lock.ts";
import type { StageHoldings } from "./interrupt.ts";
import { StageFailedError } from "./errors.ts";
import type { ResolvedPipeline } from "./pipeline.ts";
import { type PlannedStep, planPipeline, type Selection } from "./plan.ts";
import { createLogger, createProgress, type Output, stderrOutput } from "../util/progress.ts";
import type { Artifact, Manifest, PipelineSettings } from "./stage.ts";
import { RunRecord } from "./run_record.ts";
import type { RunReport, StepReport } from "./run_report.ts";
export type { RunReport, StepOutcome, StepReport } from "./run_report.ts";
import { formatMetric, table } from "./summary.ts";

export const GROUNDUP_VERSION = "0.1.0";

/** How `runPipeline` runs a plan, besides which stages it selects. */
export interface RunOptions extends Selection {
  /** The cache folder (artifacts, locks, checkpoints). */
  cacheDir: string;
  /** Only print the plan. */
  planOnly?: boolean;
  /** Where progress and the plan go (default stderr). */
  out?: Output;
  /** Aborting it stops the running stage (which checkpoints) and starts no other. */
  signal?: AbortSignal;
  /** Fail a stage another process is computing instead of waiting for it. */
  noWait?: boolean;
  /**
   * Told when a stage starts running, with its progress folder and what it holds (the
   * interrupt handler names the one and, on a second signal, removes the others).
   */
  onStageStart?: (stage: string, progressDir: string, holdings: StageHoldings) => void;
}

export function pipelineSettings(pipeline: ResolvedPipeline, cacheDir: string): PipelineSettings {
  return { ...pipeline.settings, cacheDir };
}

/** The widest "why" cell of the plan; a longer reason is numbered and printed in full below. */
const WHY_WIDTH = 40;

/**
 * The plan as a table: stage, type, run/cached/skip, why, key prefix. A long reason (a damaged
 * artifact's problem names its path) keeps the table narrow: its cell says what, with a note
 * number, and the note below the table says all.
 */
export function formatPlan(steps: PlannedStep[]): string {
  const notes: string[] = [];
  const rows = steps.map((s) => {
    let why = s.reason ?? "";
    if (why.length > WHY_WIDTH) {
      notes.push(`[${notes.length + 1}] ${s.stage.name}: ${why}`);
      why = `${why.split(":")[0].slice(0, WHY_WIDTH - 6)} [${notes.length}]`;
    }
    return [
      s.stage.name,
      s.stage.type,
      s.status === "run" ? "run" : s.status === "cached" ? "cached" : "skip",
      why,
      s.key.slice(0, 16),
    ];
  });
  const plan = table(["stage", "type", "action", "why", "key"], rows);
  return notes.length ? `${plan}\n\n${notes.join("\n")}` : plan;
}

/**
 * The run summary as a table: status, seconds, headline metrics or error, artifact folder relative
 * to `cwd`.
 */
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
        ["skipped", "planned", "blocked"].includes(s.outcome) ? "" : s.seconds.toFixed(2),
        s.blockedBy
          ? `blocked by ${s.blockedBy}`
          : s.error
          ? `error: ${s.error.split("\n")[0].slice(0, 80)}`
          : headline,
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

/**
 * Plan the pipeline and run every stage that is not cached, in dependency order. A failing stage
 * blocks only what depends on it; the report says what happened to each.
 */
export async function runPipeline(
  pipeline: ResolvedPipeline,
  options: RunOptions,
): Promise<RunReport> {
  const out = options.out ?? stderrOutput;
  const cache = new ArtifactCache(options.cacheDir);
  if (!options.planOnly) await cache.ensureWritable();
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

  await verifyInputsToBeRead(steps, out);

  /** Stage name → the failed stage that blocks it. */
  const blockedBy = new Map<string, string>();
  const signal = options.signal ?? new AbortController().signal;
  // The run as the web UI shows it: written now, updated per stage and with live progress.
  const record = await RunRecord.begin(options.cacheDir, {
    name: pipeline.settings.name,
    file: pipeline.file,
  }, steps);
  for (const step of steps) {
    await record.sync(report.steps);
    const { stage } = step;
    const base = { stage: stage.name, type: stage.type, key: step.key };
    const blocker = stage.needs.map((n) =>
      blockedBy.get(n) ?? (failedHere(report, n) ? n : undefined)
    )
      .find(Boolean);
    if (blocker) {
      blockedBy.set(stage.name, blocker);
      report.steps.push({
        ...base,
        outcome: "blocked",
        seconds: 0,
        metrics: {},
        blockedBy: blocker,
      });
      continue;
    }
    if (step.status === "skip" || report.interrupted) {
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
    const result = await runStep(step, report, cache, settings, out, signal, options, record);
    report.steps.push({ ...base, ...result });
    if (result.outcome === "failed" || result.outcome === "interrupted") report.ok = false;
  }
  await record.finish(report.steps, report.ok);
  return report;
}

function failedHere(report: RunReport, stage: string): boolean {
  return report.steps.some((s) => s.stage === stage && s.outcome === "failed");
}

/**
 * Check the contents of every cached artifact a running stage will read (sizes were checked
 * when the plan was made). A damaged one is re-run instead, and then its own inputs are read
 * too: hence the walk from the last stage back to the first.
 */
async function verifyInputsToBeRead(steps: PlannedStep[], out: Output) {
  const read = new Set<string>();
  for (const step of [...steps].reverse()) {
    if (step.status === "cached" && step.cached && read.has(step.stage.name)) {
      const problem = await checkFiles(step.cached.dir, step.cached.manifest, "contents");
      if (problem) {
        out.write(`[${step.stage.name}] cached artifact damaged: ${problem}; running it again\n`);
        step.damaged = { dir: step.cached.dir, problem };
        step.cached = undefined;
        step.status = "run";
        step.reason = `cached artifact damaged: ${problem}`;
      }
    }
    if (step.status === "run") { for (const need of step.stage.needs) read.add(need); }
  }
}

async function runStep(
  step: PlannedStep,
  report: RunReport,
  cache: ArtifactCache,
  settings: ReturnType<typeof pipelineSettings>,
  out: Output,
  signal: AbortSignal,
  options: RunOptions,
  record: RunRecord,
): Promise<Omit<StepReport, "stage" | "type" | "key">> {
  const { stage } = step;
  const log = createLogger(stage.name, out);
  const started = new Date();
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1000;
  const what = `${stage.name}/${step.key.slice(0, 16)}`;
  let lock;
  try {
    lock = await cache.lock(stage.name, step.key, {
      noWait: options.noWait,
      signal,
      onWait: (owner) => log.info(`waiting for ${what} (${describeOwner(owner)})`),
    });
  } catch (error) {
    if (signal.aborted) {
      report.interrupted = {
        stage: stage.name,
        progressDir: cache.progressDir(stage.name, step.key),
        checkpointKept: false,
        whileWaiting: true,
      };
      return { outcome: "interrupted", seconds: elapsed(), metrics: {}, error: "interrupted" };
    }
    return failure(report, stage.name, error, elapsed());
  }
  let outDir: string | undefined;
  const progressDir = cache.progressDir(stage.name, step.key);
  try {
    // Another process may have computed this key while we waited for its lock.
    if (!step.damaged && !step.reason?.startsWith("--")) {
      const found = await cache.lookup(stage.name, step.key);
      if (found && !isDamaged(found)) {
        log.info(`computed by another run meanwhile: using ${found.dir}`);
        report.artifacts[stage.name] = found;
        return {
          outcome: "cached",
          seconds: 0,
          metrics: headlineOf(step, found.manifest.metrics),
          dir: found.dir,
        };
      }
    }
    // A damaged artifact is kept aside for inspection; an unverifiable old one is simply
    // replaced when the new one is committed.
    if (step.damaged && step.damaged.problem !== UNVERIFIABLE) {
      const aside = await cache.discard(step.damaged.dir).catch(() => undefined);
      if (aside) log.warn(`set the damaged artifact aside as ${aside}`);
    }
    await cache.sweepTemp(stage.name, step.key);
    if (step.reason === "--force") {
      const hadProgress = await Deno.stat(progressDir).then(() => true, () => false);
      if (hadProgress) {
        await Deno.remove(progressDir, { recursive: true });
        log.info(`--force: discarded the checkpoints in ${progressDir}; starting fresh`);
      }
    }
    const memory = stage.definition.memoryBytes?.(stage.params);
    if (memory) ensureMemory(memory.bytes, `stage "${stage.name}" (${memory.what})`);
    const needed = stage.definition.diskBytes?.(stage.params, settings);
    if (needed) await ensureFreeSpace(cache.stageDir(stage.name), needed, `stage "${stage.name}"`);
    outDir = await cache.createTemp(stage.name, step.key);
    await cache.ensureProgressDir(stage.name, step.key);
    const inputs: Record<string, Artifact> = {};
    for (const need of stage.needs) inputs[need] = report.artifacts[need];
    const environment: Record<string, unknown> = {};
    log.info(`running (${step.reason ?? "not cached"})`);
    await record.running(stage.name);
    options.onStageStart?.(stage.name, progressDir, { lockPath: lock.path, tempDir: outDir });
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
      signal,
      recordEnvironment: (facts) => Object.assign(environment, facts),
    });
    // The stage returned: its work is complete and is committed even if a Ctrl-C arrived
    // during its last moments (the runner then starts nothing more).
    const seconds = elapsed();
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
    outDir = undefined;
    report.artifacts[stage.name] = artifact;
    if (signal.aborted) {
      report.interrupted = { stage: stage.name, progressDir, checkpointKept: false };
    }
    return { outcome: "ran", seconds, metrics: headlineOf(step, metrics), dir: artifact.dir };
  } catch (error) {
    if (outDir) await Deno.remove(outDir, { recursive: true }).catch(() => {});
    await cache.removeProgressIfEmpty(stage.name, step.key);
    const checkpointKept = await Deno.stat(progressDir).then(() => true, () => false);
    if (signal.aborted) {
      report.interrupted = { stage: stage.name, progressDir, checkpointKept };
      return { outcome: "interrupted", seconds: elapsed(), metrics: {}, error: "interrupted" };
    }
    let cause = error;
    if (isDiskFull(error)) {
      cause = new Error(
        `${describeFsError(error, cache.stageDir(stage.name))} (${(error as Error).message})${
          checkpointKept ? `; the last checkpoint is kept in ${progressDir}` : ""
        }`,
      );
    }
    return failure(report, stage.name, cause, elapsed());
  } finally {
    await lock.release();
  }
}

function failure(
  report: RunReport,
  stage: string,
  error: unknown,
  seconds: number,
): Omit<StepReport, "stage" | "type" | "key"> {
  report.ok = false;
  report.error ??= new StageFailedError(stage, error);
  const message = error instanceof Error ? error.message : String(error);
  return { outcome: "failed", seconds, metrics: {}, error: message };
}
