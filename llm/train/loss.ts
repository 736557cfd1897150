/**
 * Cross-entropy over the vocabulary with PyTorch's `ignore_index=-100`, as the book's
 * `torch.nn.functional.cross_entropy(logits.flatten(0, 1), target_batch.flatten())`.
 */
import * as tf from "@tensorflow/tfjs";
import { fusedCrossEntropy, fusedOpsActive } from "../engine/fused_ops.ts";

/** Targets equal to this are skipped (padding after the first end-of-text in finetuning). */
export const IGNORE_INDEX = -100;

/**
 * Mean negative log-likelihood over the rows whose target is not ignored; NaN when every target
 * is ignored (PyTorch's 0/0). The forward pass gathers each row's target logit instead of building
 * a one-hot [rows, vocab] matrix, and the gradient is written out by hand,
 * (softmax − onehot(target)) / count on kept rows, which costs one dense pass over the logits
 * rather than tfjs's generic gather/log-softmax gradients.
 */
const crossEntropyRows = tf.customGrad(
  // customGrad's typing is variadic over (Tensor | GradSaveFunc).
  ((logits: tf.Tensor2D, targets: tf.Tensor1D, save: tf.GradSaveFunc) => {
    const [rows, vocab] = logits.shape;
    const kept = tf.notEqual(targets, IGNORE_INDEX);
    // Ignored rows point at column 0; their weight of 0 removes them from loss and gradient.
    const safeTargets = tf.where(kept, targets, tf.zerosLike(targets));
    const positions = tf.stack([tf.range(0, rows, 1, "int32"), safeTargets], 1);
    const weights = tf.div(tf.cast(kept, "float32"), tf.sum(tf.cast(kept, "float32")));

    // log Σ exp(logits) computed stably around each row's maximum.
    const rowMax = tf.max(logits, 1, true);
    const logSumExp = tf.add(tf.log(tf.sum(tf.exp(tf.sub(logits, rowMax)), 1, true)), rowMax);
    const targetLogits = tf.gatherND(logits, positions);
    const nll = tf.sub(tf.reshape(logSumExp, [rows]), targetLogits);
    const loss = tf.sum(tf.mul(nll, weights));

    save([logits, logSumExp, weights, positions]);
    return {
      value: loss,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [savedLogits, savedLogSumExp, savedWeights, savedPositions] = saved;
        const probabilities = tf.exp(tf.sub(savedLogits, savedLogSumExp));
        const weighted = tf.mul(probabilities, tf.reshape(savedWeights, [rows, 1]));
        const targetTerm = tf.scatterND(savedPositions, savedWeights, [rows, vocab]);
        // Targets get a zero gradient (tfjs requires float32 gradients even for int inputs).
        return [tf.mul(tf.sub(weighted, targetTerm), dy), tf.zeros([rows])];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0],
) as (logits: tf.Tensor2D, targets: tf.Tensor1D) => tf.Scalar;

/**
 * logits [..., vocab], targets int32 [...] (same leading shape) → scalar mean cross-entropy
 * over targets that are not `IGNORE_INDEX`.
 */
export function crossEntropy(logits: tf.Tensor, targets: tf.Tensor): tf.Scalar {
  const vocab = logits.shape[logits.rank - 1];
  const leading = logits.shape.slice(0, -1);
  if (targets.shape.length !== leading.length || targets.shape.some((d, i) => d !== leading[i])) {
    throw new Error(
      `crossEntropy: targets have shape [${targets.shape}], expected [${leading}] to match logits [${logits.shape}]`,
    );
  }
  if (targets.dtype !== "int32") {
    throw new Error(`crossEntropy: targets must be int32, got ${targets.dtype}`);
  }
  return tf.tidy(() => {
    const rows = tf.reshape(logits, [-1, vocab]) as tf.Tensor2D;
    const flatTargets = tf.reshape(targets, [-1]) as tf.Tensor1D;
    // cpu: one softmax pass forward, one pass backward (engine/fused_ops.ts).
    if (fusedOpsActive()) return fusedCrossEntropy(rows, flatTargets, IGNORE_INDEX);
    return crossEntropyRows(rows, flatTargets);
  });
}
