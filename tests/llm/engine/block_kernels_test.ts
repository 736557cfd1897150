/**
 * The fused RoPE, RMSNorm and SiLU·up kernels of the cpu engine (llm/engine/block_kernels.ts)
 * against the tfjs ops they replace, written out here as rope.ts and layers.ts write them for
 * the other backends: forward values (RoPE and SiLU·up bit for bit, RMSNorm to float32
 * rounding) and gradients through tf.grads, on shapes with partial rotary dims, per-row angles
 * (left-padded batches), Gemma's (1 + w) gain and several rows; and whole open-family models,
 * whose logits and gradients must not change when the kernels are turned off.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../../../llm/engine/backend.ts";
import {
  blockKernelsActive,
  fusedRmsNorm,
  fusedRope,
  fusedSiluMul,
  setBlockKernelsEnabled,
} from "../../../llm/engine/block_kernels.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { FAMILY_CONFIGS } from "../model/open_families.ts";
import { applyRope, RotaryEmbedding } from "../../../llm/model/rope.ts";
import { GatedFeedForward, RMSNorm } from "../../../llm/model/layers.ts";
import { SeededRandom } from "../../../llm/random.ts";

await initEngine({ backend: "cpu", log: () => {} });

function random(shape: number[], seed: number): tf.Tensor {
  return tf.randomNormal(shape, 0, 1, "float32", seed);
}

function maxDiff(a: tf.Tensor, b: tf.Tensor): number {
  assert.deepEqual(a.shape, b.shape);
  const [x, y] = [a.dataSync(), b.dataSync()];
  let max = 0;
  for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs(x[i] - y[i]));
  return max;
}

/** rope.ts's tfjs formula (rotate-half over the first 2·half dims). */
function stockRope(x: tf.Tensor4D, cos: tf.Tensor4D, sin: tf.Tensor4D): tf.Tensor4D {
  const [b, h, t, d] = x.shape;
  const half = cos.shape[3];
  const x1 = tf.slice(x, [0, 0, 0, 0], [b, h, t, half]);
  const x2 = tf.slice(x, [0, 0, 0, half], [b, h, t, half]);
  const parts = [
    tf.sub(tf.mul(x1, cos), tf.mul(x2, sin)),
    tf.add(tf.mul(x2, cos), tf.mul(x1, sin)),
  ];
  if (2 * half < d) parts.push(tf.slice(x, [0, 0, 0, 2 * half], [b, h, t, d - 2 * half]));
  return tf.concat(parts, 3) as tf.Tensor4D;
}

function stockRmsNorm(x: tf.Tensor, scale: tf.Tensor, eps: number, unitOffset: boolean) {
  const normalized = tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps)));
  return tf.mul(normalized, unitOffset ? tf.add(scale, 1) : scale);
}

Deno.test("the block kernels are active on the cpu engine", () => {
  assert.ok(blockKernelsActive());
});

Deno.test("fused RoPE equals the tfjs rotate-half bit for bit, forward and backward", () => {
  // [rows, 1, tokens, half] angles: shared (1 row) and per row (a left-padded batch);
  // rotary 8 of head 12 (Phi-2's partial rotary) and full rotary.
  for (
    const [headDim, rotary, perRow] of [[12, 8, false], [16, 16, true], [8, 8, false]] as const
  ) {
    const rope = new RotaryEmbedding(rotary, 10000, 64);
    const positions = perRow ? [[0, 1, 2, 3, 4], [7, 8, 9, 10, 11]] : [[3, 4, 5, 6, 7]];
    const { cos, sin } = rope.angles(positions);
    const x = random([2, 3, 5, headDim], headDim) as tf.Tensor4D;
    const fused = fusedRope(x, cos, sin);
    assert.equal(maxDiff(fused, stockRope(x, cos, sin)), 0, `forward, head ${headDim}`);
    assert.equal(maxDiff(applyRope(x, { cos, sin }), fused), 0, "applyRope takes the kernel");
    const dy = random(x.shape, 99);
    const loss = (f: typeof stockRope) => (t: tf.Tensor) =>
      tf.sum(tf.mul(f(t as tf.Tensor4D, cos, sin), dy));
    const [gFused] = tf.grads(loss(fusedRope))([x]);
    const [gStock] = tf.grads(loss(stockRope))([x]);
    assert.ok(maxDiff(gFused, gStock) < 1e-6, `gradient, head ${headDim}`);
  }
});

Deno.test("fused RMSNorm equals the tfjs formula to rounding, with and without Gemma's unit offset", () => {
  for (const unitOffset of [false, true]) {
    const x = random([3, 4, 64], 5).mul(3);
    const scale = random([64], 6).mul(0.1).add(unitOffset ? 0 : 1);
    const eps = 1e-6;
    const fused = fusedRmsNorm(x, scale, eps, unitOffset);
    const stock = stockRmsNorm(x, scale, eps, unitOffset);
    assert.ok(maxDiff(fused, stock) < 1e-5, `forward ${maxDiff(fused, stock)}`);
    const norm = new RMSNorm(64, eps, unitOffset);
    norm.scale.assign(scale);
    assert.ok(maxDiff(norm.apply(x), fused) === 0, "RMSNorm.apply takes the kernel");
    const dy = random(x.shape, 7);
    const loss = (f: typeof stockRmsNorm) => (a: tf.Tensor, s: tf.Tensor) =>
      tf.sum(tf.mul(f(a, s, eps, unitOffset), dy));
    const [dxF, dsF] = tf.grads(loss(fusedRmsNorm))([x, scale]);
    const [dxS, dsS] = tf.grads(loss(stockRmsNorm))([x, scale]);
    assert.ok(maxDiff(dxF, dxS) < 1e-5, `dx ${maxDiff(dxF, dxS)}`);
    assert.ok(maxDiff(dsF, dsS) < 1e-4, `dscale ${maxDiff(dsF, dsS)}`);
  }
});

