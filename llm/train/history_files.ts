/**
 * What a training stage leaves beside its weights: history.json (initial loss, every
 * evaluation, the samples), history.csv, samples.json and loss.svg, and the headline numbers.
 */
import { join } from "node:path";
import type { TrainingState } from "./loop.ts";
import { lossPlotSvg } from "./plot.ts";

/** A further figure of two history columns (train and validation), e.g. DPO's reward margins. */
export interface HistoryPlot {
  /** File name in the folder, e.g. "reward_margins.svg". */
  file: string;
  /** The training column of the history rows, e.g. "train_reward_margin". */
  train: string;
  /** The validation column, e.g. "val_reward_margin". */
  val: string;
  /** What the curves are, e.g. "reward margins". */
  label: string;
}

/**
 * Writes history.json, history.csv (every column of the evaluations), samples.json and (when
 * anything was evaluated) loss.svg and each of `plots`.
 */
export async function writeTrainingHistory(
  dir: string,
  state: TrainingState,
  plotTitle: string,
  plots: readonly HistoryPlot[] = [],
): Promise<void> {
  const history = {
    initial: state.initial ?? null,
    evaluations: state.history,
    samples: state.samples,
  };
  await Deno.writeTextFile(join(dir, "history.json"), JSON.stringify(history, null, 2) + "\n");
  // The book's columns first, then whatever else the objective measured, in its order.
  const columns = ["step", "epoch", "tokens_seen", "train_loss", "val_loss"];
  for (const row of state.history) {
    for (const key of Object.keys(row)) if (!columns.includes(key)) columns.push(key);
  }
  const csv = [columns.join(",")]
    .concat(state.history.map((h) => columns.map((c) => h[c] ?? "").join(",")))
    .join("\n") + "\n";
  await Deno.writeTextFile(join(dir, "history.csv"), csv);
  await Deno.writeTextFile(
    join(dir, "samples.json"),
    JSON.stringify(state.samples, null, 2) + "\n",
  );
  if (state.history.length > 0) {
    const svg = lossPlotSvg({
      epochs: state.history.map((h) => h.epoch),
      tokensSeen: state.history.map((h) => h.tokens_seen),
      train: state.history.map((h) => h.train_loss),
      val: state.history.map((h) => h.val_loss),
      title: plotTitle,
    });
    await Deno.writeTextFile(join(dir, "loss.svg"), svg);
    for (const plot of plots) {
      const figure = lossPlotSvg({
        epochs: state.history.map((h) => h.epoch),
        tokensSeen: state.history.map((h) => h.tokens_seen),
        train: state.history.map((h) => h[plot.train]),
        val: state.history.map((h) => h[plot.val]),
        title: plotTitle,
        label: plot.label,
      });
      await Deno.writeTextFile(join(dir, plot.file), figure);
    }
  }
}

/** Steps, tokens, time, throughput, the last evaluation's losses and the initial ones. */
export function trainingMetrics(state: TrainingState): Record<string, number> {
  const { tokensSeen, step: steps } = state.position;
  const last = state.history.at(-1);
  const metrics: Record<string, number> = {
    steps,
    tokens_seen: tokensSeen,
    train_seconds: Number(state.trainSeconds.toFixed(2)),
    seconds_per_step: Number((state.trainSeconds / Math.max(steps, 1)).toFixed(4)),
    tokens_per_second: Math.round(tokensSeen / Math.max(state.trainSeconds, 1e-9)),
  };
  if (last) {
    // The last evaluation's losses and any other measures (DPO's rewards and margins).
    const { step: _step, epoch: _epoch, tokens_seen: _tokens, ...measures } = last;
    Object.assign(metrics, measures);
  }
  if (state.initial) {
    Object.assign(metrics, {
      initial_train_loss: state.initial.train_loss,
      initial_val_loss: state.initial.val_loss,
    });
  }
  return metrics;
}
