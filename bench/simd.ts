/**
 * The fused ops' forward loops and the AdamW update: plain JS (llm/engine/fused_math.ts,
 * AdamW `simd: false`) vs WebAssembly SIMD (llm/engine/wasm/), on the shapes of one GPT-2 124M
 * workshop step (batch 2 × 256 tokens, emb 768, 12 heads, vocabulary 50,257). One JSON line per
 * case: best-of-reps milliseconds of each and the speed-up.
 *
 *   deno run -A bench/simd.ts [--reps 5]
 *
 * Both run in the same process, alternating, so a busy machine slows both alike.
 */
import * as tf from "@tensorflow/tfjs";
import {
  applyDropoutMask,
  causalSoftmaxForward,
  crossEntropyForward,
  dropoutMask,
  geluForward,
} from "../llm/engine/fused_math.ts";
import { simdMath } from "../llm/engine/wasm/simd_math.ts";
import { AdamW } from "../llm/train/adamw.ts";
import { initEngine } from "../llm/engine/backend.ts";
import { flag } from "./common.ts";

const reps = Number(flag("reps", "5"));
const simd = simdMath();
if (!simd) throw new Error("WebAssembly SIMD is not available in this runtime");
await initEngine({ backend: "cpu", log: () => {} });

const [B, T, E, H, V] = [2, 256, 768, 12, 50257];
function random(size: number, seed: number, spread: number): Float32Array {
  let state = seed >>> 0;
  return Float32Array.from({ length: size }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state / 2 ** 32 - 0.5) * 2 * spread;
  });
}

const geluInput = random(B * T * 4 * E, 1, 4);
const scores = random(B * H * T * T, 2, 10);
const logits = random(B * T * V, 3, 10);
const attentionMask = dropoutMask(scores.length, 0.1, 7);
const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % V);

function adamwCase(useSimd: boolean): () => Promise<void> {
  // 7.1 M weights: the two largest matrices of a block (fc1 and fc2) plus their biases' worth.
  const size = 2 * 4 * E * E + 4 * E + E;
  const weights = tf.variable(tf.randomNormal([size], 0, 0.02, "float32", 4));
  const grad = tf.randomNormal([size], 0, 1e-3, "float32", 5);
  const optimizer = new AdamW([["w", weights]], { lr: 4e-4, weightDecay: 0.1, simd: useSimd });
  return async () => await optimizer.applyGradients(new Map([["w", grad]]));
}

const CASES: [string, () => unknown, () => unknown][] = [
  [
    "GELU forward + tanh [512,3072]",
    () => geluForward(geluInput),
    () => simd.geluForward(geluInput, true),
  ],
  [
    "GELU forward, inference [512,3072]",
    () => geluForward(geluInput),
    () => simd.geluForward(geluInput, false),
  ],
  [
    "causal softmax [2,12,256,256]",
    () => causalSoftmaxForward(scores, T, T, 0, 8),
    () => simd.causalSoftmaxForward(scores, T, T, 0, 8),
  ],
  [
    "dropout forward (mask + apply) [2,12,256,256]",
    () => applyDropoutMask(scores, dropoutMask(scores.length, 0.1, 7), 0.1),
    () => simd.dropout(scores, 0.1, 7),
  ],
  [
    "dropout backward [2,12,256,256]",
    () => applyDropoutMask(scores, attentionMask, 0.1),
    () => simd.applyDropoutMask(scores, attentionMask, 0.1),
  ],
  [
    "cross-entropy forward + exps [512,50257]",
    () => crossEntropyForward(logits, targets, V, -100),
    () => simd.crossEntropyForward(logits, targets, V, -100, true),
  ],
  [
    "cross-entropy forward, inference [512,50257]",
    () => crossEntropyForward(logits, targets, V, -100),
    () => simd.crossEntropyForward(logits, targets, V, -100, false),
  ],
];

async function best(run: () => unknown): Promise<number> {
  let fastest = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await run();
    fastest = Math.min(fastest, performance.now() - t0);
  }
  return fastest;
}

const jsAdamW = adamwCase(false);
const simdAdamW = adamwCase(true);
CASES.push(["AdamW update, 7.1 M weights", jsAdamW, simdAdamW]);

for (const [name, js, wasm] of CASES) {
  await js(); // warm-up: JIT and memory growth
  await wasm();
  const jsMs = await best(js);
  const simdMs = await best(wasm);
  console.log(JSON.stringify({
    bench: "simd",
    case: name,
    js_ms: Number(jsMs.toFixed(2)),
    simd_ms: Number(simdMs.toFixed(2)),
    speedup: Number((jsMs / simdMs).toFixed(2)),
    loadavg: Deno.loadavg().map((x) => +x.toFixed(2)),
  }));
}
