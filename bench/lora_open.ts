/**
 * One LoRA (or full) fine-tuning step of an open model on our engine, beside the book's own
 * PyTorch Qwen3 / Llama 3 code with appendix E's LinearWithLoRA
 * (tools/torch_lora_open_bench.py): random weights in the shapes of Qwen3-0.6B (28 layers of
 * 1024, 16 query heads of 128 over 8 key/value heads, vocabulary 151,936, tied head) or
 * Llama-3.2-1B (16 layers of 2048, 32 heads of 64 over 8, SwiGLU 8192, vocabulary 128,256, tied,
 * Llama-3 RoPE scaling), a 256-position RoPE table, batch 8 × 70 tokens (the last 10 targets of
 * each row -100). LoRA: rank 16, alpha 16 on every linear layer and the head (the book's preset,
 * the layers replace_linear_with_lora wraps), AdamW lr 1e-4 / wd 0.01 over the adapters.
 *
 *   deno run -A bench/lora_open.ts --family qwen3|llama [--mode lora|full] [--steps 2]
 *     [--tokens 70] [--torch on|off] [--layers N]
 *
 * One warm-up step, then the median of --steps timed steps; each side's peak RSS (each runs in
 * its own process: run the modes one at a time, a full step of the 1B model needs ~20 GB).
 */
import { describeEngine, initEngine } from "../llm/engine/backend.ts";
import { llama, qwen3 } from "../llm/families/mod.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import { applyLora, LORA_PRESETS } from "../llm/model/lora.ts";
import { SeededRandom } from "../llm/random.ts";
import { AdamW } from "../llm/train/adamw.ts";
import { trainStep } from "../llm/train/trainer.ts";
import { flag, median, peakRssMb, runTorchBench } from "./common.ts";

const familyName = flag("family", "qwen3");
const mode = flag("mode", "lora");
const steps = Number(flag("steps", "2"));
const TOKENS = Number(flag("tokens", "70"));
const withTorch = flag("torch", "on") === "on";
const BATCH = 8;
if (!["qwen3", "llama"].includes(familyName)) throw new Error(`--family: qwen3 or llama`);
if (!["lora", "full"].includes(mode)) throw new Error(`--mode: lora or full`);

/** The released models' config.json values that decide the shapes. */
const HF_CONFIGS = {
  qwen3: {
    model_type: "qwen3",
    vocab_size: 151936,
    hidden_size: 1024,
    intermediate_size: 3072,
    num_hidden_layers: 28,
    num_attention_heads: 16,
    num_key_value_heads: 8,
    head_dim: 128,
    hidden_act: "silu",
    max_position_embeddings: 40960,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    tie_word_embeddings: true,
  },
  llama: {
    model_type: "llama",
    vocab_size: 128256,
    hidden_size: 2048,
    intermediate_size: 8192,
    num_hidden_layers: 16,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    head_dim: 64,
    hidden_act: "silu",
    max_position_embeddings: 131072,
    rms_norm_eps: 1e-5,
    rope_theta: 500000,
    rope_scaling: {
      rope_type: "llama3",
      factor: 32,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    },
    tie_word_embeddings: true,
  },
};

const family = familyName === "qwen3" ? qwen3 : llama;
const hf = HF_CONFIGS[familyName as "qwen3" | "llama"];
const { config, tiedHead } = family.toConfig(hf, `${familyName} (bench)`);
config.context_length = 256;
// --layers N: a shallower model of the same widths (a quick look; the record uses the full depth).
if (flag("layers", "")) config.n_layers = Number(flag("layers", ""));

const engine = await initEngine({ backend: "cpu", log: () => {} });
const rng = new SeededRandom(7);
const randomIds = () =>
  Int32Array.from({ length: BATCH * TOKENS }, () => rng.nextInt(config.vocab_size));
const inputs = { shape: [BATCH, TOKENS] as [number, number], data: randomIds() };
const targetData = randomIds();
for (let r = 0; r < BATCH; r++) targetData.fill(-100, r * TOKENS + TOKENS - 10, (r + 1) * TOKENS);
const batch = { inputs, targets: { shape: inputs.shape, data: targetData } };

const model = new GPTModel(config, { seed: 123, tiedHead });
if (mode === "lora") applyLora(model, { ...LORA_PRESETS.book, scaling: "alpha/rank" });
const optimizer = new AdamW(model.trainableParameters(), { lr: 1e-4, weightDecay: 0.01 });
const times: number[] = [];
for (let i = 0; i <= steps; i++) {
  const start = performance.now();
  await trainStep(model, optimizer, batch);
  const seconds = (performance.now() - start) / 1e3;
  console.error(
    `step ${i}${i === 0 ? " (warm-up)" : ""}: ${seconds.toFixed(2)} s, peak RSS ${peakRssMb()} MB`,
  );
  if (i > 0) times.push(seconds); // the first is the warm-up
}
const seconds = median(times);
console.log(JSON.stringify({
  bench: "lora_open",
  impl: "groundup",
  family: familyName,
  mode,
  layers: config.n_layers,
  engine: describeEngine(engine),
  batch: BATCH,
  tokens: TOKENS,
  parameters: model.numParameters(),
  trainable_parameters: model.numParameters({ trainableOnly: true }),
  step_seconds: +seconds.toFixed(3),
  seconds_all: times.map((t) => +t.toFixed(3)),
  loadavg: Deno.loadavg().map((x) => +x.toFixed(2)),
  peak_rss_mb: peakRssMb(),
}));
model.dispose();

if (withTorch) {
  const torch = await runTorchBench(
    [
      "--family",
      familyName,
      "--mode",
      mode,
      "--steps",
      String(steps),
      "--tokens",
      String(TOKENS),
      "--layers",
      String(config.n_layers),
    ],
    "torch_lora_open_bench.py",
  );
  for (const line of torch) {
    console.log(JSON.stringify(line));
    console.log(JSON.stringify({
      bench: "lora_open_ratio",
      family: familyName,
      mode,
      ours_s: +seconds.toFixed(3),
      pytorch_s: line.step_seconds,
      ratio: +(seconds / (line.step_seconds as number)).toFixed(3),
      target: "≤ 1.0",
      loadavg: Deno.loadavg().map((x) => +x.toFixed(2)),
    }));
  }
}
