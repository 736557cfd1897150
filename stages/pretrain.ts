/**
 * Stage `pretrain` (workshop part 4, the book's `train_model_simple`): train a GPT from
 * scratch on the dataloader's batches with AdamW, evaluating every `eval_freq` steps on
 * `eval_iter` batches of each split and printing a greedy sample after each epoch.
 *
 * Crash safety: a checkpoint (weights, optimizer moments, dropout RNG, data position,
 * history) is written to the progress folder every `checkpoint_every` steps and at the end of
 * each epoch. Running the pipeline again after a crash or kill continues from it and ends
 * with exactly the weights an uninterrupted run ends with.
 *
 * Artifact: model.safetensors + config.json, history.json, history.csv, loss.svg,
 * samples.json.
 */
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { defineStage, type StageContext } from "../runner/stage.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import { generate } from "../llm/model/generate.ts";
import { saveModel } from "../llm/model/weights_io.ts";
import { AdamW } from "../llm/train/adamw.ts";
import { loadCheckpoint, readCheckpointState, saveCheckpoint } from "../llm/train/checkpoint.ts";
import { lossPlotSvg } from "../llm/train/plot.ts";
import { warmupCosineLr } from "../llm/train/schedule.ts";
import { calcLossLoader, evaluateModel, trainStep } from "../llm/train/trainer.ts";
import type { Batch, WindowLoader } from "../llm/data/windows.ts";
import { inputOfType } from "./common.ts";
import { openDataloaderArtifact } from "./dataloader.ts";
import { copyTokenizerFiles } from "./tokenize.ts";
import { useEngine } from "./engine.ts";
import { ModelConfigSchema } from "./model_schema.ts";
import { countParameters } from "../llm/model/config.ts";

export const PretrainParams = z.strictObject({
  model: ModelConfigSchema,
  seed: z.number().int().min(0).default(123),
  epochs: z.number().int().min(1).default(10),
  lr: z.number().gt(0).default(4e-4),
  weight_decay: z.number().min(0).default(0.1),
  /** Evaluate every this many optimizer steps (the book: 5). */
  eval_freq: z.number().int().min(1).default(5),
  /** Batches of each split per evaluation (the book: 5). */
  eval_iter: z.number().int().min(1).default(5),
  sample_prompt: z.string().min(1).default("Every effort moves you"),
  sample_tokens: z.number().int().min(0).default(50),
  /** Clip gradients to this global norm (off by default, as in the workshop). */
  max_grad_norm: z.number().gt(0).optional(),
  /** Linear warmup then cosine decay to min_lr (off by default: a constant lr). */
  schedule: z.enum(["constant", "warmup_cosine"]).default("constant"),
  warmup_steps: z.number().int().min(0).default(0),
  min_lr: z.number().min(0).default(0),
  /**
   * Write a checkpoint (weights + AdamW moments, ~2 GB for 124M) when this many minutes have
   * passed since the last one, and when the run is interrupted (Ctrl-C, SIGTERM).
   */
  checkpoint_minutes: z.number().gt(0).default(10),
  /** Also write one every this many steps (off by default). */
  checkpoint_every: z.number().int().min(1).optional(),
  /** Measure the untrained loss over every batch of both splits first (book: ≈ 10.99 / 10.98). */
  initial_eval: z.boolean().default(true),
});
export type PretrainParams = z.infer<typeof PretrainParams>;

export interface EvalPoint {
  step: number;
  /** Epochs elapsed, fractional (for the plot's x axis). */
  epoch: number;
  tokens_seen: number;
  train_loss: number;
  val_loss: number;
}

export interface Sample {
  epoch: number;
  step: number;
  text: string;
}

interface RunState {
  history: EvalPoint[];
  samples: Sample[];
  initial?: { train_loss: number; val_loss: number };
  trainSeconds: number;
}

/** A dataloader batch in the trainer's shape. */
function asTrainerBatch(b: Batch) {
  return {
    inputs: { shape: [b.batchSize, b.seqLen] as const, data: b.inputs },
    targets: { shape: [b.batchSize, b.seqLen] as const, data: b.targets },
  };
}

function* trainerBatches(loader: WindowLoader, epoch: number) {
  for (const b of loader.batches(epoch)) yield asTrainerBatch(b);
}

function lrAt(p: PretrainParams, step: number, totalSteps: number): number {
  if (p.schedule === "constant") return p.lr;
  return warmupCosineLr(step, {
    peakLr: p.lr,
    minLr: p.min_lr,
    warmupSteps: p.warmup_steps,
    totalSteps,
  });
}

