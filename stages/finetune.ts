/**
 * Stages `finetune` and `lora-finetune` (book ch07 and exercise 7.4, workshop part 6):
 * instruction-finetune a model an upstream stage produced on an `instructions` artifact, with
 * the book's settings (AdamW 5e-5 / 0.1, 2 epochs, batch 8, evaluation every 5 steps over 5
 * batches, dropout off, a greedy sample of the first validation prompt after each epoch).
 * `finetune` trains every weight; `lora-finetune` freezes the model and trains LoRA adapters
 * (rank 16, alpha 16 on every linear layer: 3,470,608 parameters at 124M).
 *
 * Crash safety as `pretrain`: checkpoints in the progress folder every `checkpoint_minutes`
 * (and `checkpoint_every` steps) and on Ctrl-C / SIGTERM; a re-run resumes exactly. A LoRA
 * checkpoint holds only the adapters and their AdamW state (megabytes, not gigabytes).
 *
 * Artifact of a GPT-2 (our own layout) base: model.safetensors + gpt_config.json (the merged
 * weights under the book's names, which generate, chat, evaluate and responses load like any
 * model), tokenizer_spec.json, template.json (the prompt template the model was trained with),
 * history.json, history.csv, loss.svg, samples.json; `lora-finetune` also adapter.safetensors +
 * adapter.json (the book's names).
 *
 * Artifact of an open-model base (a Hugging Face folder, e.g. from `load-hf-model`): the merged
 * model in Hugging Face's layout (config.json, model.safetensors with HF names, the base's
 * tokenizer and generation files), so every tool that reads the base reads the fine-tune;
 * `lora-finetune` also the adapter in PEFT's format (adapter_config.json +
 * adapter_model.safetensors, llm/families/peft.ts); template.json and the history files as above.
 */
import { join } from "node:path";
import { z } from "zod";
import type { StageContext, StageDefinition } from "../runner/stage.ts";
import { InstructionLoader } from "../llm/data/instruction_batches.ts";
import { writeTemplateFile } from "../llm/data/instruction_files.ts";
import { generate } from "../llm/model/generate.ts";
import type { GPTModel } from "../llm/model/gpt.ts";
import {
  applyLora,
  LORA_PRESETS,
  LORA_TARGET_NAMES,
  type LoraAdapters,
  type LoraConfig,
  mergeLora,
  saveAdapter,
} from "../llm/model/lora.ts";
import { loadModel, saveModel } from "../llm/model/weights_io.ts";
import { copyTokenizerFiles } from "../llm/tokenizer/files.ts";
import { isHfModelFolder, loadHfModel } from "../llm/families/load.ts";
import type { ModelFamily } from "../llm/families/family.ts";
import { saveHfModel } from "../llm/families/save.ts";
import { savePeftAdapter } from "../llm/families/peft.ts";
import { modelFolderName } from "../llm/infer/adapter.ts";
import type { Tokenizer } from "../llm/tokenizer/mod.ts";
import { AdamW } from "../llm/train/adamw.ts";
import {
  loadCheckpoint,
  readCheckpointState,
  restoreCheckpoint,
  saveCheckpoint,
} from "../llm/train/checkpoint.ts";
import { trainingMetrics, writeTrainingHistory } from "../llm/train/history_files.ts";
import {
  type EpochBatches,
  type TrainingObjective,
  type TrainingState,
  trainModel,
} from "../llm/train/loop.ts";
import {
  type CheckpointCadence,
  checkpointSchedule,
  inputOfType,
  modelInput,
  runParams,
} from "./common.ts";
import { useEngine } from "./engine.ts";
import {
  describeSplit,
  type InstructionsArtifact,
  type InstructionsParams,
  leavesValidation,
  openInstructionsArtifact,
} from "./instructions.ts";

