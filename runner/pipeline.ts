/**
 * Reading a pipeline: YAML file + overlays (`--config`) + single values (`--set`), merged,
 * then validated against each stage's schema. Every problem is reported with the place it
 * came from (file:line:column or the flag), and nothing runs while any problem remains.
 */
import { isMap, isScalar, isSeq, LineCounter, parse as parseYaml, parseDocument } from "yaml";
import type { Node as YamlNode } from "yaml";
import { z } from "zod";
import { PipelineError, type PipelineProblem, type SourceLocation } from "./errors.ts";
import { knownKeysAt, schemaAt } from "./schema_paths.ts";
import type { PipelineSettings, StageDefinition, StageRegistry } from "./stage.ts";
import { didYouMean } from "./suggest.ts";
import { resolvePath } from "../util/files.ts";

/** A key path into a YAML document: keys and list indices. */
export type Path = (string | number)[];
/** A YAML value as parsed: an object of keys to values. */
export type Json = Record<string, unknown>;

/** Where each key path of the merged pipeline was written (the last writer wins). */
export class SourceMap {
  #locations = new Map<string, SourceLocation>();

  /** Record that `path` was last written at `location` (later writers override earlier ones). */
  set(path: Path, location: SourceLocation) {
    this.#locations.set(JSON.stringify(path.map(String)), location);
  }

  /**
   * Record that the whole value at `path` was replaced at `location` (`--set`, a model file):
   * what was recorded inside the old value no longer locates anything.
   */
  replace(path: Path, location: SourceLocation) {
    const prefix = JSON.stringify(path.map(String)).slice(0, -1) + ",";
    for (const key of [...this.#locations.keys()]) {
      if (key.startsWith(prefix)) this.#locations.delete(key);
    }
    this.set(path, location);
  }

  /** The location of the path or of its nearest ancestor. */
  find(path: Path): SourceLocation | undefined {
    for (let n = path.length; n >= 0; n--) {
      const found = this.#locations.get(JSON.stringify(path.slice(0, n).map(String)));
      if (found) return found;
    }
    return undefined;
  }
}

export const BACKENDS = ["auto", "webgpu", "cpu", "wasm"] as const;

const PipelineFileSchema = z.strictObject({
  name: z.string().min(1),
  description: z.string().optional(),
  seed: z.number().int().min(0).default(123),
  backend: z.enum(BACKENDS).default("auto"),
  mirror: z.string().optional(),
  model: z.union([z.string(), z.record(z.string(), z.unknown())]).optional(),
  stages: z.record(z.string(), z.union([z.record(z.string(), z.unknown()), z.null()])),
});

/** Keys of a stage entry that belong to the runner, not to the stage's parameters. */
const RUNNER_KEYS = ["uses", "needs"];

/** One stage of a pipeline, its parameters validated against its definition's schema. */
export interface StageInstance {
  /** The instance name (the key under `stages:`), unique in the pipeline. */
  name: string;
  /** The stage type (`uses:`, default the instance name), a key of the registry. */
  type: string;
  /** The registered definition of `type`. */
  definition: StageDefinition<unknown>;
  /** Instance names of the stages whose artifacts this one reads. */
  needs: string[];
  /** Parameters after defaults, inheritance and overlays, as the schema parsed them. */
  params: unknown;
}

/** A pipeline file with its overlays merged and every stage validated: ready to plan. */
export interface ResolvedPipeline {
  /** The pipeline file it was read from. */
  file: string;
  /** Pipeline-wide settings (name, seed, backend, mirror); the cache folder comes with the run. */
  settings: Omit<PipelineSettings, "cacheDir">;
  /** The model configuration after loading a `model:` file, if the pipeline names one. */
  model?: Json;
  /** Stage instances in the order the file lists them (the planner orders them). */
  stages: StageInstance[];
  /** Where every key path of the merged document was written, for error messages. */
  sources: SourceMap;
}

/** How `loadPipeline` merges overlays and values over the pipeline file. */
export interface LoadOptions {
  /** YAML overlays deep-merged over the pipeline, in order (`--config`). */
  overlays?: string[];
  /** `stage.key=value` assignments (`--set`), applied last. */
  sets?: string[];
  /** Folder relative paths resolve against (default: the working folder). */
  baseDir?: string;
  /**
   * A local folder consulted before any download (`--mirror`); it wins over GROUNDUP_MIRROR,
   * which wins over the pipeline's `mirror:`.
   */
  mirror?: string;
}

const TOP_LEVEL_KEYS = Object.keys(PipelineFileSchema.shape);

function isPlainObject(value: unknown): value is Json {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Objects merge key by key; anything else (scalars, lists) is replaced by the overlay. */
function deepMerge(base: unknown, overlay: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(overlay)) return structuredClone(overlay);
  const out: Json = { ...base };
  for (const [key, value] of Object.entries(overlay)) {
    out[key] = key in base ? deepMerge(base[key], value) : structuredClone(value);
  }
  return out;
}

/** Parse one YAML file, recording where every key was written. */
async function readYamlFile(
  file: string,
  sources: SourceMap,
  problems: PipelineProblem[],
  pathPrefix: Path = [],
): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    problems.push({
      location: { source: file },
      message: `cannot read the file: ${error instanceof Error ? error.message : error}`,
    });
    return undefined;
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    for (const error of doc.errors) {
      const pos = lineCounter.linePos(error.pos[0]);
      problems.push({
        location: { source: file, line: pos.line, column: pos.col },
        message: `invalid YAML: ${error.message.split("\n")[0]}`,
      });
    }
    return undefined;
  }
  const at = (offset: number | undefined): SourceLocation => {
    if (offset === undefined) return { source: file };
    const pos = lineCounter.linePos(offset);
    return { source: file, line: pos.line, column: pos.col };
  };
  const walk = (node: unknown, path: Path) => {
    if (isMap(node)) {
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        const keyNode = pair.key as YamlNode | null;
        sources.set([...path, key], at(keyNode?.range?.[0]));
        walk(pair.value, [...path, key]);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => {
        sources.set([...path, i], at((item as YamlNode | null)?.range?.[0]));
        walk(item, [...path, i]);
      });
    }
  };
  sources.set(pathPrefix, at(0));
  walk(doc.contents, pathPrefix);
  return doc.toJS();
}

