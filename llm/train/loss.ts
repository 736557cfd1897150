/**
 * Cross-entropy over the vocabulary with PyTorch's `ignore_index=-100`, as the book's
 * `torch.nn.functional.cross_entropy(logits.flatten(0, 1), target_batch.flatten())`.
 */
import * as tf from "@tensorflow/tfjs";
import { ops } from "../model/ops.ts";

/** Targets equal to this are skipped (padding after the first end-of-text in finetuning). */
export const IGNORE_INDEX = -100;

/**
 * logits [..., vocab], targets int32 [...] (same leading shape) → scalar mean cross-entropy
 * over targets that are not `IGNORE_INDEX`.
 */
// deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
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
    // Mean NLL over kept rows (formula and hand-written gradient: `stockOps.crossEntropy`).
    return ops().crossEntropy(rows, flatTargets, IGNORE_INDEX);
  });
}
