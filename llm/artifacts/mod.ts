/**
 * The kinds of artifact the stages write, one module each that writes and reads it, and the
 * registry that says which files make each kind. Stages declare the kinds they write
 * (`StageDefinition.outputs`); the report (llm/report/gather.ts) and the page's API
 * (server/ui_api.ts) find what an artifact holds here instead of each guessing by file names.
 *
 * Readers check what they read and give typed values; a missing or damaged file is an error
 * naming the file and the place in it. Artifacts refer to each other's files by stage and
 * cache key (ref.ts), resolved against the cache when read.
 */
import { hasGguf } from "./gguf.ts";
import { hasGenerations } from "./generations.ts";
import { finalLosses, hasHistory, readTrainingHistory } from "./history.ts";
import { hasJudgeScores, hasPairwise, readJudgeScores, readPairwise } from "./judge.ts";
import { hasMmluResults, headlineAccuracy, readMmluResults } from "./mmlu.ts";
import { hasAdapter, hasModel } from "./model.ts";
import { hasReport } from "./report.ts";
import { hasResponses } from "./responses.ts";
import { hasTokens } from "./tokens.ts";
import { hasBatches } from "./batches.ts";
import { hasInstructions } from "./instructions.ts";
import { hasPreferences } from "./preferences.ts";

/** What a stage's artifact may hold. */
export type ArtifactKind =
  | "model"
  | "adapter"
  | "history"
  | "tokens"
  | "batches"
  | "instructions"
  | "preferences"
  | "responses"
  | "generations"
  | "mmlu"
  | "judge"
  | "pairwise"
  | "report"
  | "gguf";

/** A kind of artifact: what it is, and how to tell that a folder holds one. */
export interface ArtifactKindInfo {
  /** One line: what the files are and which module reads them. */
  description: string;
  /** Whether the folder holds an artifact of this kind (its marking files are there). */
  present(dir: string): boolean;
}

/** Every kind, in the order the page lists an artifact's views. */
export const ARTIFACT_KINDS: Readonly<Record<ArtifactKind, ArtifactKindInfo>> = {
  history: {
    description: "training history: history.json, history.csv, samples.json, loss.svg (history.ts)",
    present: hasHistory,
  },
  mmlu: {
    description:
      "MMLU results in lm-evaluation-harness layout: results.json, samples.jsonl (mmlu.ts)",
    present: hasMmluResults,
  },
  judge: {
    description: "judge scores: judge.json, scores.jsonl, histogram-<field>.svg (judge.ts)",
    present: hasJudgeScores,
  },
  pairwise: {
    description: "pairwise preference of two response fields: pairwise.json (judge.ts)",
    present: hasPairwise,
  },
  responses: {
    description: "the book's responses file, one field per model: responses.json (responses.ts)",
    present: hasResponses,
  },
  generations: {
    description: "replies to prompts with their settings: generations.json (generations.ts)",
    present: hasGenerations,
  },
  report: {
    description: "one self-contained page and its data: report.html, report.json (report.ts)",
    present: hasReport,
  },
  model: {
    description:
      "a model: model.safetensors + gpt_config.json, or a Hugging Face folder (model.ts)",
    present: hasModel,
  },
  adapter: {
    description: "a LoRA adapter: adapter.safetensors + adapter.json, or PEFT's (model.ts)",
    present: hasAdapter,
  },
  tokens: {
    description: "a tokenized corpus: tokens.bin, corpus.txt, the tokenizer's files (tokens.ts)",
    present: hasTokens,
  },
  batches: {
    description: "training windows: loader.json, train/val token files, the tokenizer (batches.ts)",
    present: hasBatches,
  },
  instructions: {
    description: "instruction data: <split>.json, <split>.bin, template.json (instructions.ts)",
    present: hasInstructions,
  },
  preferences: {
    description: "preference pairs: <split>.json, <split>.chosen/rejected.bin (preferences.ts)",
    present: hasPreferences,
  },
  gguf: {
    description: "a llama.cpp model file and an Ollama Modelfile: model.gguf (gguf.ts)",
    present: hasGguf,
  },
};

/**
 * The kinds `dir` holds: of those its stage declares (`declared`; every kind when the stage
 * is not known, e.g. an artifact of a stage type no longer registered), the ones whose files
 * are there (a judge of one field writes no pairwise.json). In `ARTIFACT_KINDS` order.
 */
export function artifactKinds(dir: string, declared?: readonly ArtifactKind[]): ArtifactKind[] {
  return (Object.keys(ARTIFACT_KINDS) as ArtifactKind[])
    .filter((kind) => declared === undefined || declared.includes(kind))
    .filter((kind) => ARTIFACT_KINDS[kind].present(dir));
}

/** Headline numbers of one kind of an artifact. */
export interface KindHeadline {
  /** The kind they come from. */
  kind: ArtifactKind;
  /** Name → value (null: none, e.g. a loss that was not a number). */
  metrics: Record<string, number | string | null>;
}

/**
 * The numbers an artifact is judged by, from the kinds it holds (see `artifactKinds`): a
 * training history's final losses, the MMLU headline accuracy (the first group's, else the
 * first task's), the judge's mean per field, the pairwise win rate. Errors as the readers'.
 */
export async function headlineMetrics(
  dir: string,
  declared?: readonly ArtifactKind[],
): Promise<KindHeadline[]> {
  const found: KindHeadline[] = [];
  const kinds = artifactKinds(dir, declared);
  if (kinds.includes("history")) {
    const losses = finalLosses(await readTrainingHistory(dir));
    if (losses.train_loss !== null || losses.val_loss !== null) {
      found.push({ kind: "history", metrics: losses });
    }
  }
  if (kinds.includes("mmlu")) {
    const best = headlineAccuracy(await readMmluResults(dir));
    if (best) found.push({ kind: "mmlu", metrics: { task: best.task, acc: best.acc } });
  }
  if (kinds.includes("judge")) {
    const { fields } = await readJudgeScores(dir);
    const means = fields.map((f) => [`mean ${f.field}`, f.mean]);
    found.push({ kind: "judge", metrics: Object.fromEntries(means) });
  }
  if (kinds.includes("pairwise")) {
    const p = await readPairwise(dir);
    found.push({ kind: "pairwise", metrics: { [`win_rate ${p.first}`]: p.win_rate } });
  }
  return found;
}

export * from "./ref.ts";
export * from "./history.ts";
export * from "./mmlu.ts";
export * from "./judge.ts";
export * from "./responses.ts";
export * from "./generations.ts";
export * from "./report.ts";
export * from "./model.ts";
export * from "./gguf.ts";
export * from "./tokens.ts";
export * from "./batches.ts";
export * from "./instructions.ts";
export * from "./preferences.ts";
