/**
 * One instruction fine-tuning step on our engine, full and LoRA, side by side with the book's
 * PyTorch code (tools/torch_finetune_bench.py): GPT-2 124M (or 355M) with the pretrained-weights
 * config (context 1024, qkv_bias, drop 0), random weights, batch 8 × 71 tokens (the book's
 * typical padded length), the last 10 targets of each row -100, AdamW lr 5e-5 / wd 0.1 over the
 * trainable parameters. LoRA: rank 16, alpha 16 on every linear layer (llm/model/lora.ts).
 *
 *   deno run -A bench/finetune_step.ts [--model 124M|355M] [--steps 3] [--tokens 71] [--torch on|off]
 *     [--modes full,lora,lora-plain] [--interleave] [--profile] [--layers N]
 *
 * Modes: full, lora (the cpu engine's LoRA linear kernels, llm/engine/lora_kernels.ts) and
 * lora-plain (the same step with those kernels unregistered: lora.ts's plain-tfjs form).
 * --interleave builds every mode's model first and alternates their steps (one of each in turn);
 * run with `--v8-flags=--expose-gc` to collect garbage before each timed step.
 * --profile adds, per mode, one line per tfjs kernel of one extra forward + backward (tf.profile);
 * --layers N (default: the model's) profiles a shallower model of the same width quickly.
 *
 * One warm-up step, then the median of --steps timed steps. One JSON line per mode, then the
 * PyTorch lines and the ratios (ours / PyTorch, and LoRA / full for each).
 */
import { gpt2Config } from "../llm/model/gpt2_sizes.ts";
import * as tf from "@tensorflow/tfjs";
import { describeEngine, initEngine } from "../llm/engine/backend.ts";
import { blasInUse } from "../llm/engine/cpu_kernels.ts";
import { registerLoraKernels, unregisterLoraKernels } from "../llm/engine/lora_kernels.ts";
import type { GPTConfig } from "../llm/model/config.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import { applyLora } from "../llm/model/lora.ts";
import { SeededRandom } from "../llm/random.ts";
import { AdamW } from "../llm/train/adamw.ts";
import { trainStep } from "../llm/train/trainer.ts";
import { computeGradients } from "../llm/train/trainer.ts";
import { flag, hasFlag, kernelProfile, median, peakRssMb, runTorchBench } from "./common.ts";

const modelName = flag("model", "124M");
const steps = Number(flag("steps", "3"));
const TOKENS = Number(flag("tokens", "71"));
const withTorch = flag("torch", "on") === "on";
const modes = flag("modes", "full,lora").split(",");
for (const mode of modes) {
  if (!["full", "lora", "lora-plain"].includes(mode)) {
    throw new Error(`--modes: unknown mode "${mode}" (expected full, lora, lora-plain)`);
  }
}
const BATCH = 8;
if (modelName !== "124M" && modelName !== "355M") {
  throw new Error(`--model must be 124M or 355M, got ${modelName}`);
}
const config: GPTConfig = gpt2Config(modelName);
if (flag("layers", "")) config.n_layers = Number(flag("layers", ""));
const profile = hasFlag("profile");
const interleave = hasFlag("interleave");

const engine = await initEngine({ backend: "cpu", log: () => {} });
const rng = new SeededRandom(7);
const randomIds = () =>
  Int32Array.from({ length: BATCH * TOKENS }, () => rng.nextInt(config.vocab_size));
const inputs = { shape: [BATCH, TOKENS] as [number, number], data: randomIds() };
const targetData = randomIds();
for (let r = 0; r < BATCH; r++) targetData.fill(-100, r * TOKENS + TOKENS - 10, (r + 1) * TOKENS);
const batch = { inputs, targets: { shape: inputs.shape, data: targetData } };