/**
 * Whether a `--config` file is a whole configuration for the pipeline's `model:` (the key that
 * may also name such a file) rather than an overlay. An overlay is written like the pipeline,
 * so its top-level keys are the pipeline's; a file with none of them, nor a misspelling of one
 * (which the overlay's validation then reports), is a configuration file.
 */
function isConfigurationFile(value: Json): boolean {
  return Object.keys(value).every((key) =>
    !TOP_LEVEL_KEYS.includes(key) && didYouMean(key, TOP_LEVEL_KEYS) === ""
  );
}

/** `--set a.b.c=value`: the key path inside the pipeline (top-level keys, or a stage's). */
function setPath(dotted: string, stageNames: string[]): Path {
  const parts = dotted.split(".");
  if (TOP_LEVEL_KEYS.includes(parts[0]) && !stageNames.includes(parts[0])) return parts;
  return ["stages", ...parts];
}

function setIn(target: Json, path: Path, value: unknown) {
  let node: Json = target;
  for (const key of path.slice(0, -1)) {
    if (!isPlainObject(node[key as string])) node[key as string] = {};
    node = node[key as string] as Json;
  }
  node[path[path.length - 1] as string] = value;
}

/** Every problem found so far, thrown together when a step cannot go on past them. */
function throwIfAny(problems: PipelineProblem[]) {
  if (problems.length > 0) throw new PipelineError(problems);
}

/** What the steps of reading one pipeline share. */
interface Reading {
  registry: StageRegistry;
  sources: SourceMap;
  problems: PipelineProblem[];
  /** The `--config` file taken as the model configuration, if one was. */
  modelOverlay?: string;
}

