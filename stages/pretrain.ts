/**
 * Stage `pretrain` (workshop part 4, the book's `train_model_simple`): train a GPT from
 * scratch on the dataloader's batches with AdamW, evaluating every `eval_freq` steps on
 * `eval_iter` batches of each split and printing a greedy sample after each epoch.
 *
 * The loop itself is llm/train/loop.ts; this stage configures it and writes the artifact.
 *
 * Crash safety: a checkpoint (weights, optimizer moments, dropout RNG, data position,
 * history) is written to the progress folder when `checkpoint_minutes` have passed since the
 * last one, every `checkpoint_every` steps if set, and when the run is interrupted (Ctrl-C,
 * SIGTERM). Running the pipeline again after a crash or kill continues from the last one and
 * ends with exactly the weights an uninterrupted run ends with.
 *
 * Artifact: model.safetensors + gpt_config.json, history.json, history.csv, loss.svg,
 * samples.json.
 */
import { join } from "node:path";
import { z } from "zod";
import { defineStage, type StageContext, type StageDefinition } from "../runner/stage.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import { generate } from "../llm/model/generate.ts";
import { saveModel } from "../llm/model/weights_io.ts";
import { copyTokenizerFiles } from "../llm/tokenizer/files.ts";
import type { Tokenizer } from "../llm/tokenizer/mod.ts";
import { AdamW } from "../llm/train/adamw.ts";
import { loadCheckpoint, readCheckpointState, saveCheckpoint } from "../llm/train/checkpoint.ts";
import { type TrainingState, trainModel } from "../llm/train/loop.ts";
import { trainingMetrics, writeTrainingHistory } from "../llm/train/history_files.ts";
import { warmupCosineLr } from "../llm/train/schedule.ts";
import { checkpointSchedule, inputOfType, runParams } from "./common.ts";
import { openDataloaderArtifact } from "./dataloader.ts";
import { useEngine } from "./engine.ts";
import { ModelConfigSchema } from "./model_schema.ts";
import { countParameters } from "../llm/model/config.ts";

export const PretrainParams = z.strictObject({
  model: ModelConfigSchema.describe(
    "The GPT config, book keys; the stage's values are merged over the pipeline's `model`.",
  ),
  seed: z.number().int().min(0).default(123).describe("Initial weights and dropout."),
  epochs: z.number().int().min(1).default(10).describe("Passes over the training batches."),
  lr: z.number().gt(0).default(4e-4).describe(
    "AdamW learning rate (PyTorch's AdamW: betas 0.9/0.999, eps 1e-8).",
  ),
  weight_decay: z.number().min(0).default(0.1).describe(
    "AdamW's decoupled weight decay (as PyTorch's).",
  ),
  eval_freq: z.number().int().min(1).default(5).describe(
    "Evaluate at steps 0, `eval_freq`, 2 × `eval_freq`, ... (the book: 5).",
  ),
  eval_iter: z.number().int().min(1).default(5).describe(
    "Batches of each split per evaluation (the book: 5).",
  ),
  sample_prompt: z.string().min(1).default("Every effort moves you").describe(
    "Prompt of the greedy sample after each epoch.",
  ),
  sample_tokens: z.number().int().min(0).default(50).describe(
    "Tokens of the greedy sample after each epoch.",
  ),
  max_grad_norm: z.number().gt(0).optional().describe(
    "Clip gradients to this global norm (off by default, as in the workshop).",
  ),
  schedule: z.enum(["constant", "warmup_cosine"]).default("constant").describe(
    "`warmup_cosine`: linear warmup then cosine decay to `min_lr` (default: a constant lr).",
  ),
  warmup_steps: z.number().int().min(0).default(0).describe(
    "Warmup steps of `warmup_cosine`.",
  ),
  min_lr: z.number().min(0).default(0).describe("Final learning rate of `warmup_cosine`."),
  checkpoint_minutes: z.number().gt(0).default(10).describe(
    "Write a checkpoint (weights + AdamW state, ≈ 2 GB at 124M) when this many minutes have " +
      "passed since the last one, and when the run is interrupted (Ctrl-C, SIGTERM).",
  ),
  checkpoint_every: z.number().int().min(1).optional().describe(
    "Also checkpoint every this many steps (off by default).",
  ),
  initial_eval: z.boolean().default(true).describe(
    "Measure the untrained loss over every batch of both splits first (book: ≈ 10.99 / 10.98).",
  ),
});
export type PretrainParams = z.infer<typeof PretrainParams>;

