import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { crossEntropy, IGNORE_INDEX } from "../../../llm/train/loss.ts";
import { useCpuBackend } from "../model/tf_setup.ts";

await useCpuBackend();

/** Cross-entropy from tfjs's stock ops (log-softmax, one-hot, their stock gradients). */
function referenceCrossEntropy(logits: tf.Tensor, targets: number[]): tf.Scalar {
  const vocab = logits.shape[logits.rank - 1];
  const flat = tf.reshape(logits, [-1, vocab]);
  const kept = targets.map((t) => (t === IGNORE_INDEX ? 0 : 1));
  const oneHot = tf.cast(tf.oneHot(targets.map((t) => Math.max(t, 0)), vocab), "float32");
  const picked = tf.sum(tf.mul(tf.logSoftmax(flat), oneHot), 1);
  const count = kept.reduce((a: number, b) => a + b, 0);
  return tf.div(tf.neg(tf.sum(tf.mul(picked, tf.tensor1d(kept)))), count) as tf.Scalar;
}

Deno.test("cross-entropy and its gradient match tfjs's stock log-softmax, ignoring -100", async () => {
  const logits = tf.mul(tf.randomNormal([2, 5, 13], 0, 1, "float32", 4), 3);
  const targets = [[1, 12, -100, 0, 7], [-100, -100, 5, 5, 2]];
  const targetTensor = tf.tensor2d(targets, undefined, "int32");
  const ours = tf.valueAndGrad((x: tf.Tensor) => crossEntropy(x, targetTensor))(logits);
  const stock = tf.valueAndGrad((x: tf.Tensor) => referenceCrossEntropy(x, targets.flat()))(logits);
  const [ov, sv] = [(await ours.value.data())[0], (await stock.value.data())[0]];
  assert.ok(Math.abs(ov - sv) / sv < 1e-6, `loss ${ov} vs ${sv}`);
  const [og, sg] = [await ours.grad.data(), await stock.grad.data()];
  for (let i = 0; i < sg.length; i++) {
    assert.ok(Math.abs(og[i] - sg[i]) < 1e-6, `grad ${i}: ${og[i]} vs ${sg[i]}`);
  }
  // Ignored positions get no gradient at all.
  const row = 2 * 13; // batch 0, token 2
  assert.ok(og.subarray(row, row + 13).every((g) => g === 0));
  tf.dispose([logits, targetTensor, ours.value, ours.grad, stock.value, stock.grad]);
});

Deno.test("uniform logits over the GPT-2 vocabulary give ln(50257)", async () => {
  const logits = tf.zeros([1, 3, 50257]);
  const targets = tf.tensor2d([[0, 50256, 1234]], undefined, "int32");
  const loss = crossEntropy(logits, targets);
  assert.ok(Math.abs((await loss.data())[0] - Math.log(50257)) < 1e-5);
  tf.dispose([logits, targets, loss]);
});

Deno.test("cross-entropy is stable for huge logits and NaN when every target is ignored", async () => {
  const logits = tf.tensor3d([[[1000, -1000, 0], [0, 0, 1e4]]]);
  const targets = tf.tensor2d([[0, 1]], undefined, "int32");
  const loss = crossEntropy(logits, targets);
  // Row 0: log(1 + e^-1000 + e^-2000... ) ≈ 0 for target 0; row 1: 1e4 for target 1.
  assert.ok(Math.abs((await loss.data())[0] - 5000) < 1e-2);
  const ignored = tf.tensor2d([[IGNORE_INDEX, IGNORE_INDEX]], undefined, "int32");
  const nan = crossEntropy(logits, ignored);
  assert.ok(Number.isNaN((await nan.data())[0]), "PyTorch gives nan (0/0)");
  assert.throws(
    () => crossEntropy(logits, tf.tensor2d([[0, 1, 2]], undefined, "int32")),
    /targets have shape \[1,3\], expected \[1,2\]/,
  );
  assert.throws(() => crossEntropy(logits, tf.tensor2d([[0, 1]])), /int32/);
  tf.dispose([logits, targets, loss, ignored, nan]);
});
