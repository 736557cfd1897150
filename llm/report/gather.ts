/**
 * Gathers the report's data from the folders the evaluation chain wrote, through the artifact
 * readers (llm/artifacts): the loss history of each training run, MMLU accuracy, the judge's
 * per-field results, the pairwise preference and the responses themselves (with the judge's
 * score of each).
 *
 * A folder shows what it holds (llm/artifacts/mod.ts `artifactKinds`), whichever stage type
 * wrote it, so a new training or evaluation stage that writes the same kinds shows up without
 * changes here. A file that is present but not in the expected shape is an error naming the
 * file and the field.
 */
import { dirname, join } from "node:path";
import type {
  ReportData,
  ReportJudgeField,
  ReportLossCurve,
  ReportMmluRow,
  ReportPairwise,
  ReportResponses,
} from "./html.ts";
import { parseResponses, type ResponseEntry, responseFields } from "../eval/judge.ts";
import { readJsonFile } from "../../util/files.ts";
import {
  hasHistory,
  HISTORY_FILE,
  historyColumn,
  readTrainingHistory,
} from "../artifacts/history.ts";
import { hasMmluResults, MMLU_RESULTS_FILE, readMmluResults } from "../artifacts/mmlu.ts";
import {
  hasJudgeScores,
  hasPairwise,
  type JudgeScores,
  locateJudgedResponses,
  readJudgeScores,
  readPairwise as readPairwiseScores,
} from "../artifacts/judge.ts";
import { hasResponses, readResponseEntries } from "../artifacts/responses.ts";

/** An upstream folder as the report sees it: who wrote it and what it was given. */
export interface ReportSource {
  /** The stage's name in the pipeline (the label in the report). */
  stage: string;
  dir: string;
  /** The stage's parameters and upstream stages, from its manifest. */
  params?: unknown;
  inputs?: Record<string, unknown>;
}

/** A number the writer leaves null when it has none (shown as "—"). */
const orNaN = (value: number | null) => value ?? NaN;

/** The loss curve of a training stage's history (pretrain, finetune, lora-finetune). */
export async function readLossCurve(source: ReportSource): Promise<ReportLossCurve | undefined> {
  if (!hasHistory(source.dir)) return undefined;
  const history = await readTrainingHistory(source.dir);
  if (history.evaluations.length === 0) return undefined;
  const column = (key: string) => historyColumn(history, key, join(source.dir, HISTORY_FILE));
  return {
    name: source.stage,
    curve: {
      epochs: column("epoch"),
      tokensSeen: column("tokens_seen"),
      train: column("train_loss"),
      val: column("val_loss"),
    },
  };
}

/**
 * The reward-margin curve of a `dpo` stage's history (`train_reward_margin`,
 * `val_reward_margin`: chosen minus rejected reward), as the book plots it; none for a history
 * without those columns.
 */
