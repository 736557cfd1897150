/**
 * Each fused cpu op against the plain-tfjs form the model uses elsewhere: values and gradients
 * of every input, on random inputs, within 1e-5 relative error.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  fusedCausalSoftmax,
  fusedCrossEntropy,
  fusedDropout,
  fusedGelu,
  fusedLayerNorm,
  fusedOpsActive,
  registerFusedKernels,
  unregisterFusedKernels,
} from "../../../llm/engine/fused_ops.ts";
import { dropoutMask, fastExp } from "../../../llm/engine/fused_math.ts";
import { randn, relativeError } from "./compare.ts";
import { fusedOps, ops, stockOps } from "../../../llm/model/ops.ts";

tf.env().set("IS_NODE", false);
await tf.setBackend("cpu");

/** f's value and the gradients of sum(f(...) · w) for a fixed random w, as plain arrays. */
function valueAndGrads(
  f: (...xs: tf.Tensor[]) => tf.Tensor,
  inputs: tf.Tensor[],
  weightSeed: number,
): Float32Array[] {
  return tf.tidy(() => {
    const value = f(...inputs);
    const w = randn(value.shape, weightSeed);
    const grads = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), w)))(inputs);
    return [value, ...grads].map((t) => t.dataSync() as Float32Array);
  });
}

function assertClose(where: string, ours: Float32Array[], plain: Float32Array[], tol = 1e-5) {
  assert.equal(ours.length, plain.length);
  ours.forEach((o, i) => {
    const err = relativeError(o, plain[i]);
    assert.ok(err <= tol, `${where}: output ${i} relative error ${err}`);
  });
}

Deno.test("fastExp: within 2e-7 relative of Math.exp over the float32 range", () => {
  let worst = 0;
  for (let v = -103; v <= 88; v += 0.00731) {
    const err = Math.abs(fastExp(v) - Math.exp(v)) / Math.exp(v);
    worst = Math.max(worst, err);
  }
  assert.ok(worst < 2e-7, `worst relative error ${worst}`);
  assert.equal(fastExp(-Infinity), fastExp(-104));
  assert.ok(fastExp(-Infinity) < 1e-44);
  assert.ok(Number.isNaN(fastExp(NaN)));
});

Deno.test("fused ops are active only once registered, and the model's ops table follows", () => {
  unregisterFusedKernels();
  assert.equal(fusedOpsActive(), false);
  assert.equal(ops(), stockOps);
  registerFusedKernels();
  assert.equal(fusedOpsActive(), true);
  assert.equal(ops(), fusedOps);
});

Deno.test("fusedLayerNorm matches the book's LayerNorm in plain tfjs, with gradients", () => {
  registerFusedKernels();
  const eps = 1e-5;
  const plain = (x: tf.Tensor, scale: tf.Tensor, shift: tf.Tensor) => {
    const mean = tf.mean(x, -1, true);
    const centered = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centered), -1, true);
    return tf.add(tf.mul(scale, tf.div(centered, tf.sqrt(tf.add(variance, eps)))), shift);
  };
  for (const shape of [[2, 7, 48], [5, 16], [1, 1, 3]]) {
    const dim = shape[shape.length - 1];
    const inputs = [
      tf.add(tf.mul(randn(shape, 1), 3), 0.5),
      tf.add(randn([dim], 2), 1),
      randn([dim], 3),
    ];
    const ours = valueAndGrads((x, s, b) => fusedLayerNorm(x, s, b, eps), inputs, 4);
    assertClose(`layerNorm [${shape}]`, ours, valueAndGrads(plain, inputs, 4));
    tf.dispose(inputs);
  }
});

Deno.test("fusedGelu matches the tanh-approximation GELU in plain tfjs, with gradients", () => {
  registerFusedKernels();
  const c = Math.sqrt(2 / Math.PI);
  const plain = (x: tf.Tensor) =>
    tf.mul(
      tf.mul(x, 0.5),
      tf.add(tf.tanh(tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), c)), 1),
    );
  const x = tf.mul(randn([3, 17, 64], 5), 4); // reaches the saturated tails too
  assertClose("gelu", valueAndGrads(fusedGelu, [x], 6), valueAndGrads(plain, [x], 6));
  x.dispose();
});

