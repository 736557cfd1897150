/**
 * Stage `dpo` (book ch07 bonus, `dpo-from-scratch.ipynb`): preference-tune an instruction-tuned
 * model (a `finetune` or `lora-finetune` output) on a `preferences` artifact with Direct
 * Preference Optimization, with the book's settings: β 0.1, AdamW lr 5e-6 / weight decay 0.01,
 * 1 epoch, batch 8, evaluation every 5 steps over 5 batches (loss, chosen and rejected rewards,
 * reward margin). The reference model is the starting model, frozen; the policy is trained in
 * full, or with LoRA adapters when `lora` is given.
 *
 * Crash safety as `finetune` (the same code): checkpoints in the progress folder, Ctrl-C /
 * SIGTERM / kill -9 resume to the weights an uninterrupted run ends with, a NaN loss stops it.
 *
 * Artifact: model.safetensors + config.json (merged weights, loadable like any model),
 * tokenizer.json, template.json, history.json, history.csv (with the rewards and margins),
 * loss.svg, reward_margins.svg, samples.json; with `lora` also adapter.safetensors + adapter.json.
 */
import { z } from "zod";
import type { StageContext, StageDefinition } from "../runner/stage.ts";
import { writeTemplateFile } from "../llm/data/instruction_files.ts";
import { PreferenceLoader, responsesFit } from "../llm/data/preferences.ts";
import { readModelTemplate } from "../llm/infer/model_folder.ts";
import type { GPTModel } from "../llm/model/gpt.ts";
import { applyLora, LORA_TARGETS, mergeLora, saveAdapter } from "../llm/model/lora.ts";
import { loadModel, saveModel } from "../llm/model/weights_io.ts";
import { copyTokenizerFiles } from "../llm/tokenizer/files.ts";
import { DEFAULT_DPO_BETA, dpoObjective } from "../llm/train/dpo.ts";
import { trainingMetrics, writeTrainingHistory } from "../llm/train/history_files.ts";
import { inputOfType, modelInput } from "./common.ts";
import { useEngine } from "./engine.ts";
import { sample, trainWithCheckpoints } from "./finetune.ts";
import { openPreferencesArtifact, type PreferencesArtifact } from "./preferences.ts";

