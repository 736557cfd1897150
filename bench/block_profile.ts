/**
 * Where a GPT-2-sized training step spends its time on the cpu backend, kernel by kernel; or,
 * with --decode, one decode step (and a prefill) of an open-model shape through the real model.
 *
 *   deno run -A bench/block_profile.ts [--native on|off] [--fast on|off] [--layers 1] [--head on]
 *   deno run -A bench/block_profile.ts --decode qwen3-0.6B|llama-3.2-1B|gpt2-124M [--layers 28]
 *                                      [--batch 1] [--prefill 64] [--steps 16] [--ab 0]
 *                                      [--quantize none|int8|bf16]
 *
 * --decode builds the shape with random weights (--layers overrides its depth), prefills
 * --prefill tokens per row into the KV cache, times --steps decode steps, then profiles one step
 * and one prefill kernel by kernel (the output head included: it is part of every step). With
 * --ab N it then times N rounds of prefill + --steps decode steps with the fused block kernels
 * (RoPE, RMSNorm, SiLU·up: llm/engine/block_kernels.ts) off and on, alternated in this process
 * on the same weights, and checks both give the same greedy tokens. --quantize packs the
 * matrices first (their products are not tfjs kernels, so the profile shows what is left).
 *
 * Builds one transformer block of the 124M model (emb 768, 12 heads, batch 2 × 256 tokens,
 * dropout 0.1) plus, with --head, the output head and the cross-entropy over 50,257 tokens,
 * written in plain tfjs ops the way the book's model is. Runs forward + backward under
 * tf.profile and prints one JSON line per kernel name (total ms, calls), heaviest first, then a
 * total. The model code under llm/model/ is not used: this stands in for it, to find the
 * kernels worth replacing.
 */
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../llm/engine/backend.ts";
import { setBlockKernelsEnabled } from "../llm/engine/block_kernels.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import { packModel, parseQuantization } from "../llm/model/precision.ts";
import { benchShape } from "./shapes.ts";
import type { KVCache } from "../llm/model/kv_cache.ts";

function flag(name: string, fallback: string): string {
  const at = Deno.args.indexOf(`--${name}`);
  return at >= 0 ? Deno.args[at + 1] : fallback;
}

const decodeShape = flag("decode", "");
if (decodeShape) {
  await profileDecode(decodeShape);
  Deno.exit(0);
}

const native = flag("native", "on") === "on";
const fast = flag("fast", "on") === "on";
const layers = Number(flag("layers", "1"));
const withHead = flag("head", "on") === "on";
const [B, T, E, H, V] = [2, 256, 768, 12, 50257];
const D = E / H;
const DROP = 0.1;

const engine = await initEngine({ backend: "cpu", nativeKernels: native, fastKernels: fast });

const param = (shape: number[], seed: number) =>
  tf.variable(tf.randomNormal(shape, 0, 0.02, "float32", seed));
const blocks = Array.from({ length: layers }, (_, l) => ({
  ln1: { scale: tf.variable(tf.ones([E])), shift: tf.variable(tf.zeros([E])) },
  wq: param([E, E], 10 * l + 1),
  wk: param([E, E], 10 * l + 2),
  wv: param([E, E], 10 * l + 3),
  wo: param([E, E], 10 * l + 4),
  bo: tf.variable(tf.zeros([E])),
  ln2: { scale: tf.variable(tf.ones([E])), shift: tf.variable(tf.zeros([E])) },
  w1: param([4 * E, E], 10 * l + 5),
  b1: tf.variable(tf.zeros([4 * E])),
  w2: param([E, 4 * E], 10 * l + 6),
  b2: tf.variable(tf.zeros([E])),
}));
const head = withHead ? param([V, E], 99) : undefined;
const causalMask = tf.linalg.bandPart(tf.ones([T, T]), -1, 0).equal(0); // true above diagonal
const x0 = tf.randomNormal([B, T, E], 0, 1, "float32", 7);
const targets = tf.randomUniform([B * T], 0, V, "int32", 8);

/** nn.Linear with PyTorch's [out, in] weight: x[B*T, in] · Wᵀ + b. */
const linear = (x: tf.Tensor2D, w: tf.Variable, b?: tf.Variable): tf.Tensor2D => {
  const y = tf.matMul(x, w, false, true);
  return b ? tf.add(y, b) : y as tf.Tensor2D;
};
const layerNorm = (x: tf.Tensor, p: { scale: tf.Variable; shift: tf.Variable }) => {
  const mean = tf.mean(x, -1, true);
  const centered = tf.sub(x, mean);
  const variance = tf.mean(tf.square(centered), -1, true);
  return tf.add(tf.mul(tf.div(centered, tf.sqrt(tf.add(variance, 1e-5))), p.scale), p.shift);
};
const gelu = (x: tf.Tensor) =>
  tf.mul(
    tf.mul(0.5, x),
    tf.add(1, tf.tanh(tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3)))))),
  );