/**
 * Read, merge and validate a pipeline against `registry`'s stages. Throws a `PipelineError` listing
 * every problem (with file:line:column) instead of the first only.
 */
export async function loadPipeline(
  file: string,
  registry: StageRegistry,
  options: LoadOptions = {},
): Promise<ResolvedPipeline> {
  const baseDir = options.baseDir ?? Deno.cwd();
  const reading: Reading = { registry, sources: new SourceMap(), problems: [] };
  const merged = await readPipelineFile(file, reading);
  for (const overlay of options.overlays ?? []) await applyOverlay(merged, overlay, reading);
  throwIfAny(reading.problems);
  applySets(merged, options.sets ?? [], reading);
  const pipeline = parseTopLevel(merged, reading);
  const model = await loadModelConfig(pipeline.model, baseDir, reading);
  const globals: Json = {
    seed: pipeline.seed,
    backend: pipeline.backend,
    ...(model ? { model } : {}),
  };
  const stages: StageInstance[] = [];
  for (const name of Object.keys(pipeline.stages)) {
    const stage = resolveStage(name, pipeline.stages, globals, reading);
    if (stage) stages.push(stage);
  }
  checkAcrossStages(stages, reading.sources, reading.problems);
  checkModelOverlayUsed(reading, pipeline.stages);
  throwIfAny(distinct(reading.problems));
  return {
    file,
    settings: {
      name: pipeline.name,
      baseDir,
      seed: pipeline.seed,
      backend: pipeline.backend,
      mirror: options.mirror ?? Deno.env.get("GROUNDUP_MIRROR") ??
        (pipeline.mirror ? resolvePath(pipeline.mirror, baseDir) : undefined),
    },
    model,
    stages,
    sources: reading.sources,
  };
}

/** The pipeline file as a mapping, every key's place recorded. */
async function readPipelineFile(file: string, { sources, problems }: Reading): Promise<Json> {
  const parsed = await readYamlFile(file, sources, problems);
  throwIfAny(problems);
  if (!isPlainObject(parsed)) {
    throw new PipelineError([{
      location: { source: file, line: 1, column: 1 },
      message: "expected a mapping with `name` and `stages`",
    }]);
  }
  return parsed;
}

/**
 * `--config FILE`: deep-merged over the pipeline, or, when it is a configuration file (see
 * `isConfigurationFile`), the new value of `model:`.
 */
async function applyOverlay(merged: Json, overlayFile: string, reading: Reading) {
  const { sources, problems } = reading;
  const overlay = await readYamlFile(overlayFile, sources, problems);
  throwIfAny(problems);
  if (!isPlainObject(overlay)) {
    problems.push({ location: { source: overlayFile }, message: "expected a YAML mapping" });
  } else if (isConfigurationFile(overlay)) {
    reading.modelOverlay = overlayFile;
    merged.model = overlay;
    sources.replace(["model"], { source: overlayFile, line: 1, column: 1 });
  } else {
    Object.assign(merged, deepMerge(merged, overlay));
  }
}

/**
 * A `--config` file taken as the model configuration must reach a stage: one that no stage takes
 * would otherwise be dropped without a word (a misspelt overlay, or the wrong pipeline).
 */
function checkModelOverlayUsed(
  { modelOverlay, problems, registry }: Reading,
  entries: Record<string, Record<string, unknown> | null>,
) {
  if (modelOverlay === undefined) return;
  // Every stage entry counts, also one that failed validation (it may be the one taking it).
  const takesModel = Object.entries(entries).some(([name, entry]) => {
    const type = typeof entry?.uses === "string" ? entry.uses : name;
    const definition = registry.get(type);
    return definition !== undefined && (definition.inherits ?? []).includes("model") &&
      knownKeysAt(definition.params, []).includes("model");
  });
  if (takesModel) return;
  problems.push({
    location: { source: modelOverlay, line: 1, column: 1 },
    message: `taken as a model configuration (it sets none of the pipeline's keys: ${
      TOP_LEVEL_KEYS.join(", ")
    }), but no stage of this pipeline takes \`model\``,
  });
}

