import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import type { NamedParameter } from "../../../llm/model/layers.ts";
import { AdamW, clipGradientsByGlobalNorm } from "../../../llm/train/adamw.ts";
import { useCpuBackend } from "../model/tf_setup.ts";

await useCpuBackend();

function params(): NamedParameter[] {
  return [
    ["a", tf.variable(tf.tensor2d([[0.5, -1.5], [2, 0]]))],
    ["b", tf.variable(tf.tensor1d([0.25, -0.125, 3]))],
  ];
}

const gradsAt = (step: number) =>
  new Map<string, tf.Tensor>([
    ["a", tf.tensor2d([[0.1 * step, -0.2], [0.3, 1e-9]])],
    ["b", tf.tensor1d([-0.5, 0.05 * step, 0])],
  ]);

function snapshot(list: NamedParameter[]): Promise<Float32Array[]> {
  return Promise.all(list.map(async ([, v]) => ((await v.data()) as Float32Array).slice()));
}

Deno.test("AdamW's first step moves each weight by lr·sign(g) after the decoupled decay", async () => {
  // Step 1: m̂ = g and √v̂ = |g|, so the update is lr·g/(|g| + eps) applied after p·(1 − lr·wd).
  const list = params();
  const before = await snapshot(list);
  const lr = 0.01;
  const optimizer = new AdamW(list, { lr, weightDecay: 0.1 });
  const grads = gradsAt(1);
  await optimizer.applyGradients(grads);
  const after = await snapshot(list);
  for (const [index, [name]] of list.entries()) {
    const g = await grads.get(name)!.data();
    before[index].forEach((p, i) => {
      const want = p * (1 - lr * 0.1) - lr * g[i] / (Math.abs(g[i]) + 1e-8);
      assert.ok(
        Math.abs(after[index][i] - want) < 1e-7,
        `${name}[${i}]: ${after[index][i]} vs ${want}`,
      );
    });
  }
  tf.dispose([...grads.values(), ...list.map(([, v]) => v)]);
});

Deno.test("AdamW resumed from its saved state continues exactly", async () => {
  const straight = params();
  const optimizer = new AdamW(straight, { lr: 1e-2, weightDecay: 0.1 });
  for (let step = 1; step <= 4; step++) await optimizer.applyGradients(gradsAt(step));

  const resumed = params();
  const first = new AdamW(resumed, { lr: 1e-2, weightDecay: 0.1 });
  for (let step = 1; step <= 2; step++) await first.applyGradients(gradsAt(step));
  const state = first.getState();
  const second = new AdamW(resumed, { lr: 1e-2, weightDecay: 0.1 });
  second.setState(state);
  assert.equal(second.step, 2);
  for (let step = 3; step <= 4; step++) await second.applyGradients(gradsAt(step));

  assert.deepEqual(await snapshot(resumed), await snapshot(straight));
  // A fresh optimizer (no state) would not have matched.
  assert.notDeepEqual(state.m.get("a"), new Float32Array(4));
  tf.dispose([...straight, ...resumed].map(([, v]) => v));
});

Deno.test("AdamW rejects mismatched state and unknown gradients", async () => {
  const list = params();
  const optimizer = new AdamW(list, { lr: 1e-3 });
  const state = optimizer.getState();
  state.m.set("a", new Float32Array(3));
  assert.throws(
    () => optimizer.setState(state, "ckpt/optimizer"),
    /ckpt\/optimizer: m for "a" has 3 values, expected 4/,
  );
  state.m.delete("a");
  assert.throws(() => optimizer.setState(state, "ckpt/optimizer"), /missing m for parameter "a"/);
  const stray = new Map([["c", tf.scalar(1)]]);
  await assert.rejects(optimizer.applyGradients(stray), /unknown parameter "c"/);
  tf.dispose([...stray.values(), ...list.map(([, v]) => v)]);
});

Deno.test("gradient clipping scales to the global norm like clip_grad_norm_", async () => {
  const grads = new Map<string, tf.Tensor>([["x", tf.tensor1d([3, 0])], [
    "y",
    tf.tensor1d([0, 4]),
  ]]);
  const norm = await clipGradientsByGlobalNorm(grads, 1);
  assert.equal(norm, 5);
  const scale = 1 / (5 + 1e-6);
  assert.ok(Math.abs((await grads.get("x")!.data())[0] - 3 * scale) < 1e-7);
  assert.ok(Math.abs((await grads.get("y")!.data())[1] - 4 * scale) < 1e-7);
  const unchanged = grads.get("x")!;
  assert.ok(Math.abs(await clipGradientsByGlobalNorm(grads, 10) - 1) < 1e-6);
  assert.equal(grads.get("x"), unchanged, "below the limit the gradients are left alone");
  tf.dispose([...grads.values()]);
});

Deno.test("AdamW on WebAssembly SIMD (float32, PyTorch's order) agrees with the JS loop over many steps", async () => {
  // 70,001 weights: the SIMD loop's masked tail and several chunks of the copy loop are covered.
  const size = 70_001;
  const make = (): NamedParameter[] => [
    ["w", tf.variable(tf.randomNormal([size], 0, 0.02, "float32", 1))],
  ];
  const simdParams = make();
  const jsParams = make();
  const simd = new AdamW(simdParams, { lr: 4e-4, weightDecay: 0.1 });
  const js = new AdamW(jsParams, { lr: 4e-4, weightDecay: 0.1, simd: false });
  for (let step = 1; step <= 5; step++) {
    const grad = tf.randomNormal([size], 0, step % 2 ? 1e-3 : 1, "float32", step + 10);
    await simd.applyGradients(new Map([["w", grad]]));
    await js.applyGradients(new Map([["w", grad]]));
    grad.dispose();
  }
  const [a] = await snapshot(simdParams);
  const [b] = await snapshot(jsParams);
  // Weights near 0 make relative errors meaningless: measure against the update size (lr).
  let worst = 0;
  for (let i = 0; i < size; i++) {
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / (Math.abs(b[i]) + 4e-4));
  }
  assert.ok(worst < 1e-6, `max difference ${worst} (relative to |w| + lr)`);
  const ms = [simd.getState().v.get("w")!, js.getState().v.get("w")!];
  let worstV = 0;
  for (let i = 0; i < size; i++) {
    worstV = Math.max(worstV, Math.abs(ms[0][i] - ms[1][i]) / Math.abs(ms[1][i]));
  }
  assert.ok(worstV < 1e-5, `v: max relative difference ${worstV}`);
  // And the two really differ in how they compute (the test compares two implementations).
  assert.notDeepEqual(a, b);
  tf.dispose([...simdParams, ...jsParams].map(([, v]) => v));
});