const dropout = (x: tf.Tensor) => tf.dropout(x, DROP);
const heads = (x: tf.Tensor2D) => tf.transpose(tf.reshape(x, [B, T, H, D]), [0, 2, 1, 3]);

function block(x: tf.Tensor, p: (typeof blocks)[number]): tf.Tensor {
  const h = tf.reshape(layerNorm(x, p.ln1), [B * T, E]) as tf.Tensor2D;
  const [q, k, v] = [heads(linear(h, p.wq)), heads(linear(h, p.wk)), heads(linear(h, p.wv))];
  const scores = tf.where(causalMask, tf.fill([T, T], -Infinity), tf.matMul(q, k, false, true));
  const weights = dropout(tf.softmax(tf.div(scores, Math.sqrt(D))));
  const context = tf.reshape(tf.transpose(tf.matMul(weights, v), [0, 2, 1, 3]), [B * T, E]);
  const x1 = tf.add(x, dropout(tf.reshape(linear(context as tf.Tensor2D, p.wo, p.bo), [B, T, E])));
  const h2 = tf.reshape(layerNorm(x1, p.ln2), [B * T, E]) as tf.Tensor2D;
  const ff = linear(gelu(linear(h2, p.w1, p.b1)) as tf.Tensor2D, p.w2, p.b2);
  return tf.add(x1, dropout(tf.reshape(ff, [B, T, E])));
}

function loss(): tf.Scalar {
  let x = x0;
  for (const p of blocks) x = block(x, p);
  if (!head) return tf.mean(x);
  const logits = linear(tf.reshape(x, [B * T, E]) as tf.Tensor2D, head);
  const logProbs = tf.logSoftmax(logits);
  const picked = tf.sum(tf.mul(logProbs, tf.oneHot(targets, V).cast("float32")), -1);
  return tf.neg(tf.mean(picked));
}

const step = () => tf.tidy(() => tf.variableGrads(loss).value.dataSync());
step(); // warm-up: first-touch allocations, BLAS thread start
const start = performance.now();
const profile = await tf.profile(step);
const wallMs = performance.now() - start;

const byKernel = new Map<string, { ms: number; calls: number }>();
for (const k of profile.kernels) {
  const entry = byKernel.get(k.name) ?? { ms: 0, calls: 0 };
  entry.ms += Number(k.kernelTimeMs) || 0;
  entry.calls++;
  byKernel.set(k.name, entry);
}
const rows = [...byKernel.entries()].sort((a, b) => b[1].ms - a[1].ms);
const kernelMs = rows.reduce((s, [, r]) => s + r.ms, 0);
for (const [name, r] of rows) {
  console.log(JSON.stringify({
    bench: "block_profile",
    kernel: name,
    ms: +r.ms.toFixed(1),
    calls: r.calls,
    share: +(r.ms / kernelMs).toFixed(3),
  }));
}
console.log(JSON.stringify({
  bench: "block_profile",
  total: true,
  layers,
  head: withHead,
  blas: engine.blas ?? null,
  fast,
  wall_ms: +wallMs.toFixed(0),
  kernel_ms: +kernelMs.toFixed(0),
  loadavg: Deno.loadavg().map((x) => +x.toFixed(2)),
}));

/** Kernel name → total ms and calls of one profiled call, heaviest first, as JSON lines. */
async function printProfile(label: string, run: () => void): Promise<void> {
  const profile = await tf.profile(run);
  const byKernel = new Map<string, { ms: number; calls: number }>();
  for (const k of profile.kernels) {
    const entry = byKernel.get(k.name) ?? { ms: 0, calls: 0 };
    entry.ms += Number(k.kernelTimeMs) || 0;
    entry.calls++;
    byKernel.set(k.name, entry);
  }
  const total = [...byKernel.values()].reduce((s, r) => s + r.ms, 0);
  for (const [name, r] of [...byKernel.entries()].sort((a, b) => b[1].ms - a[1].ms)) {
    console.log(JSON.stringify({
      bench: "block_profile",
      profile: label,
      kernel: name,
      ms: +r.ms.toFixed(2),
      calls: r.calls,
      share: +(r.ms / total).toFixed(3),
    }));
  }
  console.log(JSON.stringify({
    bench: "block_profile",
    profile: label,
    total: true,
    kernel_ms: +total.toFixed(1),
    kernels: profile.kernels.length,
  }));
}