export const pretrainStage = defineStage({
  type: "pretrain",
  // 2: dropout masks come from the fused cpu kernels' own seeded generator.
  // 3: the artifact carries the tokenizer (tokenizer.json, vocab.json).
  version: "3",
  description: "Train a GPT from scratch on the dataloader's batches (AdamW), with checkpoints",
  params: PretrainParams,
  inherits: ["model", "seed"],
  requires: ["dataloader"],
  headline: ["train_loss", "val_loss", "tokens_seen", "tokens_per_second"],
  // How often it checkpoints does not change what it trains (see runner/plan.ts keyParams).
  cadenceParams: ["checkpoint_minutes", "checkpoint_every"],
  // The weights (4 bytes a parameter), and while a checkpoint replaces the previous one two
  // checkpoints of weights + AdamW's two moments (12 bytes a parameter each).
  diskBytes: (p) => 28 * countParameters(p.model),
  memoryBytes: (p) => ({
    bytes: 16 * countParameters(p.model),
    what: `${countParameters(p.model).toLocaleString("en")} parameters × 16 bytes: ` +
      "weights, gradients and AdamW's two moments",
  }),
  checkUpstream: (p, upstream) =>
    upstream.filter((s) => s.type === "dataloader").flatMap((s) => {
      const maxLength = (s.params as { max_length: number }).max_length;
      return maxLength > p.model.context_length
        ? [{
          key: "model.context_length",
          message: `the dataloader "${s.name}" makes windows of max_length ${maxLength} tokens, ` +
            `longer than model.context_length ${p.model.context_length}: lower max_length or raise context_length`,
        }]
        : [];
    }),
  async run(ctx) {
    const p = ctx.params;
    await useEngine(ctx);
    const dataArtifact = inputOfType(ctx, "dataloader");
    const data = await openDataloaderArtifact(dataArtifact.dir);
    const { tokenizer } = data;
    checkCompatible(ctx, data.manifest.max_length, tokenizer.vocabSize);

    const makeOptimizer = (model: GPTModel) =>
      new AdamW(model.trainableParameters(), { lr: p.lr, weightDecay: p.weight_decay });
    const checkpointDir = join(ctx.progressDir, "checkpoint");
    const stepsPerEpoch = data.train.numBatches;
    const totalSteps = stepsPerEpoch * p.epochs;

    let model: GPTModel, optimizer: AdamW;
    let position = { epoch: 0, batch: 0, step: 0, tokensSeen: 0 };
    let state: RunState = { history: [], samples: [], trainSeconds: 0 };
    const saved = await readCheckpointState<RunState>(checkpointDir);
    if (saved && saved.runId === runId(ctx)) {
      ({ model, optimizer } = await loadCheckpoint<RunState>(checkpointDir, makeOptimizer));
      position = saved.position;
      state = saved.extra;
      ctx.log.info(
        `resuming from the checkpoint at step ${position.step} (epoch ${
          position.epoch + 1
        }, batch ${position.batch})`,
      );
    } else {
      model = new GPTModel(p.model, { seed: p.seed });
      optimizer = makeOptimizer(model);
      const params = model.namedParameters().reduce((n, [, v]) => n + v.size, 0);
      ctx.log.info(
        `model: ${params.toLocaleString("en-US")} parameters; ${stepsPerEpoch} steps per epoch`,
      );
      if (p.initial_eval) {
        const train_loss = await calcLossLoader(model, trainerBatches(data.train, 0));
        const val_loss = await calcLossLoader(model, trainerBatches(data.val, 0));
        state.initial = { train_loss, val_loss };
        ctx.log.info(`untrained loss: train ${train_loss.toFixed(3)}, val ${val_loss.toFixed(3)}`);
      }
    }

    let lastCheckpoint = performance.now();
    const checkpoint = async () => {
      await saveCheckpoint<RunState>(checkpointDir, model, optimizer, {
        position,
        runId: runId(ctx),
        extra: state,
      });
      lastCheckpoint = performance.now();
      ctx.log.info(`checkpoint saved at step ${position.step}`);
    };
    const checkpointDue = () =>
      (p.checkpoint_every !== undefined && position.step % p.checkpoint_every === 0) ||
      performance.now() - lastCheckpoint >= p.checkpoint_minutes * 60_000;

    try {
      ctx.progress.start("training", totalSteps, "steps");
      ctx.progress.update(position.step);
      let lastLoss = NaN;
      while (position.epoch < p.epochs) {
        const order = data.train.order(position.epoch);
        while (position.batch < stepsPerEpoch) {
          if (ctx.signal.aborted) {
            await checkpoint();
            ctx.signal.throwIfAborted();
          }
          const t0 = performance.now();
          const batch = data.train.batch(position.epoch, position.batch, order);
          const { loss } = await trainStep(model, optimizer, asTrainerBatch(batch), {
            maxGradNorm: p.max_grad_norm,
            lr: lrAt(p, position.step, totalSteps),
          });
          state.trainSeconds += (performance.now() - t0) / 1000;
          lastLoss = loss;
          position.tokensSeen += batch.inputs.length;
          position.step += 1;
          position.batch += 1;
          // The book evaluates at global_step % eval_freq == 0 with global_step counted from 0.
          if ((position.step - 1) % p.eval_freq === 0) {
            const { trainLoss, valLoss } = await evaluateModel(
              model,
              trainerBatches(data.train, position.epoch),
              trainerBatches(data.val, 0),
              p.eval_iter,
            );
            state.history.push({
              step: position.step - 1,
              epoch: position.epoch + position.batch / stepsPerEpoch,
              tokens_seen: position.tokensSeen,
              train_loss: trainLoss,
              val_loss: valLoss,
            });
            ctx.log.info(
              `Ep ${position.epoch + 1} (Step ${String(position.step - 1).padStart(6, "0")}): ` +
                `Train loss ${trainLoss.toFixed(3)}, Val loss ${valLoss.toFixed(3)}`,
            );
          }
          ctx.progress.update(position.step, {
            epoch: position.epoch + 1,
            loss: lastLoss,
            "tok/s": Math.round(position.tokensSeen / Math.max(state.trainSeconds, 1e-9)),
          });
          // An epoch's last step is checkpointed after its sample, below.
          if (position.batch < stepsPerEpoch && checkpointDue()) await checkpoint();
        }
        if (p.sample_tokens > 0) {
          const text = await sample(model, tokenizer, p);
          state.samples.push({ epoch: position.epoch + 1, step: position.step, text });
          ctx.log.info(`sample after epoch ${position.epoch + 1}: ${text.replace(/\n/g, " ")}`);
        }
        position.epoch += 1;
        position.batch = 0;
        if (position.epoch < p.epochs && checkpointDue()) await checkpoint();
      }
      ctx.progress.finish();
      // The trained model decodes with the tokenizer it was trained on (`deno task generate`).
      await copyTokenizerFiles(dataArtifact.dir, ctx.outDir);
      return await writeArtifact(ctx, model, state, position.tokensSeen, position.step);
    } finally {
      model.dispose();
    }
  },
});

