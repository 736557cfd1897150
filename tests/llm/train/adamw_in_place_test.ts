/**
 * AdamW writes a cpu variable's new weights into its own buffer when nothing shares that buffer
 * (llm/train/adamw.ts `ownedCpuBuffer`): the result must equal the allocate-and-assign path, and
 * a buffer shared with a clone must never be written.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { AdamW } from "../../../llm/train/adamw.ts";

tf.env().set("IS_NODE", false);
await tf.setBackend("cpu");

const initial = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i) * 0.3);
const gradients = (step: number) =>
  new Map([[
    "w",
    tf.tensor2d(Float32Array.from({ length: 64 }, (_, i) => Math.cos(i * step)), [8, 8]),
  ]]);

async function threeSteps(
  shareBuffer: boolean,
): Promise<{ after: Float32Array; clone?: Float32Array }> {
  const w = tf.variable(tf.tensor2d(initial, [8, 8]));
  // A clone shares the variable's buffer on the cpu backend (reference counted, no copy).
  const clone = shareBuffer ? tf.clone(w) : undefined;
  const optimizer = new AdamW([["w", w]], { lr: 0.01, weightDecay: 0.1 });
  for (let step = 1; step <= 3; step++) {
    const grads = gradients(step);
    await optimizer.applyGradients(grads);
    tf.dispose([...grads.values()]);
  }
  const result = {
    after: (await w.data() as Float32Array).slice(),
    clone: clone ? (await clone.data() as Float32Array).slice() : undefined,
  };
  tf.dispose([w, ...(clone ? [clone] : [])]);
  return result;
}

Deno.test("AdamW in place on an unshared cpu buffer equals the assign path on a shared one", async () => {
  const inPlace = await threeSteps(false);
  const assigned = await threeSteps(true);
  assert.deepEqual(Array.from(inPlace.after), Array.from(assigned.after));
  assert.notDeepEqual(Array.from(inPlace.after), Array.from(initial), "the weights moved");
  // The clone still holds the initial weights: the shared buffer was not written.
  assert.deepEqual(Array.from(assigned.clone!), Array.from(initial));
});