export const DpoParams = z.strictObject({
  from: z.string().optional().describe(
    "Which upstream stage's model to preference-tune (the starting and reference model), when " +
      "`needs` lists several models.",
  ),
  seed: z.number().int().min(0).default(123).describe(
    "Shuffling of the training pairs, dropout and the LoRA adapters' initial values.",
  ),
  beta: z.number().gt(0).default(DEFAULT_DPO_BETA).describe(
    "DPO's β: how far the policy may move from the reference (the book: 0.1; 0.1–0.5 typical).",
  ),
  epochs: z.number().int().min(1).default(1).describe("Passes over the training pairs."),
  lr: z.number().gt(0).default(5e-6).describe("AdamW learning rate (the book: 5e-6)."),
  weight_decay: z.number().min(0).default(0.01).describe("AdamW's weight decay (the book: 0.01)."),
  batch_size: z.number().int().min(1).default(8).describe(
    "Pairs per batch (the book: 8); the training batches drop a last smaller one.",
  ),
  eval_freq: z.number().int().min(1).default(5).describe(
    "Evaluate at steps 0, `eval_freq`, 2 × `eval_freq`, ... (the book: 5).",
  ),
  eval_iter: z.number().int().min(1).default(5).describe(
    "Batches of each split per evaluation (the book: 5).",
  ),
  initial_eval: z.boolean().default(true).describe(
    "First measure the loss over `eval_iter` batches of each split (the book does: ln 2).",
  ),
  drop_rate: z.number().min(0).lt(1).default(0).describe(
    "Dropout of the policy while training (the book: 0.0).",
  ),
  lora: z.strictObject({
    rank: z.number().int().min(1).describe("Rank of each adapter."),
    alpha: z.number().gt(0).describe("LoRA alpha; the scale is alpha / rank."),
    targets: z.array(z.enum(LORA_TARGETS)).min(1).default([...LORA_TARGETS]).describe(
      "Linear layers with an adapter (as `lora-finetune`'s).",
    ),
  }).optional().describe(
    "Train LoRA adapters on the frozen model instead of every weight (the artifact holds the " +
      "merged weights and the adapter).",
  ),
  sample_tokens: z.number().int().min(0).default(50).describe(
    "Tokens of the greedy sample after each epoch, from the third validation prompt as the " +
      "book (the first when there are fewer; 0: none).",
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
});
export type DpoParams = z.infer<typeof DpoParams>;

/** The training and validation loaders over the artifact's pairs, cut to the model's context. */
async function loaders(
  ctx: StageContext<DpoParams>,
  data: PreferencesArtifact,
  contextLength: number,
) {
  const p = ctx.params;
  const allowedMaxLength = Math.min(data.allowedMaxLength, contextLength);
  if (allowedMaxLength < data.allowedMaxLength) {
    ctx.log.info(`batches cut at the model's context of ${contextLength} tokens`);
  }
  const common = {
    batchSize: p.batch_size,
    allowedMaxLength,
    padTokenId: data.tokenizer.endOfTextId ?? 50256,
    seed: p.seed,
  };
  // Pairs whose responses lie beyond the context have no token to score: left out, said so.
  const fitting = async (split: "train" | "val") => {
    const pairs = await data.pairs(split);
    const kept = pairs.filter((pair) => responsesFit(pair, allowedMaxLength));
    if (kept.length < pairs.length) {
      ctx.log.warn(
        `${split}: ${pairs.length - kept.length} of ${pairs.length} pairs left out: a response ` +
          `starts beyond ${allowedMaxLength} tokens`,
      );
    }
    return kept;
  };
  const train = new PreferenceLoader(await fitting("train"), {
    ...common,
    shuffle: true,
    dropLast: true,
  });
  const val = new PreferenceLoader(await fitting("val"), common);
  if (train.numBatches === 0) {
    throw new Error(
      `${ctx.name}: ${train.pairs.length} training pairs make no full batch of ${p.batch_size}`,
    );
  }
  if (val.numBatches === 0) {
    throw new Error(`${ctx.name}: the preferences artifact has no validation pairs`);
  }
  return { train, val };
}

const definition: StageDefinition<DpoParams> = {
  type: "dpo",
  version: "1",
  description:
    "Preference-tune an instruction-tuned model with DPO (book ch07 bonus), in full or with LoRA",
  params: DpoParams,
  outputs: ["model", "adapter", "history"],
  inherits: ["seed"],
  requires: ["preferences"],
  headline: ["train_loss", "val_loss", "val_reward_margin", "tokens_per_second"],
  cadenceParams: ["checkpoint_minutes", "checkpoint_every"],
  async run(ctx) {
    const p = ctx.params;
    await useEngine(ctx);
    const base = modelInput(ctx, p.from);
    const dataArtifact = inputOfType(ctx, "preferences");
    const data = await openPreferencesArtifact(dataArtifact.dir);
    const { tokenizer, template } = data;
    const trainedWith = await readModelTemplate(base.dir);
    if (!trainedWith) {
      ctx.log.warn(
        `the model of "${base.stage}" has no template.json: DPO expects an instruction-tuned ` +
          "model (a finetune or lora-finetune output)",
      );
    } else if (trainedWith.source !== template.source) {
      ctx.log.warn(
        `the model of "${base.stage}" was fine-tuned with the "${trainedWith.name}" template, ` +
          `the preferences use "${template.name}"`,
      );
    }

    // The reference: the starting model, frozen, never trained (its log-probabilities are
    // computed without gradients). The policy: a second copy that is trained.
    const reference = await loadModel(base.dir, { overrides: { drop_rate: 0 }, seed: p.seed });
    reference.freeze();
    const policy = await loadModel(base.dir, {
      overrides: { drop_rate: p.drop_rate },
      seed: p.seed,
    });
    let trained: GPTModel = policy;
    try {
      if (tokenizer.vocabSize > policy.config.vocab_size) {
        throw new Error(
          `${ctx.name}: the preferences' tokenizer has ${tokenizer.vocabSize} tokens, the ` +
            `model of "${base.stage}" ${policy.config.vocab_size}`,
        );
      }
      const { train, val } = await loaders(ctx, data, policy.config.context_length);
      const adapters = p.lora
        ? applyLora(policy, { rank: p.lora.rank, alpha: p.lora.alpha, targets: p.lora.targets }, {
          seed: p.seed,
        })
        : undefined;
      const valEntries = await data.entries("val");
      const samplePrompt = template.prompt(valEntries[2] ?? valEntries[0]);
      const result = await trainWithCheckpoints(ctx, policy, adapters, {
        train,
        val,
        objective: dpoObjective(reference, p.beta),
        sample: p.sample_tokens > 0
          ? (m) => sample(m, tokenizer, samplePrompt, p.sample_tokens)
          : undefined,
      });
      trained = result.model;
      const state = result.state;

      if (adapters) {
        const merged = await mergeLora(trained, adapters);
        try {
          await saveModel(ctx.outDir, merged);
        } finally {
          merged.dispose();
        }
        await saveAdapter(ctx.outDir, trained, adapters, base.stage);
      } else {
        await saveModel(ctx.outDir, trained);
      }
      await copyTokenizerFiles(dataArtifact.dir, ctx.outDir);
      await writeTemplateFile(ctx.outDir, template);
      await writeTrainingHistory(ctx.outDir, state, `${ctx.pipeline.name}: ${ctx.name}`, [{
        file: "reward_margins.svg",
        train: "train_reward_margin",
        val: "val_reward_margin",
        label: "reward margins",
      }]);
      return {
        metrics: {
          ...trainingMetrics(state),
          trainable_parameters: trained.trainableParameters()
            .reduce((n, [, v]) => n + v.size, 0),
          beta: p.beta,
          prompt_template: template.name,
          base_model: base.stage,
        },
      };
    } finally {
      if (trained !== policy) trained.dispose();
      policy.dispose();
      reference.dispose();
    }
  },
};

/** Stage `dpo`: preference-tune an instruction-tuned model (book ch07 bonus). */
export const dpoStage: StageDefinition = definition;
