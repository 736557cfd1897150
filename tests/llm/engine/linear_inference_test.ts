/**
 * The inference linear kernel of the cpu engine: x·Wᵀ + b as one op must give exactly the values
 * of the differentiable path (reshape + fused matMul on BLAS), for any rank of x, and must step
 * aside while a gradient is recorded.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { initEngine } from "../../../llm/engine/backend.ts";
import { linearInference } from "../../../llm/engine/cpu_kernels.ts";
import { recordingGradients } from "../../../llm/engine/fused_ops.ts";
import { Linear } from "../../../llm/model/layers.ts";
import { SeededRandom } from "../../../llm/random.ts";

await initEngine({ backend: "cpu", log: () => {} });

function fused(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor | null): tf.Tensor {
  const x2d = tf.reshape(x, [-1, w.shape[1]!]) as tf.Tensor2D;
  const y = tf.fused.matMul({
    a: x2d,
    b: w as tf.Tensor2D,
    transposeB: true,
    bias: b ?? undefined,
  });
  return tf.reshape(y, [...x.shape.slice(0, -1), w.shape[0]!]);
}

Deno.test("linearInference equals the fused matMul path bit for bit, any rank, with and without bias", () => {
  const rng = new SeededRandom(3);
  const values = (n: number) => Float32Array.from({ length: n }, () => rng.next() * 2 - 1);
  const w = tf.tensor2d(values(7 * 5), [7, 5]);
  const b = tf.tensor1d(values(7));
  for (const shape of [[5], [1, 5], [3, 5], [2, 1, 5], [2, 4, 5]]) {
    const x = tf.tensor(values(shape.reduce((p, d) => p * d, 1)), shape);
    for (const bias of [b, null]) {
      const got = linearInference(x, w, bias, false);
      assert.ok(got, `applies to [${shape}]`);
      const want = fused(x, w, bias);
      assert.deepEqual(got.shape, [...shape.slice(0, -1), 7]);
      assert.deepEqual(got.dataSync(), want.dataSync(), `[${shape}] bias ${!!bias}`);
      tf.dispose([got, want]);
    }
    x.dispose();
  }
  tf.dispose([w, b]);
});

Deno.test("while a gradient is recorded the Linear layer takes the differentiable path", () => {
  const layer = new Linear(4, 3, {
    bias: true,
    init: { mode: "random", rng: new SeededRandom(1) },
  });
  const x = tf.tensor2d([[1, 2, 3, 4], [0.5, -1, 0, 2]]);
  assert.equal(recordingGradients(), false);
  assert.equal(linearInference(x, layer.weight, layer.bias, true), undefined);
  // The gradient through the layer exists (the inference kernel has none) and is x summed.
  const { grads } = tf.variableGrads(() => tf.sum(layer.apply(x)) as tf.Scalar, [layer.weight]);
  const expected = [1.5, 1, 3, 6];
  assert.deepEqual(Array.from(grads[layer.weight.name].dataSync()), [
    ...expected,
    ...expected,
    ...expected,
  ]);
  tf.dispose([x, grads[layer.weight.name]]);
});
