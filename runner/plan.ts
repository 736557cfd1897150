/**
 * Planning: order the stages by `needs`, compute each one's cache key and decide what runs.
 *
 * A key is the hash of everything that determines a stage's output: its type and
 * implementation version, its parameters in canonical form, the keys of the artifacts it
 * reads and the content of any local file it reads. Change any of these and the stage, and
 * through the input keys everything downstream of it, runs again.
 */
import { PipelineError, type PipelineProblem } from "./errors.ts";
import { canonicalJson, sha256File, sha256Hex } from "../util/hash.ts";
import type { ResolvedPipeline, SourceMap, StageInstance } from "./pipeline.ts";
import { type ArtifactCache, type DamagedArtifact, isDamaged } from "./cache.ts";
import { schemaAt } from "./schema_paths.ts";
import type { Artifact, PipelineSettings, StageDefinition } from "./stage.ts";
import { didYouMean } from "./suggest.ts";

/**
 * "cached": an artifact with this key exists and its files check out; "run": it must be computed
 * (not cached, damaged, forced or at/after `--from`); "skip": beyond `--until`.
 */
export type StepStatus = "cached" | "run" | "skip";

/** What the plan decided for one stage. */
export interface PlannedStep {
  /** The stage instance. */
  stage: StageInstance;
  /** Its cache key (sha256 hex of type, version, parameters, input keys and local file hashes). */
  key: string;
  /** Content hashes of the local files the stage reads. */
  files: Record<string, string>;
  /** Whether it runs, is reused from the cache or is skipped. */
  status: StepStatus;
  /** Why it runs: "not cached", "forced", "--from x". */
  reason?: string;
  /** The artifact reused when `status` is "cached". */
  cached?: Artifact;
  /** A cached artifact that failed its check (missing file, wrong size): set aside, re-run. */
  damaged?: { dir: string; problem: string };
}

/** Which part of a pipeline to run (`--from`, `--until`, `--force`). */
export interface Selection {
  /** Re-run this stage and everything downstream of it even if cached (upstream: only if not cached). */
  from?: string;
  /** Stop here: only this stage and the stages it needs, directly or not, are considered. */
  until?: string;
  /** Stage names to re-run even if cached, or "all". */
  force?: string[] | "all";
}

