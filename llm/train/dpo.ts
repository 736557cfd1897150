/**
 * Direct Preference Optimization (Rafailov et al. 2023; the book's ch07 bonus notebook
 * `dpo-from-scratch.ipynb`): train a policy to raise the likelihood of the chosen response over
 * the rejected one, relative to a frozen reference model (the starting model).
 *
 * - `computeLogprobs`: the book's `compute_logprobs`, the mean log-probability of each row's
 *   masked (response) tokens, each token predicted from the ones before it;
 * - `computeDpoLoss`: the book's `compute_dpo_loss`, −log σ(β · ((π_c − π_r) − (ref_c − ref_r)))
 *   averaged over the batch, and the rewards π − ref (without β, as the notebook tracks them);
 * - `dpoObjective`: one step and one evaluation for the training loop (llm/train/loop.ts).
 */
import * as tf from "@tensorflow/tfjs";
import type { PreferenceBatch } from "../data/preferences.ts";
import type { GPTModel } from "../model/gpt.ts";
import { ops } from "../model/ops.ts";
import { type AdamW, clipGradientsByGlobalNorm } from "./adamw.ts";
import type { EvalMeasures, TrainingObjective } from "./loop.ts";
import { IGNORE_INDEX } from "./loss.ts";
import type { TrainStepOptions } from "./trainer.ts";

/** The book's β: how far the policy may move from the reference (0.1 to 0.5 typical). */
export const DEFAULT_DPO_BETA = 0.1;

/**
 * The book's `compute_logprobs(logits, labels, selection_mask)`: for logits [rows, tokens,
 * vocab] of the sequences `labels` [rows, tokens] (row-major), the mean over t of
 * log softmax(logits[:, t])[labels[:, t + 1]] where `mask[:, t + 1]` is set: [rows]. A row with no
 * masked token gives NaN (the book's 0/0).
 *
 * Each row is the negative of a cross-entropy whose ignored targets are the unmasked positions,
 * so the model's cross-entropy op (fused on the cpu backend, with its hand-written gradient)
 * does the work without a [rows, tokens, vocab] log-softmax tensor.
 */
// deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
export function computeLogprobs(
  logits: tf.Tensor3D,
  labels: Int32Array,
  mask: Uint8Array,
): tf.Tensor1D {
  const [rows, tokens] = logits.shape;
  if (labels.length !== rows * tokens || mask.length !== rows * tokens) {
    throw new Error(
      `computeLogprobs: logits [${logits.shape}] need ${rows * tokens} labels and mask ` +
        `entries, got ${labels.length} and ${mask.length}`,
    );
  }
  // Position t predicts token t + 1: the last position predicts nothing.
  const targets = new Int32Array(rows * tokens).fill(IGNORE_INDEX);
  for (let r = 0; r < rows; r++) {
    for (let t = 0; t + 1 < tokens; t++) {
      const next = r * tokens + t + 1;
      if (mask[next]) targets[r * tokens + t] = labels[next];
    }
  }
  return tf.tidy(() => {
    const perRow = tf.unstack(logits).map((rowLogits, r) => {
      const rowTargets = tf.tensor1d(targets.subarray(r * tokens, (r + 1) * tokens), "int32");
      return ops().crossEntropy(rowLogits as tf.Tensor2D, rowTargets, IGNORE_INDEX);
    });
    return tf.neg(tf.stack(perRow)) as tf.Tensor1D;
  });
}

/** What {@link computeDpoLoss} returns: scalars. */
export interface DpoLoss {
  /** Mean of −log σ(β · logits) over the batch. */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  loss: tf.Scalar;
  /** Mean of π_chosen − ref_chosen. */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  chosenRewards: tf.Scalar;
  /** Mean of π_rejected − ref_rejected. */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  rejectedRewards: tf.Scalar;
}

/**
 * The book's `compute_dpo_loss` (Eq. 7 of the DPO paper) on per-row log-probabilities [rows]
 * of the policy and the reference for the chosen and the rejected responses.
 */
// deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
export function computeDpoLoss(
  policyChosen: tf.Tensor1D,
  policyRejected: tf.Tensor1D,
  referenceChosen: tf.Tensor1D,
  referenceRejected: tf.Tensor1D,
  beta: number = DEFAULT_DPO_BETA,
): DpoLoss {
  return tf.tidy(() => {
    const policyLogratios = tf.sub(policyChosen, policyRejected);
    const referenceLogratios = tf.sub(referenceChosen, referenceRejected);
    const logits = tf.sub(policyLogratios, referenceLogratios);
    // −log σ(z) = softplus(−z). (tfjs's logSigmoid gradient reads its input from a closure,
    // which a tidy scope has freed by the time the backward pass runs.)
    const losses = tf.softplus(tf.neg(tf.mul(logits, beta)));
    return {
      loss: tf.mean(losses) as tf.Scalar,
      chosenRewards: tf.mean(tf.sub(policyChosen, referenceChosen)) as tf.Scalar,
      rejectedRewards: tf.mean(tf.sub(policyRejected, referenceRejected)) as tf.Scalar,
    };
  });
}

/** Chosen rows then rejected rows, [2 · batchSize, seqLen]: one forward pass for both. */
function stacked(batch: PreferenceBatch): { ids: Int32Array; mask: Uint8Array } {
  const ids = new Int32Array(2 * batch.chosen.length);
  ids.set(batch.chosen);
  ids.set(batch.rejected, batch.chosen.length);
  const mask = new Uint8Array(ids.length);
  mask.set(batch.chosenMask);
  mask.set(batch.rejectedMask, batch.chosen.length);
  return { ids, mask };
}

/**
 * Log-probabilities [2 · batchSize] of the chosen rows then the rejected rows under `model`:
 * both sequences go through one forward pass (rows do not interact, so this is the book's two
 * calls batched).
 */
// deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
export function sequenceLogprobs(
  model: GPTModel,
  batch: PreferenceBatch,
  options: { training?: boolean } = {},
): tf.Tensor1D {
  const { ids, mask } = stacked(batch);
  return tf.tidy(() => {
    const input = tf.tensor2d(ids, [2 * batch.batchSize, batch.seqLen], "int32");
    const logits = model.forward(input, { training: options.training ?? false });
    return computeLogprobs(logits, ids, mask);
  });
}

/** The reference model's log-probabilities of a batch (no gradients): [chosen, rejected]. */
export async function referenceLogprobs(
  reference: GPTModel,
  batch: PreferenceBatch,
): Promise<{ chosen: Float32Array; rejected: Float32Array }> {
  const both = sequenceLogprobs(reference, batch);
  const values = await both.data() as Float32Array;
  both.dispose();
  const n = batch.batchSize;
  return { chosen: values.slice(0, n), rejected: values.slice(n, 2 * n) };
}

/** The book's `compute_dpo_loss_batch`, given the reference's log-probabilities. */
// deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
export function dpoBatchLoss(
  policy: GPTModel,
  batch: PreferenceBatch,
  reference: { chosen: Float32Array; rejected: Float32Array },
  options: { beta?: number; training?: boolean } = {},
): DpoLoss {
  return tf.tidy((): tf.TensorContainerObject => {
    const both = sequenceLogprobs(policy, batch, { training: options.training });
    const n = batch.batchSize;
    return {
      ...computeDpoLoss(
        tf.slice(both, 0, n),
        tf.slice(both, n, n),
        tf.tensor1d(reference.chosen),
        tf.tensor1d(reference.rejected),
        options.beta ?? DEFAULT_DPO_BETA,
      ),
    };
  }) as unknown as DpoLoss;
}

/** The loss and rewards of one DPO step, as numbers. */
export interface DpoStepResult {
  /** The batch's DPO loss before the update. */
  loss: number;
  /** Its mean chosen reward. */
  chosenReward: number;
  /** Its mean rejected reward. */
  rejectedReward: number;
}

/**
 * Loss, rewards and the gradients of the policy's trainable parameters on one batch, keyed by
 * state_dict name; the reference's log-probabilities are computed first, outside the gradient.
 * The caller disposes the gradients.
 */
// deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
export async function dpoGradients(
  policy: GPTModel,
  reference: GPTModel,
  batch: PreferenceBatch,
  options: { beta?: number; training?: boolean } = {},
): Promise<DpoStepResult & { grads: Map<string, tf.Tensor> }> {
  const ref = await referenceLogprobs(reference, batch);
  const params = policy.trainableParameters();
  if (params.length === 0) throw new Error("dpo: the policy has no trainable parameters");
  let rewards: tf.Scalar[] = [];
  const { value, grads } = tf.variableGrads(() => {
    const { loss, chosenRewards, rejectedRewards } = dpoBatchLoss(policy, batch, ref, {
      beta: options.beta,
      training: options.training ?? true,
    });
    rewards = [tf.keep(chosenRewards), tf.keep(rejectedRewards)];
    return loss;
  }, params.map(([, variable]) => variable));
  const byName = new Map<string, tf.Tensor>();
  for (const [name, variable] of params) {
    const grad = grads[variable.name];
    if (grad) byName.set(name, grad);
  }
  const [loss, chosenReward, rejectedReward] = await Promise.all(
    [value, ...rewards].map(async (t) => (await t.data())[0]),
  );
  tf.dispose([value, ...rewards]);
  return { loss, chosenReward, rejectedReward, grads: byName };
}

/** One DPO step with dropout on: reference and policy forward, backward, (clip), AdamW update. */
export async function dpoTrainStep(
  policy: GPTModel,
  reference: GPTModel,
  optimizer: AdamW,
  batch: PreferenceBatch,
  options: TrainStepOptions & { beta?: number } = {},
): Promise<DpoStepResult> {
  const { grads, ...result } = await dpoGradients(policy, reference, batch, { beta: options.beta });
  try {
    if (options.maxGradNorm !== undefined) {
      await clipGradientsByGlobalNorm(grads, options.maxGradNorm);
    }
    if (options.lr !== undefined) optimizer.lr = options.lr;
    await optimizer.applyGradients(grads);
    return result;
  } finally {
    for (const grad of grads.values()) grad.dispose();
  }
}

/**
 * The book's `compute_dpo_loss_loader`: mean loss, chosen and rejected rewards over the first
 * `numBatches` batches (all when omitted), without dropout, and the reward margin (chosen −
 * rejected); a loss of NaN for no batches.
 */
export async function dpoLossLoader(
  policy: GPTModel,
  reference: GPTModel,
  batches: Iterable<PreferenceBatch> | AsyncIterable<PreferenceBatch>,
  numBatches?: number,
  beta: number = DEFAULT_DPO_BETA,
): Promise<EvalMeasures> {
  let loss = 0, chosen = 0, rejected = 0, counted = 0;
  if (numBatches === undefined || numBatches > 0) {
    for await (const batch of batches) {
      if (numBatches !== undefined && counted >= numBatches) break;
      const ref = await referenceLogprobs(reference, batch);
      const result = dpoBatchLoss(policy, batch, ref, { beta });
      const [l, c, r] = await Promise.all(
        [result.loss, result.chosenRewards, result.rejectedRewards].map(async (t) =>
          (await t.data())[0]
        ),
      );
      tf.dispose([result.loss, result.chosenRewards, result.rejectedRewards]);
      loss += l;
      chosen += c;
      rejected += r;
      counted += 1;
    }
  }
  if (counted === 0) {
    return { loss: NaN, chosen_reward: NaN, rejected_reward: NaN, reward_margin: NaN };
  }
  return {
    loss: loss / counted,
    chosen_reward: chosen / counted,
    rejected_reward: rejected / counted,
    reward_margin: (chosen - rejected) / counted,
  };
}

/**
 * DPO for the training loop: each step trains the policy (the loop's model) against the frozen
 * `reference`; each evaluation measures the loss, the chosen and rejected rewards and their
 * margin (history columns `train_reward_margin`, `val_chosen_reward`, ...).
 */
export function dpoObjective(
  reference: GPTModel,
  beta: number = DEFAULT_DPO_BETA,
): TrainingObjective<PreferenceBatch> {
  return {
    step: (policy, optimizer, batch, options) =>
      dpoTrainStep(policy, reference, optimizer, batch, { ...options, beta }),
    evaluate: (policy, batches, numBatches) =>
      dpoLossLoader(policy, reference, batches, numBatches, beta),
    // The book: tokens_seen += batch["chosen"].numel().
    tokens: (batch) => batch.chosen.length,
    logged: ["reward_margin"],
  };
}
