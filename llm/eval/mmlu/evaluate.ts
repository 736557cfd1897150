/**
 * MMLU as lm-evaluation-harness evaluates it: per question one log-likelihood request per
 * choice (context from prompt.ts, continuations " A" … " D"), the prediction the choice with the
 * highest log-likelihood (the first on a tie, as numpy's argmax), `acc` per subject, groups
 * weighted by size (metrics.ts). When every continuation is one token after the context (GPT-2's
 * BPE: " A" = 317, " B" = 347, " C" = 327, " D" = 360) one forward pass scores all four.
 */
import type { GPTModel } from "../../model/gpt.ts";
import type { Tokenizer } from "../../tokenizer/mod.ts";
import {
  encodePair,
  requestRow,
  type ScoreRow,
  scoreRows,
  sharedContextRow,
  type TokenizedRequest,
} from "../loglikelihood.ts";
import { accStderr, pooledStderr, weightedMean } from "../metrics.ts";
import { CHOICE_LETTERS, type MmluQuestion, type MmluSplit } from "./data.ts";
import { MMLU_CONTINUATIONS, mmluContext } from "./prompt.ts";
import { expandMmluTasks, type MmluTask, subjectTaskName } from "./subjects.ts";

/** Where questions come from: one subject's split. */
export type MmluLoader = (subject: string, split: MmluSplit) => Promise<MmluQuestion[]>;

export interface MmluEvalOptions {
  /** Harness task names: "mmlu", "mmlu_<category>", "mmlu_<subject>". */
  tasks: readonly string[];
  /** Solved dev questions before each question (the first n of dev). */
  numFewshot: number;
  /** Only the first `limit` test questions of each subject (the harness's --limit). */
  limit?: number;
  /** Model inputs per forward pass. */
  batchSize: number;
  load: MmluLoader;
  signal?: AbortSignal;
  onProgress?: (questionsDone: number, questionsTotal: number) => void;
  maxLogitBytes?: number;
}

/** One question's record (samples.jsonl). */
export interface MmluSample {
  task: string;
  doc_id: number;
  doc: MmluQuestion;
  /** The context the model saw (before any left truncation). */
  prompt: string;
  continuations: readonly string[];
  loglikelihoods: number[];
  prediction: string;
  target: string;
  correct: boolean;
  /** Context tokens (before truncation) and whether it was cut from the left. */
  context_tokens: number;
  truncated: boolean;
}

export interface MmluTaskResult {
  alias: string;
  acc: number;
  acc_stderr: number;
  /** Questions scored (after `limit`). */
  samples: number;
  /** Test questions the subject has (subjects only). */
  original?: number;
}

export interface MmluEvaluation {
  /** Every reported task, children before their groups. */
  tasks: MmluTask[];
  results: Record<string, MmluTaskResult>;
  samples: MmluSample[];
  /** Whether every question was scored with one forward pass for its four choices. */
  singleTokenContinuations: boolean;
  seconds: number;
}

interface PreparedQuestion {
  task: string;
  docId: number;
  doc: MmluQuestion;
  prompt: string;
  requests: TokenizedRequest[];
}

/** Scores each question's choices: one shared row when all are single tokens, else one each. */
export async function scoreQuestions(
  model: GPTModel,
  requestsPerQuestion: readonly TokenizedRequest[][],
  options: Pick<MmluEvalOptions, "batchSize" | "signal" | "maxLogitBytes"> & {
    onBatch?: (rowsDone: number, rowsTotal: number) => void;
    /** Force one row per choice even where a shared row would do (for tests). */
    general?: boolean;
  },
): Promise<number[][]> {
  const maxLength = model.config.context_length;
  const rows: ScoreRow[] = [];
  const layout: { first: number; shared: boolean }[] = [];
  for (const requests of requestsPerQuestion) {
    const context = requests[0].context;
    const shared = !options.general &&
      requests.every((r) =>
        r.continuation.length === 1 && r.context.length === context.length &&
        r.context.every((id, i) => id === context[i])
      );
    layout.push({ first: rows.length, shared });
    if (shared) {
      rows.push(sharedContextRow(context, requests.map((r) => r.continuation[0]), maxLength));
    } else rows.push(...requests.map((r) => requestRow(r, maxLength)));
  }
  const scored = await scoreRows(model, rows, options);
  const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
  return requestsPerQuestion.map((requests, q) => {
    const { first, shared } = layout[q];
    return shared ? scored[first] : requests.map((_, c) => sum(scored[first + c]));
  });
}

