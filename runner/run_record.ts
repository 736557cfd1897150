/**
 * The run record: one JSON file per run, `<cacheDir>/runs/<start time>-<pipeline>.json`, written
 * when the run starts and rewritten as its stages progress, so a reader (the web UI, a script)
 * sees what ran, what was cached, what failed and, while a stage works, its latest progress.
 *
 * Writes are atomic (temp file + rename) and serialised; a failure to write the record never
 * fails the run. Progress rewrites the file at most once a second.
 */
import { join } from "node:path";
import { hostname } from "node:os";
import { ownerDead } from "./lock.ts";
import { writeFileAtomic } from "./cache.ts";
import type { PlannedStep } from "./plan.ts";
import type { ProgressState } from "../util/progress.ts";
import type { StepOutcome, StepReport } from "./run_report.ts";

export const RUNS_DIR = "runs";

export type RecordedOutcome = StepOutcome | "pending" | "running";

export interface RecordedStep {
  stage: string;
  type: string;
  key: string;
  /** Stage names this one reads (the pipeline graph's edges). */
  needs: string[];
  outcome: RecordedOutcome;
  seconds: number;
  metrics: Record<string, number | string>;
  dir?: string;
  error?: string;
  startedAt?: string;
  /** The latest progress of a running stage. */
  progress?: ProgressState & { updatedAt: string };
}

export interface RunRecordFile {
  format: 1;
  pipeline: string;
  /** The pipeline file as given on the command line. */
  file: string;
  status: "running" | "ok" | "failed";
  startedAt: string;
  updatedAt: string;
  finishedAt?: string;
  /** The process running it, and its host: a reader tells a dead run (kill -9) at once. */
  pid: number;
  host?: string;
  ok?: boolean;
  steps: RecordedStep[];
}

/**
 * What a reader should take a record's status to be: a "running" record whose process is gone
 * (same host, pid not running: a crash or kill -9) or that has not been rewritten for `staleMs`
 * (its heartbeat stopped; another host's run) was interrupted.
 */
export function effectiveStatus(
  record: Pick<RunRecordFile, "status" | "pid" | "host" | "updatedAt">,
  staleMs: number,
  now = Date.now(),
): RunRecordFile["status"] | "interrupted" {
  if (record.status !== "running") return record.status;
  const dead = typeof record.host === "string" && typeof record.pid === "number" &&
    ownerDead({ pid: record.pid, host: record.host, started: "" });
  const updated = Date.parse(String(record.updatedAt ?? ""));
  return dead || !Number.isFinite(updated) || now - updated > staleMs ? "interrupted" : "running";
}

export class RunRecord {
  #chain: Promise<void> = Promise.resolve();
  #lastProgressWrite = -Infinity;
  #heartbeat?: ReturnType<typeof setInterval>;

  private constructor(readonly path: string, readonly data: RunRecordFile) {}

  /** Creates the record with every planned stage pending (or skipped). */
  static async begin(
    cacheDir: string,
    pipeline: { name: string; file: string },
    steps: PlannedStep[],
  ): Promise<RunRecord> {
    const now = new Date();
    const stamp = now.toISOString().replace(/[:.]/g, "-");
    const path = join(cacheDir, RUNS_DIR, `${stamp}-${pipeline.name}.json`);
    const record = new RunRecord(path, {
      format: 1,
      pipeline: pipeline.name,
      file: pipeline.file,
      status: "running",
      startedAt: now.toISOString(),
      updatedAt: now.toISOString(),
      pid: Deno.pid,
      host: hostname(),
      steps: steps.map((s) => ({
        stage: s.stage.name,
        type: s.stage.type,
        key: s.key,
        needs: [...s.stage.needs],
        outcome: s.status === "skip" ? "skipped" : "pending",
        seconds: 0,
        metrics: {},
      })),
    });
    await Deno.mkdir(join(cacheDir, RUNS_DIR), { recursive: true }).catch(() => {});
    // A heartbeat, so a reader can tell a run that is still alive from one that crashed.
    const heartbeat = setInterval(() => record.#write(), 30_000);
    Deno.unrefTimer(heartbeat);
    record.#heartbeat = heartbeat;
    await record.#write();
    return record;
  }

  #step(stage: string): RecordedStep | undefined {
    return this.data.steps.find((s) => s.stage === stage);
  }

  /** Copies the finished steps of the report into the record. */
  async sync(steps: StepReport[]): Promise<void> {
    for (const done of steps) {
      const step = this.#step(done.stage);
      if (!step) continue;
      Object.assign(step, done);
      delete step.progress;
    }
    await this.#write();
  }

  async running(stage: string): Promise<void> {
    const step = this.#step(stage);
    if (step) step.outcome = "running", step.startedAt = new Date().toISOString();
    await this.#write();
  }

  /** A progress listener for `stage` (rewrites the file at most once a second). */
  progressListener(stage: string): (state: ProgressState) => void {
    return (state) => {
      const step = this.#step(stage);
      if (!step) return;
      step.progress = { ...state, updatedAt: new Date().toISOString() };
      const now = performance.now();
      if (now - this.#lastProgressWrite < 1000 && state.done < state.total) return;
      this.#lastProgressWrite = now;
      this.#write();
    };
  }

  async finish(steps: StepReport[], ok: boolean): Promise<void> {
    clearInterval(this.#heartbeat);
    this.data.status = ok ? "ok" : "failed";
    this.data.ok = ok;
    this.data.finishedAt = new Date().toISOString();
    await this.sync(steps);
  }

  /** Queues a rewrite of the whole record; errors are swallowed (the record is a convenience). */
  #write(): Promise<void> {
    this.#chain = this.#chain.then(async () => {
      this.data.updatedAt = new Date().toISOString();
      await writeFileAtomic(this.path, JSON.stringify(this.data, null, 2) + "\n");
    }).catch(() => {});
    return this.#chain;
  }
}