const commonShape = {
  from: z.string().optional().describe(
    "Which upstream stage's model to fine-tune, when `needs` lists several models.",
  ),
  seed: z.number().int().min(0).default(123).describe(
    "Shuffling of the training batches, dropout and the LoRA adapters' initial values.",
  ),
  epochs: z.number().int().min(1).default(2).describe("Passes over the training entries."),
  lr: z.number().gt(0).default(5e-5).describe("AdamW learning rate (the book: 5e-5)."),
  weight_decay: z.number().min(0).default(0.1).describe("AdamW's decoupled weight decay."),
  batch_size: z.number().int().min(1).default(8).describe(
    "Entries per batch (the book: 8); the training batches drop a last smaller one.",
  ),
  eval_freq: z.number().int().min(1).default(5).describe(
    "Evaluate at steps 0, `eval_freq`, 2 × `eval_freq`, ... (the book: 5).",
  ),
  eval_iter: z.number().int().min(1).default(5).describe(
    "Batches of each split per evaluation (the book: 5).",
  ),
  drop_rate: z.number().min(0).lt(1).default(0).describe(
    "Dropout while fine-tuning, instead of the base model's (the book: 0.0).",
  ),
  mask_instructions: z.boolean().default(false).describe(
    "Leave the prompt's tokens out of the loss, so only the response is learned (exercise 7.2).",
  ),
  sample_tokens: z.number().int().min(0).default(50).describe(
    "Tokens of the greedy sample after each epoch: the first validation entry's prompt (0: none).",
  ),
  initial_eval: z.boolean().default(false).describe(
    "First measure the loss over `eval_iter` batches of each split (the book prints it).",
  ),
  max_grad_norm: z.number().gt(0).optional().describe(
    "Clip gradients to this global norm (off, as in the book).",
  ),
  checkpoint_minutes: z.number().gt(0).default(10).describe(
    "Write a checkpoint when this many minutes have passed since the last one, and when the " +
      "run is interrupted (Ctrl-C, SIGTERM).",
  ),
  checkpoint_every: z.number().int().min(1).optional().describe(
    "Also checkpoint every this many steps (off by default).",
  ),
};

export const FinetuneParams = z.strictObject(commonShape);
export type FinetuneParams = z.infer<typeof FinetuneParams>;

export const LoraFinetuneParams = z.strictObject({
  ...commonShape,
  lr: z.number().gt(0).default(5e-5).describe(
    "AdamW learning rate (exercise 7.4 keeps the book's 5e-5; LoRA often uses 1e-4 to 1e-3).",
  ),
  preset: z.enum(["book", "litgpt"]).optional().describe(
    "Named LoRA settings that `rank`, `alpha`, `targets` and `lora_dropout` default to: `book` " +
      "(exercise 7.4: rank 16, alpha 16, every linear layer and the head, no dropout; the " +
      "default) or `litgpt` (`litgpt finetune_lora`: rank 8, alpha 16, dropout 0.05, query and " +
      "value only). Keys given beside it win.",
  ),
  rank: z.number().int().min(1).optional().describe(
    "Rank of each adapter (A: in × r, B: r × out); the preset's (16, litgpt 8) when not given. " +
      "At most the smallest width of a targeted layer.",
  ),
  alpha: z.number().gt(0).optional().describe(
    "LoRA alpha (the preset's: 16); see `scaling`.",
  ),
  targets: z.array(z.enum(LORA_TARGET_NAMES as [string, ...string[]])).min(1).optional()
    .describe(
      "Linear layers with an adapter, by LitGPT's switches (`query`, `key`, `value`, " +
        "`projection`, `mlp`, `head`) or by layer role (`q`, `k`, `v`, `o`, `gate`, `up`, " +
        "`down`, `fc`, `proj`, `head`); the preset's when not given (book: all; litgpt: " +
        "query, value).",
    ),
  lora_dropout: z.number().min(0).lt(1).optional().describe(
    "Dropout on each adapter's input (LitGPT's lora_dropout; the preset's: book 0, litgpt 0.05).",
  ),
  scaling: z.enum(["alpha/rank", "alpha"]).default("alpha/rank").describe(
    "The adapter's scale: `alpha/rank` (appendix E, LitGPT) or `alpha` (the chapter 7 exercise " +
      "code); the same when rank = alpha.",
  ),
});
export type LoraFinetuneParams = z.infer<typeof LoraFinetuneParams>;

type AnyFinetuneParams = FinetuneParams | LoraFinetuneParams;
const isLora = (p: AnyFinetuneParams): p is LoraFinetuneParams => "scaling" in p;

/** The LoRA settings of the stage's parameters: the preset's, overridden by the keys given. */
export function loraSettings(p: LoraFinetuneParams): LoraConfig {
  const preset = LORA_PRESETS[p.preset ?? "book"];
  return {
    rank: p.rank ?? preset.rank,
    alpha: p.alpha ?? preset.alpha,
    targets: (p.targets ?? [...preset.targets]) as LoraConfig["targets"],
    dropout: p.lora_dropout ?? preset.dropout,
    scaling: p.scaling,
  };
}

