/**
 * The web UI's server: the static page (ui/), uPlot from node_modules, and JSON endpoints over
 * the artifact cache that the page (or a script) reads. Everything is read-only on the cache
 * except POST /api/ui/chat, which loads a model from it. Paths from the browser go through
 * server/ui_paths.ts and never reach a file outside the cache.
 *
 *   GET  /api/ui/runs?offset&limit        run records, newest first
 *   GET  /api/ui/runs/<id>                one run: steps with manifests, files, views; edges
 *   GET  /api/ui/artifacts?stage&offset&limit   finished artifacts (also those no run record names)
 *   GET  /api/ui/artifact?ref=<stage>/<key>     one artifact
 *   GET  /api/ui/history?ref=..&ref=..&points=N loss histories, downsampled to N points
 *   GET  /api/ui/mmlu?ref  /judge?ref  /pairwise?ref
 *   GET  /api/ui/responses?ref&scores&field&min&max&offset&limit
 *   GET  /api/ui/file?ref&path              a file of an artifact, as is
 *   GET  /api/ui/models                     artifacts holding a model (for the chat)
 *   POST /api/ui/chat                       server-sent events: meta, token..., done | error
 */
import { basename, extname, isAbsolute, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { MANIFEST_FILE } from "../runner/cache.ts";
import {
  type ArtifactKind,
  artifactKinds,
  describeJudgedResponses,
  hasGenerations,
  hasHistory,
  hasJudgeScores,
  hasMmluResults,
  hasPairwise,
  hasResponses,
  headlineMetrics,
  type JudgeScores,
  type KindHeadline,
  locateJudgedResponses,
  readGenerations,
  readJudgeScores,
  readMmluResults,
  readModelConfig,
  readPairwise,
  readResponseEntries,
  readTrainingHistory,
} from "../llm/artifacts/mod.ts";
import { parseResponses } from "../llm/eval/judge.ts";
import { readJsonFile } from "../util/files.ts";
import { builtinStages } from "../stages/mod.ts";
import { effectiveStatus, type RunRecordFile, RUNS_DIR } from "../runner/run_record.ts";
import { lttbIndices, pickRows } from "./downsample.ts";
import {
  checkName,
  parseArtifactRef,
  resolveInside,
  splitRelativePath,
  UiPathError,
} from "./ui_paths.ts";
import { pageModule } from "./ui_modules.ts";
import type { ChatService } from "./ui_chat.ts";
import { CHAT_TEMPLATE_CHOICES } from "../llm/chat/mod.ts";

type Json = Record<string, unknown>;

export interface UiServerOptions {
  cacheDir: string;
  /** The chat playground's model service (absent: POST /api/ui/chat answers 503). */
  chat?: ChatService;
  /** Folder of index.html, app.js, js/*.js, style.css (default: the project's ui/). */
  uiDir?: string;
  /** uPlot's dist folder (default: node_modules/uplot/dist next to the project). */
  vendorDir?: string;
  /** Host names accepted in the Host header (defends a loopback server from DNS rebinding). */
  allowedHosts?: string[];
}

const PROJECT = fileURLToPath(new URL("..", import.meta.url));
const MAX_LIMIT = 200;
/** A run record not rewritten for this long while "running" was interrupted (the heartbeat is 30 s). */
const STALE_MS = 2 * 60_000;

/** The page's views of an artifact, in the page's order, and the kinds each shows. */
const VIEWS: [string, ArtifactKind[]][] = [
  ["history", ["history"]],
  ["mmlu", ["mmlu"]],
  ["judge", ["judge"]],
  ["pairwise", ["pairwise"]],
  // A judge artifact lists the responses it judged, each with its score.
  ["responses", ["responses", "generations", "judge"]],
  ["report", ["report"]],
  ["model", ["model"]],
];

/** The kinds each built-in stage type declares it writes (llm/artifacts/mod.ts). */
const DECLARED = builtinStages();

/** A number for the page, or null (none, or not finite). */
const shown = (x: number | null | undefined) =>
  typeof x === "number" && Number.isFinite(x) ? x : null;

const STATIC: Record<string, [string, string]> = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/index.html": ["index.html", "text/html; charset=utf-8"],
  "/app.js": ["app.js", "text/javascript; charset=utf-8"],
  "/style.css": ["style.css", "text/css; charset=utf-8"],
};
const VENDOR: Record<string, [string, string]> = {
  "/vendor/uPlot.iife.min.js": ["uPlot.iife.min.js", "text/javascript; charset=utf-8"],
  "/vendor/uPlot.min.css": ["uPlot.min.css", "text/css; charset=utf-8"],
};
const CONTENT_TYPES: Record<string, string> = {
  ".json": "application/json",
  ".jsonl": "application/x-ndjson",
  ".txt": "text/plain; charset=utf-8",
  ".csv": "text/csv; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  // Rendered (the report stage's report.html) but sandboxed: see the CSP in file().
  ".html": "text/html; charset=utf-8",
};

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}