/** Index of the largest value; the first of equal ones (numpy's argmax). */
function argmax(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

export async function evaluateMmlu(
  model: GPTModel,
  tokenizer: Tokenizer,
  options: MmluEvalOptions,
): Promise<MmluEvaluation> {
  const t0 = performance.now();
  const { tasks, subjects } = expandMmluTasks(options.tasks);
  if (!Number.isInteger(options.numFewshot) || options.numFewshot < 0) {
    throw new Error(`num_fewshot must be a whole number ≥ 0, got ${options.numFewshot}`);
  }
  const prepared: PreparedQuestion[] = [];
  const original = new Map<string, number>();
  for (const subject of subjects) {
    options.signal?.throwIfAborted();
    const test = await options.load(subject, "test");
    original.set(subject, test.length);
    let fewshot: MmluQuestion[] = [];
    if (options.numFewshot > 0) {
      const dev = await options.load(subject, "dev");
      if (options.numFewshot > dev.length) {
        throw new Error(
          `num_fewshot ${options.numFewshot} is more than the ${dev.length} dev questions of ${subject}`,
        );
      }
      fewshot = dev.slice(0, options.numFewshot);
    }
    const docs = options.limit !== undefined ? test.slice(0, options.limit) : test;
    for (const [docId, doc] of docs.entries()) {
      const prompt = mmluContext(doc, fewshot);
      prepared.push({
        task: subjectTaskName(subject),
        docId,
        doc,
        prompt,
        requests: MMLU_CONTINUATIONS.map((c) => encodePair(tokenizer, prompt, c)),
      });
    }
  }

  const total = prepared.length;
  options.onProgress?.(0, total);
  let rowsPerQuestion = 1;
  const lls = await scoreQuestions(model, prepared.map((p) => p.requests), {
    batchSize: options.batchSize,
    signal: options.signal,
    maxLogitBytes: options.maxLogitBytes,
    onBatch: (done, rows) => {
      rowsPerQuestion = rows / Math.max(1, total);
      options.onProgress?.(Math.min(total, Math.round(done / rowsPerQuestion)), total);
    },
  });
  const maxLength = model.config.context_length;
  const samples: MmluSample[] = prepared.map((p, q) => {
    const prediction = argmax(lls[q]);
    const contextTokens = p.requests[0].context.length;
    return {
      task: p.task,
      doc_id: p.docId,
      doc: p.doc,
      prompt: p.prompt,
      continuations: MMLU_CONTINUATIONS,
      loglikelihoods: lls[q],
      prediction: CHOICE_LETTERS[prediction],
      target: CHOICE_LETTERS[p.doc.answer],
      correct: prediction === p.doc.answer,
      context_tokens: contextTokens,
      truncated: p.requests.some((r) => r.context.length + r.continuation.length > maxLength + 1),
    };
  });

  const results: Record<string, MmluTaskResult> = {};
  for (const task of tasks) {
    if (task.kind === "subject") {
      const mine = samples.filter((s) => s.task === task.name);
      const n = mine.length;
      const acc = n > 0 ? mine.filter((s) => s.correct).length / n : NaN;
      results[task.name] = {
        alias: task.alias,
        acc,
        acc_stderr: accStderr(acc, n),
        samples: n,
        original: original.get(task.subject),
      };
    } else {
      const children = task.children.map((c) => results[c]);
      const sizes = children.map((c) => c.samples);
      results[task.name] = {
        alias: task.alias,
        acc: weightedMean(children.map((c) => c.acc), sizes),
        acc_stderr: pooledStderr(children.map((c) => c.acc_stderr), sizes),
        samples: sizes.reduce((a, b) => a + b, 0),
      };
    }
  }
  return {
    tasks,
    results,
    samples,
    singleTokenContinuations: prepared.every((p) =>
      p.requests.every((r) => r.continuation.length === 1)
    ),
    seconds: (performance.now() - t0) / 1000,
  };
}
