/**
 * The training loop (the book's `train_model_simple`, ch05), shared by every stage that trains:
 * for each epoch, for each batch, one optimizer step; every `evalFreq` steps the mean loss over
 * `evalIter` batches of each split; after each epoch a sample.
 *
 * On top of the book it owns what a long run needs:
 * - resuming: given the state a checkpoint held, it continues at the same epoch, batch and
 *   step, so a resumed run ends with exactly the weights an uninterrupted one does (the data
 *   order is a function of the epoch, the dropout RNG travels in the model, AdamW's moments in
 *   the optimizer: the caller's checkpoint holds those);
 * - checkpoints: it calls the caller's `saveCheckpoint(state)` when the caller's
 *   `checkpointDue(position)` says so and when the run is interrupted; the caller decides what is
 *   written (a whole model, or only a fine-tune's trainable weights);
 * - interrupts: it yields to the event loop between steps and between evaluation batches, so a
 *   signal handler runs within one step; on abort it finishes the step, writes a checkpoint and
 *   throws {@link TrainingInterrupted};
 * - bad numbers: a non-finite loss stops the run with {@link NonFiniteLossError} and nothing of
 *   that state is checkpointed (the last good checkpoint stays).
 *
 * What a step minimises is the caller's {@link TrainingObjective}: the book's next-token
 * cross-entropy by default, DPO's preference loss for `dpo` (llm/train/dpo.ts).
 */
import { nextTurn } from "../../util/timers.ts";
import type { Batch } from "../data/batch.ts";
import type { GPTModel } from "../model/gpt.ts";
import type { AdamW } from "./adamw.ts";
import type { TrainingPosition } from "./checkpoint.ts";
import { calcLossLoader, trainStep, type TrainStepOptions } from "./trainer.ts";

/** A split's batches, epoch by epoch, in an order that depends only on the epoch. */
export interface EpochBatches<B = Batch> {
  /** Batches per epoch. */
  readonly numBatches: number;
  /** The batches of `epoch` (0-based), in order, starting at index `start`. */
  batches(epoch: number, start?: number): Iterable<B>;
}

/** What an evaluation measures over a few batches: the mean loss, and any other means. */
export type EvalMeasures = { loss: number } & Record<string, number>;

/**
 * What the loop minimises and measures, for batches of type `B`. The default,
 * {@link crossEntropyObjective}, is the book's; `dpo` brings its own (llm/train/dpo.ts).
 */
export interface TrainingObjective<B> {
  /** One optimizer step on `batch` with dropout on; the batch's loss before the update. */
  step(
    model: GPTModel,
    optimizer: AdamW,
    batch: B,
    options: TrainStepOptions,
  ): Promise<{ loss: number }>;
  /**
   * The mean loss (and other measures) over the first `numBatches` batches (all when omitted),
   * in evaluation mode; a loss of NaN for no batches.
   */
  evaluate(model: GPTModel, batches: AsyncIterable<B>, numBatches?: number): Promise<EvalMeasures>;
  /** Tokens a batch adds to tokens_seen. */
  tokens(batch: B): number;
  /** Measures besides the loss that the evaluation's log line prints (e.g. `reward_margin`). */
  logged?: readonly string[];
}

/** The book's objective: next-token cross-entropy (`calc_loss_batch`, `calc_loss_loader`). */
export const crossEntropyObjective: TrainingObjective<Batch> = {
  step: (model, optimizer, batch, options) => trainStep(model, optimizer, batch, options),
  evaluate: async (model, batches, numBatches) => ({
    loss: await calcLossLoader(model, batches, numBatches),
  }),
  tokens: (batch) => batch.inputs.length,
};

/** One evaluation (a row of history.csv; snake_case as the files write it). */
export interface EvalPoint {
  /** The book's global_step: optimizer steps taken before this one, counted from 0. */
  step: number;
  /** Epochs elapsed, fractional (for the plot's x axis). */
  epoch: number;
  /** Input tokens trained on so far. */
  tokens_seen: number;
  /** Mean loss over `evalIter` training batches. */
  train_loss: number;
  /** Mean loss over `evalIter` validation batches. */
  val_loss: number;
  /**
   * The objective's other measures, as `train_<name>` and `val_<name>` (DPO:
   * `train_chosen_reward`, `val_reward_margin`, ...).
   */
  [measure: string]: number;
}

/** A sample generated after an epoch. */
export interface Sample {
  /** The epoch just finished, 1-based. */
  epoch: number;
  /** Steps taken when it was generated. */
  step: number;
  /** The prompt and its continuation. */
  text: string;
}

/** Everything the loop carries from step to step; a checkpoint stores it to resume. */
export interface TrainingState {
  /** Where the next step starts. */
  position: TrainingPosition;
  /** Every evaluation so far. */
  history: EvalPoint[];
  /** Every sample so far. */
  samples: Sample[];
  /** The untrained loss over every batch of each split, when asked for. */
  initial?: { train_loss: number; val_loss: number };
  /** Seconds spent in training steps (not evaluation, samples or checkpoints). */
  trainSeconds: number;
}