/** `--set key=value` assignments, typed by the schema at the key, over the merged pipeline. */
function applySets(merged: Json, sets: string[], { registry, sources, problems }: Reading) {
  // Stage names are the merged file's, so --set can tell them from pipeline keys.
  const stageNames = isPlainObject(merged.stages) ? Object.keys(merged.stages) : [];
  for (const assignment of sets) {
    const eq = assignment.indexOf("=");
    const location = { source: `--set ${assignment}` };
    if (eq <= 0) {
      problems.push({ location, message: "expected stage.key=value" });
      continue;
    }
    const raw = assignment.slice(eq + 1);
    const path = setPath(assignment.slice(0, eq), stageNames);
    if (path[0] === "stages" && !stageNames.includes(String(path[1]))) {
      problems.push({
        location,
        message: `no stage named "${path[1]}" in this pipeline${
          didYouMean(String(path[1]), [...stageNames, ...TOP_LEVEL_KEYS])
        }`,
      });
      continue;
    }
    let value: unknown;
    try {
      value = parseYaml(raw);
    } catch {
      value = raw;
    }
    setIn(merged, path, coerceForSchema(merged, path, value, raw, registry));
    sources.replace(path, location);
  }
}

type PipelineFile = z.infer<typeof PipelineFileSchema>;

/**
 * The pipeline-wide keys, validated. When they have problems, what can be read of them is
 * returned anyway, so the stages' problems are reported in the same pass.
 */
function parseTopLevel(merged: Json, { sources, problems }: Reading): PipelineFile {
  const top = PipelineFileSchema.safeParse(merged);
  if (top.success) return top.data;
  for (const issue of top.error.issues) {
    problems.push(...issueProblems(issue, [], undefined, sources, PipelineFileSchema));
  }
  const stages = isPlainObject(merged.stages) ? merged.stages : {};
  return {
    name: String(merged.name ?? ""),
    seed: typeof merged.seed === "number" ? merged.seed : 123,
    backend: "auto",
    model: typeof merged.model === "string" || isPlainObject(merged.model)
      ? merged.model
      : undefined,
    stages: Object.fromEntries(
      Object.entries(stages).map(([k, v]) => [k, isPlainObject(v) ? v : {}]),
    ),
  };
}

/** The pipeline's `model:`: a mapping as written, or the YAML file it names, read. */
async function loadModelConfig(
  model: PipelineFile["model"],
  baseDir: string,
  { sources, problems }: Reading,
): Promise<Json | undefined> {
  if (typeof model !== "string") return model as Json | undefined;
  const modelFile = resolvePath(model, baseDir);
  // Stop here only for the model file's own problems: stages inherit the model, so their
  // errors would be noise; problems found earlier are reported with the stages' below.
  const before = problems.length;
  const loaded = await readYamlFile(modelFile, sources, problems, ["model"]);
  if (problems.length > before) throwIfAny(problems);
  if (!isPlainObject(loaded)) {
    problems.push({
      location: sources.find(["model"]),
      key: "model",
      message: `${modelFile} is not a YAML mapping`,
    });
    throwIfAny(problems);
  }
  return loaded as Json;
}

/**
 * One entry of `stages:` as an instance: its type known, its `needs` stages of this pipeline
 * of the types it requires, its parameters (inherited pipeline values under its own) valid.
 * Undefined, with the problems recorded, when any of that fails.
 */
