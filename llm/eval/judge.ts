/**
 * The book's LLM judge (ch07 §7.8): each entry of a responses file, for one or several
 * response fields, is put to a judge model with the book's prompt; the reply must be an
 * integer from 0 to 100 (the book keeps `int(reply)` and skips the rest: those are
 * "unscored" here, and every one is kept with its reply). Scores are written to a ledger as
 * they arrive, so an interrupted run resumes without asking again.
 */
import { entryName, formatInstructionPrompt } from "../data/instructions.ts";
import { askAll, type Judge } from "./judge_asker.ts";
import { JudgeLedger, promptHash } from "./judge_ledger.ts";

/** One entry of a responses file: the book's instruction entry plus one field per model. */
export interface ResponseEntry {
  /** The task. */
  instruction: string;
  /** Its input ("" when none). */
  input: string;
  /** The reference answer. */
  output: string;
  /** Each model's response, by field name (e.g. `model_response`). */
  [field: string]: string;
}

const ENTRY_FIELDS = ["instruction", "input", "output"];

/**
 * Reads a responses file in the book's format (`instruction-data-with-response.json`: a list
 * of {instruction, input, output, <response fields>…}). Every response field — `fields`, or
 * by default every field that holds text in some entry — must be a string in every entry (a
 * missing answer is an error, never judged as the text "undefined"); `input` may be missing
 * (an empty input). Errors name the file, the entry (counting from 1) and the field.
 */
export function parseResponses(value: unknown, source: string, fields?: string[]): ResponseEntry[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new Error(`${source}: expected a non-empty JSON list of entries`);
  }
  value.forEach((entry, i) => {
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      throw new Error(`${source}: ${entryName(i)}: expected an object`);
    }
  });
  const records = value as Record<string, unknown>[];
  const required = [...ENTRY_FIELDS, ...(fields ?? textFields(records))];
  return records.map((record, i) => {
    for (const key of required) {
      const v = record[key];
      if (typeof v !== "string" && !(key === "input" && v === undefined)) {
        throw new Error(
          `${source}: ${entryName(i)}: "${key}" must be a string (got ${
            v === undefined ? "nothing" : typeof v
          })${fields === undefined && !ENTRY_FIELDS.includes(key) ? RESPONSE_FIELD_NOTE : ""}`,
        );
      }
    }
    return { ...record, input: (record.input as string | undefined) ?? "" } as ResponseEntry;
  });
}

const RESPONSE_FIELD_NOTE =
  "; every field other entries give as text is a response to judge (choose them with `fields:`)";

/** Every field besides instruction, input and output that holds text in some entry, in order. */
function textFields(records: readonly Record<string, unknown>[]): string[] {
  const fields = new Set<string>();
  for (const record of records) {
    for (const [key, v] of Object.entries(record)) {
      if (!ENTRY_FIELDS.includes(key) && typeof v === "string") fields.add(key);
    }
  }
  return [...fields];
}

export async function readResponses(path: string, fields?: string[]): Promise<ResponseEntry[]> {
  let value: unknown;
  try {
    value = JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    throw new Error(
      `${path}: ${error instanceof SyntaxError ? "not valid JSON: " : ""}${
        (error as Error).message
      }`,
    );
  }
  return parseResponses(value, path, fields);
}

/** The response fields: every field besides instruction, input, output that holds text. */
export function responseFields(entries: readonly ResponseEntry[]): string[] {
  return textFields(entries);
}

/** The book's judge prompt (ch07 `generate_model_scores`), character for character. */
export function judgePrompt(entry: ResponseEntry, field: string): string {
  return `Given the input \`${formatInstructionPrompt(entry)}\` ` +
    `and correct output \`${entry.output}\`, ` +
    `score the model response \`${entry[field]}\`` +
    ` on a scale from 0 to 100, where 100 is the best score. ` +
    `Respond with the integer number only.`;
}

/**
 * The score in a reply, or null. Strict (the book): the whole reply is an integer (Python's
 * `int()` allows surrounding whitespace and a sign), here also required to be 0–100.
 * Lenient: a reply like "Score: 85", "85/100" or "I'd give it 85." — the number after
 * "score", else the only integer in the reply.
 */
export function parseScore(reply: string, lenient = false): number | null {
  const inRange = (n: number) => Number.isInteger(n) && n >= 0 && n <= 100 ? n : null;
  const strict = reply.match(/^\s*\+?(\d+)\s*$/);
  if (strict) return inRange(Number(strict[1]));
  if (!lenient) return null;
  const text = reply.replace(/\s*\/\s*100\b/g, ""); // "85/100" → "85"
  const labelled = text.match(/score[^0-9\n]{0,15}?(\d+)(?!\.?\d)/i);
  if (labelled) return inRange(Number(labelled[1]));
  const numbers = new Set([...text.matchAll(/(?<![\d.])\d+(?!\.?\d)/g)].map((m) => m[0]));
  return numbers.size === 1 ? inRange(Number([...numbers][0])) : null;
}