/** Where progress goes (the pipeline runner's progress reporter fits). */
export interface LoopProgress {
  /** `done` items of `total` are already behind (a resumed run) and do not count in the rate. */
  start(label: string, total: number, unit?: string, done?: number): void;
  /** Steps done so far, with the headline values (epoch, loss, tokens per second). */
  update(done: number, values?: Record<string, number | string>): void;
  /** Training ended. */
  finish(): void;
}

/** What {@link trainModel} needs; `B` is the batch type its objective takes. */
export interface TrainLoopOptions<B = Batch> {
  /** The model to train (its dropout RNG is part of what a checkpoint must keep). */
  model: GPTModel;
  /** Updates the model's trainable parameters. */
  optimizer: AdamW;
  /** Training batches (shuffled per epoch or not: the source decides). */
  train: EpochBatches<B>;
  /** Validation batches; evaluation reads epoch 0's order. */
  val: EpochBatches<B>;
  /**
   * What a step minimises and an evaluation measures; default {@link crossEntropyObjective}
   * (which needs `B` = `Batch`).
   */
  objective?: TrainingObjective<B>;
  /** Epochs to train in all (a resumed run counts the ones already done). */
  epochs: number;
  /** Evaluate every this many steps (the book's eval_freq). */
  evalFreq: number;
  /** Batches of each split per evaluation (the book's eval_iter). */
  evalIter: number;
  /** The learning rate of each step (default: the optimizer's, unchanged). */
  lrAt?: (step: number, totalSteps: number) => number;
  /** Clip gradients to this global norm. */
  maxGradNorm?: number;
  /** Continue from this state (read from a checkpoint); default: a fresh start. */
  resume?: TrainingState;
  /** On a fresh start, first measure the loss over every batch of both splits. */
  initialEval?: boolean;
  /** Batches of each split the initial evaluation reads (default: all). */
  initialEvalIter?: number;
  /**
   * Called with true before each training step and false after it: switches what the model's
   * own dropout flag does not (LoRA adapters' dropout, `LoraAdapters.train`).
   */
  setTraining?: (on: boolean) => void;
  /** Generates the sample printed after each epoch (none when omitted). */
  sample?: (model: GPTModel) => Promise<string>;
  /** Writes a checkpoint of `state` (the model and optimizer are the caller's); returns where. */
  saveCheckpoint?: (state: TrainingState) => Promise<string>;
  /** Whether a checkpoint is due now (the caller's policy: every N steps, every M minutes). */
  checkpointDue?: (position: TrainingPosition) => boolean;
  /** Aborting finishes the current step, writes a checkpoint and throws TrainingInterrupted. */
  signal?: AbortSignal;
  /** Where progress goes (a bar or periodic lines). */
  progress?: LoopProgress;
  /** Where the book's lines go (evaluations, samples, checkpoints). */
  log?: (line: string) => void;
}

/** Thrown when the run was interrupted; a checkpoint was written first when one could be. */
export class TrainingInterrupted extends Error {
  /** "AbortError", as `AbortSignal.throwIfAborted` names its errors. */
  override name = "AbortError";
  /** `step` steps were done; `checkpoint` is where they were saved, if anywhere. */
  constructor(
    /** Steps completed. */
    readonly step: number,
    /** Where the checkpoint is, if one was written. */
    readonly checkpoint: string | undefined,
  ) {
    super(
      checkpoint
        ? `interrupted after step ${step}: checkpoint saved in ${checkpoint}; run again to resume`
        : `interrupted after step ${step} (no checkpoint: nothing to resume from)`,
    );
  }
}

/** Thrown when a loss is NaN or infinite; the state that produced it is never checkpointed. */
export class NonFiniteLossError extends Error {
  /** The class name, for error reports. */
  override name = "NonFiniteLossError";
  /** Which loss: training, validation, ... */
  readonly what: string;
  /** The loss value (NaN or ±Infinity). */
  readonly loss: number;
  /** The step it appeared at. */
  readonly step: number;

  /** `what` loss was `loss` at `step`, with learning rate `lr` (named in the advice). */
  constructor(details: { what: string; loss: number; step: number; lr: number }) {
    const { what, loss, step, lr } = details;
    super(
      `the ${what} loss is ${loss} at step ${step}: training stopped, this state was not ` +
        `saved (the last checkpoint, if any, is kept). Usually the learning rate is too high ` +
        `(lr ${lr}: try a smaller one, warmup or max_grad_norm) or the data is broken.`,
    );
    this.what = what;
    this.loss = loss;
    this.step = step;
  }
}

/** Lets timers and signal handlers run (a training step never awaits anything that would). */

/** `batches`, handing control to the event loop before each one. */
async function* yielding<B>(batches: Iterable<B>): AsyncGenerator<B> {
  for (const batch of batches) {
    await nextTurn();
    yield batch;
  }
}

