/**
 * Stock tfjs cpu kernels vs our tight-loop replacements, on the shapes of a GPT-2 124M training
 * step (batch 2 × 256 tokens, emb 768, 12 heads, vocabulary 50,257). One JSON line per case.
 *
 *   deno run -A bench/kernels.ts [--reps 3]
 *
 * Both run in the same process, alternating, so a busy machine slows both alike. Time per case
 * is the best of --reps runs (after a warm-up run for ours; stock is slow enough not to need one).
 */
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../llm/engine/backend.ts";
import { registerFastKernels, unregisterFastKernels } from "../llm/engine/cpu_fast_kernels.ts";

const repsAt = Deno.args.indexOf("--reps");
const reps = repsAt >= 0 ? Number(Deno.args[repsAt + 1]) : 3;
await initEngine({ backend: "cpu", log: () => {} }); // BLAS matmuls; fast kernels toggled below

const [B, T, E, H, V] = [2, 256, 768, 12, 50257];
const r = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, "float32", seed);

/** name → (inputs made once, op under test). */
const CASES: [string, () => tf.Tensor[], (...x: tf.Tensor[]) => tf.Tensor][] = [
  ["Add bias [512,768]+[768]", () => [r([B * T, E], 1), r([E], 2)], tf.add],
  ["Add residual [2,256,768]", () => [r([B, T, E], 1), r([B, T, E], 2)], tf.add],
  ["Sub x-max [512,50257]-[512,1]", () => [r([B * T, V], 1), r([B * T, 1], 2)], tf.sub],
  ["Multiply [512,50257]*[512,1]", () => [r([B * T, V], 1), r([B * T, 1], 2)], tf.mul],
  ["Multiply dropout [2,12,256,256]", () => [r([B, H, T, T], 1), r([B, H, T, T], 2)], tf.mul],
  ["RealDiv layernorm [2,256,768]/[2,256,1]", () => [r([B, T, E], 1), r([B, T, 1], 2)], tf.div],
  ["Exp [512,50257]", () => [r([B * T, V], 1)], tf.exp],
  ["Tanh GELU [512,3072]", () => [r([B * T, 4 * E], 1)], tf.tanh],
  ["Pow x^3 [512,3072]", () => [r([B * T, 4 * E], 1), tf.scalar(3)], tf.pow],
  ["Floor dropout mask [2,12,256,256]", () => [r([B, H, T, T], 1)], tf.floor],
  ["Softmax attention [2,12,256,256]", () => [r([B, H, T, T], 1)], (x) => tf.softmax(x)],
  [
    "Transpose heads [2,256,12,64] perm [0,2,1,3]",
    () => [r([B, T, H, E / H], 1)],
    (x) => tf.transpose(x, [0, 2, 1, 3]),
  ],
  ["Sum last axis [512,50257]", () => [r([B * T, V], 1)], (x) => tf.sum(x, -1, true)],
  ["Sum axis 0 (bias grad) [512,3072]", () => [r([B * T, 4 * E], 1)], (x) => tf.sum(x, 0)],
  ["Max last axis [512,50257]", () => [r([B * T, V], 1)], (x) => tf.max(x, -1, true)],
  ["Mean last axis [2,256,768]", () => [r([B, T, E], 1)], (x) => tf.mean(x, -1, true)],
  [
    "Tile mask [1,1,256,256] x [2,12,1,1]",
    () => [r([1, 1, T, T], 1)],
    (x) => tf.tile(x, [B, H, 1, 1]),
  ],
];

function best(op: () => tf.Tensor, runs: number): number {
  let fastest = Infinity;
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    const out = op();
    out.dataSync();
    fastest = Math.min(fastest, performance.now() - start);
    out.dispose();
  }
  return fastest;
}

for (const [name, make, op] of CASES) {
  const inputs = make();
  const run = () => op(...inputs);
  registerFastKernels();
  best(run, 1); // warm-up (JIT)
  const oursMs = best(run, reps);
  unregisterFastKernels();
  const stockMs = best(run, Math.min(reps, 2));
  tf.dispose(inputs);
  console.log(JSON.stringify({
    bench: "kernels",
    case: name,
    stock_ms: +stockMs.toFixed(1),
    ours_ms: +oursMs.toFixed(1),
    speedup: +(stockMs / oursMs).toFixed(1),
  }));
}
console.log(JSON.stringify({
  bench: "kernels",
  machine: { cores: navigator.hardwareConcurrency, deno: Deno.version.deno },
  loadavg: Deno.loadavg().map((x) => +x.toFixed(2)),
}));
