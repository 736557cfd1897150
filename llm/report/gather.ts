/**
 * Gathers the report's data from the folders the evaluation chain wrote: the loss history of
 * each training run (history.json), MMLU accuracy (results.json), the judge's per-field
 * results (judge.json), the pairwise preference (pairwise.json) and the responses themselves
 * (responses.json, with the judge's score of each).
 *
 * A folder is recognised by the files it holds, not by the stage type that wrote it, so a new
 * training or evaluation stage that writes the same files shows up without changes here. A file
 * that is present but not in the expected shape is an error naming the file and the field.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type {
  ReportData,
  ReportJudgeField,
  ReportLossCurve,
  ReportMmluRow,
  ReportPairwise,
  ReportResponses,
} from "./html.ts";
import { parseResponses, type ResponseEntry, responseFields } from "../eval/judge.ts";

/** An upstream folder as the report sees it: who wrote it and what it was given. */
export interface ReportSource {
  /** The stage's name in the pipeline (the label in the report). */
  stage: string;
  dir: string;
  /** The stage's parameters and upstream stages, from its manifest. */
  params?: unknown;
  inputs?: Record<string, unknown>;
}

export const HISTORY_FILE = "history.json";
export const MMLU_RESULTS_FILE = "results.json";
export const JUDGE_FILE = "judge.json";
export const PAIRWISE_FILE = "pairwise.json";
export const RESPONSES_FILE = "responses.json";

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    throw new Error(
      `${path}: ${error instanceof SyntaxError ? "not valid JSON: " : ""}${
        (error as Error).message
      }`,
    );
  }
}

type Json = Record<string, unknown>;