/** Topological order; ties keep the order of the file. Cycles are an error naming the cycle. */
export function orderStages(pipeline: ResolvedPipeline): StageInstance[] {
  const byName = new Map(pipeline.stages.map((s) => [s.name, s]));
  const ordered: StageInstance[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (stage: StageInstance, trail: string[]) => {
    const seen = state.get(stage.name);
    if (seen === "done") return;
    if (seen === "visiting") {
      const cycle = [...trail.slice(trail.indexOf(stage.name)), stage.name];
      throw new PipelineError([{
        location: pipeline.sources.find(["stages", stage.name, "needs"]),
        stage: stage.name,
        key: "needs",
        message: `the stages need each other in a cycle: ${cycle.join(" → ")}`,
      }]);
    }
    state.set(stage.name, "visiting");
    for (const need of stage.needs) visit(byName.get(need)!, [...trail, stage.name]);
    state.set(stage.name, "done");
    ordered.push(stage);
  };
  for (const stage of pipeline.stages) visit(stage, []);
  return ordered;
}

/** Every stage that depends, directly or not, on `name` (not including it). */
function descendants(stages: StageInstance[], name: string): Set<string> {
  const out = new Set<string>();
  let grew = true;
  while (grew) {
    grew = false;
    for (const s of stages) {
      if (!out.has(s.name) && s.needs.some((n) => n === name || out.has(n))) {
        out.add(s.name);
        grew = true;
      }
    }
  }
  return out;
}

function ancestorsAndSelf(stages: StageInstance[], name: string): Set<string> {
  const byName = new Map(stages.map((s) => [s.name, s]));
  const out = new Set<string>();
  const visit = (n: string) => {
    if (out.has(n)) return;
    out.add(n);
    for (const need of byName.get(n)!.needs) visit(need);
  };
  visit(name);
  return out;
}

/**
 * Order the stages, compute each key and decide what runs. Throws a `PipelineError` when a stage
 * named in `selection` does not exist or a local file a stage reads cannot be hashed.
 */
export async function planPipeline(
  pipeline: ResolvedPipeline,
  cache: ArtifactCache,
  settings: PipelineSettings,
  selection: Selection = {},
): Promise<PlannedStep[]> {
  const ordered = orderStages(pipeline);
  checkSelection(ordered.map((s) => s.name), selection);
  const decide = selectionRules(ordered, selection);
  const problems: PipelineProblem[] = [];
  const keys = new Map<string, string>();
  const steps: PlannedStep[] = [];
  for (const stage of ordered) {
    const files = await hashLocalFiles(stage, settings, pipeline.sources, problems);
    const inputs: Record<string, { type: string; key: string }> = {};
    for (const need of stage.needs) {
      const upstream = ordered.find((s) => s.name === need)!;
      inputs[need] = { type: upstream.type, key: keys.get(need)! };
    }
    const key = sha256Hex(canonicalJson({
      type: stage.type,
      version: stage.definition.version,
      params: keyParams(stage.definition, stage.params),
      inputs,
      files,
    }));
    keys.set(stage.name, key);
    const found = await cache.lookup(stage.name, key);
    const damaged = isDamaged(found) ? found : undefined;
    const cached = isDamaged(found) ? undefined : found;
    const { status, reason } = decide(stage.name, cached, damaged);
    steps.push({ stage, key, files, status, reason, cached, damaged });
  }
  if (problems.length) throw new PipelineError(problems);
  return steps;
}

/** Every stage `--from`, `--until` and `--force` name must be one of the pipeline's. */
function checkSelection(names: string[], selection: Selection) {
  const problems: PipelineProblem[] = [];
  const checkName = (flag: string, name: string) => {
    if (!names.includes(name)) {
      problems.push({
        location: { source: `${flag} ${name}` },
        message: `no stage named "${name}"${didYouMean(name, names)}; stages: ${names.join(", ")}`,
      });
    }
  };
  if (selection.from) checkName("--from", selection.from);
  if (selection.until) checkName("--until", selection.until);
  if (Array.isArray(selection.force)) { for (const f of selection.force) checkName("--force", f); }
  if (problems.length) throw new PipelineError(problems);
}

/**
 * What becomes of a stage, and why: skipped after `--until`; run from `--from` on, when forced,
 * or when its artifact is missing or damaged; else cached.
 */
function selectionRules(ordered: StageInstance[], selection: Selection) {
  const names = ordered.map((s) => s.name);
  const inScope = selection.until ? ancestorsAndSelf(ordered, selection.until) : new Set(names);
  const fromSet = selection.from
    ? new Set([selection.from, ...descendants(ordered, selection.from)])
    : new Set<string>();
  const forced = (name: string) =>
    selection.force === "all" || (Array.isArray(selection.force) && selection.force.includes(name));
  return (
    name: string,
    cached: Artifact | undefined,
    damaged: DamagedArtifact | undefined,
  ): { status: StepStatus; reason?: string } => {
    if (!inScope.has(name)) return { status: "skip", reason: `after --until ${selection.until}` };
    if (fromSet.has(name)) return { status: "run", reason: `--from ${selection.from}` };
    if (forced(name)) return { status: "run", reason: "--force" };
    if (cached) return { status: "cached" };
    if (damaged) return { status: "run", reason: `cached artifact unusable: ${damaged.problem}` };
    return { status: "run", reason: "not cached" };
  };
}

/** The content hashes of the local files a stage reads (part of its key), by path. */
async function hashLocalFiles(
  stage: StageInstance,
  settings: PipelineSettings,
  sources: SourceMap,
  problems: PipelineProblem[],
): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const path of stage.definition.localFiles?.(stage.params, settings) ?? []) {
    try {
      files[path] = await sha256File(path);
    } catch (error) {
      problems.push({
        location: sources.find(["stages", stage.name]),
        stage: stage.name,
        message: `cannot read local file ${path}: ${
          error instanceof Error ? error.message : error
        }`,
      });
    }
  }
  return files;
}

/**
 * The parameters as they enter the cache key: each of the stage's cadence parameters (how
 * often it checkpoints, not what it computes) is replaced by its schema default, so changing
 * it does not re-run the stage and a pipeline on the defaults keeps the key it always had; a
 * neutral parameter given its neutral value (`quantize: none`) is left out, as if absent.
 */
export function keyParams(definition: StageDefinition<unknown>, params: unknown): unknown {
  const cadence = definition.cadenceParams ?? [];
  const neutral = Object.entries(definition.neutralParams ?? {});
  if (cadence.length + neutral.length === 0 || params === null || typeof params !== "object") {
    return params;
  }
  const out: Record<string, unknown> = { ...(params as Record<string, unknown>) };
  for (const [name, value] of neutral) {
    if (out[name] === value) delete out[name];
  }
  for (const name of cadence) {
    // deno-lint-ignore no-explicit-any
    const field = schemaAt(definition.params, [name]) as any;
    const def = field?._zod?.def;
    if (def?.type === "default") out[name] = structuredClone(def.defaultValue);
    else delete out[name];
  }
  return out;
}
