/** What a pipeline run reports: one line per stage and the artifacts made or reused. */
import type { StageFailedError } from "./errors.ts";
import type { Artifact } from "./stage.ts";

/**
 * What became of a stage in a run: "planned" only with `planOnly`; "blocked": a stage it needs
 * failed.
 */
export type StepOutcome =
  | "cached"
  | "ran"
  | "failed"
  | "blocked"
  | "interrupted"
  | "skipped"
  | "planned";

/** One stage's line in a run report. */
export interface StepReport {
  /** The stage instance name. */
  stage: string;
  /** The stage type. */
  type: string;
  /** What became of it. */
  outcome: StepOutcome;
  /** Wall-clock seconds it ran (0 for cached or skipped stages). */
  seconds: number;
  /** Its headline metrics (the definition's `headline` keys, else all). */
  metrics: Record<string, number | string>;
  /** The artifact folder, when it has one. */
  dir?: string;
  /** The stage's cache key. */
  key: string;
  /** The failure message, for "failed". */
  error?: string;
  /** For "blocked": the failed stage it depends on. */
  blockedBy?: string;
}

/** The outcome of `runPipeline`: one step per stage and the artifacts made or reused. */
export interface RunReport {
  /** The pipeline's name. */
  pipeline: string;
  /** Every stage, in run order. */
  steps: StepReport[];
  /** Artifacts by stage instance name, cached or made in this run. */
  artifacts: Record<string, Artifact>;
  /** True when no stage failed and the run was not interrupted. */
  ok: boolean;
  /** The first stage failure, with the stage named. */
  error?: StageFailedError;
  /** Set when a Ctrl-C/SIGTERM stopped the run: the stage it stopped and its checkpoints. */
  interrupted?: {
    stage: string;
    progressDir: string;
    checkpointKept: boolean;
    /** Stopped while waiting for another process computing the stage. */
    whileWaiting?: boolean;
  };
}