Deno.test("fused SiLU·up equals tfjs's silu(gate)·up bit for bit, forward and backward", () => {
  const gate = random([2, 3, 40], 11).mul(4);
  const up = random([2, 3, 40], 12);
  const stock = (g: tf.Tensor, u: tf.Tensor) => tf.mul(tf.mul(g, tf.sigmoid(g)), u);
  assert.equal(maxDiff(fusedSiluMul(gate, up), stock(gate, up)), 0);
  const dy = random(gate.shape, 13);
  const loss = (f: typeof stock) => (g: tf.Tensor, u: tf.Tensor) => tf.sum(tf.mul(f(g, u), dy));
  const [dgF, duF] = tf.grads(loss(fusedSiluMul))([gate, up]);
  const [dgS, duS] = tf.grads(loss(stock))([gate, up]);
  assert.ok(maxDiff(dgF, dgS) < 1e-5, `dgate ${maxDiff(dgF, dgS)}`);
  assert.ok(maxDiff(duF, duS) < 1e-6, `dup ${maxDiff(duF, duS)}`);
  // The gated feed-forward takes the kernel: same output as its tfjs formula.
  const ff = new GatedFeedForward(40, 24, "silu", { mode: "random", rng: new SeededRandom(1) });
  const x = random([2, 3, 40], 14);
  const want = ff.fc3.apply(stock(ff.fc1.apply(x), ff.fc2.apply(x)));
  assert.equal(maxDiff(ff.apply(x), want), 0);
});

Deno.test("a model's logits and every gradient are the same with the block kernels on and off", () => {
  for (const name of ["llama", "qwen3", "gemma3", "phi2"]) {
    const { config, tiedHead } = FAMILY_CONFIGS.find((f) => f.name === name)!;
    const model = new GPTModel({ ...config, drop_rate: 0 }, { tiedHead, seed: 21 });
    const ids = tf.tensor2d([[3, 1, 4, 1, 5, 9, 2], [6, 5, 3, 5, 8, 9, 7]], undefined, "int32");
    const weights = random([2, 7, config.vocab_size], 22);
    const variables = model.trainableParameters().map(([, v]) => v);
    const run = (on: boolean) => {
      setBlockKernelsEnabled(on);
      try {
        return tf.variableGrads(
          () => tf.sum(tf.mul(model.forward(ids, { training: true }), weights)) as tf.Scalar,
          variables,
        );
      } finally {
        setBlockKernelsEnabled(true);
      }
    };
    const [fused, stock] = [run(true), run(false)];
    assert.ok(Math.abs(fused.value.dataSync()[0] - stock.value.dataSync()[0]) < 1e-3, name);
    for (const [key, grad] of Object.entries(stock.grads)) {
      const diff = maxDiff(fused.grads[key], grad);
      assert.ok(diff < 1e-4, `${name}: gradient of ${key} differs by ${diff}`);
    }
    model.dispose();
  }
});

Deno.test("token-major RoPE ([batch, tokens, heads, headDim], the in-place prefill's order) equals the heads-major one, fused and stock", () => {
  const rope = new RotaryEmbedding(8, 10000, 64);
  const { cos, sin } = rope.angles([[0, 1, 2, 3, 4], [4, 5, 6, 7, 8]]);
  const x = random([2, 5, 3, 12], 31) as tf.Tensor4D; // [batch, tokens, heads, headDim]
  const headsMajor = tf.transpose(x, [0, 2, 1, 3]) as tf.Tensor4D;
  const want = tf.transpose(fusedRope(headsMajor, cos, sin), [0, 2, 1, 3]);
  assert.equal(maxDiff(fusedRope(x, cos, sin, true), want), 0, "fused");
  setBlockKernelsEnabled(false);
  try {
    assert.equal(maxDiff(applyRope(x, { cos, sin }, true), want), 0, "tfjs formula");
  } finally {
    setBlockKernelsEnabled(true);
  }
  const dy = random(x.shape, 32);
  const dyHeads = tf.transpose(dy, [0, 2, 1, 3]);
  const [g] = tf.grads((t: tf.Tensor) =>
    tf.sum(tf.mul(fusedRope(t as tf.Tensor4D, cos, sin, true), dy))
  )([x]);
  const [gWant] = tf.grads((t: tf.Tensor) =>
    tf.sum(tf.mul(stockRope(t as tf.Tensor4D, cos, sin), dyHeads))
  )(
    [headsMajor],
  );
  assert.ok(maxDiff(g, tf.transpose(gWant, [0, 2, 1, 3])) < 1e-6, "gradient");
});
