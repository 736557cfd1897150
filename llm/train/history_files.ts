/**
 * What a training stage leaves beside its weights: history.json (initial loss, every
 * evaluation, the samples), history.csv, samples.json and loss.svg, and the headline numbers.
 */
import { join } from "node:path";
import type { TrainingState } from "./loop.ts";
import { lossPlotSvg } from "./plot.ts";

/** Writes history.json, history.csv, samples.json and (when anything was evaluated) loss.svg. */
export async function writeTrainingHistory(
  dir: string,
  state: TrainingState,
  plotTitle: string,
): Promise<void> {
  const history = {
    initial: state.initial ?? null,
    evaluations: state.history,
    samples: state.samples,
  };
  await Deno.writeTextFile(join(dir, "history.json"), JSON.stringify(history, null, 2) + "\n");
  const csv = ["step,epoch,tokens_seen,train_loss,val_loss"]
    .concat(
      state.history.map((h) =>
        [h.step, h.epoch, h.tokens_seen, h.train_loss, h.val_loss].join(",")
      ),
    )
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
  if (last) Object.assign(metrics, { train_loss: last.train_loss, val_loss: last.val_loss });
  if (state.initial) {
    Object.assign(metrics, {
      initial_train_loss: state.initial.train_loss,
      initial_val_loss: state.initial.val_loss,
    });
  }
  return metrics;
}
