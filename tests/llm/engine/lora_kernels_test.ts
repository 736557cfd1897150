/**
 * The LoRA linear kernels (llm/engine/lora_kernels.ts) against the plain-tfjs form lora.ts runs
 * elsewhere: values and gradients, alone and inside a LoRA model's training gradients.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { initEngine } from "../../../llm/engine/backend.ts";
import { blasInUse } from "../../../llm/engine/cpu_kernels.ts";
import {
  loraKernelsActive,
  loraLinear,
  registerLoraKernels,
  unregisterLoraKernels,
} from "../../../llm/engine/lora_kernels.ts";
import type { GPTConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { applyLora, type LoraAdapters } from "../../../llm/model/lora.ts";
import { SeededRandom } from "../../../llm/random.ts";
import { computeGradients } from "../../../llm/train/trainer.ts";
import { randn, relativeError } from "./compare.ts";

await initEngine({ backend: "cpu", log: () => {} });
if (!loraKernelsActive()) throw new Error("the cpu engine did not register the LoRA kernels");

/** Runs `fn` on the plain-tfjs path, then registers the kernels again. */
function withoutLoraKernels<T>(fn: () => T): T {
  const blas = blasInUse()!;
  unregisterLoraKernels();
  try {
    assert.equal(loraKernelsActive(), false);
    return fn();
  } finally {
    registerLoraKernels(blas);
  }
}

/** y = x Wᵀ + b + (s · u A) B (u = x unless given), as lora.ts writes it in plain tfjs. */
function plainLoraLinear(
  x: tf.Tensor2D,
  w: tf.Tensor2D,
  b: tf.Tensor | null,
  A: tf.Tensor2D,
  B: tf.Tensor2D,
  s: number,
  u?: tf.Tensor2D,
) {
  const base = tf.matMul(x, w, false, true);
  const withBias = b ? tf.add(base, b) : base;
  const down = tf.mul(tf.matMul(u ?? x, A), s) as tf.Tensor2D;
  return tf.add(withBias, tf.matMul(down, B)) as tf.Tensor2D;
}

Deno.test("LoRA linear kernel: output and gradients for x, A, B (and a separate adapter input) match the plain-tfjs form", () => {
  for (const [withBias, separateInput] of [[true, false], [false, false], [true, true]]) {
    const label = `bias ${withBias}, separate adapter input ${separateInput}`;
    const [rows, inF, outF, rank, scale] = [9, 13, 21, 4, 2.5];
    const x = randn([rows, inF], 1) as tf.Tensor2D;
    const u = separateInput ? randn([rows, inF], 7) as tf.Tensor2D : undefined;
    const w = randn([outF, inF], 2) as tf.Tensor2D;
    const b = withBias ? randn([outF], 3) : null;
    const A = randn([inF, rank], 4) as tf.Tensor2D;
    const B = randn([rank, outF], 5) as tf.Tensor2D;
    // A random weighting of the outputs, so each output element gets its own upstream gradient.
    const upstream = randn([rows, outF], 6);
    const run = (f: typeof plainLoraLinear) => {
      const y = f(x, w, b, A, B, scale, u);
      const inputs = u ? [x, A, B, u] : [x, A, B];
      const grads = tf.grads((...t: tf.Tensor[]) =>
        tf.sum(tf.mul(
          f(
            t[0] as tf.Tensor2D,
            w,
            b,
            t[1] as tf.Tensor2D,
            t[2] as tf.Tensor2D,
            scale,
            t[3] as tf.Tensor2D | undefined,
          ),
          upstream,
        ))
      )(inputs);
      return [y, ...grads].map((t) => t.dataSync() as Float32Array);
    };
    const fused = run(loraLinear);
    const plain = run(plainLoraLinear);
    assert.equal(fused.length, separateInput ? 5 : 4);
    ["y", "dx", "dA", "dB", "du"].slice(0, fused.length).forEach((what, i) => {
      const error = relativeError(fused[i], plain[i]);
      assert.ok(error < 1e-5, `${what} (${label}): relative error ${error}`);
    });
    // Without a tape (evaluation): the same output.
    const inference = loraLinear(x, w, b, A, B, scale, u).dataSync() as Float32Array;
    assert.ok(relativeError(inference, plain[0]) < 1e-5);
    tf.dispose([x, w, b, A, B, u, upstream].filter((t): t is tf.Tensor => !!t));
  }
});

