/**
 * The model's non-matmul ops, in one table: layer norm, GELU, causal softmax, dropout and
 * cross-entropy. The layers call `ops()` and never ask which engine runs them.
 *
 * Two tables exist. `stockOps` is the book's formulas in plain tfjs ops: the readable reference,
 * and what every backend can run. `fusedOps` computes the same arithmetic as one hand-written
 * kernel each way (llm/engine/fused_ops.ts), registered on the tfjs cpu backend only. Which
 * one runs is decided by what `initEngine` (or a test) registered: `ops()` gives the fused table
 * exactly while the active backend is cpu and the fused kernels are registered there, so
 * switching backends or (un)registering the kernels takes effect on the next call, with no
 * table to keep in sync.
 */
import * as tf from "@tensorflow/tfjs";
import {
  fusedCausalSoftmax,
  fusedCrossEntropy,
  fusedDropout,
  fusedGelu,
  fusedLayerNorm,
  fusedOpsActive,
} from "../engine/fused_ops.ts";

/** The ops a forward (and backward) pass of the model needs besides matmuls and reshapes. */
export interface ModelOps {
  /** Layer norm over the last axis: scale·(x − mean)/√(var + eps) + shift, biased variance. */
  layerNorm(x: tf.Tensor, scale: tf.Tensor, shift: tf.Tensor, eps: number): tf.Tensor;
  /** GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
  gelu(x: tf.Tensor): tf.Tensor;
  /**
   * softmax((scores + causal mask) / divisor) over the last axis of [..., queries, keys]; query i
   * sits at absolute position offset + i and sees keys 0..offset+i.
   */
  causalSoftmax(scores: tf.Tensor, divisor: number, offset: number): tf.Tensor;
  /**
   * Inverted dropout: zero each element with probability `rate`, scale the rest by 1/(1 − rate).
   * The mask is a function of `seed`; the two tables draw different masks from the same seed.
   */
  dropout(x: tf.Tensor, rate: number, seed: number): tf.Tensor;
  /**
   * Mean cross-entropy of logits [rows, vocab] against int32 targets [rows], skipping rows whose
   * target is `ignoreIndex`; NaN when every row is skipped (PyTorch's 0/0).
   */
  crossEntropy(logits: tf.Tensor2D, targets: tf.Tensor1D, ignoreIndex: number): tf.Scalar;
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/**
 * Additive causal mask [queries, keys]: 0 where query i (at absolute position offset + i) may look
 * at key j, -∞ where j lies in its future. Adding -∞ before the softmax is the book's
 * `masked_fill_(mask, -inf)`.
 */
function causalMask(numQueries: number, numKeys: number, offset: number): tf.Tensor2D {
  const mask = new Float32Array(numQueries * numKeys);
  for (let i = 0; i < numQueries; i++) {
    for (let j = offset + i + 1; j < numKeys; j++) mask[i * numKeys + j] = -Infinity;
  }
  return tf.tensor2d(mask, [numQueries, numKeys]);
}

/**
 * Cross-entropy rows with a hand-written gradient. The forward pass gathers each row's target
 * logit instead of building a one-hot [rows, vocab] matrix, and the gradient,
 * (softmax − onehot(target)) / count on kept rows, costs one dense pass over the logits rather
 * than tfjs's generic gather/log-softmax gradients.
 */
function stockCrossEntropy(
  logits: tf.Tensor2D,
  targets: tf.Tensor1D,
  ignoreIndex: number,
): tf.Scalar {
  const op = tf.customGrad(
    // customGrad's typing is variadic over (Tensor | GradSaveFunc).
    ((logits: tf.Tensor2D, targets: tf.Tensor1D, save: tf.GradSaveFunc) => {
      const [rows, vocab] = logits.shape;
      const kept = tf.notEqual(targets, ignoreIndex);
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
  return op(logits, targets);
}

/** The book's formulas in plain tfjs ops: runs on every backend, and is the reference. */
export const stockOps: ModelOps = {
  layerNorm(x, scale, shift, eps) {
    const mean = tf.mean(x, -1, true);
    const centered = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centered), -1, true); // biased, as unbiased=False
    const normalized = tf.div(centered, tf.sqrt(tf.add(variance, eps)));
    return tf.add(tf.mul(scale, normalized), shift);
  },
  gelu(x) {
    const cube = tf.mul(tf.mul(x, x), x);
    const inner = tf.mul(tf.add(x, tf.mul(cube, 0.044715)), SQRT_2_OVER_PI);
    return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
  },
  causalSoftmax(scores, divisor, offset) {
    const [numQueries, numKeys] = scores.shape.slice(-2);
    return tf.softmax(tf.div(tf.add(scores, causalMask(numQueries, numKeys, offset)), divisor));
  },
  dropout(x, rate, seed) {
    return tf.dropout(x, rate, undefined, seed);
  },
  crossEntropy: stockCrossEntropy,
};

/**
 * The same arithmetic as one cpu kernel forward and one backward per op, no mask tensor and no
 * one-hot; dropout masks come from mulberry32, so they differ from `tf.dropout`'s for a seed.
 */
export const fusedOps: ModelOps = {
  layerNorm: fusedLayerNorm,
  gelu: fusedGelu,
  causalSoftmax: fusedCausalSoftmax,
  dropout: fusedDropout,
  crossEntropy: fusedCrossEntropy,
};

/**
 * The table to call now: `fusedOps` while the cpu backend is active with the fused kernels
 * registered (as `initEngine` does unless told `fastKernels: false`), else `stockOps`.
 */
export function ops(): ModelOps {
  return fusedOpsActive() ? fusedOps : stockOps;
}
