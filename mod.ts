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
  evaluateStage,
  generateStage,
  loadOpenaiWeightsStage,
  pretrainStage,
  tokenizeStage,
} from "./stages/mod.ts";
export { complete, readModelTokenizer } from "./stages/generate.ts";
export { openDataloaderArtifact } from "./stages/dataloader.ts";
export { openTokenizeArtifact } from "./stages/tokenize.ts";

// Data
export { fetchFile } from "./datasets/download.ts";
export type { RemoteFile } from "./datasets/download.ts";
export { DATASETS } from "./datasets/catalog.ts";
export { GPT2_SIZES, hfGpt2Files, openaiGpt2Files } from "./datasets/gpt2.ts";

// The from-scratch library
export { createTokenizer, Gpt2Tokenizer, SimpleTokenizer } from "./llm/tokenizer/mod.ts";
export type { Tokenizer, TokenizerSpec } from "./llm/tokenizer/mod.ts";
export { slidingWindows, WindowLoader } from "./llm/data/windows.ts";
export type { Batch, Windows } from "./llm/data/windows.ts";
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
export { batchGenerate, batchGenerateRows } from "./llm/infer/batch_generate.ts";
export { generateResponses } from "./llm/infer/responses.ts";
export { loadModel, loadStateDict, saveModel } from "./llm/model/weights_io.ts";
export { AdamW } from "./llm/train/adamw.ts";
export { crossEntropy } from "./llm/train/loss.ts";
export { calcLossBatch, calcLossLoader, evaluateModel, trainStep } from "./llm/train/trainer.ts";
export { readSafetensorsFile, writeSafetensorsFile } from "./llm/weights/safetensors.ts";
export { openTensorBundle, writeTensorBundle } from "./llm/weights/tensorbundle/mod.ts";
export { convertGpt2Weights } from "./llm/weights/gpt2_mapping.ts";
export { initEngine } from "./llm/engine/backend.ts";

// Evaluation (MMLU as lm-evaluation-harness computes it)
export { encodePair, loglikelihoods, scoreRows } from "./llm/eval/loglikelihood.ts";
export { accStderr, pooledStderr } from "./llm/eval/metrics.ts";
export { evaluateMmlu } from "./llm/eval/mmlu/evaluate.ts";
export type { MmluEvaluation, MmluSample } from "./llm/eval/mmlu/evaluate.ts";
export { mmluContext } from "./llm/eval/mmlu/prompt.ts";
export { parseMmluCsv, parseMmluParquet, readTar } from "./llm/eval/mmlu/data.ts";
export { mmluLoader } from "./datasets/mmlu.ts";
