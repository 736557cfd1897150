/**
 * The stage API. A stage is a typed, versioned unit of work: the runner validates its
 * parameters against `params`, hands it the artifacts of the stages it needs, an empty
 * output folder and a progress folder that survives a crash, and records what it returns.
 */
import type { z } from "zod";
import type { Logger, ProgressReporter } from "../util/progress.ts";
import type { ArtifactKind } from "../llm/artifacts/mod.ts";

/** A finished stage's output as downstream stages see it. */
export interface Artifact {
  /** The stage instance name in the pipeline (e.g. "tokenize"). */
  stage: string;
  /** The stage type (e.g. "tokenize"). */
  type: string;
  /** The stage's cache key (sha256 hex), also recorded in the manifest. */
  key: string;
  /** The artifact's folder: read-only for downstream stages. */
  dir: string;
  /** What the stage recorded about the run that made it. */
  manifest: Manifest;
}

/** One file of an artifact as the manifest records it. */
export interface FileRecord {
  /** Bytes. */
  size: number;
  /** Lowercase hex sha256 of the file's content. */
  sha256: string;
}

/** `manifest.json` of an artifact: written last, so its presence marks a complete artifact. */
export interface Manifest {
  /** Manifest layout version. */
  format: 1;
  /** The stage instance name. */
  stage: string;
  /** The stage type. */
  type: string;
  /** The stage definition's `version` that made it. */
  version: string;
  /** The cache key (see `PlannedStep.key`). */
  key: string;
  /** The parameters as validated (cadence parameters included, though not in the key). */
  params: unknown;
  /** The type and key of each input artifact, by stage instance name. */
  inputs: Record<string, { type: string; key: string }>;
  /** Content hashes of the local files the stage read (part of the cache key). */
  files: Record<string, string>;
  /**
   * Every file of the artifact (relative path) with its size and sha256. Absent in manifests
   * written before artifacts were verified: those are re-run rather than trusted.
   */
  outputs?: Record<string, FileRecord>;
  /** Versions of groundup and the runtime that made the artifact. */
  versions: Record<string, string>;
  /** Facts about where it ran, from `StageContext.recordEnvironment` (backend, BLAS...). */
  environment: Record<string, unknown>;
  /** The stage's metrics (`StageResult.metrics`). */
  metrics: Record<string, number | string>;
  /** ISO time the stage started. */
  startedAt: string;
  /** ISO time it finished. */
  finishedAt: string;
  /** Wall-clock seconds it ran. */
  seconds: number;
}

/** A stage upstream of another, as `checkUpstream` sees it. */
export interface UpstreamStage {
  /** The upstream instance name. */
  name: string;
  /** The upstream stage type. */
  type: string;
  /** Its validated parameters (cast them according to `type`). */
  params: unknown;
  /** Listed in the checking stage's own `needs` (its artifact is one of the stage's inputs). */
  direct: boolean;
  /** Its definition says its artifact holds a model (`producesModel`). */
  producesModel: boolean;
}

/** Settings that belong to the whole pipeline rather than one stage. */
export interface PipelineSettings {
  /** The pipeline's `name:`. */
  name: string;
  /** Folder of the pipeline file; relative paths in parameters resolve against it. */
  baseDir: string;
  /** The pipeline's `seed:` (default 123): stages that draw random numbers inherit it. */
  seed: number;
  /**
   * The pipeline's `backend:` choice ("auto", "webgpu", "cpu" or "wasm"), passed to `initEngine`.
   */
  backend: string;
  /** Local folder consulted before any download (GROUNDUP_MIRROR or the pipeline's `mirror`). */
  mirror?: string;
  /** The cache folder artifacts and checkpoints live in. */
  cacheDir: string;
}

/**
 * What the runner hands a stage's `run`: its parameters, its inputs, where to write, and how to
 * report.
 */