function problem(status: number, message: string): Response {
  return json({ error: message }, status);
}

async function readJson(path: string): Promise<unknown | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Json {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function intParam(url: URL, name: string, fallback: number, max = Infinity): number {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) {
    throw new UiPathError(
      `${name} must be a non-negative integer, got ${JSON.stringify(raw)}`,
      400,
    );
  }
  return Math.min(value, max);
}

export class UiApi {
  readonly cacheDir: string;
  readonly #uiDir: string;
  readonly #vendorDir: string;

  constructor(readonly options: UiServerOptions) {
    this.cacheDir = options.cacheDir;
    this.#uiDir = options.uiDir ?? join(PROJECT, "ui");
    this.#vendorDir = options.vendorDir ?? join(PROJECT, "node_modules", "uplot", "dist");
  }

  handler = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    if (this.options.allowedHosts) {
      // Deno.serve builds the request URL from the Host header.
      const host = url.hostname.replace(/^\[|\]$/g, "");
      if (!this.options.allowedHosts.includes(host)) {
        return problem(403, `host ${JSON.stringify(host)} not allowed`);
      }
    }
    try {
      if (request.method === "POST" && url.pathname === "/api/ui/chat") {
        return await this.chat(request);
      }
      if (request.method !== "GET" && request.method !== "HEAD") {
        return problem(405, `${request.method} not allowed: the UI is read-only`);
      }
      const file = STATIC[url.pathname] ?? VENDOR[url.pathname];
      if (file) {
        const dir = STATIC[url.pathname] ? this.#uiDir : this.#vendorDir;
        return new Response(await Deno.readFile(join(dir, file[0])), {
          headers: { "content-type": file[1], "cache-control": "no-cache" },
        });
      }
      const module = await pageModule(this.#uiDir, url.pathname);
      if (module) return module;
      const route = url.pathname.replace(/^\/api\/ui\//, "");
      if (route === url.pathname) return problem(404, `no such page: ${url.pathname}`);
      if (route === "runs") return json(await this.listRuns(url));
      if (route.startsWith("runs/")) {
        return json(await this.run(decodeURIComponent(route.slice(5))));
      }
      if (route === "artifacts") return json(await this.listArtifacts(url));
      if (route === "artifact") return json(await this.artifact(url.searchParams.get("ref")));
      if (route === "history") return json(await this.history(url));
      if (route === "mmlu") return json(await this.mmlu(url.searchParams.get("ref")));
      if (route === "judge") return json(await this.judge(url.searchParams.get("ref")));
      if (route === "pairwise") return json(await this.pairwise(url.searchParams.get("ref")));
      if (route === "responses") return json(await this.responses(url));
      if (route === "models") return json(await this.models());
      if (route === "file") return await this.file(url);
      return problem(404, `no such endpoint: ${url.pathname}`);
    } catch (error) {
      if (error instanceof UiPathError) return problem(error.status, error.message);
      if (error instanceof URIError) return problem(400, `malformed URL: ${url.pathname}`);
      return problem(500, error instanceof Error ? error.message : String(error));
    }
  };

  // ----- runs -------------------------------------------------------------------------------

  async #runIds(): Promise<string[]> {
    const ids: string[] = [];
    try {
      for await (const entry of Deno.readDir(join(this.cacheDir, RUNS_DIR))) {
        if (entry.isFile && entry.name.endsWith(".json") && !entry.name.startsWith(".")) {
          ids.push(entry.name.slice(0, -5));
        }
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    // Names start with the ISO start time, so the name order is the time order.
    return ids.sort().reverse();
  }

  async #readRun(id: string): Promise<Json | undefined> {
    checkName(id, "run id");
    const path = await resolveInside(this.cacheDir, [RUNS_DIR, `${id}.json`]);
    const record = await readJson(path);
    if (!isObject(record)) return undefined;
    const steps = Array.isArray(record.steps) ? record.steps.filter(isObject) : [];
    let status = typeof record.status === "string"
      ? record.status
      : record.ok === false
      ? "failed"
      : "ok";
    if (status === "running") {
      status = effectiveStatus(record as unknown as RunRecordFile, STALE_MS);
    }
    const fallbackStart = id.match(/^(\d{4}-\d\d-\d\dT\d\d)-(\d\d)-(\d\d)-(\d{3})Z/);
    return {
      id,
      pipeline: record.pipeline ?? id.replace(/^[^Z]*Z-/, ""),
      file: record.file,
      status,
      startedAt: record.startedAt ??
        (fallbackStart
          ? `${fallbackStart[1]}:${fallbackStart[2]}:${fallbackStart[3]}.${fallbackStart[4]}Z`
          : undefined),
      finishedAt: record.finishedAt,
      updatedAt: record.updatedAt,
      steps: steps.map((s) => ({
        stage: s.stage,
        type: s.type,
        key: s.key,
        ref: typeof s.key === "string" ? `${s.stage}/${s.key.slice(0, 16)}` : undefined,
        needs: Array.isArray(s.needs) ? s.needs : undefined,
        // The stage a dead run was running did not finish: no frozen progress bar.
        outcome: status === "interrupted" && s.outcome === "running" ? "interrupted" : s.outcome,
        seconds: s.seconds,
        metrics: isObject(s.metrics) ? s.metrics : {},
        error: s.error,
        progress: status === "interrupted" ? undefined : s.progress,
      })),
    };
  }

  async listRuns(url: URL) {
    const offset = intParam(url, "offset", 0);
    const limit = intParam(url, "limit", 50, MAX_LIMIT);
    const ids = await this.#runIds();
    const page = ids.slice(offset, offset + limit);
    const runs = (await Promise.all(page.map((id) => this.#readRun(id).catch(() => undefined))))
      .filter((r) => r !== undefined);
    for (const run of runs) run.headline = await this.#headline(run.steps as Json[]);
    return { total: ids.length, offset, limit, runs };
  }

  /** Each finished artifact's headline numbers: a finished artifact never changes. */
  readonly #headlines = new Map<string, (KindHeadline & { stage: string })[]>();

  /**
   * The numbers a run is judged by, from the kinds of artifact its stages wrote, whichever
   * stage ran last: the final losses of each training history, MMLU accuracy, the judge's mean
   * per field and the pairwise win rate. An artifact that cannot be read adds nothing.
   */
  async #headline(steps: Json[]): Promise<(KindHeadline & { stage: string })[]> {
    const all: (KindHeadline & { stage: string })[] = [];
    for (const step of steps) {
      if (typeof step.ref !== "string" || !["ran", "cached"].includes(String(step.outcome))) {
        continue;
      }
      const ref = step.ref;
      if (!this.#headlines.has(ref)) {
        try {
          const { dir } = await this.#artifactDir(ref);
          const declared = DECLARED.get(String(step.type))?.outputs;
          const stage = String(step.stage);
          const found = await headlineMetrics(dir, declared);
          this.#headlines.set(ref, found.map((h) => ({ stage, ...h })));
        } catch {
          continue; // not there (yet), or damaged: its own page says why
        }
      }
      all.push(...this.#headlines.get(ref)!);
    }
    return all;
  }

  async run(id: string) {
    const run = await this.#readRun(id);
    if (!run) throw new UiPathError(`run ${id} is not a readable run record`, 404);
    const steps = run.steps as Json[];
    const detailed = await Promise.all(steps.map(async (step) => {
      const ref = step.ref as string | undefined;
      if (!ref || step.outcome === "skipped") return step;
      const artifact = await this.artifact(ref).catch(() => undefined);
      if (!artifact) return step;
      // Old records have no `needs`: the manifest's inputs are the same edges.
      const needs = step.needs ?? Object.keys(
        isObject(artifact.manifest?.inputs) ? artifact.manifest.inputs : {},
      );
      return { ...step, needs, artifact };
    }));
    const edges = detailed.flatMap((s) =>
      Array.isArray(s.needs) ? s.needs.map((n: string) => [n, s.stage]) : []
    );
    return { ...run, steps: detailed, edges };
  }

  // ----- artifacts ----------------------------------------------------------------------------

  async #artifactDir(ref: string | null): Promise<{ stage: string; key: string; dir: string }> {
    const { stage, key } = parseArtifactRef(ref);
    return { stage, key, dir: await resolveInside(this.cacheDir, [stage, key]) };
  }

  async #files(dir: string) {
    const files: { name: string; size: number }[] = [];
    for await (const entry of Deno.readDir(dir)) {
      if (!entry.isFile) continue;
      const info = await Deno.stat(join(dir, entry.name));
      files.push({ name: entry.name, size: info.size });
    }
    return files.sort((a, b) => a.name.localeCompare(b.name));
  }

  async artifact(ref: string | null) {
    const { stage, key, dir } = await this.#artifactDir(ref);
    const manifest = await readJson(join(dir, MANIFEST_FILE));
    if (!isObject(manifest)) {
      throw new UiPathError(`${stage}/${key} has no readable ${MANIFEST_FILE}`, 404);
    }
    const files = await this.#files(dir);
    // What the stage type declares it writes, of which what this run wrote; an artifact of a
    // type no longer registered shows whatever kinds its files make.
    const declared = typeof manifest.type === "string"
      ? DECLARED.get(manifest.type)?.outputs
      : undefined;
    const kinds = artifactKinds(dir, declared);
    const views = VIEWS.filter(([, shows]) => shows.some((k) => kinds.includes(k))).map(([v]) => v);
    return {
      ref: `${stage}/${key}`,
      stage,
      type: manifest.type,
      key: manifest.key,
      manifest: {
        params: manifest.params,
        inputs: manifest.inputs,
        environment: manifest.environment ?? {},
        metrics: manifest.metrics ?? {},
        versions: manifest.versions,
        startedAt: manifest.startedAt,
        finishedAt: manifest.finishedAt,
        seconds: manifest.seconds,
        files: manifest.files,
      },
      files,
      kinds,
      views,
    };
  }

  async listArtifacts(url: URL) {
    const offset = intParam(url, "offset", 0);
    const limit = intParam(url, "limit", 50, MAX_LIMIT);
    const found = await this.#artifactRefs(url.searchParams.get("stage"));
    const page = found.slice(offset, offset + limit);
    return {
      total: found.length,
      offset,
      limit,
      artifacts: await Promise.all(page.map((a) => this.artifact(a.ref))),
    };
  }

  /** Every finished artifact (a folder named by a key, with a manifest), newest first. */
  async #artifactRefs(only: string | null) {
    const found: { ref: string; finishedAt: string }[] = [];
    const stages: string[] = [];
    try {
      for await (const entry of Deno.readDir(this.cacheDir)) {
        if (!entry.isDirectory || entry.name.startsWith(".") || entry.name === RUNS_DIR) continue;
        if (only && entry.name !== only) continue;
        stages.push(entry.name);
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    for (const stage of stages) {
      for await (const entry of Deno.readDir(join(this.cacheDir, stage))) {
        if (!entry.isDirectory || !/^[0-9a-f]{16}$/.test(entry.name)) continue;
        const manifest = await readJson(join(this.cacheDir, stage, entry.name, MANIFEST_FILE));
        if (!isObject(manifest)) continue;
        found.push({
          ref: `${stage}/${entry.name}`,
          finishedAt: String(manifest.finishedAt ?? ""),
        });
      }
    }
    return found.sort((a, b) => b.finishedAt.localeCompare(a.finishedAt));
  }

  async models() {
    const refs = await this.#artifactRefs(null);
    const models = (await Promise.all(refs.map((r) => this.artifact(r.ref))))
      .filter((a) => a.views.includes("model"));
    return {
      // What the chat's template menu offers (the model's own format is "auto").
      templates: CHAT_TEMPLATE_CHOICES,
      models: await Promise.all(models.map(async (m) => ({
        ref: m.ref,
        stage: m.stage,
        type: m.type,
        finishedAt: m.manifest.finishedAt,
        template: await this.options.chat?.templateOf(join(this.cacheDir, m.ref)) ?? "none",
        config: await readModelConfig(join(this.cacheDir, m.ref)).catch(() => undefined),
      }))),
    };
  }

  async file(url: URL): Promise<Response> {
    const { dir } = await this.#artifactDir(url.searchParams.get("ref"));
    const parts = splitRelativePath(url.searchParams.get("path"));
    const real = await resolveInside(dir, parts);
    // The artifact folder itself must also lie in the cache (checked by #artifactDir).
    const info = await Deno.stat(real);
    if (!info.isFile) throw new UiPathError(`${parts.join("/")} is not a file`, 400);
    const file = await Deno.open(real);
    return new Response(file.readable, {
      headers: {
        "content-type": CONTENT_TYPES[extname(real)] ?? "application/octet-stream",
        "content-length": String(info.size),
        "content-disposition": `inline; filename="${basename(real).replace(/"/g, "")}"`,
        "x-content-type-options": "nosniff",
        // An artifact's file (an SVG, say) must never run script in the UI's origin.
        "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
      },
    });
  }

  /**
   * One kind of `ref`'s artifact, read through its reader: a missing file is a 404 saying
   * `missing`; a damaged one the reader's error naming the file (relative to the cache) and
   * the place.
   */
  async #read<T>(
    dir: string,
    present: (dir: string) => boolean,
    missing: string,
    read: (dir: string) => Promise<T>,
  ): Promise<T> {
    if (!present(dir)) throw new UiPathError(missing, 404);
    try {
      return await read(dir);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new Error(message.replaceAll(this.cacheDir + sep, ""));
    }
  }

  // ----- histories ----------------------------------------------------------------------------

  async history(url: URL) {
    const refs = url.searchParams.getAll("ref");
    if (refs.length === 0) throw new UiPathError("give at least one ref=<stage>/<key>", 400);
    if (refs.length > 20) throw new UiPathError("at most 20 histories at once", 400);
    const points = Math.max(3, intParam(url, "points", 1000, 10_000));
    const series = await Promise.all(refs.map(async (ref) => {
      const { stage, key, dir } = await this.#artifactDir(ref);
      const history = await this.#read(
        dir,
        hasHistory,
        `${ref} has no readable history.json`,
        readTrainingHistory,
      );
      const evaluations = history.evaluations;
      const column = (name: string) => evaluations.map((e) => shown(e[name]));
      const columns = {
        step: column("step"),
        epoch: column("epoch"),
        tokens_seen: column("tokens_seen"),
        train_loss: column("train_loss"),
        val_loss: column("val_loss"),
        // DPO's reward margins (chosen − rejected reward), drawn as a second chart.
        ...(evaluations.some((e) => typeof e.train_reward_margin === "number")
          ? {
            train_reward_margin: column("train_reward_margin"),
            val_reward_margin: column("val_reward_margin"),
          }
          : {}),
      };
      const xs = columns.step.map((s, i) => s ?? i);
      const ys = columns.train_loss.map((v, i) => v ?? columns.val_loss[i] ?? NaN);
      const keep = lttbIndices(xs, ys, points);
      const manifest = await readJson(join(dir, MANIFEST_FILE));
      const params = isObject(manifest) && isObject(manifest.params) ? manifest.params : {};
      return {
        ref: `${stage}/${key}`,
        label: `${stage}/${key.slice(0, 8)}${params.lr !== undefined ? ` lr=${params.lr}` : ""}`,
        total: evaluations.length,
        initial: history.initial ?? undefined,
        columns: pickRows(columns, keep),
        samples: history.samples,
      };
    }));
    return { points, series };
  }

  // ----- evaluations --------------------------------------------------------------------------

  async mmlu(ref: string | null) {
    const { dir } = await this.#artifactDir(ref);
    const results = await this.#read(
      dir,
      hasMmluResults,
      `${ref} has no results.json with a "results" object`,
      readMmluResults,
    );
    const rows = results.tasks.map((t) => ({
      task: t.task,
      group: t.group,
      acc: t.acc,
      stderr: t.stderr,
      acc_norm: t.acc_norm,
      n: t.questions,
    })).sort((a, b) => Number(a.group) - Number(b.group) || a.task.localeCompare(b.task));
    return { rows, model: results.model };
  }

