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
import { describeOwner, type HeldLock } from "./lock.ts";
import type { StageHoldings } from "./interrupt.ts";
import { StageFailedError } from "./errors.ts";
import type { ResolvedPipeline } from "./pipeline.ts";
import { type PlannedStep, planPipeline, type Selection } from "./plan.ts";
import {
  createLogger,
  createProgress,
  type Logger,
  type Output,
  stderrOutput,
} from "../util/progress.ts";
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

/** One stage's line of the report, less what the loop adds (its name, type and key). */
type StepResult = Omit<StepReport, "stage" | "type" | "key">;

/** What every stage of one run shares: where it writes, where it reports, what stops it. */
interface RunContext {
  cache: ArtifactCache;
  settings: PipelineSettings;
  out: Output;
  signal: AbortSignal;
  options: RunOptions;
  /** The run as the web UI shows it. */
  record: RunRecord;
  /** Filled in as the stages finish: later stages read their inputs' artifacts from it. */
  report: RunReport;
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
    report.steps = steps.map(plannedStep);
    return report;
  }

  await verifyInputsToBeRead(steps, out);
  const signal = options.signal ?? new AbortController().signal;
  // The run as the web UI shows it: written now, updated per stage and with live progress.
  const record = await RunRecord.begin(options.cacheDir, {
    name: pipeline.settings.name,
    file: pipeline.file,
  }, steps);
  const run: RunContext = { cache, settings, out, signal, options, record, report };
  /** Stage name → the failed stage that blocks it. */
  const blockedBy = new Map<string, string>();
  for (const step of steps) {
    await record.sync(report.steps);
    const { stage } = step;
    const base = { stage: stage.name, type: stage.type, key: step.key };
    const blocker = stage.needs.map((n) =>
      blockedBy.get(n) ?? (failedHere(report, n) ? n : undefined)
    ).find(Boolean);
    if (blocker) blockedBy.set(stage.name, blocker);
    const result = notToRun(step, report, blocker) ?? await runStep(step, run);
    report.steps.push({ ...base, ...result });
    if (result.outcome === "failed" || result.outcome === "interrupted") report.ok = false;
  }
  await record.finish(report.steps, report.ok);
  return report;
}

/** A step's line in a `planOnly` report: what would happen to it. */
function plannedStep(s: PlannedStep): StepReport {
  return {
    stage: s.stage.name,
    type: s.stage.type,
    outcome: s.status === "cached" ? "cached" : s.status === "skip" ? "skipped" : "planned",
    seconds: 0,
    metrics: s.cached ? headlineOf(s, s.cached.manifest.metrics) : {},
    dir: s.cached?.dir,
    key: s.key,
  };
}

/**
 * The outcome of a step that does not run: blocked by a failed stage it needs, skipped (not
 * selected, or the run was interrupted) or cached. Undefined when it must run.
 */