export interface StageContext<P> {
  /** The stage instance name. */
  name: string;
  /** The parameters, parsed by the definition's schema (defaults filled in). */
  params: P;
  /** Upstream artifacts by stage instance name (every stage listed in `needs`). */
  inputs: Record<string, Artifact>;
  /** Empty folder that becomes the artifact when `run` returns. */
  outDir: string;
  /** Folder that survives a crash (checkpoints); removed once the stage finishes. */
  progressDir: string;
  /** The pipeline-wide settings. */
  pipeline: PipelineSettings;
  /** Progress of long work (steps, tokens, bytes). */
  progress: ProgressReporter;
  /** Messages, prefixed with the stage name. */
  log: Logger;
  /** Aborted on Ctrl-C/SIGTERM: checkpoint and throw (or return) promptly. */
  signal: AbortSignal;
  /** Record facts about where the work ran (backend, BLAS library...) in the manifest. */
  recordEnvironment(facts: Record<string, unknown>): void;
}

/** What a stage's `run` returns. */
export interface StageResult {
  /** Headline numbers shown in the summary and stored in the manifest. */
  metrics?: Record<string, number | string>;
}

/**
 * A stage type: its parameter schema, what it needs, and how it runs. Register it in a
 * `StageRegistry` so pipelines can use it.
 */
export interface StageDefinition<P = unknown> {
  /** The name pipelines use in `uses:` (or as the instance name). */
  type: string;
  /** Bump when the stage's output for the same inputs changes: it invalidates cached artifacts. */
  version: string;
  /** One line for `groundup stages` and the generated docs. */
  description: string;
  /** Zod schema of the parameters (strict objects, so unknown keys are rejected). */
  // deno-doc-ignore private-type-ref -- zod's public type (deno doc counts node_modules as local)
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
  /** Headline metrics to show in the run summary (keys of StageResult.metrics). */
  headline?: string[];
  /**
   * The kinds of artifact the stage writes (llm/artifacts/mod.ts: "model", "history",
   * "responses", "judge"...): each kind's module writes and reads its files, so downstream
   * stages, the report and the page know what the artifact holds without guessing by file
   * names. A kind whose files a run did not write (a judge of one field has no "pairwise") is
   * simply absent from that artifact.
   */
  outputs?: readonly ArtifactKind[];
  /**
   * The artifact holds a model (model.safetensors + config.json) that downstream stages load:
   * lets `checkUpstream` tell, before anything runs, whether a stage named as a model has one.
   * Default: whether `outputs` lists "model".
   */
  producesModel?: boolean;
  /**
   * Top-level parameters that change how the stage executes, not its output (how often it
   * saves its work: "checkpoint_minutes"; how it talks to a server: "concurrency",
   * "timeout_s"). They are left out of the cache key: each is hashed as its
   * schema default, so a pipeline using the defaults keeps the key it always had.
   */
  cadenceParams?: string[];
  /**
   * Optional top-level parameters with the value that means the same as leaving them out
   * (`quantize: none`): given that value, the parameter is left out of the cache key, so
   * spelling out the default does not re-run the stage.
   */
  neutralParams?: Readonly<Record<string, unknown>>;
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
  /** Do the work: write the artifact's files into `ctx.outDir` and return the headline metrics. */
  run(ctx: StageContext<P>): Promise<StageResult | void>;
}

/** Identity helper that keeps the parameter type flowing from the schema to `run`. */
// deno-doc-ignore private-type-ref -- zod's public types (deno doc counts node_modules as local)
export function defineStage<S extends z.ZodType>(
  definition: StageDefinition<z.infer<S>> & { params: S },
): StageDefinition<z.infer<S>> {
  return definition;
}

/** The stage types a pipeline may use, by type name. */
export class StageRegistry {
  #stages = new Map<string, StageDefinition<unknown>>();

  /**
   * Add a stage type; throws if the type name is taken (a silent replacement would change cache
   * keys' meaning). `producesModel` defaults to whether `outputs` lists "model".
   */
  register<P>(stage: StageDefinition<P>): this {
    if (this.#stages.has(stage.type)) {
      throw new Error(`a stage of type "${stage.type}" is already registered`);
    }
    const producesModel = stage.producesModel ?? stage.outputs?.includes("model");
    this.#stages.set(stage.type, { ...stage, producesModel } as StageDefinition<unknown>);
    return this;
  }

  /** The definition registered under `type`, if any. */
  get(type: string): StageDefinition<unknown> | undefined {
    return this.#stages.get(type);
  }

  /** Every registered type name, in registration order. */
  types(): string[] {
    return [...this.#stages.keys()];
  }
}
