/**
 * Artifact kind `history`: what a training stage (pretrain, finetune, lora-finetune, dpo)
 * leaves beside its weights: history.json (the initial losses, every evaluation, the text
 * samples), history.csv, samples.json and loss.svg. The writer is llm/train/history_files.ts.
 */
import { join } from "node:path";
import { hasFile, list, number, object, readJsonIn } from "./check.ts";

export { writeTrainingHistory } from "../train/history_files.ts";

export const HISTORY_FILE = "history.json";
/** The text samples, in history.json and (for old artifacts) beside it. */
export const SAMPLES_FILE = "samples.json";

/**
 * One evaluation: `epoch`, `tokens_seen`, `train_loss`, `val_loss` (and `step`, and whatever
 * else the objective measures, e.g. DPO's reward margins). A loss that was not a number (NaN,
 * infinite) is written as null.
 */
export type HistoryRow = Record<string, number | null>;

/** history.json, typed. */
export interface TrainingHistory {
  /** The losses before the first step (null when not measured). */
  initial: Record<string, unknown> | null;
  /** Every evaluation, in order. */
  evaluations: HistoryRow[];
  /** The text samples drawn while training (history.json's, else samples.json's). */
  samples: unknown[];
}

/** Whether `dir` holds a training history. */
export function hasHistory(dir: string): boolean {
  return hasFile(dir, HISTORY_FILE);
}

/** history.json of `dir`; errors name the file and the evaluation. */
export async function readTrainingHistory(dir: string): Promise<TrainingHistory> {
  const path = join(dir, HISTORY_FILE);
  const file = object(await readJsonIn(dir, HISTORY_FILE), path);
  const evaluations = list(file.evaluations, `${path}: "evaluations"`).map((e, i) => {
    const where = `${path}: evaluations[${i}]`;
    const row = object(e, where);
    for (const [key, value] of Object.entries(row)) {
      if (value !== null && typeof value !== "number") {
        throw new Error(`${where}.${key}: expected a number`);
      }
    }
    return row as HistoryRow;
  });
  const samples = Array.isArray(file.samples)
    ? file.samples
    : hasFile(dir, SAMPLES_FILE)
    ? list(await readJsonIn(dir, SAMPLES_FILE), join(dir, SAMPLES_FILE))
    : [];
  const initial = file.initial === null || file.initial === undefined
    ? null
    : object(file.initial, `${path}: "initial"`);
  return { initial, evaluations, samples };
}

/** A column of the evaluations as numbers; a row without one is an error naming it. */
export function historyColumn(
  history: TrainingHistory,
  column: string,
  path: string,
): number[] {
  return history.evaluations.map((row, i) =>
    number(row[column], `${path}: evaluations[${i}].${column}`)
  );
}

/** The last evaluation's train and validation loss (null: none, or not a number). */
export function finalLosses(history: TrainingHistory): {
  train_loss: number | null;
  val_loss: number | null;
} {
  const last = history.evaluations.at(-1);
  return { train_loss: last?.train_loss ?? null, val_loss: last?.val_loss ?? null };
}