function notToRun(
  step: PlannedStep,
  report: RunReport,
  blocker: string | undefined,
): StepResult | undefined {
  const idle = { seconds: 0, metrics: {} };
  if (blocker) return { ...idle, outcome: "blocked", blockedBy: blocker };
  if (step.status === "skip" || report.interrupted) return { ...idle, outcome: "skipped" };
  if (step.status === "cached" && step.cached) {
    report.artifacts[step.stage.name] = step.cached;
    return {
      outcome: "cached",
      seconds: 0,
      metrics: headlineOf(step, step.cached.manifest.metrics),
      dir: step.cached.dir,
    };
  }
  return undefined;
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

/**
 * Run one stage in four phases: take its key's lock; check whether another process computed
 * the key meanwhile; run the stage into a temporary folder; commit that folder as the artifact.
 * A failure or interruption in any phase becomes the step's outcome (see `stopped`).
 */
async function runStep(step: PlannedStep, run: RunContext): Promise<StepResult> {
  const log = createLogger(step.stage.name, run.out);
  const clock = startClock();
  const lock = await lockKey(step, run, log);
  if (!("release" in lock)) return stopped(step, run, lock.error, clock, { whileWaiting: true });
  try {
    const found = await computedMeanwhile(step, run, log);
    if (found) return found;
    const done = await execute(step, run, log, lock);
    const artifact = await commit(step, run, done, clock);
    return {
      outcome: "ran",
      seconds: artifact.manifest.seconds,
      metrics: headlineOf(step, artifact.manifest.metrics),
      dir: artifact.dir,
    };
  } catch (error) {
    return await stopped(step, run, error, clock);
  } finally {
    await lock.release();
  }
}

/** When a step started, and the seconds since. */
interface Clock {
  started: Date;
  elapsed(): number;
}

function startClock(): Clock {
  const t0 = performance.now();
  return { started: new Date(), elapsed: () => (performance.now() - t0) / 1000 };
}

/** Phase 1: the key's lock, waiting while another process computes the key (unless `noWait`). */
async function lockKey(
  step: PlannedStep,
  run: RunContext,
  log: Logger,
): Promise<HeldLock | { error: unknown }> {
  const what = `${step.stage.name}/${step.key.slice(0, 16)}`;
  try {
    return await run.cache.lock(step.stage.name, step.key, {
      noWait: run.options.noWait,
      signal: run.signal,
      onWait: (owner) => log.info(`waiting for ${what} (${describeOwner(owner)})`),
    });
  } catch (error) {
    return { error };
  }
}

/**
 * Phase 2: another process may have computed this key while we waited for its lock; its
 * artifact is used unless this run means to replace it (damaged, or a `--force`/`--from`).
 */
async function computedMeanwhile(
  step: PlannedStep,
  run: RunContext,
  log: Logger,
): Promise<StepResult | undefined> {
  if (step.damaged || step.reason?.startsWith("--")) return undefined;
  const found = await run.cache.lookup(step.stage.name, step.key);
  if (!found || isDamaged(found)) return undefined;
  log.info(`computed by another run meanwhile: using ${found.dir}`);
  run.report.artifacts[step.stage.name] = found;
  return {
    outcome: "cached",
    seconds: 0,
    metrics: headlineOf(step, found.manifest.metrics),
    dir: found.dir,
  };
}

/** What a stage's run left to commit. */
interface Executed {
  /** The temporary folder holding the stage's files. */
  outDir: string;
  inputs: Record<string, Artifact>;
  metrics: Record<string, number | string>;
  environment: Record<string, unknown>;
}

/**
 * Phase 3: clear the way (a damaged artifact, dead runs' temporary folders, `--force`'s
 * checkpoints), check memory and disk, and run the stage into a fresh temporary folder,
 * which is removed if the stage throws.
 */
async function execute(
  step: PlannedStep,
  run: RunContext,
  log: Logger,
  lock: HeldLock,
): Promise<Executed> {
  const { stage } = step;
  const { cache, settings } = run;
  await clearTheWay(step, cache, log);
  const memory = stage.definition.memoryBytes?.(stage.params);
  if (memory) ensureMemory(memory.bytes, `stage "${stage.name}" (${memory.what})`);
  const needed = stage.definition.diskBytes?.(stage.params, settings);
  if (needed) await ensureFreeSpace(cache.stageDir(stage.name), needed, `stage "${stage.name}"`);
  const outDir = await cache.createTemp(stage.name, step.key);
  try {
    const progressDir = await cache.ensureProgressDir(stage.name, step.key);
    const inputs: Record<string, Artifact> = {};
    for (const need of stage.needs) inputs[need] = run.report.artifacts[need];
    const environment: Record<string, unknown> = {};
    log.info(`running (${step.reason ?? "not cached"})`);
    await run.record.running(stage.name);
    run.options.onStageStart?.(stage.name, progressDir, { lockPath: lock.path, tempDir: outDir });
    const result = await stage.definition.run({
      name: stage.name,
      params: stage.params,
      inputs,
      outDir,
      progressDir,
      pipeline: settings,
      progress: createProgress(stage.name, {
        out: run.out,
        onState: run.record.progressListener(stage.name),
      }),
      log,
      signal: run.signal,
      recordEnvironment: (facts) => Object.assign(environment, facts),
    });
    return { outDir, inputs, metrics: result?.metrics ?? {}, environment };
  } catch (error) {
    await Deno.remove(outDir, { recursive: true }).catch(() => {});
    throw error;
  }
}

/**
 * Before a stage runs: a damaged artifact is kept aside for inspection (an unverifiable old
 * one is simply replaced when the new one is committed); temporary folders of dead runs go;
 * `--force` starts without the key's checkpoints.
 */
async function clearTheWay(step: PlannedStep, cache: ArtifactCache, log: Logger) {
  const { stage } = step;
  if (step.damaged && step.damaged.problem !== UNVERIFIABLE) {
    const aside = await cache.discard(step.damaged.dir).catch(() => undefined);
    if (aside) log.warn(`set the damaged artifact aside as ${aside}`);
  }
  await cache.sweepTemp(stage.name, step.key);
  if (step.reason === "--force") {
    const progressDir = cache.progressDir(stage.name, step.key);
    const hadProgress = await Deno.stat(progressDir).then(() => true, () => false);
    if (hadProgress) {
      await Deno.remove(progressDir, { recursive: true });
      log.info(`--force: discarded the checkpoints in ${progressDir}; starting fresh`);
    }
  }
}

/**
 * Phase 4: the stage returned, so its work is complete: write its manifest and move its folder
 * into place, even if a Ctrl-C arrived during its last moments (the runner then starts nothing
 * more).
 */
async function commit(
  step: PlannedStep,
  run: RunContext,
  done: Executed,
  clock: Clock,
): Promise<Artifact> {
  const { stage } = step;
  const seconds = clock.elapsed();
  const manifest: Manifest = {
    format: 1,
    stage: stage.name,
    type: stage.type,
    version: stage.definition.version,
    key: step.key,
    params: stage.params,
    inputs: Object.fromEntries(
      Object.entries(done.inputs).map(([n, a]) => [n, { type: a.type, key: a.key }]),
    ),
    files: step.files,
    versions: { groundup: GROUNDUP_VERSION, deno: Deno.version.deno },
    environment: done.environment,
    metrics: done.metrics,
    startedAt: clock.started.toISOString(),
    finishedAt: new Date().toISOString(),
    seconds,
  };
  let artifact: Artifact;
  try {
    artifact = await run.cache.commit(done.outDir, manifest);
  } catch (error) {
    await Deno.remove(done.outDir, { recursive: true }).catch(() => {});
    throw error;
  }
  run.report.artifacts[stage.name] = artifact;
  if (run.signal.aborted) {
    run.report.interrupted = {
      stage: stage.name,
      progressDir: run.cache.progressDir(stage.name, step.key),
      checkpointKept: false,
    };
  }
  return artifact;
}

/**
 * A step that threw or was interrupted: its empty progress folder goes (a checkpoint stays for
 * the next run), the report says whether a Ctrl-C stopped it or what failed, naming the path
 * and the kept checkpoint when the disk is full. `lockWait`: it never got its key's lock, so
 * it owns nothing in the cache.
 */
async function stopped(
  step: PlannedStep,
  run: RunContext,
  error: unknown,
  clock: Clock,
  lockWait?: { whileWaiting: true },
): Promise<StepResult> {
  const { cache, report } = run;
  const stage = step.stage.name;
  const progressDir = cache.progressDir(stage, step.key);
  let checkpointKept = false;
  if (!lockWait) {
    await cache.removeProgressIfEmpty(stage, step.key);
    checkpointKept = await Deno.stat(progressDir).then(() => true, () => false);
  }
  if (run.signal.aborted) {
    report.interrupted = { stage, progressDir, checkpointKept, ...lockWait };
    return { outcome: "interrupted", seconds: clock.elapsed(), metrics: {}, error: "interrupted" };
  }
  let cause = error;
  if (!lockWait && isDiskFull(error)) {
    cause = new Error(
      `${describeFsError(error, cache.stageDir(stage))} (${(error as Error).message})${
        checkpointKept ? `; the last checkpoint is kept in ${progressDir}` : ""
      }`,
    );
  }
  report.ok = false;
  report.error ??= new StageFailedError(stage, cause);
  const message = cause instanceof Error ? cause.message : String(cause);
  return { outcome: "failed", seconds: clock.elapsed(), metrics: {}, error: message };
}