async function profileDecode(name: string): Promise<void> {
  const engine = await initEngine({ backend: "cpu", log: () => {} });
  const { config, tiedHead } = benchShape(name, "--decode");
  if (Deno.args.includes("--layers")) config.n_layers = Number(flag("layers", "1"));
  const batch = Number(flag("batch", "1"));
  const prefill = Number(flag("prefill", "64"));
  const steps = Number(flag("steps", "16"));
  const model = new GPTModel(config, { tiedHead, seed: 123 });
  // --quantize int8|bf16: the matrices packed as the engine holds them for quantized inference.
  packModel(model, parseQuantization(flag("quantize", "none"), "--quantize"));
  const prompt = (b: number) =>
    Array.from({ length: prefill }, (_, i) => (i * 7919 + b * 31) % config.vocab_size);
  const forward = (cache: KVCache, ids: number[][]) => {
    const input = tf.tensor2d(ids, undefined, "int32");
    const logits = model.forward(input, { cache, lastTokenOnly: true });
    logits.dataSync();
    tf.dispose([input, logits]);
  };
  const rows = Array.from({ length: batch }, (_, b) => b);
  const next = (step: number) => rows.map((b) => [(step * 104729 + b) % config.vocab_size]);
  const cache = model.newCache({ rows: batch, capacity: prefill + steps + 8 });
  let start = performance.now();
  forward(cache, rows.map(prompt));
  const prefillMs = performance.now() - start;
  forward(cache, next(0)); // first decode step: warm-up
  start = performance.now();
  for (let s = 1; s <= steps; s++) forward(cache, next(s));
  const stepMs = (performance.now() - start) / steps;
  await printProfile("decode step", () => forward(cache, next(steps + 1)));
  const fresh = model.newCache({ rows: batch, capacity: prefill });
  await printProfile("prefill", () => forward(fresh, rows.map(prompt)));
  console.log(JSON.stringify({
    bench: "block_profile",
    decode: name,
    layers: config.n_layers,
    batch,
    blas: engine.blas ?? null,
    prefill_tokens: prefill,
    prefill_tok_s: +((batch * prefill * 1000) / prefillMs).toFixed(1),
    decode_step_ms: +stepMs.toFixed(1),
    decode_tok_s: +((batch * 1000) / stepMs).toFixed(2),
    loadavg: Deno.loadavg().map((x) => +x.toFixed(2)),
  }));
  cache.dispose();
  fresh.dispose();
  const rounds = Number(flag("ab", "0"));
  for (let round = 0; round < rounds; round++) {
    const tokens: Record<string, number[]> = {};
    for (const fused of [false, true]) {
      setBlockKernelsEnabled(fused);
      const abCache = model.newCache({ rows: batch, capacity: prefill + steps + 8 });
      const t0 = performance.now();
      let ids = rows.map(prompt);
      const out: number[] = [];
      let t1 = 0;
      for (let s = 0; s <= steps; s++) {
        const input = tf.tensor2d(ids, undefined, "int32");
        const logits = model.forward(input, { cache: abCache, lastTokenOnly: true });
        const values = logits.dataSync();
        tf.dispose([input, logits]);
        const vocab = config.vocab_size;
        ids = rows.map((b) => {
          let best = 0;
          for (let v = 1; v < vocab; v++) {
            if (values[b * vocab + v] > values[b * vocab + best]) best = v;
          }
          out.push(best);
          return [best];
        });
        if (s === 0) t1 = performance.now();
      }
      const t2 = performance.now();
      abCache.dispose();
      tokens[String(fused)] = out;
      console.log(JSON.stringify({
        bench: "block_profile",
        ab: round,
        block_kernels: fused ? "on" : "off",
        prefill_tok_s: +((batch * prefill * 1000) / (t1 - t0)).toFixed(1),
        decode_tok_s: +((batch * steps * 1000) / (t2 - t1)).toFixed(2),
        loadavg: Deno.loadavg().map((x) => +x.toFixed(2)),
      }));
    }
    if (tokens["true"].join() !== tokens["false"].join()) {
      throw new Error(`--ab: greedy tokens differ with the block kernels on and off`);
    }
  }
  setBlockKernelsEnabled(true);
  model.dispose();
}
