import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  broadcastShape,
  registerFastKernels,
  unregisterFastKernels,
} from "../../../llm/engine/cpu_fast_kernels.ts";
import { replacedCpuKernels } from "../../../llm/engine/kernel_registry.ts";
import { randn, relativeError, withStockKernels } from "./compare.ts";

await tf.setBackend("cpu");
const install = () => registerFastKernels();

/** Run `op` with our kernels and with stock ones; shapes, dtypes and values must agree. */
function compare(where: string, op: () => tf.Tensor, exact = false): void {
  install();
  tf.tidy(() => {
    const ours = op();
    const stock = withStockKernels(install, op);
    assert.deepEqual(ours.shape, stock.shape, `${where}: shape`);
    assert.equal(ours.dtype, stock.dtype, `${where}: dtype`);
    const [o, s] = [ours.dataSync(), stock.dataSync()];
    if (exact) assert.deepEqual(Array.from(o), Array.from(s), where);
    const err = relativeError(o, s);
    assert.ok(err <= 1e-5, `${where}: relative error ${err}`);
  });
}

const BROADCAST_PAIRS: [number[], number[]][] = [
  [[4, 5, 6], [4, 5, 6]],
  [[4, 5, 6], [6]], // bias add
  [[4, 5, 6], [4, 5, 1]], // x - mean(x, -1, keepDims)
  [[3, 50], [3, 1]],
  [[4, 1, 6], [1, 5, 1]], // both sides broadcast
  [[], [3, 4]],
  [[3, 4], []],
  [[2, 3, 4, 5], [4, 5]], // causal mask over [B, H, T, T]
  [[2, 1, 4, 1], [3, 1, 5]],
  [[3, 1], [1, 4]],
  [[1], [1]],
  [[0, 3], [3]],
];
const BINARY_OPS: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor][] = [
  ["add", tf.add],
  ["sub", tf.sub],
  ["mul", tf.mul],
  ["div", tf.div],
  ["maximum", tf.maximum],
  ["minimum", tf.minimum],
  ["squaredDifference", tf.squaredDifference],
  ["pow", (a, b) => tf.pow(tf.abs(a), b)], // non-negative base: no NaNs to compare
];

Deno.test("binary ops match stock bit for bit under every broadcast pattern", () => {
  for (const [name, op] of BINARY_OPS) {
    for (const [aShape, bShape] of BROADCAST_PAIRS) {
      for (const [x, y] of [[aShape, bShape], [bShape, aShape]]) {
        compare(`${name} ${JSON.stringify(x)} ${JSON.stringify(y)}`, () => {
          const a = randn(x, 1);
          const b = randn(y, 2);
          return op(a, b);
        }, true);
      }
    }
  }
});

Deno.test("incompatible broadcast shapes still raise tfjs's error", () => {
  install();
  assert.throws(() => tf.add(tf.ones([2, 3]), tf.ones([4, 3])), /broadcast/i);
  assert.equal(broadcastShape([2, 3], [4, 3]), undefined);
  assert.deepEqual(broadcastShape([2, 1, 4], [3, 1]), [2, 3, 4]);
});

Deno.test("int32 arithmetic is left to the stock kernels and stays int32", () => {
  compare("int32 add", () => tf.add(tf.tensor1d([1, 2, 3], "int32"), tf.scalar(4, "int32")));
});

Deno.test("unary exp, log, tanh, sqrt, floor, logicalNot match stock", () => {
  const shape = [3, 7, 11];
  compare("exp", () => tf.exp(randn(shape, 3)), true);
  compare("log", () => tf.log(tf.abs(randn(shape, 4))), true);
  compare("tanh", () => tf.tanh(randn(shape, 5)), true);
  compare("sqrt", () => tf.sqrt(tf.abs(randn(shape, 6))), true);
  compare("floor", () => tf.floor(tf.mul(randn(shape, 7), 3)), true);
  compare("logicalNot", () => tf.logicalNot(tf.greater(randn(shape, 8), 0)), true);
});

Deno.test("x^2 and x^3 by multiplication match stock pow; other exponents use pow", () => {
  for (const exponent of [2, 3, 0.5, -1, 4]) {
    compare(`pow ${exponent}`, () => tf.pow(tf.add(tf.abs(randn([5, 300], 9)), 0.1), exponent));
  }
  compare("pow 3 of negatives", () => tf.pow(randn([5, 300], 10), 3));
});

Deno.test("softmax over the last axis matches stock, masked entries included", () => {
  for (const shape of [[7], [3, 5], [2, 3, 4, 50]]) {
    compare(`softmax ${shape}`, () => tf.softmax(tf.mul(randn(shape, 7), 5)), true);
  }
  compare("masked softmax", () => {
    const t = 16;
    const mask = tf.linalg.bandPart(tf.ones([t, t]), -1, 0).equal(0);
    const scores = randn([2, 3, t, t], 8);
    return tf.softmax(tf.where(mask, tf.fill([2, 3, t, t], -Infinity), scores));
  }, true);
});

