/**
 * Artifact kind `mmlu`: results.json in lm-evaluation-harness's layout (`results`, `groups`,
 * `group_subtasks`, `n-samples`, `config`; llm/eval/mmlu/results.ts builds it) and
 * samples.jsonl (every question with the model's log-likelihoods), as the `evaluate` stage
 * writes them.
 */
import { join } from "node:path";
import {
  hasFile,
  type Json,
  list,
  numberOrNull,
  object,
  readJsonIn,
  string,
  writeJsonIn,
} from "./check.ts";
import { writeFileAtomic } from "../../util/files.ts";

/** The results in lm-evaluation-harness's layout. */
export const MMLU_RESULTS_FILE = "results.json";
/** Every question with the model's log-likelihoods, one JSON object per line. */
export const MMLU_SAMPLES_FILE = "samples.jsonl";

/** One task's (or group's) row of `results`. */
export interface MmluResultRow {
  /** The harness's task name, e.g. "mmlu_philosophy". */
  task: string;
  /** A group of tasks (its accuracy is over its subtasks' questions). */
  group: boolean;
  /** Accuracy; null when the harness wrote "N/A" (fewer than two questions) or none. */
  acc: number | null;
  /** Standard error of `acc` (null: "N/A" or none). */
  stderr: number | null;
  /** Length-normalized accuracy, when the file has one. */
  acc_norm: number | null;
  /** Questions asked (`n-samples`' effective count; for a group the sum over its subtasks). */
  questions: number | null;
}

/** results.json, typed. */
export interface MmluResults {
  /** The rows of `results`, in the file's order. */
  tasks: MmluResultRow[];
  /** What was evaluated (`model_name`, `model`, else the harness's `config`). */
  model: unknown;
  /** The harness's `config` (the evaluating stage records the model's stage there). */
  config: Record<string, unknown>;
}

/** Whether `dir` holds MMLU results. */
export function hasMmluResults(dir: string): boolean {
  return hasFile(dir, MMLU_RESULTS_FILE);
}

/** Writes results.json and samples.jsonl (one JSON object per line). */
export async function writeMmluResults(
  dir: string,
  results: unknown,
  samples: readonly unknown[],
): Promise<void> {
  await writeJsonIn(dir, MMLU_RESULTS_FILE, results);
  await writeFileAtomic(
    join(dir, MMLU_SAMPLES_FILE),
    samples.map((s) => JSON.stringify(s)).join("\n") + "\n",
  );
}

/** A metric: a number, or "N/A"/null (none) as the harness writes it. */
function metric(row: Json, keys: string[], where: string): number | null {
  for (const key of keys) {
    const value = row[key];
    if (value === undefined) continue;
    if (value === "N/A") return null;
    return numberOrNull(value, `${where}["${key}"]`);
  }
  return null;
}

/** results.json of `dir`; errors name the file and the task. */
export async function readMmluResults(dir: string): Promise<MmluResults> {
  const path = join(dir, MMLU_RESULTS_FILE);
  const file = object(await readJsonIn(dir, MMLU_RESULTS_FILE), path);
  const results = object(file.results, `${path}: "results"`);
  const groups = object(file.groups ?? {}, `${path}: "groups"`);
  const nSamples = object(file["n-samples"] ?? {}, `${path}: "n-samples"`);
  const subtasks = object(file.group_subtasks ?? {}, `${path}: "group_subtasks"`);
  // Questions of a task: its own count, or for a group the sum over its subtasks.
  const questions = (task: string, depth = 0): number | null => {
    if (nSamples[task] !== undefined) {
      const n = object(nSamples[task], `${path}: "n-samples"["${task}"]`);
      const where = `${path}: "n-samples"["${task}"]`;
      return numberOrNull(n.effective, `${where}.effective`) ??
        numberOrNull(n.original, `${where}.original`);
    }
    if (subtasks[task] === undefined || depth > 10) return null;
    const children = list(subtasks[task], `${path}: "group_subtasks"["${task}"]`);
    if (children.length === 0) return null;
    const counts = children.map((c) => questions(string(c, `${path}: group_subtasks`), depth + 1));
    return counts.every((c) => c !== null) ? counts.reduce((a, b) => a! + b!, 0) : null;
  };
  const tasks = Object.entries(results).map(([task, value]): MmluResultRow => {
    const where = `${path}: results["${task}"]`;
    const row = object(value, where);
    return {
      task,
      group: task in groups,
      acc: metric(row, ["acc,none", "acc"], where),
      stderr: metric(row, ["acc_stderr,none", "acc_stderr"], where),
      acc_norm: metric(row, ["acc_norm,none", "acc_norm"], where),
      questions: questions(task) ?? numberOrNull(row.samples, `${where}.samples`),
    };
  });
  const config = object(file.config ?? {}, `${path}: "config"`);
  return { tasks, model: file.model_name ?? file.model ?? file.config, config };
}

/**
 * The headline accuracy: the first group's (MMLU as a whole, when it was asked for), else the
 * first task's.
 */
export function headlineAccuracy(results: MmluResults): { task: string; acc: number } | undefined {
  const row = results.tasks.find((t) => t.group && t.acc !== null) ??
    results.tasks.find((t) => t.acc !== null);
  return row ? { task: row.task, acc: row.acc! } : undefined;
}
