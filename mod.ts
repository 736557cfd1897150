/**
 * groundup's public API, for running pipelines from code and writing stages of your own.
 *
 * ```ts
 * import { builtinStages, defineStage, loadPipeline, runPipeline } from "./mod.ts";
 * import { z } from "zod";
 *
 * const registry = builtinStages().register(defineStage({
 *   type: "count-words", version: "1", description: "Count words",
 *   params: z.strictObject({}), requires: ["tokenize"],
 *   async run(ctx) { return { metrics: { words: 42 } }; },
 * }));
 * const pipeline = await loadPipeline("pipelines/smoke.yaml", registry);
 * const report = await runPipeline(pipeline, { cacheDir: ".groundup" });
 * ```
 */

// The runner
export { loadPipeline } from "./runner/pipeline.ts";
export type { LoadOptions, ResolvedPipeline, StageInstance } from "./runner/pipeline.ts";
export { orderStages, planPipeline } from "./runner/plan.ts";
export type { PlannedStep, Selection } from "./runner/plan.ts";
export { formatPlan, formatSummary, runPipeline } from "./runner/run.ts";
export type { RunOptions, RunReport, StepReport } from "./runner/run.ts";
export { ArtifactCache, writeFileAtomic } from "./runner/cache.ts";
export { PipelineError, StageFailedError } from "./runner/errors.ts";
export { createLogger, createProgress } from "./runner/progress.ts";
export type { Logger, ProgressReporter } from "./runner/progress.ts";

// The stage API
export { defineStage, StageRegistry } from "./runner/stage.ts";
export type {
  Artifact,
  Manifest,
  PipelineSettings,
  StageContext,
  StageDefinition,
  StageResult,
} from "./runner/stage.ts";
export {
  builtinStages,
  dataloaderStage,
  generateStage,
  loadOpenaiWeightsStage,
  pretrainStage,
  tokenizeStage,
} from "./stages/mod.ts";
export { openDataloaderArtifact, openTokenizeArtifact } from "./stages/mod.ts";

// Data
export { fetchFile } from "./datasets/download.ts";
export type { RemoteFile } from "./datasets/download.ts";
export { DATASETS } from "./datasets/catalog.ts";
export { hfGpt2Files, openaiGpt2Files } from "./datasets/gpt2.ts";

// The from-scratch library
export { createTokenizer, Gpt2Tokenizer, SimpleTokenizer } from "./llm/tokenizer/mod.ts";
export type { Tokenizer, TokenizerSpec } from "./llm/tokenizer/mod.ts";
export { slidingWindows, WindowLoader } from "./llm/data/windows.ts";
export type { LoaderOptions, Windows } from "./llm/data/windows.ts";
export { batchFromRows } from "./llm/data/batch.ts";
export type { Batch } from "./llm/data/batch.ts";
export { SeededRandom } from "./llm/random.ts";
export { OpenAiBpe } from "./llm/tokenizer/bpe.ts";
export {
  extractResponse,
  formatInstructionPrompt,
  readInstructionData,
  splitInstructionData,
} from "./llm/data/instructions.ts";

// The model, training and weights
export { countParameters, loadModelConfig } from "./llm/model/config.ts";
export type { GPTConfig } from "./llm/model/config.ts";
export { GPTModel } from "./llm/model/gpt.ts";
export { generate, generateTextSimple } from "./llm/model/generate.ts";
export { loadModel, loadStateDict, saveModel } from "./llm/model/weights_io.ts";
export { AdamW } from "./llm/train/adamw.ts";
export { crossEntropy } from "./llm/train/loss.ts";
export { calcLossBatch, calcLossLoader, evaluateModel, trainStep } from "./llm/train/trainer.ts";
export type {
  AnyBatch,
  BatchSource,
  TokenBatch,
  TokenMatrix,
  TrainStepOptions,
  TrainStepResult,
} from "./llm/train/trainer.ts";
export { NonFiniteLossError, TrainingInterrupted, trainModel } from "./llm/train/loop.ts";
export type {
  EpochBatches,
  EvalPoint,
  LoopProgress,
  Sample,
  TrainingState,
  TrainLoopOptions,
} from "./llm/train/loop.ts";
export { loadCheckpoint, readCheckpointState, saveCheckpoint } from "./llm/train/checkpoint.ts";
export type { CheckpointState, TrainingPosition } from "./llm/train/checkpoint.ts";
export { readSafetensorsFile, writeSafetensorsFile } from "./llm/weights/safetensors.ts";
export { openTensorBundle, writeTensorBundle } from "./llm/weights/tensorbundle/mod.ts";
export { convertGpt2Weights } from "./llm/model/gpt2_mapping.ts";
export {
  convertCheckpointToModelFolder,
  findLocalCheckpoint,
  openCheckpoint,
} from "./llm/model/gpt2_import.ts";
export { GPT2_SIZES, gpt2SizeFor } from "./llm/model/gpt2_sizes.ts";
export type { Gpt2Size } from "./llm/model/gpt2_sizes.ts";

// Inference
export { complete, IncrementalDecoder } from "./llm/infer/complete.ts";
export type { CompleteOptions, Completion, SamplingSettings } from "./llm/infer/complete.ts";
export { isInstructionTuned, isModelFolder, readModelTokenizer } from "./llm/infer/model_folder.ts";
export { readTokenizerFolder } from "./llm/tokenizer/files.ts";
export { initEngine } from "./llm/engine/backend.ts";
