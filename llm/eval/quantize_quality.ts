/**
 * What `quantize: int8` or `bf16` costs in quality, measured against the same model in fp32
 * (issue 19, item 2): the validation loss, greedy decoding (how many of N tokens stay the same)
 * and MMLU accuracy. Each precision opens the model folder afresh through `openModelFolder`,
 * the path every stage and command takes, so the numbers are those of the engine users run.
 *
 * Next-token agreement is the teacher-forced view: at every validation position, whether the
 * most likely next token is the same as fp32's. It is stable where free-running greedy decoding
 * is chaotic (a random model's logits are nearly flat, so one flipped choice early changes the
 * whole continuation).
 *
 * Greedy agreement is stated two ways: `prefix`, the fraction of the N tokens identical until
 * the first difference (after it, the two texts continue different contexts, so later tokens are
 * no longer a like-for-like comparison), and `overall`, the fraction of positions holding the
 * same token (continuations often fall back into step).
 */
import * as tf from "@tensorflow/tfjs";
import type { Batch } from "../data/batch.ts";
import { openModelFolder } from "../infer/open_model.ts";
import { generate } from "../model/generate.ts";
import type { GPTModel } from "../model/gpt.ts";
import type { Quantization } from "../model/precision.ts";
import { crossEntropy } from "../train/loss.ts";
import { evaluateMmlu, type MmluLoader } from "./mmlu/evaluate.ts";

/** How two greedy continuations of one prompt agree. */
export interface GreedyAgreement {
  /** Identical tokens before the first difference, over the reference's length. */
  prefix: number;
  /** Positions with the same token, over the reference's length. */
  overall: number;
  /** Index of the first differing token; null when all are the same. */
  firstDifference: number | null;
}

/** Compares `other` with `reference` position by position (a missing token counts as differing). */
export function greedyAgreement(
  reference: readonly number[],
  other: readonly number[],
): GreedyAgreement {
  if (reference.length === 0) throw new Error("greedyAgreement: the reference has no tokens");
  let same = 0;
  let firstDifference: number | null = null;
  for (let i = 0; i < reference.length; i++) {
    if (reference[i] === other[i]) same++;
    else if (firstDifference === null) firstDifference = i;
  }
  const prefix = firstDifference ?? reference.length;
  return { prefix: prefix / reference.length, overall: same / reference.length, firstDifference };
}

/** What to measure a model on. */
export interface QualityProbe {
  /** Validation batches (a fresh iteration for each precision). */
  valBatches: () => Iterable<Batch>;
  /** The prompt's token ids for greedy decoding. */
  prompt: readonly number[];
  /** Tokens to decode greedily (no stop token: always this many). */
  newTokens: number;
  /** MMLU, when given: one harness task (e.g. `mmlu_philosophy`), 0-shot. */
  mmlu?: { task: string; load: MmluLoader; limit?: number; batchSize?: number };
}

/** One precision's measurements. */
export interface QualityMeasure {
  /** How the weights were held. */
  quantize: Quantization;
  /** Mean cross-entropy over the validation batches (the mean of the batches' means). */
  valLoss: number;
  /** The most likely next token at every validation position. */
  nextTokens: Int32Array;
  /** The greedy continuation's token ids. */
  greedy: number[];
  /** MMLU accuracy and the questions it is over (when the probe asks for it). */
  mmlu?: { acc: number; questions: number; correct: boolean[] };
}

/** Opens the model in `dir` with `quantize` and measures it on `probe`. */
export async function measureQuality(
  dir: string,
  quantize: Quantization,
  probe: QualityProbe,
): Promise<QualityMeasure> {
  const opened = await openModelFolder(dir, { quantize });
  const { model, tokenizer } = opened;
  try {
    const { valLoss, nextTokens } = await validation(model, probe.valBatches());
    const greedy = await generate(model, probe.prompt, {
      maxNewTokens: probe.newTokens,
      temperature: 0,
      vocabLimit: opened.vocabLimit,
    });
    let mmlu: QualityMeasure["mmlu"];
    if (probe.mmlu) {
      const evaluation = await evaluateMmlu(model, tokenizer, {
        tasks: [probe.mmlu.task],
        numFewshot: 0,
        limit: probe.mmlu.limit,
        batchSize: probe.mmlu.batchSize ?? 8,
        load: probe.mmlu.load,
      });
      const result = evaluation.results[probe.mmlu.task];
      mmlu = {
        acc: result.acc,
        questions: result.samples,
        correct: evaluation.samples.map((s) => s.correct),
      };
    }
    return { quantize, valLoss, nextTokens, greedy, ...(mmlu ? { mmlu } : {}) };
  } finally {
    model.dispose();
  }
}

/** The validation loss (as the book's calc_loss_loader) and the argmax at every position. */
async function validation(model: GPTModel, batches: Iterable<Batch>) {
  let total = 0, count = 0;
  const choices: Int32Array[] = [];
  for (const batch of batches) {
    const shape: [number, number] = [batch.batchSize, batch.seqLen];
    const [loss, argmax] = tf.tidy(() => {
      const logits = model.forward(tf.tensor2d(batch.inputs, shape, "int32"));
      const loss = crossEntropy(logits, tf.tensor2d(batch.targets, shape, "int32"));
      return [loss, tf.argMax(logits, -1)];
    });
    total += (await loss.data())[0];
    choices.push((await argmax.data()) as Int32Array);
    tf.dispose([loss, argmax]);
    count++;
  }
  if (count === 0) throw new Error("quantize quality: no validation batches");
  const nextTokens = new Int32Array(choices.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of choices) nextTokens.set(c, offset), offset += c.length;
  return { valLoss: total / count, nextTokens };
}

/** One precision against fp32. */
export interface QualityDelta {
  /** How the weights were held. */
  quantize: Quantization;
  /** Its validation loss. */
  valLoss: number;
  /** `valLoss` minus fp32's. */
  valLossDelta: number;
  /** Validation positions whose most likely next token is fp32's, over all positions. */
  nextTokenAgreement: number;
  /** Its greedy continuation against fp32's. */
  greedy: GreedyAgreement;
  /** Its MMLU accuracy. */
  mmluAcc?: number;
  /** Accuracy minus fp32's. */
  mmluAccDelta?: number;
  /** Questions whose right/wrong verdict differs from fp32's. */
  mmluFlipped?: number;
}

/** `measured` compared with the fp32 `reference`. */
export function qualityDelta(reference: QualityMeasure, measured: QualityMeasure): QualityDelta {
  const delta: QualityDelta = {
    quantize: measured.quantize,
    valLoss: measured.valLoss,
    valLossDelta: measured.valLoss - reference.valLoss,
    nextTokenAgreement: measured.nextTokens.filter((t, i) => t === reference.nextTokens[i])
      .length / reference.nextTokens.length,
    greedy: greedyAgreement(reference.greedy, measured.greedy),
  };
  if (reference.mmlu && measured.mmlu) {
    delta.mmluAcc = measured.mmlu.acc;
    delta.mmluAccDelta = measured.mmlu.acc - reference.mmlu.acc;
    delta.mmluFlipped = measured.mmlu.correct.filter((c, i) => c !== reference.mmlu!.correct[i])
      .length;
  }
  return delta;
}
