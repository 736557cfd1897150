/**
 * The book's training helpers (ch05): `calc_loss_batch`, `calc_loss_loader`, `evaluate_model`,
 * and one optimisation step (zero_grad → loss → backward → step) as `trainStep`.
 * A data loader is any iterable (sync or async) of batches.
 */
import * as tf from "@tensorflow/tfjs";
import type { GPTModel } from "../model/gpt.ts";
import { type AdamW, clipGradientsByGlobalNorm } from "./adamw.ts";
import { crossEntropy } from "./loss.ts";
import type { Batch } from "../data/batch.ts";

/** Token ids [batch, tokens]: a tfjs int32 tensor, nested arrays, or a flat typed array + shape. */
export type TokenMatrix =
  | tf.Tensor2D
  | number[][]
  | { shape: readonly [number, number]; data: ArrayLike<number> };

/**
 * Inputs and next-token targets (-100 = ignored) given as token matrices, as an object or a
 * pair: for examples and tests. Loaders yield {@link Batch}.
 */
export type TokenBatch =
  | { inputs: TokenMatrix; targets: TokenMatrix }
  | readonly [inputs: TokenMatrix, targets: TokenMatrix];

/** What the training functions take: a loader's batch or token matrices. */
export type AnyBatch = Batch | TokenBatch;

/** A data loader: any iterable (sync or async) of batches. */
export type BatchSource = Iterable<AnyBatch> | AsyncIterable<AnyBatch>;

function isLoaderBatch(batch: AnyBatch): batch is Batch {
  return !Array.isArray(batch) && "seqLen" in batch;
}

function batchParts(batch: AnyBatch): [TokenMatrix, TokenMatrix] {
  if (isLoaderBatch(batch)) {
    const shape = [batch.batchSize, batch.seqLen] as const;
    return [{ shape, data: batch.inputs }, { shape, data: batch.targets }];
  }
  return Array.isArray(batch)
    ? [batch[0], batch[1]]
    : [(batch as { inputs: TokenMatrix }).inputs, (batch as { targets: TokenMatrix }).targets];
}

/** An int32 tensor for `ids`; a tensor passed in is returned as is (the caller owns it). */
export function toIdTensor(ids: TokenMatrix): tf.Tensor2D {
  if (ids instanceof tf.Tensor) {
    return ids.dtype === "int32" ? ids : tf.cast(ids, "int32");
  }
  if (Array.isArray(ids)) {
    const rows = ids.length;
    const cols = rows === 0 ? 0 : ids[0].length;
    if (ids.some((row) => row.length !== cols)) {
      throw new Error(
        `token batch: rows have different lengths (${ids.map((r) => r.length).join(", ")})`,
      );
    }
    return tf.tensor2d(ids.flat(), [rows, cols], "int32");
  }
  const { shape, data } = ids as { shape: readonly [number, number]; data: ArrayLike<number> };
  if (shape[0] * shape[1] !== data.length) {
    throw new Error(
      `token batch: shape [${shape}] needs ${shape[0] * shape[1]} ids, got ${data.length}`,
    );
  }
  return tf.tensor2d(Int32Array.from(data), [shape[0], shape[1]], "int32");
}

/** Disposes what `toIdTensor` created (not a tensor the caller passed in). */
function releaseIds(original: TokenMatrix, tensor: tf.Tensor): void {
  if (tensor !== original) tensor.dispose();
}

/** The book's calc_loss_batch: mean cross-entropy of the model's logits against `targets`. */
export function calcLossBatch(
  model: GPTModel,
  inputs: tf.Tensor2D,
  targets: tf.Tensor2D,
  options: { training?: boolean } = {},
): tf.Scalar {
  return tf.tidy(() =>
    crossEntropy(model.forward(inputs, { training: options.training ?? false }), targets)
  );
}

/**
 * The book's calc_loss_loader: the mean batch loss over the first `numBatches` batches (all
 * when omitted), in evaluation mode; NaN for an empty loader.
 */
export async function calcLossLoader(
  model: GPTModel,
  batches: BatchSource,
  numBatches?: number,
): Promise<number> {
  if (numBatches !== undefined && numBatches <= 0) return NaN;
  let total = 0;
  let counted = 0;
  for await (const batch of batches) {
    if (numBatches !== undefined && counted >= numBatches) break;
    const [inputIds, targetIds] = batchParts(batch);
    const inputs = toIdTensor(inputIds);
    const targets = toIdTensor(targetIds);
    const loss = calcLossBatch(model, inputs, targets);
    total += (await loss.data())[0];
    loss.dispose();
    releaseIds(inputIds, inputs);
    releaseIds(targetIds, targets);
    counted += 1;
  }
  return counted === 0 ? NaN : total / counted;
}

/** The book's evaluate_model: train and validation loss over `evalIter` batches each, no dropout. */
export async function evaluateModel(
  model: GPTModel,
  trainBatches: BatchSource,
  valBatches: BatchSource,
  evalIter: number,
): Promise<{ trainLoss: number; valLoss: number }> {
  const trainLoss = await calcLossLoader(model, trainBatches, evalIter);
  const valLoss = await calcLossLoader(model, valBatches, evalIter);
  return { trainLoss, valLoss };
}

/**
 * Loss and gradients of the trainable parameters, keyed by state_dict name (a tied head's
 * gradient is under `tok_emb.weight`). The caller disposes the gradient tensors.
 */
export function computeGradients(
  model: GPTModel,
  batch: AnyBatch,
  options: { training?: boolean } = {},
): { loss: tf.Scalar; grads: Map<string, tf.Tensor> } {
  const params = model.trainableParameters();
  if (params.length === 0) {
    throw new Error("computeGradients: the model has no trainable parameters");
  }
  const [inputIds, targetIds] = batchParts(batch);
  const inputs = toIdTensor(inputIds);
  const targets = toIdTensor(targetIds);
  try {
    const { value, grads } = tf.variableGrads(
      () => calcLossBatch(model, inputs, targets, { training: options.training ?? true }),
      params.map(([, variable]) => variable),
    );
    const byName = new Map<string, tf.Tensor>();
    for (const [name, variable] of params) {
      const grad = grads[variable.name];
      if (grad) byName.set(name, grad);
    }
    return { loss: value, grads: byName };
  } finally {
    releaseIds(inputIds, inputs);
    releaseIds(targetIds, targets);
  }
}

export interface TrainStepOptions {
  /** Clip the gradients to this global L2 norm first (the book's appendix D uses 1.0). */
  maxGradNorm?: number;
  /** Set the optimizer's learning rate for this step (from a schedule). */
  lr?: number;
}

export interface TrainStepResult {
  loss: number;
  /** Global gradient norm before clipping, when clipping was asked for. */
  gradNorm?: number;
}

/** One training step with dropout on: forward, loss, backward, (clip), AdamW update. */
export async function trainStep(
  model: GPTModel,
  optimizer: AdamW,
  batch: AnyBatch,
  options: TrainStepOptions = {},
): Promise<TrainStepResult> {
  const { loss, grads } = computeGradients(model, batch, { training: true });
  try {
    const lossValue = (await loss.data())[0];
    let gradNorm: number | undefined;
    if (options.maxGradNorm !== undefined) {
      gradNorm = await clipGradientsByGlobalNorm(grads, options.maxGradNorm);
    }
    if (options.lr !== undefined) optimizer.lr = options.lr;
    await optimizer.applyGradients(grads);
    return gradNorm === undefined ? { loss: lossValue } : { loss: lossValue, gradNorm };
  } finally {
    loss.dispose();
    for (const grad of grads.values()) grad.dispose();
  }
}