/** A reply that was not a score. */
export interface Unscored {
  /** The entry's index in the responses file. */
  index: number;
  /** What the judge said. */
  reply: string;
}

export interface FieldScores {
  field: string;
  /** Per entry: the score, or null when the reply was not one. */
  scores: (number | null)[];
  replies: string[];
  /** The model the server said answered (the first reply's). */
  answeredBy: string;
}

/** The judge's scores of one response field, summarized. */
export interface FieldSummary {
  /** The response field. */
  field: string;
  /** Entries whose reply was a score. */
  scored: number;
  /** Entries judged. */
  total: number;
  /** Mean of the scored replies (null when none scored). */
  mean: number | null;
  /** Standard error of the mean: sample standard deviation / √n (null below 2 scores). */
  stderr: number | null;
  /** Counts per 10-point bin: [0,10), [10,20) … [90,100] (100 falls in the last). */
  histogram: number[];
  /** Every reply that was not a score. */
  unscored: Unscored[];
}

export function summarizeScores(
  field: string,
  scores: readonly (number | null)[],
  replies: readonly string[],
): FieldSummary {
  const valid = scores.filter((s): s is number => s !== null);
  const n = valid.length;
  const mean = n > 0 ? valid.reduce((a, b) => a + b, 0) / n : null;
  const stderr = n > 1 && mean !== null
    ? Math.sqrt(valid.reduce((a, s) => a + (s - mean) ** 2, 0) / (n - 1)) / Math.sqrt(n)
    : null;
  const histogram = new Array(10).fill(0);
  for (const s of valid) histogram[Math.min(9, Math.floor(s / 10))]++;
  const unscored = scores.flatMap((
    s,
    index,
  ) => (s === null ? [{ index, reply: replies[index] }] : []));
  return { field, scored: n, total: scores.length, mean, stderr, histogram, unscored };
}

export interface ScoreRunOptions {
  fields: string[];
  /** The ledger file (JSONL); answers already in it are not asked again. */
  ledgerPath?: string;
  /** Requests in flight at once (default 4); a local judge: prompts decoded together. */
  concurrency?: number;
  lenient?: boolean;
  signal?: AbortSignal;
  /** Called after each answer (asked or found in the ledger). */
  onProgress?: (done: number, total: number) => void;
}

export interface ScoreRun {
  fields: FieldScores[];
  /** Questions actually sent in this run (the rest came from the ledger). */
  asked: number;
  reused: number;
}

/** Scores every entry for every field, resuming from the ledger. */
export async function scoreResponses(
  entries: readonly ResponseEntry[],
  client: Judge,
  options: ScoreRunOptions,
): Promise<ScoreRun> {
  const ledger = await JudgeLedger.open(options.ledgerPath);
  const replies = new Map<string, { reply: string; by: string }>();
  const jobs = options.fields.flatMap((field) =>
    entries.map((entry, index) => ({ field, index, prompt: judgePrompt(entry, field) }))
  );
  let asked = 0, reused = 0, done = 0;
  const todo = jobs.filter((job) => {
    const known = ledger.find(
      "score",
      job.field,
      job.index,
      job.prompt,
      client.model,
      client.digest,
    );
    if (known) {
      replies.set(`${job.field}#${job.index}`, { reply: known.reply, by: known.answered_by });
    }
    return !known;
  });
  reused = jobs.length - todo.length;
  done = reused;
  options.onProgress?.(done, jobs.length);
  const asking = { concurrency: options.concurrency ?? 4, signal: options.signal };
  await askAll(client, todo, asking, async (job, reply) => {
    asked++;
    await ledger.add({
      kind: "score",
      key: job.field,
      index: job.index,
      prompt_sha256: promptHash(job.prompt),
      judge: client.model,
      ...(client.digest ? { digest: client.digest } : {}),
      answered_by: reply.model,
      reply: reply.content,
    });
    replies.set(`${job.field}#${job.index}`, { reply: reply.content, by: reply.model });
    options.onProgress?.(++done, jobs.length);
  });
  const fields = options.fields.map((field) => {
    const got = entries.map((_, index) => replies.get(`${field}#${index}`)!);
    return {
      field,
      replies: got.map((g) => g.reply),
      scores: got.map((g) => parseScore(g.reply, options.lenient)),
      answeredBy: got[0]?.by ?? client.model,
    };
  });
  return { fields, asked, reused };
}