function object(value: unknown, where: string): Json {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${where}: expected an object`);
  }
  return value as Json;
}

function number(value: unknown, where: string): number {
  if (typeof value !== "number") throw new Error(`${where}: expected a number`);
  return value;
}

/** A number that the writer leaves null when it has none (shown as "—"). */
function numberOrNaN(value: unknown, where: string): number {
  return value === null || value === undefined ? NaN : number(value, where);
}

function string(value: unknown, where: string): string {
  if (typeof value !== "string") throw new Error(`${where}: expected a string`);
  return value;
}

/** The loss curve of a training stage's history.json (pretrain, finetune, lora-finetune). */
export async function readLossCurve(source: ReportSource): Promise<ReportLossCurve | undefined> {
  const path = join(source.dir, HISTORY_FILE);
  if (!existsSync(path)) return undefined;
  const history = object(await readJson(path), path);
  if (!Array.isArray(history.evaluations)) {
    throw new Error(`${path}: "evaluations" must be a list`);
  }
  const curve = { epochs: [] as number[], tokensSeen: [] as number[], train: [], val: [] } as {
    epochs: number[];
    tokensSeen: number[];
    train: number[];
    val: number[];
  };
  history.evaluations.forEach((e, i) => {
    const where = `${path}: evaluations[${i}]`;
    const row = object(e, where);
    curve.epochs.push(number(row.epoch, `${where}.epoch`));
    curve.tokensSeen.push(number(row.tokens_seen, `${where}.tokens_seen`));
    curve.train.push(number(row.train_loss, `${where}.train_loss`));
    curve.val.push(number(row.val_loss, `${where}.val_loss`));
  });
  if (curve.epochs.length === 0) return undefined;
  return { name: source.stage, curve };
}

/**
 * The reward-margin curve of a `dpo` stage's history.json (`train_reward_margin`,
 * `val_reward_margin`: chosen minus rejected reward), as the book plots it; none for a history
 * without those columns.
 */
export async function readRewardMarginCurve(
  source: ReportSource,
): Promise<ReportLossCurve | undefined> {
  const path = join(source.dir, HISTORY_FILE);
  if (!existsSync(path)) return undefined;
  const history = object(await readJson(path), path);
  const rows = Array.isArray(history.evaluations) ? history.evaluations : [];
  if (rows.length === 0 || !("train_reward_margin" in object(rows[0], path))) return undefined;
  const column = (key: string) =>
    rows.map((e, i) => number(object(e, path)[key], `${path}: evaluations[${i}].${key}`));
  return {
    name: `${source.stage} reward margins`,
    curve: {
      epochs: column("epoch"),
      tokensSeen: column("tokens_seen"),
      train: column("train_reward_margin"),
      val: column("val_reward_margin"),
      label: "reward margins",
    },
  };
}

/**
 * The model an evaluate stage scored: its `from:` parameter, else its only upstream stage,
 * else what results.json says.
 */
function evaluatedModel(source: ReportSource, results: Json): string {
  const from = (source.params as { from?: unknown } | undefined)?.from;
  if (typeof from === "string") return from;
  const inputs = Object.keys(source.inputs ?? {});
  if (inputs.length === 1) return inputs[0];
  const stage = ((results.config as Json | undefined)?.model_args as Json | undefined)?.stage;
  return typeof stage === "string" ? stage : source.stage;
}

/**
 * MMLU rows of an evaluate stage's results.json: the tasks it was asked for (its `tasks`
 * parameter; every task in the file when that is unknown), labelled with the model.
 */
export async function readMmluRows(source: ReportSource): Promise<ReportMmluRow[]> {
  const path = join(source.dir, MMLU_RESULTS_FILE);
  if (!existsSync(path)) return [];
  const file = object(await readJson(path), path);
  const results = object(file.results, `${path}: "results"`);
  const nSamples = object(file["n-samples"] ?? {}, `${path}: "n-samples"`);
  const asked = (source.params as { tasks?: unknown } | undefined)?.tasks;
  const tasks = Array.isArray(asked) && asked.every((t) => typeof t === "string")
    ? asked as string[]
    : Object.keys(results);
  const model = evaluatedModel(source, file);
  return tasks.map((task) => {
    const where = `${path}: results["${task}"]`;
    const r = object(results[task], where);
    const samples = nSamples[task] as { effective?: unknown } | undefined;
    return {
      model,
      task,
      acc: number(r["acc,none"], `${where}["acc,none"]`),
      stderr: numberOrNaN(r["acc_stderr,none"], `${where}["acc_stderr,none"]`),
      samples: samples === undefined ? NaN : number(samples.effective, `${path}: n-samples`),
    };
  });
}

/** What a judge stage's judge.json holds that the report shows. */
export interface JudgeFile {
  fields: ReportJudgeField[];
  /** The responses file the judge read (as recorded at the time). */
  responses: string;
  /** Per field, each entry's score (null: unscored). */
  scores: Record<string, (number | null)[]>;
}

/** judge.json of a judge stage (stages/judge.ts writes it from llm/eval/judge_run.ts). */
export async function readJudgeFile(source: ReportSource): Promise<JudgeFile | undefined> {
  const path = join(source.dir, JUDGE_FILE);
  if (!existsSync(path)) return undefined;
  const file = object(await readJson(path), path);
  const judge = object(file.judge, `${path}: "judge"`);
  const name = string(judge.model, `${path}: judge.model`);
  if (!Array.isArray(file.fields)) throw new Error(`${path}: "fields" must be a list`);
  const fields = file.fields.map((f, i): ReportJudgeField => {
    const where = `${path}: fields[${i}]`;
    const s = object(f, where);
    const histogram = s.histogram;
    if (!Array.isArray(histogram) || !histogram.every((c) => typeof c === "number")) {
      throw new Error(`${where}.histogram: expected a list of counts`);
    }
    return {
      field: string(s.field, `${where}.field`),
      judge: name,
      scored: number(s.scored, `${where}.scored`),
      total: number(s.total, `${where}.total`),
      mean: numberOrNaN(s.mean, `${where}.mean`),
      stderr: numberOrNaN(s.stderr, `${where}.stderr`),
      histogram: histogram as number[],
    };
  });
  const scores: Record<string, (number | null)[]> = {};
  for (const [field, list] of Object.entries(object(file.scores ?? {}, `${path}: "scores"`))) {
    if (!Array.isArray(list)) throw new Error(`${path}: scores["${field}"] must be a list`);
    scores[field] = list.map((item) => {
      const score = (item as { score?: unknown } | null)?.score;
      return typeof score === "number" ? score : null;
    });
  }
  return { fields, responses: string(file.responses, `${path}: "responses"`), scores };
}

/** pairwise.json of a judge stage (llm/eval/pairwise.ts's PairwiseResult plus the judge). */
export async function readPairwise(source: ReportSource): Promise<ReportPairwise | undefined> {
  const path = join(source.dir, PAIRWISE_FILE);
  if (!existsSync(path)) return undefined;
  const p = object(await readJson(path), path);
  const judge = object(p.judge, `${path}: "judge"`);
  return {
    a: string(p.first, `${path}: "first"`),
    b: string(p.second, `${path}: "second"`),
    judge: string(judge.model, `${path}: judge.model`),
    winRate: numberOrNaN(p.win_rate, `${path}: "win_rate"`),
    wins: number(p.wins, `${path}: "wins"`),
    losses: number(p.losses, `${path}: "losses"`),
    ties: number(p.ties, `${path}: "ties"`),
    inconsistency: numberOrNaN(p.contradiction_rate, `${path}: "contradiction_rate"`),
  };
}

/** The entries as the report shows them, with each field's judge scores when known. */
export function sideBySide(
  entries: readonly ResponseEntry[],
  fields: string[],
  scores: Record<string, (number | null)[]> = {},
): ReportResponses {
  const shownScores: Record<string, Array<number | undefined>> = {};
  for (const field of fields) {
    if (scores[field]) shownScores[field] = scores[field].map((s) => s ?? undefined);
  }
  return {
    fields,
    entries: entries.map((e) => ({
      instruction: e.instruction,
      input: e.input,
      output: e.output,
      responses: Object.fromEntries(fields.map((f) => [f, e[f] ?? ""])),
    })),
    ...(Object.keys(shownScores).length > 0 ? { scores: shownScores } : {}),
  };
}

/**
 * Everything the report shows, from the upstream folders in pipeline order. The responses come
 * from an upstream folder holding responses.json, else from the file the judge read; the
 * fields shown are the ones the judge scored (every response field when no judge ran).
 */
export async function gatherReport(
  sources: readonly ReportSource[],
  title: string,
  createdAt = new Date().toISOString(),
): Promise<ReportData> {
  const data: ReportData = { title, createdAt, lossCurves: [], mmlu: [], judge: [], pairwise: [] };
  const judges: JudgeFile[] = [];
  const labelFields = sources.filter((s) => existsSync(join(s.dir, JUDGE_FILE))).length > 1;
  for (const source of sources) {
    const curve = await readLossCurve(source);
    if (curve) data.lossCurves.push(curve);
    const margins = await readRewardMarginCurve(source);
    if (margins) data.lossCurves.push(margins);
    data.mmlu.push(...await readMmluRows(source));
    const judge = await readJudgeFile(source);
    if (judge) {
      judges.push(judge);
      // Two judge stages may score fields of the same name: say which stage each row is from.
      data.judge.push(
        ...judge.fields.map((f) =>
          labelFields ? { ...f, field: `${source.stage}: ${f.field}` } : f
        ),
      );
    }
    const pairwise = await readPairwise(source);
    if (pairwise) data.pairwise.push(pairwise);
  }
  const upstream = sources.find((s) => existsSync(join(s.dir, RESPONSES_FILE)));
  const file = upstream
    ? join(upstream.dir, RESPONSES_FILE)
    : judges.map((j) => j.responses).find((path) => existsSync(path));
  if (file) {
    const entries = parseResponses(await readJson(file), file);
    const judge = judges[0];
    const fields = judge ? judge.fields.map((f) => f.field) : responseFields(entries);
    data.responses = sideBySide(entries, fields, judge?.scores);
  }
  return data;
}