/** What a checkpoint carries besides the position (the loop's state, as format 1 stored it). */
type RunState = Omit<TrainingState, "position">;

function lrAt(p: PretrainParams, step: number, totalSteps: number): number {
  if (p.schedule === "constant") return p.lr;
  return warmupCosineLr(step, {
    peakLr: p.lr,
    minLr: p.min_lr,
    warmupSteps: p.warmup_steps,
    totalSteps,
  });
}

/**
 * The `pretrain` stage (book ch05): trains a GPT from scratch on the dataloader's batches, with
 * checkpoints and exact resume, and writes the model folder and loss curves.
 */
export const pretrainStage: StageDefinition = defineStage({
  type: "pretrain",
  // 2: dropout masks come from the fused cpu kernels' own seeded generator.
  // 3: the artifact carries the tokenizer (tokenizer.json, vocab.json; since renamed
  // tokenizer_spec.json, old names still read).
  version: "3",
  description: "Train a GPT from scratch on the dataloader's batches (AdamW), with checkpoints",
  params: PretrainParams,
  inherits: ["model", "seed"],
  requires: ["dataloader"],
  outputs: ["model", "history"],
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

    let model: GPTModel, optimizer: AdamW;
    let resume: TrainingState | undefined;
    const saved = await readCheckpointState<RunState>(checkpointDir, (line) => ctx.log.warn(line));
    if (saved && saved.runId === runId(ctx)) {
      ({ model, optimizer } = await loadCheckpoint<RunState>(checkpointDir, makeOptimizer));
      resume = { ...saved.extra, position: saved.position };
      const { position } = resume;
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
    }

    const schedule = checkpointSchedule(p);
    try {
      const state = await trainModel({
        model,
        optimizer,
        train: data.train,
        val: data.val,
        epochs: p.epochs,
        evalFreq: p.eval_freq,
        evalIter: p.eval_iter,
        lrAt: (step, totalSteps) => lrAt(p, step, totalSteps),
        maxGradNorm: p.max_grad_norm,
        resume,
        initialEval: p.initial_eval,
        sample: p.sample_tokens > 0 ? (m) => sample(m, tokenizer, p) : undefined,
        saveCheckpoint: async ({ position, ...extra }) => {
          await saveCheckpoint<RunState>(checkpointDir, {
            model,
            optimizer,
            state: { position, runId: runId(ctx), extra },
          });
          schedule.saved();
          return checkpointDir;
        },
        checkpointDue: schedule.due,
        signal: ctx.signal,
        progress: ctx.progress,
        log: (line) => ctx.log.info(line),
      });
      // The trained model decodes with the tokenizer it was trained on (`deno task generate`).
      await copyTokenizerFiles(dataArtifact.dir, ctx.outDir);
      return await writeArtifact(ctx, model, state);
    } finally {
      model.dispose();
    }
  },
});

/**
 * A run is identified by its parameters and data; a checkpoint of another run is ignored. How
 * often checkpoints are written does not change the run, so those settings are left out.
 */
function runId(ctx: StageContext<PretrainParams>): string {
  const inputs = Object.values(ctx.inputs).map((a) => a.key).sort().join(",");
  return `${JSON.stringify(runParams(ctx.params))}|${inputs}`;
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

async function sample(model: GPTModel, tokenizer: Tokenizer, p: PretrainParams): Promise<string> {
  const prompt = tokenizer.encode(p.sample_prompt);
  const generated = await generate(model, prompt, { maxNewTokens: p.sample_tokens });
  return tokenizer.decode([...prompt, ...generated]);
}

async function writeArtifact(
  ctx: StageContext<PretrainParams>,
  model: GPTModel,
  state: TrainingState,
) {
  await saveModel(ctx.outDir, model);
  await writeTrainingHistory(ctx.outDir, state, `${ctx.pipeline.name}: ${ctx.name}`);
  return { metrics: trainingMetrics(state) };
}