Deno.test("transpose matches stock for every perm tried, float32, int32 and bool", () => {
  const cases: [number[], number[]][] = [
    [[5, 7], [1, 0]],
    [[2, 3, 4], [0, 2, 1]],
    [[2, 3, 4], [2, 0, 1]],
    [[2, 5, 3, 4], [0, 2, 1, 3]], // attention heads
    [[2, 5, 3, 4], [3, 2, 1, 0]],
    [[2, 5, 3, 4], [0, 1, 2, 3]],
    [[4, 1, 3], [1, 2, 0]],
  ];
  for (const [shape, perm] of cases) {
    compare(`transpose f32 ${shape} ${perm}`, () => tf.transpose(randn(shape, 9), perm), true);
    compare(
      `transpose int32 ${shape} ${perm}`,
      () => tf.transpose(tf.cast(tf.mul(randn(shape, 10), 100), "int32"), perm),
      true,
    );
    compare(
      `transpose bool ${shape} ${perm}`,
      () => tf.transpose(tf.greater(randn(shape, 11), 0), perm),
      true,
    );
  }
});

Deno.test("tile and broadcastTo match stock", () => {
  const cases: [number[], number[]][] = [
    [[3], [4]],
    [[2, 3], [1, 1]],
    [[2, 3], [3, 2]],
    [[2, 1, 4], [2, 5, 1]],
    [[1, 1, 3, 3], [2, 4, 1, 1]],
  ];
  for (const [shape, reps] of cases) {
    compare(`tile ${shape} ${reps}`, () => tf.tile(randn(shape, 12), reps), true);
    compare(
      `tile bool ${shape} ${reps}`,
      () => tf.tile(tf.greater(randn(shape, 13), 0), reps),
      true,
    );
  }
  compare("broadcastTo", () => tf.broadcastTo(randn([4, 1], 14), [2, 3, 4, 5]), true);
});

Deno.test("sum, mean and max over any axes match stock", () => {
  const shape = [3, 4, 5, 6];
  const axesList: (number | number[])[] = [-1, 3, 0, [0, 1], [2, 3], 1, [0, 2], [1, 3], [
    0,
    1,
    2,
    3,
  ]];
  for (const axis of axesList) {
    for (const keepDims of [false, true]) {
      const where = `axis=${JSON.stringify(axis)} keepDims=${keepDims}`;
      compare(`sum ${where}`, () => tf.sum(randn(shape, 15), axis, keepDims), true);
      compare(`mean ${where}`, () => tf.mean(randn(shape, 16), axis, keepDims), true);
      compare(`max ${where}`, () => tf.max(randn(shape, 17), axis, keepDims), true);
    }
  }
  compare("sum of a vector", () => tf.sum(randn([1000], 18)), true);
});

Deno.test("gradients of a small attention + layer norm + GELU block match stock", () => {
  const [b, t, e, h] = [2, 8, 12, 3];
  const d = e / h;
  const mask = tf.keep(tf.linalg.bandPart(tf.ones([t, t]), -1, 0).equal(0));
  const f = (x: tf.Tensor, scale: tf.Tensor, w: tf.Tensor) => {
    const mean = tf.mean(x, -1, true);
    const centered = tf.sub(x, mean);
    const norm = tf.div(centered, tf.sqrt(tf.add(tf.mean(tf.square(centered), -1, true), 1e-5)));
    const y = tf.mul(norm, scale);
    const q = tf.transpose(tf.reshape(tf.matMul(tf.reshape(y, [b * t, e]), w), [b, t, h, d]), [
      0,
      2,
      1,
      3,
    ]);
    const scores = tf.where(mask, tf.fill([b, h, t, t], -Infinity), tf.matMul(q, q, false, true));
    const attn = tf.softmax(tf.div(scores, Math.sqrt(d)));
    const ctx = tf.transpose(tf.matMul(attn, q), [0, 2, 1, 3]);
    const gelu = tf.mul(
      tf.mul(0.5, ctx),
      tf.add(1, tf.tanh(tf.mul(0.79788456, tf.add(ctx, tf.mul(0.044715, tf.pow(ctx, 3)))))),
    );
    return tf.sum(tf.mul(gelu, tf.reshape(tf.range(0, b * t * e), [b, t, h, d])));
  };
  install();
  tf.tidy(() => {
    const args = [randn([b, t, e], 19), tf.add(1, randn([e], 20)), randn([e, e], 21)];
    const ours = tf.grads(f)(args);
    const stock = withStockKernels(install, () => tf.grads(f)(args));
    for (let i = 0; i < args.length; i++) {
      const err = relativeError(ours[i].dataSync(), stock[i].dataSync());
      assert.ok(err <= 1e-5, `gradient ${i}: relative error ${err}`);
    }
  });
  mask.dispose();
});

Deno.test("unregisterFastKernels puts every stock kernel back", () => {
  install();
  assert.ok(replacedCpuKernels().includes("Softmax"));
  unregisterFastKernels();
  for (const name of ["Add", "Softmax", "Transpose", "Sum", "Max", "Tile"]) {
    assert.ok(!replacedCpuKernels().includes(name), name);
  }
});