/** A run is identified by its parameters and data; a checkpoint of another run is ignored. */
function runId(ctx: StageContext<PretrainParams>): string {
  const inputs = Object.values(ctx.inputs).map((a) => a.key).sort().join(",");
  return `${JSON.stringify(ctx.params)}|${inputs}`;
}

function checkCompatible(ctx: StageContext<PretrainParams>, maxLength: number, vocabSize: number) {
  const { model } = ctx.params;
  if (maxLength > model.context_length) {
    throw new Error(
      `the dataloader's windows have ${maxLength} tokens but model.context_length is ${model.context_length}`,
    );
  }
  if (vocabSize > model.vocab_size) {
    throw new Error(
      `the tokenizer's vocabulary has ${vocabSize} tokens but model.vocab_size is ${model.vocab_size}`,
    );
  }
}

async function sample(
  model: GPTModel,
  tokenizer: { encode(t: string): number[]; decode(ids: Iterable<number>): string },
  p: PretrainParams,
): Promise<string> {
  const prompt = tokenizer.encode(p.sample_prompt);
  const generated = await generate(model, prompt, { maxNewTokens: p.sample_tokens });
  return tokenizer.decode([...prompt, ...generated]);
}

async function writeArtifact(
  ctx: StageContext<PretrainParams>,
  model: GPTModel,
  state: RunState,
  tokensSeen: number,
  steps: number,
) {
  await saveModel(ctx.outDir, model);
  const history = {
    initial: state.initial ?? null,
    evaluations: state.history,
    samples: state.samples,
  };
  await Deno.writeTextFile(
    join(ctx.outDir, "history.json"),
    JSON.stringify(history, null, 2) + "\n",
  );
  const csv = ["step,epoch,tokens_seen,train_loss,val_loss"]
    .concat(
      state.history.map((h) =>
        [h.step, h.epoch, h.tokens_seen, h.train_loss, h.val_loss].join(",")
      ),
    )
    .join("\n") + "\n";
  await Deno.writeTextFile(join(ctx.outDir, "history.csv"), csv);
  await Deno.writeTextFile(
    join(ctx.outDir, "samples.json"),
    JSON.stringify(state.samples, null, 2) + "\n",
  );
  if (state.history.length > 0) {
    const svg = lossPlotSvg({
      epochs: state.history.map((h) => h.epoch),
      tokensSeen: state.history.map((h) => h.tokens_seen),
      train: state.history.map((h) => h.train_loss),
      val: state.history.map((h) => h.val_loss),
      title: `${ctx.pipeline.name}: ${ctx.name}`,
    });
    await Deno.writeTextFile(join(ctx.outDir, "loss.svg"), svg);
  }
  const last = state.history.at(-1);
  const metrics: Record<string, number> = {
    steps,
    tokens_seen: tokensSeen,
    train_seconds: Number(state.trainSeconds.toFixed(2)),
    seconds_per_step: Number((state.trainSeconds / Math.max(steps, 1)).toFixed(4)),
    tokens_per_second: Math.round(tokensSeen / Math.max(state.trainSeconds, 1e-9)),
  };
  if (last) Object.assign(metrics, { train_loss: last.train_loss, val_loss: last.val_loss });
  if (state.initial) {
    Object.assign(metrics, {
      initial_train_loss: state.initial.train_loss,
      initial_val_loss: state.initial.val_loss,
    });
  }
  // tfjs keeps no tensors beyond the model's; a leak here would show in long pipelines.
  ctx.log.info(`tensors alive after training: ${tf.memory().numTensors}`);
  return { metrics };
}