  /**
   * The judge stage's judge.json (llm/artifacts/judge.ts): who judged, a summary per response
   * field and every entry's score. scores.jsonl beside it is the judge's raw answer ledger.
   */
  #judgeScores(dir: string, ref: string | null): Promise<JudgeScores> {
    return this.#read(dir, hasJudgeScores, `${ref} has no readable judge.json`, readJudgeScores);
  }

  async judge(ref: string | null) {
    const { dir } = await this.#artifactDir(ref);
    const { judge, lenient, fields } = await this.#judgeScores(dir, ref);
    return {
      judge: {
        model: judge.model,
        api: judge.api,
        digest: judge.digest,
        answered_by: judge.answered_by,
      },
      lenient,
      models: fields.map((f) => ({
        field: f.field,
        judge: judge.model,
        mean: f.mean,
        stderr: f.stderr,
        scored: f.scored,
        total: f.total,
        histogram: f.histogram,
        unscored: f.unscored.length,
      })),
    };
  }

  /** pairwise.json as the judge stage writes it (llm/artifacts/judge.ts `readPairwise`). */
  async pairwise(ref: string | null) {
    const { dir } = await this.#artifactDir(ref);
    const p = await this.#read(
      dir,
      hasPairwise,
      `${ref} has no readable pairwise.json (expected {first, second, win_rate, ...})`,
      readPairwise,
    );
    return {
      comparisons: [{
        a: p.first,
        b: p.second,
        judge: p.judge,
        win_rate: p.win_rate,
        wins: p.wins,
        ties: p.ties,
        losses: p.losses,
        judged: p.judged,
        total: p.total,
        contradictions: p.contradictions,
        contradiction_rate: p.contradiction_rate,
        first_position_rate: p.first_position_rate,
        unparsed: p.unparsed,
      }],
    };
  }

  /**
   * The entries a judge artifact judged: judge.json names them by stage and key (resolved in
   * this cache) or, in artifacts written before, by path; shown when the file lies in this
   * cache.
   */
  async #judgedEntries(judge: JudgeScores, ref: string | null): Promise<unknown[]> {
    const found = locateJudgedResponses(judge.responses, this.cacheDir);
    const rel = found === undefined ? ".." : relative(this.cacheDir, found);
    if (found !== undefined && !rel.startsWith("..") && !isAbsolute(rel)) {
      // Links inside the cache must not lead out of it either.
      const real = await resolveInside(this.cacheDir, rel.split(sep)).catch(() => undefined);
      if (real) return parseResponses(await readJsonFile(real), rel);
    }
    throw new UiPathError(
      `${ref}: the judged responses file ${
        JSON.stringify(describeJudgedResponses(judge.responses))
      } is not in this cache`,
      404,
    );
  }

  async responses(url: URL) {
    const ref = url.searchParams.get("ref");
    const { dir } = await this.#artifactDir(ref);
    // A judge artifact shows the responses it judged, with its scores; a responses artifact
    // shows its own, scored when scores=<judge stage>/<key> names a judge of them.
    let judge: JudgeScores | undefined;
    let entries: unknown[];
    const scoresRef = url.searchParams.get("scores");
    if (scoresRef) {
      judge = await this.#judgeScores((await this.#artifactDir(scoresRef)).dir, scoresRef);
    }
    if (!scoresRef && hasJudgeScores(dir)) {
      judge = await this.#judgeScores(dir, ref);
      entries = await this.#judgedEntries(judge, ref);
    } else if (hasResponses(dir)) {
      entries = await this.#read(dir, hasResponses, "", (d) => readResponseEntries(d));
    } else if (!judge && hasGenerations(dir)) {
      entries = await this.#read(dir, hasGenerations, "", readGenerations);
    } else {
      throw new UiPathError(`${ref} has no responses.json (a list of entries)`, 404);
    }
    const rows = entries.filter(isObject);
    const reserved = new Set(["instruction", "input", "output", "prompt", "settings", "stopped"]);
    const fields = [
      ...new Set(
        rows.flatMap((r) =>
          Object.keys(r).filter((k) => !reserved.has(k) && typeof r[k] === "string")
        ),
      ),
    ];
    const scores = new Map(Object.entries(judge?.scores ?? {}));

    const field = url.searchParams.get("field") ?? fields[0];
    const min = url.searchParams.has("min") ? Number(url.searchParams.get("min")) : -Infinity;
    const max = url.searchParams.has("max") ? Number(url.searchParams.get("max")) : Infinity;
    const filtering = url.searchParams.has("min") || url.searchParams.has("max");
    const all = rows.map((r, index) => ({
      index,
      instruction: r.instruction ?? r.prompt ?? "",
      input: r.input ?? "",
      output: r.output ?? "",
      responses: Object.fromEntries(
        fields.filter((f) => typeof r[f] === "string").map((f) => {
          const judged = scores.get(f)?.[index];
          return [f, { text: r[f], score: judged?.score ?? null, reply: judged?.reply ?? null }];
        }),
      ),
    }));
    const matched = filtering
      ? all.filter((r) => {
        const score = (r.responses as Record<string, { score: number | null }>)[field]?.score;
        return score !== null && score !== undefined && score >= min && score <= max;
      })
      : all;
    const offset = intParam(url, "offset", 0);
    const limit = intParam(url, "limit", 50, MAX_LIMIT);
    return {
      fields,
      scored: scores.size > 0,
      judge: judge?.judge.model ?? null,
      total: all.length,
      matched: matched.length,
      offset,
      limit,
      rows: matched.slice(offset, offset + limit),
    };
  }

  // ----- chat ---------------------------------------------------------------------------------

  async chat(request: Request): Promise<Response> {
    if (!this.options.chat) return problem(503, "the chat is not enabled on this server");
    if (!(request.headers.get("content-type") ?? "").startsWith("application/json")) {
      // A cross-site form cannot send this content type without a CORS preflight we refuse.
      return problem(415, "send the chat request as application/json");
    }
    const length = Number(request.headers.get("content-length") ?? 0);
    if (length > 256 * 1024) return problem(413, "request body over 256 KiB");
    let body: unknown;
    try {
      const text = await request.text();
      if (text.length > 256 * 1024) return problem(413, "request body over 256 KiB");
      body = JSON.parse(text);
    } catch {
      return problem(400, "the request body is not valid JSON");
    }
    const { dir } = await this.#artifactDir(isObject(body) ? String(body.model ?? "") : "");
    return this.options.chat.stream(dir, body);
  }
}