/** What a checkpoint carries besides the position. */
type RunState = Omit<TrainingState, "position"> & { loraDropoutRng?: number };

/** The parameters a checkpointed training run reads (`finetune`, `lora-finetune`, `dpo`). */
export interface CheckpointedTrainingParams extends CheckpointCadence {
  epochs: number;
  lr: number;
  weight_decay: number;
  eval_freq: number;
  eval_iter: number;
  initial_eval: boolean;
  max_grad_norm?: number;
}

/**
 * A run is identified by its parameters and inputs; checkpoints of another run are ignored.
 * How often checkpoints are written does not change the run.
 */
function runId(ctx: StageContext<CheckpointedTrainingParams>): string {
  const inputs = Object.values(ctx.inputs).map((a) => a.key).sort().join(",");
  return `${ctx.name}|${JSON.stringify(runParams(ctx.params))}|${inputs}`;
}

/**
 * A greedy continuation of `prompt` (the book's generate_and_print_sample, which runs the whole
 * `tokens`). With `endId` (open models) it stops at that id or the tokenizer's eos ids, and
 * never picks an id beyond the tokenizer's vocabulary.
 */
export async function sample(
  model: GPTModel,
  tokenizer: Tokenizer,
  prompt: string,
  tokens: number,
  endId?: number,
): Promise<string> {
  const ids = tokenizer.encode(prompt);
  const generated = await generate(model, ids, {
    maxNewTokens: tokens,
    ...(endId === undefined ? {} : {
      stopIds: [endId, ...tokenizer.eosIds],
      vocabLimit: Math.min(model.config.vocab_size, tokenizer.vocabSize),
    }),
  });
  return tokenizer.decode([...ids, ...generated]);
}

/** The loaders over the artifact's train and val examples, cut to the model's context. */
async function loaders(
  ctx: StageContext<AnyFinetuneParams>,
  data: InstructionsArtifact,
  contextLength: number,
) {
  const p = ctx.params;
  const allowedMaxLength = Math.min(data.allowedMaxLength, contextLength);
  if (allowedMaxLength < data.allowedMaxLength) {
    ctx.log.info(
      `batches cut at the model's context of ${contextLength} tokens ` +
        `(allowed_max_length ${data.allowedMaxLength})`,
    );
  }
  const common = {
    batchSize: p.batch_size,
    allowedMaxLength,
    maskInstructions: p.mask_instructions,
    seed: p.seed,
    padTokenId: data.padId,
    endTokenId: data.endId,
  };
  const train = new InstructionLoader(await data.examples("train"), {
    ...common,
    shuffle: true,
    dropLast: true,
  });
  const val = new InstructionLoader(await data.examples("val"), common);
  if (train.numBatches === 0) {
    throw new Error(
      `${ctx.name}: ${train.examples.length} training entries make no full batch of ${p.batch_size}`,
    );
  }
  if (val.numBatches === 0) {
    throw new Error(
      `${ctx.name}: the instructions artifact has no validation entries: use split "book" or ` +
        `fractions {train, test} that leave some`,
    );
  }
  return { train, val };
}