export async function readRewardMarginCurve(
  source: ReportSource,
): Promise<ReportLossCurve | undefined> {
  if (!hasHistory(source.dir)) return undefined;
  const history = await readTrainingHistory(source.dir);
  const rows = history.evaluations;
  if (rows.length === 0 || !("train_reward_margin" in rows[0])) return undefined;
  const path = join(source.dir, HISTORY_FILE);
  const column = (key: string) => historyColumn(history, key, path);
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
function evaluatedModel(source: ReportSource, config: Record<string, unknown>): string {
  const from = (source.params as { from?: unknown } | undefined)?.from;
  if (typeof from === "string") return from;
  const inputs = Object.keys(source.inputs ?? {});
  if (inputs.length === 1) return inputs[0];
  const stage = (config.model_args as Record<string, unknown> | undefined)?.stage;
  return typeof stage === "string" ? stage : source.stage;
}

/**
 * MMLU rows of an evaluate stage's results: the tasks it was asked for (its `tasks` parameter;
 * every task in the file when that is unknown), labelled with the model.
 */
export async function readMmluRows(source: ReportSource): Promise<ReportMmluRow[]> {
  if (!hasMmluResults(source.dir)) return [];
  const results = await readMmluResults(source.dir);
  const path = join(source.dir, MMLU_RESULTS_FILE);
  const asked = (source.params as { tasks?: unknown } | undefined)?.tasks;
  const tasks = Array.isArray(asked) && asked.every((t) => typeof t === "string")
    ? asked as string[]
    : results.tasks.map((t) => t.task);
  const model = evaluatedModel(source, results.config);
  return tasks.map((task) => {
    const where = `${path}: results["${task}"]`;
    const row = results.tasks.find((t) => t.task === task);
    if (!row) throw new Error(`${where}: expected an object`);
    if (row.acc === null) throw new Error(`${where}["acc,none"]: expected a number`);
    return {
      model,
      task,
      acc: row.acc,
      stderr: orNaN(row.stderr),
      samples: row.group ? NaN : orNaN(row.questions),
    };
  });
}

/** The judge's summary rows as the report shows them. */
function judgeFields(judge: JudgeScores): ReportJudgeField[] {
  return judge.fields.map((f) => ({
    field: f.field,
    judge: judge.judge.model,
    scored: f.scored,
    total: f.total,
    mean: orNaN(f.mean),
    stderr: orNaN(f.stderr),
    histogram: f.histogram,
  }));
}

/** pairwise.json of a judge stage, as the report shows it. */
export async function readPairwise(source: ReportSource): Promise<ReportPairwise | undefined> {
  if (!hasPairwise(source.dir)) return undefined;
  const p = await readPairwiseScores(source.dir);
  return {
    a: p.first,
    b: p.second,
    judge: p.judge,
    winRate: orNaN(p.win_rate),
    wins: p.wins,
    losses: p.losses,
    ties: p.ties,
    inconsistency: orNaN(p.contradiction_rate),
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

/** How the report is gathered. */
export interface GatherOptions {
  /** ISO time shown as the report's date (default: now). */
  createdAt?: string;
  /**
   * The cache the sources lie in, against which a judge's reference to the responses it judged
   * (stage and key) is resolved (default: the folder two above the judge's artifact folder,
   * where the runner puts `<cache>/<stage>/<key>`).
   */
  cacheDir?: string;
}

/**
 * Everything the report shows, from the upstream folders in pipeline order. The responses come
 * from an upstream folder holding responses, else from the file the judge read; the fields
 * shown are the ones the judge scored (every response field when no judge ran).
 */
export async function gatherReport(
  sources: readonly ReportSource[],
  title: string,
  options: GatherOptions = {},
): Promise<ReportData> {
  const createdAt = options.createdAt ?? new Date().toISOString();
  const data: ReportData = { title, createdAt, lossCurves: [], mmlu: [], judge: [], pairwise: [] };
  const judges: { scores: JudgeScores; cacheDir: string }[] = [];
  const labelFields = sources.filter((s) => hasJudgeScores(s.dir)).length > 1;
  for (const source of sources) {
    const curve = await readLossCurve(source);
    if (curve) data.lossCurves.push(curve);
    const margins = await readRewardMarginCurve(source);
    if (margins) data.lossCurves.push(margins);
    data.mmlu.push(...await readMmluRows(source));
    if (hasJudgeScores(source.dir)) {
      const scores = await readJudgeScores(source.dir);
      judges.push({ scores, cacheDir: options.cacheDir ?? dirname(dirname(source.dir)) });
      // Two judge stages may score fields of the same name: say which stage each row is from.
      data.judge.push(
        ...judgeFields(scores).map((f) =>
          labelFields ? { ...f, field: `${source.stage}: ${f.field}` } : f
        ),
      );
    }
    const pairwise = await readPairwise(source);
    if (pairwise) data.pairwise.push(pairwise);
  }
  const judge = judges[0]?.scores;
  const fieldsOf = (entries: ResponseEntry[]) =>
    judge ? judge.fields.map((f) => f.field) : responseFields(entries);
  const scores = judge &&
    Object.fromEntries(
      Object.entries(judge.scores).map(([field, list]) => [field, list.map((s) => s.score)]),
    );
  const upstream = sources.find((s) => hasResponses(s.dir));
  if (upstream) {
    const entries = await readResponseEntries(upstream.dir);
    data.responses = sideBySide(entries, fieldsOf(entries), scores);
    return data;
  }
  for (const { scores: judged, cacheDir } of judges) {
    const file = locateJudgedResponses(judged.responses, cacheDir);
    if (!file) continue;
    const entries = parseResponses(await readJsonFile(file), file);
    data.responses = sideBySide(entries, fieldsOf(entries), scores);
    break;
  }
  return data;
}
