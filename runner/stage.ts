/**
 * The stage API. A stage is a typed, versioned unit of work: the runner validates its
 * parameters against `params`, hands it the artifacts of the stages it needs, an empty
 * output folder and a progress folder that survives a crash, and records what it returns.
 */
import type { z } from "zod";
import type { Logger, ProgressReporter } from "./progress.ts";

/** A finished stage's output as downstream stages see it. */
export interface Artifact {
  /** The stage instance name in the pipeline (e.g. "tokenize"). */
  stage: string;
  /** The stage type (e.g. "tokenize"). */
  type: string;
  key: string;
  dir: string;
  manifest: Manifest;
}

/** One file of an artifact as the manifest records it. */
export interface FileRecord {
  size: number;
  sha256: string;
}

export interface Manifest {
  format: 1;
  stage: string;
  type: string;
  version: string;
  key: string;
  params: unknown;
  inputs: Record<string, { type: string; key: string }>;
  /** Content hashes of the local files the stage read (part of the cache key). */
  files: Record<string, string>;
  /**
   * Every file of the artifact (relative path) with its size and sha256. Absent in manifests
   * written before artifacts were verified: those are re-run rather than trusted.
   */
  outputs?: Record<string, FileRecord>;
  versions: Record<string, string>;
  environment: Record<string, unknown>;
  metrics: Record<string, number | string>;
  startedAt: string;
  finishedAt: string;
  seconds: number;
}

/** A stage upstream of another, as `checkUpstream` sees it. */
export interface UpstreamStage {
  name: string;
  type: string;
  params: unknown;
}

/** Settings that belong to the whole pipeline rather than one stage. */
export interface PipelineSettings {
  name: string;
  /** Folder of the pipeline file; relative paths in parameters resolve against it. */
  baseDir: string;
  seed: number;
  backend: string;
  /** Local folder consulted before any download (GROUNDUP_MIRROR or the pipeline's `mirror`). */
  mirror?: string;
  cacheDir: string;
}

export interface StageContext<P> {
  /** The stage instance name. */
  name: string;
  params: P;
  /** Upstream artifacts by stage instance name (every stage listed in `needs`). */
  inputs: Record<string, Artifact>;
  /** Empty folder that becomes the artifact when `run` returns. */
  outDir: string;
  /** Folder that survives a crash (checkpoints); removed once the stage finishes. */
  progressDir: string;
  pipeline: PipelineSettings;
  progress: ProgressReporter;
  log: Logger;
  signal: AbortSignal;
  /** Record facts about where the work ran (backend, BLAS library...) in the manifest. */
  recordEnvironment(facts: Record<string, unknown>): void;
}

export interface StageResult {
  /** Headline numbers shown in the summary and stored in the manifest. */
  metrics?: Record<string, number | string>;
}

export interface StageDefinition<P = unknown> {
  type: string;
  /** Bump when the stage's output for the same inputs changes: it invalidates cached artifacts. */
  version: string;
  description: string;
  /** Zod schema of the parameters (strict objects, so unknown keys are rejected). */
  params: z.ZodType<P>;
  /**
   * Pipeline-level keys this stage inherits when it does not set them itself (e.g. "seed",
   * "model"). Objects are deep-merged, the stage's own values winning.
   */
  inherits?: string[];
  /** Stage types that must be among this stage's `needs` (checked before anything runs). */
  requires?: string[];
  /** Local files this stage reads; their content hashes become part of the cache key. */
  localFiles?(params: P, pipeline: PipelineSettings): string[];
  /**
   * Facts outside the parameters that decide the output, looked up when the pipeline is
   * planned and hashed into the cache key (e.g. the digest of the weights a judge model
   * name points to). If the lookup fails the stage fails with that error when its turn
   * comes, and only the stages that need it are blocked.
   */
  keyFacts?(params: P, pipeline: PipelineSettings): Promise<unknown>;
  /** Headline metrics to show in the run summary (keys of StageResult.metrics). */
  headline?: string[];
  /**
   * Top-level parameters that change how often the stage saves its work, not its output
   * (e.g. "checkpoint_minutes"). They are left out of the cache key: each is hashed as its
   * schema default, so a pipeline using the defaults keeps the key it always had.
   */
  cadenceParams?: string[];
  /**
   * About how many bytes the stage writes (artifact plus checkpoints), checked against the
   * free space of the cache folder before it starts so a full disk fails early.
   */
  diskBytes?(params: P, pipeline: PipelineSettings): number | undefined;
  /**
   * About how much memory the stage needs (and what for), checked against the memory available
   * before it starts, so a model too large fails with both sizes instead of an allocation error.
   */
  memoryBytes?(params: P): { bytes: number; what: string } | undefined;
  /**
   * Problems knowable before anything runs from the parameters of the stages this one needs,
   * directly or not (e.g. a window longer than the model's context). Each names a key of
   * this stage's parameters where the problem is reported.
   */
  checkUpstream?(params: P, upstream: UpstreamStage[]): { key?: string; message: string }[];
  run(ctx: StageContext<P>): Promise<StageResult | void>;
}

/** Identity helper that keeps the parameter type flowing from the schema to `run`. */
export function defineStage<S extends z.ZodType>(
  definition: StageDefinition<z.infer<S>> & { params: S },
): StageDefinition<z.infer<S>> {
  return definition;
}

export class StageRegistry {
  #stages = new Map<string, StageDefinition<unknown>>();

  register<P>(stage: StageDefinition<P>): this {
    if (this.#stages.has(stage.type)) {
      throw new Error(`a stage of type "${stage.type}" is already registered`);
    }
    this.#stages.set(stage.type, stage as StageDefinition<unknown>);
    return this;
  }

  get(type: string): StageDefinition<unknown> | undefined {
    return this.#stages.get(type);
  }

  types(): string[] {
    return [...this.#stages.keys()];
  }
}