/** The two stages differ only in their parameters (LoRA's or none) and what they train. */
function defineFinetune<P extends AnyFinetuneParams>(
  type: string,
  description: string,
  params: z.ZodType<P>,
): StageDefinition<P> {
  return {
    type,
    version: "1",
    description,
    params,
    inherits: ["seed"],
    requires: ["instructions"],
    headline: ["train_loss", "val_loss", "trainable_parameters", "tokens_per_second"],
    cadenceParams: ["checkpoint_minutes", "checkpoint_every"],
    outputs: type === "lora-finetune" ? ["model", "adapter", "history"] : ["model", "history"],
    producesModel: true,
    // Fine-tuning reports a validation loss: a split that leaves no validation part fails here,
    // before anything runs, naming the split the user chose.
    checkUpstream: (_p, upstream) =>
      upstream.filter((s) => s.direct && s.type === "instructions").flatMap((s) => {
        const split = (s.params as InstructionsParams).split;
        const fraction = (s.params as InstructionsParams).val_split_fraction ?? 0;
        return leavesValidation(split) || fraction > 0 ? [] : [{
          message: `the instructions stage "${s.name}" splits with ${describeSplit(split)}, ` +
            `which leaves no validation part (fine-tuning reports a validation loss): use ` +
            `split "book" or fractions {train, test} that sum to less than 1`,
        }];
      }),
    async run(ctx: StageContext<P>) {
      const p: AnyFinetuneParams = ctx.params;
      await useEngine(ctx);
      const base = modelInput(ctx, p.from);
      const dataArtifact = inputOfType(ctx, "instructions");
      const data = await openInstructionsArtifact(dataArtifact.dir);
      const { tokenizer, template } = data;

      const { model, family } = await loadBase(ctx, base.dir, base.stage, data);
      let trained: GPTModel = model;
      try {
        if (tokenizer.vocabSize > model.config.vocab_size) {
          throw new Error(
            `${ctx.name}: the instructions' tokenizer has ${tokenizer.vocabSize} tokens, the ` +
              `model of "${base.stage}" ${model.config.vocab_size}`,
          );
        }
        const { train, val } = await loaders(ctx, data, model.config.context_length);
        const adapters = isLora(p)
          ? applyLora(model, loraSettings(p), { seed: p.seed })
          : undefined;
        const samplePrompt = template.prompt((await data.entries("val"))[0]);
        const result = await trainWithCheckpoints(ctx, model, adapters, {
          train,
          val,
          sample: p.sample_tokens > 0
            ? (m) => sample(m, tokenizer, samplePrompt, p.sample_tokens, family && data.endId)
            : undefined,
        });
        trained = result.model;
        const state = result.state;

        // The artifact: merged weights that load like any model of the base's kind, the adapter
        // beside them (the book's names for GPT-2, PEFT's for an open model).
        const save = (m: GPTModel) =>
          family ? saveHfModel(ctx.outDir, m, family, base.dir) : saveModel(ctx.outDir, m);
        if (adapters) {
          const merged = await mergeLora(trained, adapters);
          try {
            await save(merged);
          } finally {
            merged.dispose();
          }
          if (family) {
            const name = modelFolderName(base.dir) ?? base.stage;
            await savePeftAdapter(ctx.outDir, trained, adapters, family, name);
          } else {
            await saveAdapter(ctx.outDir, trained, adapters, base.stage);
          }
        } else {
          await save(trained);
        }
        // An open model's tokenizer files came with it (saveHfModel); ours are the data's.
        if (!family) await copyTokenizerFiles(dataArtifact.dir, ctx.outDir);
        await writeTemplateFile(ctx.outDir, template);
        await writeTrainingHistory(ctx.outDir, state, `${ctx.pipeline.name}: ${ctx.name}`);
        return {
          metrics: {
            ...trainingMetrics(state),
            trainable_parameters: trained.trainableParameters()
              .reduce((n, [, v]) => n + v.size, 0),
            prompt_template: template.name,
            base_model: base.stage,
          },
        };
      } finally {
        if (trained !== model) trained.dispose();
        model.dispose();
      }
    },
  };
}

/**
 * The model to fine-tune: our own folder (with the stage's dropout), or a Hugging Face folder
 * (with its family, which says how to write the result back in HF's layout). An open model's
 * RoPE tables are built only as far as the batches and the samples reach.
 */
async function loadBase(
  ctx: StageContext<AnyFinetuneParams>,
  dir: string,
  stage: string,
  data: InstructionsArtifact,
): Promise<{ model: GPTModel; family?: ModelFamily }> {
  const p = ctx.params;
  if (!isHfModelFolder(dir)) {
    const model = await loadModel(dir, { overrides: { drop_rate: p.drop_rate }, seed: p.seed });
    return { model };
  }
  if (p.drop_rate > 0) {
    throw new Error(
      `${ctx.name}: drop_rate ${p.drop_rate}: the open model of "${stage}" has no dropout ` +
        `layers (its config has none); use drop_rate 0`,
    );
  }
  if (data.tokenizer.name !== "hf") {
    throw new Error(
      `${ctx.name}: the model of "${stage}" is an open model with its own tokenizer, but the ` +
        `instructions were tokenized with ${data.tokenizer.name}: give the instructions stage ` +
        `\`tokenizer: model\` and \`needs: ${stage}\``,
    );
  }
  const loaded = await loadHfModel(dir, {
    maxContext: data.allowedMaxLength + p.sample_tokens + 1,
  });
  return { model: loaded.model, family: loaded.family };
}

/** What {@link trainWithCheckpoints} trains on and how. */
export interface CheckpointedTraining<B> {
  /** Training batches. */
  train: EpochBatches<B>;
  /** Validation batches. */
  val: EpochBatches<B>;
  /** What a step minimises (default: the book's cross-entropy; `B` must then be `Batch`). */
  objective?: TrainingObjective<B>;
  /** The sample after each epoch (none when omitted). */
  sample?: (model: GPTModel) => Promise<string>;
}

