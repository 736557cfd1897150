/**
 * One training step of the GPT-2 124M workshop config on our engine: the book's
 * `train_model_simple` inner loop (forward, cross-entropy, backward, AdamW lr 4e-4 / wd 0.1),
 * batch 2 × 256 tokens, dropout 0.1, through `llm/train/trainer.ts` `trainStep`.
 *
 *   deno run -A bench/train_step.ts [--steps 3] [--backend cpu] [--torch on|off] [--profile]
 *                                   [--layers 12]
 *
 * One warm-up step, then the median of --steps timed steps (forward + backward and the optimizer
 * timed apart as well). Prints one JSON line per result; the last field `peak_rss_mb` is the
 * process's peak resident memory (getrusage). With --torch on (default, where
 * `/usr/bin/python3 -c "import torch"` works) the same benchmark of tools/torch_bench.py runs
 * afterwards in its own process and a final line gives the ratio ours / PyTorch. --profile adds
 * one line per tfjs kernel (time of one extra forward + backward under tf.profile) and one per
 * sgemm shape (time and GFLOP/s).
 */
import * as tf from "@tensorflow/tfjs";
import { type BackendChoice, describeEngine, initEngine } from "../llm/engine/backend.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import type { GPTConfig } from "../llm/model/config.ts";
import { blasInUse } from "../llm/engine/cpu_kernels.ts";
import { AdamW } from "../llm/train/adamw.ts";
import { computeGradients } from "../llm/train/trainer.ts";
import { SeededRandom } from "../llm/random.ts";
import { flag, hasFlag, kernelProfile, median, peakRssMb, runTorchBench } from "./common.ts";

const steps = Number(flag("steps", "3"));
const layers = Number(flag("layers", "12"));
const backend = flag("backend", "cpu") as BackendChoice;
const withTorch = flag("torch", "on") === "on";
const profile = hasFlag("profile");

const config: GPTConfig = {
  vocab_size: 50257,
  context_length: 256,
  emb_dim: 768,
  n_heads: 12,
  n_layers: layers,
  drop_rate: 0.1,
  qkv_bias: false,
};
const [BATCH, TOKENS] = [2, 256];

const engine = await initEngine({ backend, log: () => {} });
const model = new GPTModel(config, { seed: 123 });
const optimizer = new AdamW(model.trainableParameters(), { lr: 4e-4, weightDecay: 0.1 });
const rng = new SeededRandom(7);
const ids = () =>
  tf.tensor2d(
    Int32Array.from({ length: BATCH * TOKENS }, () => rng.nextInt(config.vocab_size)),
    [BATCH, TOKENS],
    "int32",
  );
const inputs = ids();
const targets = ids();

/** forward + backward, then AdamW; seconds of each and the loss. */
async function step(): Promise<{ total: number; fwdBwd: number; optim: number; loss: number }> {
  const t0 = performance.now();
  const { loss, grads } = computeGradients(model, { inputs, targets }, { training: true });
  const lossValue = (await loss.data())[0];
  const t1 = performance.now();
  await optimizer.applyGradients(grads);
  const t2 = performance.now();
  loss.dispose();
  for (const grad of grads.values()) grad.dispose();
  return {
    total: (t2 - t0) / 1e3,
    fwdBwd: (t1 - t0) / 1e3,
    optim: (t2 - t1) / 1e3,
    loss: lossValue,
  };
}

const first = await step(); // warm-up: JIT, BLAS threads, optimizer state, first-touch pages
const timings = [];
for (let i = 0; i < steps; i++) timings.push(await step());
const seconds = median(timings.map((t) => t.total));
const ours = {
  bench: "train_step",
  impl: "groundup",
  engine: describeEngine(engine),
  config: layers === 12 ? "gpt2-124M" : `gpt2-124M-${layers}-layers`,
  context_length: TOKENS,
  batch: BATCH,
  tokens_per_step: BATCH * TOKENS,
  steps,
  parameters: model.numParameters(),
  seconds: +seconds.toFixed(4),
  seconds_all: timings.map((t) => +t.total.toFixed(4)),
  forward_backward_s: +median(timings.map((t) => t.fwdBwd)).toFixed(4),
  optimizer_s: +median(timings.map((t) => t.optim)).toFixed(4),
  tokens_per_s: +(BATCH * TOKENS / seconds).toFixed(2),
  first_loss: +first.loss.toFixed(4),
  loadavg: Deno.loadavg().map((x) => +x.toFixed(2)),
  peak_rss_mb: peakRssMb(),
};
console.log(JSON.stringify(ours));

if (profile) {
  // Every sgemm call of one step, grouped by shape: where the matmul time goes and how close
  // each shape runs to the library's speed.
  const blas = blasInUse();
  const shapes = new Map<string, { ms: number; calls: number; gflop: number }>();
  if (blas) {
    const sgemm = blas.sgemm.bind(blas);
    blas.sgemm = (tA, tB, m, n, k, ...rest) => {
      const start = performance.now();
      sgemm(tA, tB, m, n, k, ...rest);
      const key = `${m}x${k}x${n}${tA ? " tA" : ""}${tB ? " tB" : ""}`;
      const entry = shapes.get(key) ?? { ms: 0, calls: 0, gflop: 0 };
      entry.ms += performance.now() - start;
      entry.calls++;
      entry.gflop += (2 * m * n * k) / 1e9;
      shapes.set(key, entry);
    };
  }
  const lines = await kernelProfile(async () => {
    const { loss, grads } = computeGradients(model, { inputs, targets }, { training: true });
    await loss.data();
    loss.dispose();
    for (const grad of grads.values()) grad.dispose();
  });
  for (const line of lines) console.log(JSON.stringify({ bench: "train_step_profile", ...line }));
  for (const [shape, r] of [...shapes].sort((a, b) => b[1].ms - a[1].ms)) {
    console.log(JSON.stringify({
      bench: "train_step_sgemm",
      shape, // M×K×N of op(A)·op(B)
      ms: +r.ms.toFixed(1),
      calls: r.calls,
      gflops: +(r.gflop / (r.ms / 1e3)).toFixed(1),
    }));
  }
}

if (withTorch && layers === 12) {
  const torch = await runTorchBench(["--bench", "train", "--steps", String(steps)]);
  const theirs = torch.find((r) => r.bench === "train_step");
  if (theirs) {
    console.log(JSON.stringify(theirs));
    console.log(JSON.stringify({
      bench: "train_step_ratio",
      ours_s: ours.seconds,
      pytorch_s: theirs.seconds,
      ratio: +(ours.seconds / (theirs.seconds as number)).toFixed(3),
      target: "≤ 1.0",
    }));
  }
}
