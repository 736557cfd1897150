/**
 * Artifact kind `judge`: what the `judge` stage leaves: judge.json (who judged, which responses,
 * and per response field the summary and every entry's score and reply), scores.jsonl (the
 * judge's raw answer ledger), histogram-<field>.svg, and for two fields pairwise.json (the
 * preference in both orders).
 *
 * judge.json names the responses it judged by stage and cache key (`{stage, key, file}`) when
 * they came from an upstream artifact, so a moved cache still finds them; a responses file
 * given by path is recorded by its path. Artifacts written before recorded an absolute path
 * even for a file in the cache: `locateJudgedResponses` still finds those.
 */
import { isAbsolute, join, relative } from "node:path";
import { existsSync } from "node:fs";
import { writeFileAtomic } from "../../util/files.ts";
import type { FieldSummary, Unscored } from "../eval/judge.ts";
import { scoreHistogramSvg } from "../eval/histogram_svg.ts";
import type { PairwiseResult } from "../eval/pairwise.ts";
import {
  hasFile,
  type Json,
  list,
  number,
  numberOrNull,
  object,
  readJsonIn,
  string,
  writeJsonIn,
} from "./check.ts";
import { type ArtifactFileRef, parseFileRef, resolveFileRef } from "./ref.ts";

export const JUDGE_FILE = "judge.json";
export const PAIRWISE_FILE = "pairwise.json";
/** The judge's answers as asked (prompt hash, reply, score), one JSON object per line. */
export const JUDGE_LEDGER_FILE = "scores.jsonl";

/** A response field as a file name part. */
const fileSafe = (field: string) => field.replace(/[^A-Za-z0-9_.-]+/g, "_");

/** The histogram figure of one field's scores. */
export function histogramFile(field: string): string {
  return `histogram-${fileSafe(field)}.svg`;
}

/** Who judged, as judge.json records it (llm/eval/judge_client.ts's JudgeIdentity and more). */
export interface JudgeRecord {
  /** The judge model's name. */
  model: string;
  /** "ollama", "openai" or "local" (null: not recorded). */
  api: string | null;
  /** The digest of the judge's weights (null: not known). */
  digest: string | null;
  /** The model names the server said answered. */
  answered_by: string[];
  /** Everything recorded, as written (url, source, digest_unchecked...). */
  recorded: Record<string, unknown>;
}

/** One entry's score under one field (null: the reply was not a score) and the reply. */
export interface EntryScore {
  /** 0–100, or null when the reply was not a score. */
  score: number | null;
  /** What the judge said. */
  reply: string;
}

/** The responses judged: a file of an artifact in the cache, or a path. */
export type JudgedResponses = ArtifactFileRef | string;

/** judge.json, typed. */
export interface JudgeScores {
  /** Who judged. */
  judge: JudgeRecord;
  /** What was judged (find the file with `locateJudgedResponses`). */
  responses: JudgedResponses;
  /** Replies like "Score: 85" were accepted. */
  lenient: boolean;
  /** Per field: scored/total, mean, stderr, histogram, unscored replies. */
  fields: FieldSummary[];
  /** Per field, per entry. */
  scores: Record<string, EntryScore[]>;
}

/** pairwise.json, typed (llm/eval/pairwise.ts's PairwiseResult, without the judgments). */
export interface PairwiseScores {
  /** The judge's model. */
  judge: string;
  /** The response field shown first (whose win rate this is). */
  first: string;
  /** The other field. */
  second: string;
  /** Entries compared. */
  total: number | null;
  /** Entries whose two verdicts both parsed. */
  judged: number | null;
  /** `first`'s win rate over the judged entries, ties as half (null: none judged). */
  win_rate: number | null;
  /** Entries `first` won in both orders (or won one and tied the other). */
  wins: number;
  /** Entries `first` lost. */
  losses: number;
  /** Entries tied. */
  ties: number;
  /** Entries where flipping the order flipped the winner. */
  contradictions: number | null;
  /** Their share of the judged entries. */
  contradiction_rate: number | null;
  /** How often the judge picked whichever answer was shown first (position bias). */
  first_position_rate: number | null;
  /** Entries whose verdicts did not both parse. */
  unparsed: number;
}

/** Whether `dir` holds judge scores. */
export function hasJudgeScores(dir: string): boolean {
  return hasFile(dir, JUDGE_FILE);
}

/** Whether `dir` holds a pairwise preference. */
export function hasPairwise(dir: string): boolean {
  return hasFile(dir, PAIRWISE_FILE);
}

/** What the judge stage writes: the scores, their histograms, and the answers as asked. */
export interface JudgeArtifactContent {
  /** Who judged (llm/eval/judge_run.ts's JudgeReport.judge): the model name at least. */
  judge: { model: string };
  responses: JudgedResponses;
  lenient: boolean;
  fields: FieldSummary[];
  scores: Record<string, EntryScore[]>;
  /** scores.jsonl's text (the ledger). */
  ledger: string;
}

/** Writes scores.jsonl, judge.json and one histogram per field. */
export async function writeJudgeScores(dir: string, content: JudgeArtifactContent): Promise<void> {
  await writeFileAtomic(join(dir, JUDGE_LEDGER_FILE), content.ledger);
  const { responses, judge, lenient, fields, scores } = content;
  await writeJsonIn(dir, JUDGE_FILE, { responses, judge, lenient, fields, scores });
  for (const summary of fields) {
    await writeFileAtomic(join(dir, histogramFile(summary.field)), scoreHistogramSvg(summary));
  }
}

