/**
 * The tfjs side of packed weights: a linear layer x·Wᵀ + b and an embedding lookup whose W is
 * a `PackedMatrix` (Q8_0, fp16 or bf16), for inference.
 *
 * On the cpu backend the product reads the packed bytes directly (packed_matrix.ts: a SIMD GEMV
 * for one row, float32 tiles into sgemm for many). Other backends (webgpu, wasm) get W decoded
 * to a float32 tensor for the call and freed after it: correct, and slower than holding fp32,
 * but the model still takes its packed size between calls.
 *
 * There is no gradient: quantized models are inference-only (training keeps fp32 weights).
 */
import * as tf from "@tensorflow/tfjs";
import { blasInUse } from "./cpu_kernels.ts";
import { recordingGradients } from "./fused_ops.ts";
import type { PackedMatrix } from "./packed_matrix.ts";

function refuseGradients(what: string): void {
  if (recordingGradients()) {
    throw new Error(
      `${what}: the weights are quantized (inference only); train or fine-tune a model loaded ` +
        `without quantize`,
    );
  }
}

/** x [..., cols] · Wᵀ (+ bias) → [..., rows], W packed [rows, cols]. */
export function packedLinear(
  x: tf.Tensor,
  weight: PackedMatrix,
  bias: tf.Tensor | null,
): tf.Tensor {
  refuseGradients("Linear");
  const { rows, cols } = weight;
  if (x.shape[x.shape.length - 1] !== cols) {
    throw new Error(
      `Linear: input width ${x.shape[x.shape.length - 1]}, the weight is [${rows}, ${cols}]`,
    );
  }
  const leading = x.shape.slice(0, -1);
  if (tf.getBackend() === "cpu" && x.dtype === "float32") {
    const values = x.dataSync() as Float32Array;
    const n = values.length / cols;
    const biasValues = bias ? bias.dataSync() as Float32Array : undefined;
    const out = weight.multiply(values, n, biasValues, blasInUse());
    return tf.tensor(out, [...leading, rows], "float32");
  }
  return tf.tidy(() => {
    const w = tf.tensor2d(weight.decodeRows(0, rows), [rows, cols]);
    const x2d = tf.reshape(x, [-1, cols]) as tf.Tensor2D;
    const y = tf.matMul(x2d, w, false, true);
    return tf.reshape(bias ? tf.add(y, bias) : y, [...leading, rows]);
  });
}

/** ids int32 [...] → [..., cols]: rows of the packed table, decoded. */
export function packedLookup(table: PackedMatrix, ids: tf.Tensor): tf.Tensor {
  refuseGradients("Embedding");
  const { rows, cols } = table;
  let idValues: tf.TypedArray;
  try {
    idValues = ids.dataSync() as tf.TypedArray;
  } catch {
    // A GPU backend that cannot read the ids synchronously: the whole table for this call.
    return tf.tidy(() => tf.gather(tf.tensor2d(table.decodeRows(0, rows), [rows, cols]), ids));
  }
  const out = new Float32Array(idValues.length * cols);
  for (let i = 0; i < idValues.length; i++) {
    const id = idValues[i];
    if (!Number.isInteger(id) || id < 0 || id >= rows) {
      throw new Error(`Embedding: token id ${id} is outside the table's ${rows} rows`);
    }
    table.decodeRows(id, 1, out.subarray(i * cols, (i + 1) * cols));
  }
  return tf.tensor(out, [...ids.shape, cols], "float32");
}