function resolveStage(
  name: string,
  entries: PipelineFile["stages"],
  globals: Json,
  { registry, sources, problems }: Reading,
): StageInstance | undefined {
  const entry = (entries[name] ?? {}) as Json;
  const base: Path = ["stages", name];
  const type = typeOf(name, entry);
  const definition = registry.get(type);
  if (!definition) {
    problems.push({
      location: sources.find(entry.uses ? [...base, "uses"] : base),
      stage: name,
      message: `unknown stage type "${type}"${didYouMean(type, registry.types())}; known types: ${
        registry.types().join(", ")
      }`,
    });
    return undefined;
  }
  const needsRaw = entry.needs ?? [];
  const needs = Array.isArray(needsRaw) ? needsRaw.map(String) : [String(needsRaw)];
  problems.push(...needsProblems(name, entry, needs, definition, entries, sources));
  const own: Json = {};
  for (const [key, value] of Object.entries(entry)) {
    if (!RUNNER_KEYS.includes(key)) own[key] = value;
  }
  const params: Json = {};
  const accepted = knownKeysAt(definition.params, []);
  const inherited = (definition.inherits ?? []).filter((k) => k in globals && accepted.includes(k));
  for (const key of inherited) params[key] = structuredClone(globals[key]);
  const withOwn = deepMerge(params, own) as Json;
  const parsed = definition.params.safeParse(withOwn);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      problems.push(
        ...issueProblems(issue, base, name, sources, definition.params, {
          own,
          inherited,
          value: withOwn,
        }),
      );
    }
    return undefined;
  }
  return { name, type, definition, needs, params: parsed.data };
}

/** A stage entry's type: its `uses:`, else its name. */
function typeOf(name: string, entry: Json): string {
  return typeof entry.uses === "string" ? entry.uses : name;
}

/**
 * What is wrong with a stage's `needs`: a name that is not a stage of the pipeline, the stage
 * itself, or a required stage type (its definition's `requires`) that none of them is.
 */
function needsProblems(
  name: string,
  entry: Json,
  needs: string[],
  definition: StageDefinition<unknown>,
  entries: PipelineFile["stages"],
  sources: SourceMap,
): PipelineProblem[] {
  const stageNames = Object.keys(entries);
  const base: Path = ["stages", name];
  const at = { location: sources.find([...base, "needs"]), stage: name, key: "needs" };
  const found: PipelineProblem[] = [];
  for (const need of needs) {
    if (!stageNames.includes(need)) {
      found.push({
        ...at,
        message: `"${need}" is not a stage of this pipeline${didYouMean(need, stageNames)}`,
      });
    } else if (need === name) {
      found.push({ ...at, message: "a stage cannot need itself" });
    }
  }
  if (!needs.every((need) => stageNames.includes(need))) return found;
  for (const required of definition.requires ?? []) {
    if (needs.some((need) => typeOf(need, (entries[need] ?? {}) as Json) === required)) continue;
    found.push({
      ...at,
      location: sources.find(entry.needs !== undefined ? [...base, "needs"] : base),
      message: `a ${
        typeOf(name, entry)
      } stage needs a stage of type "${required}" (add it to \`needs\`)`,
    });
  }
  return found;
}

/** The problems without repeats: a wrong pipeline-level value inherited by several stages is reported once. */
function distinct(problems: PipelineProblem[]): PipelineProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const id = JSON.stringify([p.location, p.key, p.message]);
    return !seen.has(id) && seen.add(id);
  });
}

/**
 * The cross-stage checks stages declare (`checkUpstream`), given every stage upstream of each
 * one that parsed. Run before anything, so a mismatch fails at `--plan`, not mid-pipeline.
 */
