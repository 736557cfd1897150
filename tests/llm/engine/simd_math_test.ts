/**
 * The WebAssembly SIMD forward loops (llm/engine/wasm/) against the plain-JS loops of
 * fused_math.ts, which the fused-op tests already hold to plain tfjs and PyTorch: same results to
 * float32 accuracy on random inputs, on lengths that exercise the masked vector tail, and on the
 * edge cases (ignored rows, NaN, huge logits, extreme GELU inputs).
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  applyDropoutMask,
  causalSoftmaxForward,
  crossEntropyForward,
  dropoutMask,
  geluForward,
} from "../../../llm/engine/fused_math.ts";
import { fusedCrossEntropy, fusedGelu, fusedOpsUseSimd } from "../../../llm/engine/fused_ops.ts";
import { initEngine } from "../../../llm/engine/backend.ts";
import { simdKernels, simdKernelsError } from "../../../llm/engine/wasm/simd_kernels.ts";
import { simdMath } from "../../../llm/engine/wasm/simd_math.ts";

function random(size: number, seed: number, spread = 1): Float32Array {
  let state = seed >>> 0;
  return Float32Array.from({ length: size }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state / 2 ** 32 - 0.5) * 2 * spread;
  });
}

function maxRelativeError(got: Float32Array, want: Float32Array, floor: number): number {
  assert.equal(got.length, want.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const error = Math.abs(got[i] - want[i]) / Math.max(Math.abs(want[i]), floor);
    if (!(error <= worst)) worst = error; // NaN wins
  }
  return worst;
}

const TAIL_LENGTHS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 50257];

Deno.test("WebAssembly SIMD is available in this runtime and the module validates", () => {
  assert.equal(simdKernelsError(), undefined);
  assert.ok(simdKernels());
});

Deno.test("SIMD exp agrees with Math.exp to 2.5e-7 relative over [-87, 0] and is 0 below", () => {
  const k = simdKernels()!;
  const n = 10001;
  // Arguments exactly representable in float32, so both sides see the same x.
  const x = Float32Array.from({ length: n }, (_, i) => -87 * (i / (n - 1)));
  const heap = k.reserve(2 * (n + 16));
  heap.set(x, 0);
  const dst = n + 16;
  const sum = k.exports.expShiftSum(0, dst * 4, n, 1, 0);
  let expected = 0;
  let worst = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.exp(x[i]);
    expected += e;
    worst = Math.max(worst, Math.abs(heap[dst + i] - e) / e);
  }
  assert.ok(worst < 2.5e-7, `max relative error ${worst}`);
  assert.ok(Math.abs(sum - expected) / expected < 1e-7, `sum ${sum} vs ${expected}`);
  heap.set([-88, -100, -1e30, -Infinity], 0);
  assert.equal(k.exports.expShiftSum(0, dst * 4, 4, 1, 0), 0);
  assert.deepEqual([...heap.subarray(dst, dst + 4)], [0, 0, 0, 0]);
});

Deno.test("SIMD cross-entropy forward = the JS loop: loss, inverse sums, exps; any row length", () => {
  const simd = simdMath()!;
  for (const vocab of TAIL_LENGTHS) {
    const rows = 7;
    const logits = random(rows * vocab, vocab, 12);
    // Row 2 ignored; the others aim at varied targets.
    const targets = Int32Array.from({ length: rows }, (_, r) => r === 2 ? -100 : (r * 31) % vocab);
    const js = crossEntropyForward(logits, targets, vocab, -100);
    const fast = simd.crossEntropyForward(logits, targets, vocab, -100, true);
    const lossOnly = simd.crossEntropyForward(logits, targets, vocab, -100, false);
    assert.equal(fast.kept, js.kept);
    assert.ok(Math.abs(fast.loss - js.loss) <= 1e-6 * Math.abs(js.loss) + 1e-7, `vocab ${vocab}`);
    assert.equal(lossOnly.loss, fast.loss);
    assert.equal(lossOnly.exps, undefined);
    assert.ok(maxRelativeError(fast.inverseSums, js.inverseSums, 1e-30) < 1e-6);
    assert.ok(maxRelativeError(fast.exps!, js.exps, 1e-6) < 3e-6, `exps, vocab ${vocab}`);
  }
});

Deno.test("SIMD cross-entropy: huge logits stay finite, a NaN logit makes the loss NaN, bad targets are named", () => {
  const simd = simdMath()!;
  const huge = Float32Array.from([1e4, -1e4, 0, 3e4, 2, -5]);
  const { loss } = simd.crossEntropyForward(huge, Int32Array.of(3), 6, -100, false);
  assert.equal(loss, 0);
  const withNaN = Float32Array.from([1, NaN, 2, 3, 4]);
  assert.ok(Number.isNaN(simd.crossEntropyForward(withNaN, Int32Array.of(0), 5, -100, true).loss));
  assert.throws(
    () => simd.crossEntropyForward(huge, Int32Array.of(6), 6, -100, false),
    /target 6 at row 0 is outside \[0, 6\)/,
  );
  const allIgnored = simd.crossEntropyForward(huge, Int32Array.of(-100), 6, -100, false);
  assert.ok(Number.isNaN(allIgnored.loss));
});

Deno.test("SIMD causal softmax = the JS loop, with masked keys exactly 0 and rows summing to 1", () => {
  const simd = simdMath()!;
  for (
    const [queries, keys, offset] of [[5, 5, 0], [1, 9, 8], [3, 7, 2], [16, 16, 0], [6, 13, 4]]
  ) {
    const matrices = 3;
    const scores = random(matrices * queries * keys, queries * 100 + keys, 20);
    const js = causalSoftmaxForward(scores, queries, keys, offset, 8);
    const fast = simd.causalSoftmaxForward(scores, queries, keys, offset, 8);
    let worst = 0;
    for (let i = 0; i < js.length; i++) worst = Math.max(worst, Math.abs(fast[i] - js[i]));
    assert.ok(worst < 3e-7, `[${queries}, ${keys}] offset ${offset}: ${worst}`);
    for (let row = 0; row < matrices * queries; row++) {
      const q = row % queries;
      const visible = Math.min(keys, offset + q + 1);
      let sum = 0;
      for (let j = 0; j < keys; j++) {
        const p = fast[row * keys + j];
        if (j >= visible) assert.equal(p, 0);
        sum += p;
      }
      assert.ok(Math.abs(sum - 1) < 1e-6);
    }
  }
});

Deno.test("SIMD GELU = the JS loop, from -20 to 20 and at NaN; with and without the tanh", () => {
  const simd = simdMath()!;
  for (const n of [...TAIL_LENGTHS, 200_003]) {
    const x = random(n, n, 6);
    x[0] = 0;
    if (n > 6) x.set([-20, 20, 1e-4, -1e-4, -9, 9], 1);
    const js = geluForward(x);
    const fast = simd.geluForward(x, true);
    const yOnly = simd.geluForward(x, false);
    assert.ok(maxRelativeError(fast.y, js.y, 1e-6) < 1e-5, `y, n ${n}`);
    assert.deepEqual(yOnly.y, fast.y);
    assert.equal(yOnly.tanh, undefined);
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(fast.tanh![i] - js.tanh[i]));
    assert.ok(worst <= 2.4e-7, `tanh, n ${n}: ${worst}`);
  }
  const nan = simd.geluForward(Float32Array.of(NaN, 1), true);
  assert.ok(Number.isNaN(nan.y[0]) && Number.isNaN(nan.tanh![0]));
});

Deno.test("SIMD dropout draws the JS loop's mulberry32 mask and scales alike, bit for bit", () => {
  const simd = simdMath()!;
  // Lengths across the vector tail and the copy loop's 65,536-element chunks.
  for (const n of [1, 3, 4, 5, 17, 65_535, 65_537, 200_003]) {
    const x = random(n, n + 1, 3);
    for (const [rate, seed] of [[0.1, 123], [0.5, 2 ** 32 - 1], [0, 7], [0.999, 0]]) {
      const mask = dropoutMask(n, rate, seed);
      const want = applyDropoutMask(x, mask, rate);
      const got = simd.dropout(x, rate, seed)!;
      assert.deepEqual(got.mask, mask, `mask, n ${n} rate ${rate} seed ${seed}`);
      assert.deepEqual(got.y, want, `y, n ${n} rate ${rate} seed ${seed}`);
      assert.deepEqual(simd.applyDropoutMask(x, mask, rate), want, `backward, n ${n}`);
    }
  }
  // Everything dropped: left to the JS loop.
  assert.equal(simd.dropout(Float32Array.of(1, 2), 1, 5), undefined);
});

Deno.test("the engine runs the fused ops on SIMD, and the inference kernels (no gradient) give the training kernels' values", async () => {
  await initEngine({ backend: "cpu", log: () => {} });
  assert.ok(fusedOpsUseSimd());
  const logits = tf.tensor2d(random(6 * 101, 9, 5), [6, 101]);
  const targets = tf.tensor1d([1, 5, -100, 100, 0, 7], "int32");
  const x = tf.tensor1d(random(1001, 10, 4));
  // Outside a gradient: the inference kernels.
  const evalLoss = fusedCrossEntropy(logits, targets, -100);
  const evalGelu = fusedGelu(x);
  // Inside one: the training kernels that also keep what the backward needs.
  const { value: trainLoss } = tf.valueAndGrad((l: tf.Tensor) =>
    fusedCrossEntropy(l as tf.Tensor2D, targets, -100)
  )(logits);
  const { value: trainGelu } = tf.valueAndGrad((v: tf.Tensor) => tf.sum(fusedGelu(v)))(x);
  assert.equal((await evalLoss.data())[0], (await trainLoss.data())[0]);
  assert.ok(Math.abs((await tf.sum(evalGelu).data())[0] - (await trainGelu.data())[0]) < 1e-3);
  tf.dispose([logits, targets, x, evalLoss, evalGelu, trainLoss, trainGelu]);
});