/** One mode's model, optimizer and timed step (each step first selects the mode's kernels). */
function setUp(mode: string) {
  const model = new GPTModel(config, { seed: 123 });
  if (mode !== "full") applyLora(model);
  const optimizer = new AdamW(model.trainableParameters(), { lr: 5e-5, weightDecay: 0.1 });
  const blas = blasInUse();
  const selectKernels = () => {
    if (mode === "lora-plain") unregisterLoraKernels();
    else if (blas) registerLoraKernels(blas);
  };
  const step = async () => {
    selectKernels();
    // With --v8-flags=--expose-gc, collect the garbage of earlier steps (another mode's, when
    // interleaved) before the clock starts rather than inside this step.
    (globalThis as { gc?: () => void }).gc?.();
    const start = performance.now();
    await trainStep(model, optimizer, batch);
    return (performance.now() - start) / 1e3;
  };
  return { mode, model, step, selectKernels, times: [] as number[] };
}

const ours: Record<string, number> = {};
function report(run: ReturnType<typeof setUp>) {
  ours[run.mode] = median(run.times);
  console.log(JSON.stringify({
    bench: "finetune_step",
    impl: "groundup",
    mode: run.mode,
    model: modelName,
    engine: describeEngine(engine),
    batch: BATCH,
    tokens: TOKENS,
    steps,
    interleaved: interleave,
    trainable_parameters: run.model.numParameters({ trainableOnly: true }),
    seconds: +ours[run.mode].toFixed(4),
    seconds_all: run.times.map((t) => +t.toFixed(4)),
    loadavg: Deno.loadavg().map((x) => +x.toFixed(2)),
    peak_rss_mb: peakRssMb(),
  }));
}

async function profileOf(run: ReturnType<typeof setUp>) {
  run.selectKernels();
  const lines = await kernelProfile(async () => {
    const { loss, grads } = computeGradients(run.model, batch, { training: true });
    await loss.data();
    tf.dispose([loss, ...grads.values()]);
  });
  for (const line of lines) {
    console.log(JSON.stringify({ bench: "finetune_profile", mode: run.mode, ...line }));
  }
}

if (interleave) {
  // All models at once, one step of each mode in turn: load changes on a shared machine hit
  // every mode alike (peak RSS is then that of all models together).
  const runs = modes.map(setUp);
  for (const run of runs) await run.step(); // warm-up
  for (let i = 0; i < steps; i++) {
    for (const run of runs) run.times.push(await run.step());
  }
  for (const run of runs) report(run);
  for (const run of runs) if (profile) await profileOf(run);
  for (const run of runs) run.model.dispose();
  tf.disposeVariables();
} else {
  for (const mode of modes) {
    const run = setUp(mode);
    await run.step(); // warm-up
    for (let i = 0; i < steps; i++) run.times.push(await run.step());
    report(run);
    if (profile) await profileOf(run);
    run.model.dispose();
    tf.disposeVariables();
  }
}
console.log(
  JSON.stringify({
    bench: "finetune_step_lora_vs_full",
    impl: "groundup",
    ratio: +(ours.lora / ours.full).toFixed(3),
    ...(ours["lora-plain"] ? { ratio_plain: +(ours["lora-plain"] / ours.full).toFixed(3) } : {}),
    target: "≤ 0.6",
  }),
);

if (withTorch) {
  const torch = await runTorchBench(
    ["--model", modelName, "--steps", String(steps), "--tokens", String(TOKENS)],
    "torch_finetune_bench.py",
  );
  const theirs: Record<string, number> = {};
  for (const line of torch) {
    console.log(JSON.stringify(line));
    theirs[line.mode as string] = line.seconds as number;
  }
  for (const mode of ["full", "lora"]) {
    if (theirs[mode] === undefined) continue;
    console.log(JSON.stringify({
      bench: "finetune_step_ratio",
      mode,
      ours_s: +ours[mode].toFixed(4),
      pytorch_s: theirs[mode],
      ratio: +(ours[mode] / theirs[mode]).toFixed(3),
      target: "≤ 1.0",
    }));
  }
  if (theirs.full && theirs.lora) {
    console.log(
      JSON.stringify({
        bench: "finetune_step_lora_vs_full",
        impl: "pytorch",
        ratio: +(theirs.lora / theirs.full).toFixed(3),
      }),
    );
  }
}