/**
 * Trains `fresh` (its adapters, when given) with AdamW on the one training loop, resuming from a
 * checkpoint of this run in the progress folder and writing checkpoints as the cadence
 * parameters say and on Ctrl-C / SIGTERM. Returns the trained model: `fresh`, or for a full
 * fine-tune resumed from a checkpoint the checkpoint's model (the caller disposes both).
 */
export async function trainWithCheckpoints<B>(
  ctx: StageContext<CheckpointedTrainingParams>,
  fresh: GPTModel,
  adapters: LoraAdapters | undefined,
  run: CheckpointedTraining<B>,
): Promise<{ model: GPTModel; state: TrainingState }> {
  const p = ctx.params;
  const { train } = run;
  const checkpointDir = join(ctx.progressDir, "checkpoint");
  const makeOptimizer = (m: GPTModel) =>
    new AdamW(m.trainableParameters(), { lr: p.lr, weightDecay: p.weight_decay });
  let model = fresh;
  let optimizer = makeOptimizer(model);
  let resume: TrainingState | undefined;
  const saved = await readCheckpointState<RunState>(checkpointDir, (line) => ctx.log.warn(line));
  if (saved && saved.runId === runId(ctx)) {
    if (adapters) {
      await restoreCheckpoint(checkpointDir, model, optimizer, adapters.parameters());
      if (saved.extra.loraDropoutRng !== undefined) {
        adapters.mode.rng.state = saved.extra.loraDropoutRng;
      }
    } else {
      // The whole model is in the checkpoint: it replaces the freshly loaded one.
      ({ model, optimizer } = await loadCheckpoint<RunState>(checkpointDir, makeOptimizer));
    }
    const { loraDropoutRng: _rng, ...extra } = saved.extra;
    resume = { ...extra, position: saved.position };
    ctx.log.info(
      `resuming from the checkpoint at step ${saved.position.step} (epoch ${
        saved.position.epoch + 1
      }, batch ${saved.position.batch})`,
    );
  }
  const trainable = model.trainableParameters().reduce((n, [, v]) => n + v.size, 0);
  if (!resume) {
    ctx.log.info(
      `trainable parameters: ${trainable.toLocaleString("en-US")}` +
        (adapters ? ` (LoRA rank ${adapters.config.rank}, alpha ${adapters.config.alpha})` : "") +
        `; ${train.numBatches} steps per epoch`,
    );
  }
  const schedule = checkpointSchedule(p);
  try {
    const state = await trainModel<B>({
      model,
      optimizer,
      train,
      val: run.val,
      objective: run.objective,
      epochs: p.epochs,
      evalFreq: p.eval_freq,
      evalIter: p.eval_iter,
      maxGradNorm: p.max_grad_norm,
      resume,
      initialEval: p.initial_eval,
      initialEvalIter: p.eval_iter,
      setTraining: adapters ? (on) => adapters.train(on) : undefined,
      sample: run.sample,
      saveCheckpoint: async ({ position, ...extra }) => {
        await saveCheckpoint<RunState>(checkpointDir, {
          model,
          optimizer,
          state: {
            position,
            runId: runId(ctx),
            extra: adapters ? { ...extra, loraDropoutRng: adapters.mode.rng.state } : extra,
          },
          ...(adapters ? { trainable: adapters.parameters() } : {}),
        });
        schedule.saved();
        return checkpointDir;
      },
      checkpointDue: schedule.due,
      signal: ctx.signal,
      progress: ctx.progress,
      log: (line) => ctx.log.info(line),
    });
    return { model, state };
  } catch (error) {
    if (model !== fresh) model.dispose();
    throw error;
  }
}

/** Stage `finetune`: instruction-finetune every weight of an upstream model. */
export const finetuneStage: StageDefinition = defineFinetune(
  "finetune",
  "Instruction-finetune every weight of a model (book ch07), with checkpoints",
  FinetuneParams,
);

/** Stage `lora-finetune`: train LoRA adapters on a frozen upstream model; saves merged weights. */
export const loraFinetuneStage: StageDefinition = defineFinetune(
  "lora-finetune",
  "Instruction-finetune LoRA adapters on a frozen model (exercise 7.4); saves merged weights",
  LoraFinetuneParams,
);