/** Non-zero B (as if trained), so every term of the gradient is exercised. */
function randomizeB(adapters: LoraAdapters): void {
  const rng = new SeededRandom(9);
  for (const layer of adapters.layers.values()) {
    const values = Float32Array.from({ length: layer.B.size }, () => rng.next() - 0.5);
    layer.B.assign(tf.tensor(values, layer.B.shape));
  }
}

Deno.test("LoRA linear kernel: a LoRA model's gradients equal the plain path's (with and without adapter dropout); every adapter runs it; no weight gradients", async () => {
  const config: GPTConfig = {
    vocab_size: 61,
    context_length: 12,
    emb_dim: 16,
    n_heads: 4,
    n_layers: 2,
    drop_rate: 0,
    qkv_bias: true,
  };
  const model = new GPTModel(config, { seed: 5 });
  const adapters = applyLora(model, { rank: 3 });
  randomizeB(adapters);
  const batch = {
    inputs: [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]],
    targets: [[2, 3, 4, 5, 6, 50], [8, 9, 10, -100, -100, -100]],
  };
  const gradients = () => {
    const { loss, grads } = computeGradients(model, batch);
    const out = new Map([...grads].map(([name, g]) => [name, g.dataSync() as Float32Array]));
    out.set("loss", loss.dataSync() as Float32Array);
    tf.dispose([loss, ...grads.values()]);
    return out;
  };
  const profile = await tf.profile(() => {
    gradients();
    return [] as unknown as tf.Tensor;
  });
  const count = (name: string) => profile.kernels.filter((k) => k.name === name).length;
  const layers = adapters.layers.size;
  assert.equal(layers, 2 * 6 + 1);
  assert.equal(count("GroundupLoraLinear"), layers);
  assert.equal(count("GroundupLoraLinearGrad"), layers);
  // Every other product is attention's (per head, [T, T] or [T, head_dim]): none has a weight's shape.
  const weightShapes = new Set(["16,16", "64,16", "16,64", "61,16", "16,61"]);
  const weightProducts = profile.kernels.filter((k) =>
    (k.name === "BatchMatMul" || k.name === "_FusedMatMul") &&
    k.outputShapes.some((s) => weightShapes.has(s!.slice(-2).join()))
  );
  assert.equal(weightProducts.length, 0);

  const fused = gradients();
  const plain = withoutLoraKernels(gradients);
  assert.deepEqual([...fused.keys()], [...plain.keys()]);
  for (const [name, values] of fused) {
    const error = relativeError(values, plain.get(name)!);
    assert.ok(error < 1e-5, `${name}: relative error ${error}`);
  }
  model.dispose();

  // With adapter dropout in training (LitGPT's lora_dropout): the same masks (same seeds) on both
  // paths, so the same gradients again.
  const withDropout = new GPTModel(config, { seed: 5 });
  const dropoutAdapters = applyLora(withDropout, { rank: 3, dropout: 0.25 });
  randomizeB(dropoutAdapters);
  dropoutAdapters.train(true);
  const seededGradients = () => {
    dropoutAdapters.mode.rng = new SeededRandom(11);
    const { loss, grads } = computeGradients(withDropout, batch);
    const out = new Map([...grads].map(([name, g]) => [name, g.dataSync() as Float32Array]));
    tf.dispose([loss, ...grads.values()]);
    return out;
  };
  const dropoutFused = seededGradients();
  const dropoutPlain = withoutLoraKernels(seededGradients);
  for (const [name, values] of dropoutFused) {
    const error = relativeError(values, dropoutPlain.get(name)!);
    assert.ok(error < 1e-5, `${name} (adapter dropout): relative error ${error}`);
  }
  // The masks really differ between draws: the dropout is live on this path.
  dropoutAdapters.mode.rng = new SeededRandom(12);
  const other = computeGradients(withDropout, batch);
  const name = "trf_blocks.0.att.W_query.lora.A";
  assert.ok(relativeError(other.grads.get(name)!.dataSync(), dropoutFused.get(name)!) > 1e-3);
  tf.dispose([other.loss, ...other.grads.values()]);
  withDropout.dispose();
});