Deno.test("fusedDropout: seeded mask, inverted scaling, gradient through the same mask", () => {
  registerFusedKernels();
  const rate = 0.25;
  const x = randn([4, 32, 32], 7);
  const [y, dx] = valueAndGrads((t) => fusedDropout(t, rate, 42), [x], 8);
  const mask = dropoutMask(x.size, rate, 42);
  const maskTensor = tf.tensor(Float32Array.from(mask), x.shape);
  // The plain form with the same mask: x · mask / (1 − rate).
  const plain = (t: tf.Tensor) => tf.div(tf.mul(t, maskTensor), 1 - rate);
  assertClose("dropout", [y, dx], valueAndGrads(plain, [x], 8));
  const keptShare = mask.reduce((s, m) => s + m, 0) / mask.length;
  assert.ok(Math.abs(keptShare - (1 - rate)) < 0.03, `kept share ${keptShare}`);
  // Same seed, same mask; another seed, another mask.
  assert.deepEqual(dropoutMask(1000, rate, 42), dropoutMask(1000, rate, 42));
  assert.notDeepEqual(dropoutMask(1000, rate, 42), dropoutMask(1000, rate, 43));
  tf.dispose([x, maskTensor]);
});

Deno.test("fusedCausalSoftmax matches mask + divide + softmax in plain tfjs, with gradients", () => {
  registerFusedKernels();
  // Without and with a cache offset (queries that follow `offset` cached positions).
  for (const [queries, keys, offset] of [[9, 9, 0], [3, 8, 5], [1, 6, 5]]) {
    const mask = new Float32Array(queries * keys);
    for (let i = 0; i < queries; i++) {
      for (let j = offset + i + 1; j < keys; j++) mask[i * keys + j] = -Infinity;
    }
    const maskTensor = tf.tensor2d(mask, [queries, keys]);
    const divisor = Math.sqrt(16);
    const plain = (s: tf.Tensor) => tf.softmax(tf.div(tf.add(s, maskTensor), divisor));
    const scores = tf.mul(randn([2, 3, queries, keys], 9), 5);
    assertClose(
      `causal softmax ${queries}×${keys}+${offset}`,
      valueAndGrads((s) => fusedCausalSoftmax(s, divisor, offset), [scores], 10),
      valueAndGrads(plain, [scores], 10),
    );
    tf.dispose([maskTensor, scores]);
  }
});

Deno.test("fusedCrossEntropy matches log-softmax NLL with ignore_index -100, with gradients", () => {
  registerFusedKernels();
  const [rows, vocab] = [12, 1000];
  const logits = tf.mul(randn([rows, vocab], 11), 3);
  const targetValues = Int32Array.from({ length: rows }, (_, i) => (i * 379) % vocab);
  targetValues[3] = -100;
  targetValues[7] = -100;
  const targets = tf.tensor1d(targetValues, "int32");
  const keep = tf.tensor1d(Float32Array.from(targetValues, (t) => (t === -100 ? 0 : 1)));
  const safe = tf.tensor1d(Int32Array.from(targetValues, (t) => (t === -100 ? 0 : t)), "int32");
  const plain = (l: tf.Tensor) => {
    const picked = tf.sum(tf.mul(tf.logSoftmax(l), tf.oneHot(safe, vocab)), -1);
    return tf.div(tf.neg(tf.sum(tf.mul(picked, keep))), tf.sum(keep));
  };
  assertClose(
    "cross-entropy",
    valueAndGrads((l) => fusedCrossEntropy(l as tf.Tensor2D, targets, -100), [logits], 12),
    valueAndGrads(plain, [logits], 12),
  );
  // Every target ignored: NaN, as PyTorch's mean over no elements.
  const allIgnored = tf.fill([rows], -100, "int32") as tf.Tensor1D;
  assert.ok(Number.isNaN(fusedCrossEntropy(logits as tf.Tensor2D, allIgnored, -100).dataSync()[0]));
  // A target outside the vocabulary names the row.
  const bad = tf.tensor1d(Int32Array.from(targetValues, (t, i) => (i === 5 ? vocab : t)), "int32");
  assert.throws(() => fusedCrossEntropy(logits as tf.Tensor2D, bad, -100), /row 5/);
  tf.dispose([logits, targets, keep, safe, allIgnored, bad]);
});