/** Writes pairwise.json: who judged, and the preference in both orders. */
export async function writePairwise(
  dir: string,
  judge: { model: string },
  result: PairwiseResult,
): Promise<void> {
  await writeJsonIn(dir, PAIRWISE_FILE, { judge, ...result });
}

function judgeRecord(value: unknown, where: string): JudgeRecord {
  const judge = object(value, where);
  return {
    model: string(judge.model, `${where}.model`),
    api: judge.api === undefined ? null : string(judge.api, `${where}.api`),
    digest: judge.digest === undefined ? null : string(judge.digest, `${where}.digest`),
    answered_by: judge.answered_by === undefined
      ? []
      : list(judge.answered_by, `${where}.answered_by`).map((a, i) =>
        string(a, `${where}.answered_by[${i}]`)
      ),
    recorded: judge,
  };
}

function fieldSummary(value: unknown, where: string): FieldSummary {
  const s = object(value, where);
  const histogram = s.histogram;
  if (!Array.isArray(histogram) || !histogram.every((c) => typeof c === "number")) {
    throw new Error(`${where}.histogram: expected a list of counts`);
  }
  const unscored = s.unscored === undefined ? [] : list(s.unscored, `${where}.unscored`);
  return {
    field: string(s.field, `${where}.field`),
    scored: number(s.scored, `${where}.scored`),
    total: number(s.total, `${where}.total`),
    mean: numberOrNull(s.mean, `${where}.mean`),
    stderr: numberOrNull(s.stderr, `${where}.stderr`),
    histogram: histogram as number[],
    unscored: unscored.map((u, i): Unscored => {
      const at = `${where}.unscored[${i}]`;
      const entry = object(u, at);
      return { index: number(entry.index, `${at}.index`), reply: String(entry.reply ?? "") };
    }),
  };
}

function entryScores(value: unknown, where: string): EntryScore[] {
  return list(value, where).map((item, i) => {
    const at = `${where}[${i}]`;
    const entry = object(item, at);
    return {
      score: numberOrNull(entry.score, `${at}.score`),
      reply: entry.reply === undefined ? "" : string(entry.reply, `${at}.reply`),
    };
  });
}

/** judge.json of `dir`; errors name the file and the place. */
export async function readJudgeScores(dir: string): Promise<JudgeScores> {
  const path = join(dir, JUDGE_FILE);
  const file = await readJsonIn(dir, JUDGE_FILE);
  const shaped = typeof file === "object" && file !== null && !Array.isArray(file) &&
    Array.isArray((file as Json).fields);
  if (!shaped) {
    throw new Error(
      `${path}: expected {judge, fields: [...], scores: {field: [...]}} as the judge stage ` +
        `writes it`,
    );
  }
  const f = file as Json;
  const judge = judgeRecord(f.judge, `${path}: judge`);
  const fields = (f.fields as unknown[]).map((s, i) => fieldSummary(s, `${path}: fields[${i}]`));
  const scores: Record<string, EntryScore[]> = {};
  for (const [field, entries] of Object.entries(object(f.scores ?? {}, `${path}: scores`))) {
    scores[field] = entryScores(entries, `${path}: scores["${field}"]`);
  }
  const responses = typeof f.responses === "string"
    ? f.responses
    : parseFileRef(f.responses, `${path}: responses`);
  return { judge, responses, lenient: f.lenient === true, fields, scores };
}

/** pairwise.json of `dir`; errors name the file and the place. */
export async function readPairwise(dir: string): Promise<PairwiseScores> {
  const path = join(dir, PAIRWISE_FILE);
  const p = object(await readJsonIn(dir, PAIRWISE_FILE), path);
  const count = (key: string) => numberOrNull(p[key], `${path}: "${key}"`);
  return {
    judge: string(object(p.judge, `${path}: "judge"`).model, `${path}: judge.model`),
    first: string(p.first, `${path}: "first"`),
    second: string(p.second, `${path}: "second"`),
    total: count("total"),
    judged: count("judged"),
    win_rate: count("win_rate"),
    wins: number(p.wins, `${path}: "wins"`),
    losses: number(p.losses, `${path}: "losses"`),
    ties: number(p.ties, `${path}: "ties"`),
    contradictions: count("contradictions"),
    contradiction_rate: count("contradiction_rate"),
    first_position_rate: count("first_position_rate"),
    unparsed: p.unparsed === undefined ? 0 : list(p.unparsed, `${path}: "unparsed"`).length,
  };
}

/** The judged responses as a person reads them: "stage/key/file" or the path. */
export function describeJudgedResponses(responses: JudgedResponses): string {
  return typeof responses === "string"
    ? responses
    : `${responses.stage}/${responses.key.slice(0, 16)}/${responses.file}`;
}

/**
 * Where the judged responses are now: a reference resolved against `cacheDir`; a recorded path
 * (old artifacts recorded one even for a file of the cache) as the same file in `cacheDir`
 * when the cache has moved (its `<stage>/<key>/<file>` tail), else the path itself. Undefined
 * when none of those exists.
 */
export function locateJudgedResponses(
  responses: JudgedResponses,
  cacheDir: string,
): string | undefined {
  if (typeof responses !== "string") {
    const path = resolveFileRef(responses, cacheDir);
    return existsSync(path) ? path : undefined;
  }
  const candidates: string[] = [];
  const inCache = relative(cacheDir, responses);
  if (!inCache.startsWith("..") && !isAbsolute(inCache)) candidates.push(responses);
  const tail = responses.split(/[\\/]/).slice(-3);
  if (tail.length === 3 && isAbsolute(responses)) candidates.push(join(cacheDir, ...tail));
  candidates.push(responses);
  return candidates.find((path) => existsSync(path));
}