function checkAcrossStages(
  stages: StageInstance[],
  sources: SourceMap,
  problems: PipelineProblem[],
) {
  const byName = new Map(stages.map((s) => [s.name, s]));
  for (const stage of stages) {
    if (!stage.definition.checkUpstream) continue;
    const upstream = new Map<string, StageInstance>();
    let complete = true;
    const visit = (name: string) => {
      const found = byName.get(name);
      if (!found) complete = false;
      if (!found || upstream.has(name)) return;
      upstream.set(name, found);
      found.needs.forEach(visit);
    };
    stage.needs.forEach(visit);
    // A stage upstream has problems of its own (reported already): checking against what is
    // left of the pipeline would only add wrong ones.
    if (!complete) continue;
    const found = stage.definition.checkUpstream(
      stage.params,
      [...upstream.values()].map(({ name, type, params, definition }) => ({
        name,
        type,
        params,
        direct: stage.needs.includes(name),
        producesModel: definition.producesModel === true,
      })),
    );
    for (const { key, message } of found) {
      problems.push({
        location: sources.find(["stages", stage.name, ...(key ? key.split(".") : [])]),
        stage: stage.name,
        key,
        message,
      });
    }
  }
}

/** Turn a `--set` string into what the schema at that path accepts (e.g. keep "123" a string). */
function coerceForSchema(
  merged: Json,
  path: Path,
  value: unknown,
  raw: string,
  registry: StageRegistry,
): unknown {
  let schema: z.ZodType | undefined;
  if (path[0] === "stages") {
    const stages = (merged.stages ?? {}) as Json;
    const entry = (stages[String(path[1])] ?? {}) as Json;
    const type = typeof entry.uses === "string" ? entry.uses : String(path[1]);
    const definition = registry.get(type);
    schema = definition ? schemaAt(definition.params, path.slice(2)) : undefined;
  } else {
    schema = schemaAt(PipelineFileSchema, path);
  }
  if (!schema) return value;
  if (schema.safeParse(value).success) return value;
  if (schema.safeParse(raw).success) return raw;
  return value;
}

function issueProblems(
  issue: z.core.$ZodIssue,
  base: Path,
  stage: string | undefined,
  sources: SourceMap,
  schema: z.ZodType,
  context?: { own: Json; inherited: string[]; value: unknown },
): PipelineProblem[] {
  const path = issue.path.map((p) => (typeof p === "symbol" ? String(p) : p)) as Path;
  if (issue.code === "unrecognized_keys") {
    const known = knownKeysAt(schema, path);
    return issue.keys.map((key) => ({
      location: sources.find([...base, ...path, key]),
      stage,
      key: [...path, key].join("."),
      message: `unknown key "${key}"${didYouMean(key, known)}; expected one of: ${
        known.join(", ")
      }`,
    }));
  }
  // An inherited value that is wrong is reported where the pipeline-level key was written.
  const inherited = context !== undefined && path.length > 0 && !(String(path[0]) in context.own) &&
    context.inherited.includes(String(path[0]));
  const location = inherited ? sources.find(path) : sources.find([...base, ...path]);
  // No option of a union matched: zod says only "Invalid input". Report the option that got
  // furthest into the value (its problems lie deepest), e.g. the missing key of an object form.
  if (issue.code === "invalid_union" && issue.errors.length > 0) {
    const depth = (issues: z.core.$ZodIssue[]) => Math.max(0, ...issues.map((i) => i.path.length));
    const best = issue.errors.reduce((a, b) => depth(b) > depth(a) ? b : a);
    if (depth(best) > 0) {
      return best.flatMap((inner) =>
        issueProblems(
          { ...inner, path: [...issue.path, ...inner.path] } as z.core.$ZodIssue,
          base,
          stage,
          sources,
          schema,
          context,
        )
      );
    }
  }
  let message = issue.message;
  // zod says "Invalid input" for an absent key; a stage's own (custom) message is kept.
  const absent = context && path.length > 0 && valueAt(context.value, path) === undefined;
  if (absent && issue.code !== "custom") {
    message = issue.code === "invalid_type"
      ? `required key is missing (expected ${issue.expected})`
      : "required key is missing";
  }
  return [{ location, stage, key: path.join(".") || undefined, message }];
}

function valueAt(value: unknown, path: Path): unknown {
  let current = value;
  for (const key of path) {
    if (current === null || typeof current !== "object") return undefined;
    current = (current as Record<string | number, unknown>)[key];
  }
  return current;
}
