/**
 * One DPO step on our engine beside the book's PyTorch code (tools/torch_dpo_bench.py, which
 * runs the notebook's own `compute_dpo_loss_batch`): a policy and a frozen reference copy of GPT-2
 * (124M by default; `tiny` for a quick look) with the pretrained-weights config (context 1024,
 * qkv_bias, drop 0) and random weights, 8 pairs × --tokens ids, masks from position 40 to 10
 * before the end, β 0.1, AdamW lr 5e-6 / wd 0.01. A step: the reference's log-probabilities (no
 * gradients), the policy's forward and backward over chosen and rejected, the AdamW update.
 *
 *   deno run -A --v8-flags=--expose-gc bench/dpo_step.ts [--model tiny|124M|355M] [--steps 2]
 *     [--tokens 70] [--torch on|off]
 *
 * One warm-up step, then the median of --steps timed steps; JSON lines: ours, PyTorch's, the ratio.
 */
import { describeEngine, initEngine } from "../llm/engine/backend.ts";
import type { PreferenceBatch } from "../llm/data/preferences.ts";
import type { GPTConfig } from "../llm/model/config.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import { gpt2Config } from "../llm/model/gpt2_sizes.ts";
import { SeededRandom } from "../llm/random.ts";
import { AdamW } from "../llm/train/adamw.ts";
import { dpoTrainStep } from "../llm/train/dpo.ts";
import { flag, median, peakRssMb, runTorchBench } from "./common.ts";

const modelName = flag("model", "124M");
const steps = Number(flag("steps", "2"));
const TOKENS = Number(flag("tokens", "70"));
const withTorch = flag("torch", "on") === "on";
const BATCH = 8;
if (!["tiny", "124M", "355M"].includes(modelName)) {
  throw new Error(`--model must be tiny, 124M or 355M, got ${modelName}`);
}
if (!(TOKENS > 50)) throw new Error(`--tokens must be > 50 (the mask spans 40 .. tokens - 10)`);
const config: GPTConfig = modelName === "tiny"
  ? { ...gpt2Config("124M"), emb_dim: 32, n_heads: 4, n_layers: 2 }
  : gpt2Config(modelName as "124M" | "355M");

const engine = await initEngine({ backend: "cpu", log: () => {} });
const rng = new SeededRandom(7);
const ids = () => Int32Array.from({ length: BATCH * TOKENS }, () => rng.nextInt(config.vocab_size));
const mask = Uint8Array.from({ length: BATCH * TOKENS }, (_, i) => {
  const t = i % TOKENS;
  return t >= 40 && t < TOKENS - 10 ? 1 : 0;
});
const batch: PreferenceBatch = {
  chosen: ids(),
  rejected: ids(),
  chosenMask: mask,
  rejectedMask: mask.slice(),
  batchSize: BATCH,
  seqLen: TOKENS,
};

const policy = new GPTModel(config, { seed: 123 });
const reference = new GPTModel(config, { seed: 123 });
reference.freeze();
const optimizer = new AdamW(policy.trainableParameters(), { lr: 5e-6, weightDecay: 0.01 });
const step = async () => {
  (globalThis as { gc?: () => void }).gc?.();
  const start = performance.now();
  await dpoTrainStep(policy, reference, optimizer, batch, { beta: 0.1 });
  return (performance.now() - start) / 1e3;
};
await step(); // warm-up
const times: number[] = [];
for (let i = 0; i < steps; i++) times.push(await step());
const ours = median(times);
console.log(JSON.stringify({
  bench: "dpo_step",
  impl: "groundup",
  model: modelName,
  engine: describeEngine(engine),
  batch: BATCH,
  tokens: TOKENS,
  steps,
  seconds: +ours.toFixed(4),
  seconds_all: times.map((t) => +t.toFixed(4)),
  loadavg: Deno.loadavg().map((x) => +x.toFixed(2)),
  peak_rss_mb: peakRssMb(),
}));
policy.dispose();
reference.dispose();

if (withTorch) {
  const torch = await runTorchBench(
    ["--model", modelName, "--steps", String(steps), "--tokens", String(TOKENS)],
    "torch_dpo_bench.py",
  );
  for (const line of torch) console.log(JSON.stringify(line));
  const theirs = torch[0]?.seconds as number | undefined;
  if (theirs !== undefined) {
    console.log(JSON.stringify({
      bench: "dpo_step_ratio",
      ours_s: +ours.toFixed(4),
      pytorch_s: theirs,
      ratio: +(ours / theirs).toFixed(3),
    }));
  }
}