/** Trains `model` for `epochs` epochs and returns the final state. */
export async function trainModel<B = Batch>(
  options: TrainLoopOptions<B>,
): Promise<TrainingState> {
  const { model, optimizer, train, val, epochs, evalFreq, evalIter, signal } = options;
  const objective = options.objective ??
    (crossEntropyObjective as unknown as TrainingObjective<B>);
  const log = options.log ?? (() => {});
  const stepsPerEpoch = train.numBatches;
  const totalSteps = stepsPerEpoch * epochs;
  const state: TrainingState = options.resume ?? {
    position: { epoch: 0, batch: 0, step: 0, tokensSeen: 0 },
    history: [],
    samples: [],
    trainSeconds: 0,
  };
  const position = state.position;
  const checkFinite = (what: string, loss: number, step: number) => {
    if (!Number.isFinite(loss)) {
      throw new NonFiniteLossError({ what, loss, step, lr: optimizer.lr });
    }
  };

  if (!options.resume && options.initialEval) {
    const n = options.initialEvalIter;
    const train_loss = (await objective.evaluate(model, yielding(train.batches(0)), n)).loss;
    const val_loss = (await objective.evaluate(model, yielding(val.batches(0)), n)).loss;
    checkFinite("untrained training", train_loss, 0);
    checkFinite("untrained validation", val_loss, 0);
    state.initial = { train_loss, val_loss };
    log(
      `${n === undefined ? "untrained" : "initial"} loss: train ${train_loss.toFixed(3)}, val ${
        val_loss.toFixed(3)
      }`,
    );
  }

  // Where the last checkpoint went, and the step it holds.
  let lastCheckpoint: string | undefined;
  let savedAtStep = -1;
  const checkpoint = async () => {
    if (!options.saveCheckpoint) return;
    lastCheckpoint = await options.saveCheckpoint(state);
    savedAtStep = position.step;
    log(`checkpoint saved at step ${position.step}`);
  };
  const stopIfAborted = async () => {
    await nextTurn();
    if (!signal?.aborted) return;
    if (savedAtStep !== position.step) await checkpoint();
    throw new TrainingInterrupted(position.step, lastCheckpoint);
  };
  const due = () => options.checkpointDue?.(position) ?? false;

  options.progress?.start("training", totalSteps, "steps", position.step);
  options.progress?.update(position.step);
  while (position.epoch < epochs) {
    for (const batch of train.batches(position.epoch, position.batch)) {
      await stopIfAborted();
      const t0 = performance.now();
      options.setTraining?.(true);
      let loss: number;
      try {
        ({ loss } = await objective.step(model, optimizer, batch, {
          maxGradNorm: options.maxGradNorm,
          lr: options.lrAt?.(position.step, totalSteps),
        }));
      } finally {
        options.setTraining?.(false);
      }
      checkFinite("training", loss, position.step);
      state.trainSeconds += (performance.now() - t0) / 1000;
      position.tokensSeen += objective.tokens(batch);
      position.step += 1;
      position.batch += 1;
      // The book evaluates at global_step % eval_freq == 0 with global_step counted from 0.
      if ((position.step - 1) % evalFreq === 0) {
        const trainMeasures = await objective.evaluate(
          model,
          yielding(train.batches(position.epoch)),
          evalIter,
        );
        const valMeasures = await objective.evaluate(model, yielding(val.batches(0)), evalIter);
        const { loss: trainLoss, ...trainOthers } = trainMeasures;
        const { loss: valLoss, ...valOthers } = valMeasures;
        checkFinite("training (evaluation)", trainLoss, position.step - 1);
        checkFinite("validation", valLoss, position.step - 1);
        state.history.push({
          step: position.step - 1,
          epoch: position.epoch + position.batch / stepsPerEpoch,
          tokens_seen: position.tokensSeen,
          train_loss: trainLoss,
          val_loss: valLoss,
          ...prefixed("train_", trainOthers),
          ...prefixed("val_", valOthers),
        });
        const others = (objective.logged ?? []).map((name) => {
          const label = name.replaceAll("_", " ");
          return `, Train ${label} ${trainMeasures[name]?.toFixed(3)}, Val ${label} ${
            valMeasures[name]?.toFixed(3)
          }`;
        });
        log(
          `Ep ${position.epoch + 1} (Step ${String(position.step - 1).padStart(6, "0")}): ` +
            `Train loss ${trainLoss.toFixed(3)}, Val loss ${valLoss.toFixed(3)}${others.join("")}`,
        );
      }
      options.progress?.update(position.step, {
        epoch: position.epoch + 1,
        loss,
        "tok/s": Math.round(position.tokensSeen / Math.max(state.trainSeconds, 1e-9)),
      });
      // An epoch's last step is checkpointed after its sample, below.
      if (position.batch < stepsPerEpoch && due()) await checkpoint();
    }
    if (options.sample) {
      const text = await options.sample(model);
      state.samples.push({ epoch: position.epoch + 1, step: position.step, text });
      log(`sample after epoch ${position.epoch + 1}: ${text.replace(/\n/g, " ")}`);
    }
    position.epoch += 1;
    position.batch = 0;
    if (position.epoch < epochs) {
      await stopIfAborted();
      if (due()) await checkpoint();
    }
  }
  options.progress?.finish();
  return state;
}

/** `measures` with each name prefixed (history rows are flat: `train_reward_margin`, ...). */
function prefixed(prefix: string, measures: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(measures).map(([k, v]) => [prefix + k, v]));
}
