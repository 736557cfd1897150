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
export type { StageHoldings } from "./runner/interrupt.ts";
export { ArtifactCache, writeFileAtomic } from "./runner/cache.ts";
export { PipelineError, StageFailedError } from "./runner/errors.ts";
export { createLogger, createProgress } from "./util/progress.ts";
export type { Logger, ProgressReporter } from "./util/progress.ts";

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
  dpoStage,
  evaluateStage,
  exportStage,
  finetuneStage,
  generateStage,
  instructionsStage,
  loadHfModelStage,
  loadOpenaiWeightsStage,
  loraFinetuneStage,
  preferencesStage,
  pretrainStage,
  responsesStage,
  tokenizeStage,
} from "./stages/mod.ts";
export {
  checkHfModelFolder,
  openDataloaderArtifact,
  openInstructionsArtifact,
  openPreferencesArtifact,
  openTokenizeArtifact,
} from "./stages/mod.ts";
export type { HfModelFolderInfo, HfSourceRecord } from "./stages/mod.ts";
export type { PreferencesArtifact } from "./stages/mod.ts";

// Artifacts: the kinds of output stages declare (`StageDefinition.outputs`), each with a typed
// reader that names the file and place of any damage (llm/artifacts).
export {
  ARTIFACT_KINDS,
  artifactFolder,
  artifactKinds,
  finalLosses,
  headlineAccuracy,
  headlineMetrics,
  locateJudgedResponses,
  readGenerations,
  readJudgeScores,
  readMmluResults,
  readPairwise,
  readResponseEntries,
  readTrainingHistory,
  resolveFileRef,
} from "./llm/artifacts/mod.ts";
export type {
  ArtifactFileRef,
  ArtifactKind,
  ArtifactKindInfo,
  EntryScore,
  GenerationRecord,
  HistoryRow,
  JudgedResponses,
  JudgeRecord,
  JudgeScores,
  KindHeadline,
  MmluResultRow,
  MmluResults,
  PairwiseScores,
  TrainingHistory,
} from "./llm/artifacts/mod.ts";
export type { FieldSummary, ResponseEntry, Unscored } from "./llm/eval/judge.ts";

// Data
export { fetchFile } from "./datasets/download.ts";
export type { RemoteFile } from "./datasets/download.ts";
export { DATASETS } from "./datasets/catalog.ts";
export { downloadHfModel, hubEndpoint, listHubRepo } from "./datasets/hf_hub.ts";
export type {
  HfDownloadOptions,
  HfFileRecord,
  HfModelFiles,
  HfSizeEstimate,
  HubFileEntry,
  HubListing,
} from "./datasets/hf_hub.ts";
export { findHfModel, HF_MODELS } from "./datasets/hf_models.ts";
export type { HfCatalogModel, HfModelFamily } from "./datasets/hf_models.ts";
export {
  HF_GPT2_FILE_NAMES,
  hfGpt2Files,
  OPENAI_GPT2_FILE_NAMES,
  openaiGpt2Files,
} from "./datasets/gpt2.ts";

// The from-scratch library
export { createTokenizer, Gpt2Tokenizer, SimpleTokenizer } from "./llm/tokenizer/mod.ts";
export type { EncodeOptions, Tokenizer, TokenizerSpec } from "./llm/tokenizer/mod.ts";
export { hasHfTokenizer, HfTokenizer, loadHfTokenizer } from "./llm/tokenizer/hf.ts";
export type { HfTokenizerSources } from "./llm/tokenizer/hf.ts";
export { IncrementalDecoder } from "./llm/tokenizer/stream.ts";
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
export {
  collatePreferences,
  parsePreferenceData,
  PreferenceLoader,
  readPreferenceData,
  responsesFit,
  tokenizePreferences,
} from "./llm/data/preferences.ts";
export type {
  PreferenceBatch,
  PreferenceCollateOptions,
  PreferenceEntry,
  PreferenceLoaderOptions,
  TokenizedPair,
} from "./llm/data/preferences.ts";

// The model, training and weights
export {
  countParameters,
  loadModelConfig,
  MODEL_FAMILIES,
  resolveConfig,
  validateConfig,
} from "./llm/model/config.ts";
export type { GPTConfig, LayerType, ResolvedConfig, RopeScaling } from "./llm/model/config.ts";
export { GPTModel } from "./llm/model/gpt.ts";
export type { LinearRole, NamedLinear } from "./llm/model/gpt.ts";
export { applyRope, ropeInverseFrequencies, RotaryEmbedding } from "./llm/model/rope.ts";
export type { RopeAngles } from "./llm/model/rope.ts";
export { generate, generateTextSimple } from "./llm/model/generate.ts";
// Quantized inference: weights packed as Q8_0 / bf16 (openModelFolder's `quantize` loads so).
export { isPacked, packModel, weightBytes } from "./llm/model/precision.ts";
export type { Quantization } from "./llm/model/precision.ts";
export { PackedMatrix } from "./llm/engine/packed_matrix.ts";
export type { PackedType, Sgemm } from "./llm/engine/packed_matrix.ts";
export type { Blas } from "./llm/engine/blas.ts";
export { batchGenerate, batchGenerateRows } from "./llm/infer/batch_generate.ts";
export { generateResponses } from "./llm/infer/responses.ts";
export {
  CONFIG_FILE,
  loadModel,
  loadStateDict,
  modelConfigPath,
  saveModel,
} from "./llm/model/weights_io.ts";
export { AdamW } from "./llm/train/adamw.ts";
export { crossEntropy } from "./llm/train/loss.ts";
export { calcLossBatch, calcLossLoader, evaluateModel, trainStep } from "./llm/train/trainer.ts";
export type {
  AnyBatch,
  BatchSource,
  EvaluateOptions,
  TokenBatch,
  TokenMatrix,
  TrainStepOptions,
  TrainStepResult,
} from "./llm/train/trainer.ts";
export {
  crossEntropyObjective,
  NonFiniteLossError,
  TrainingInterrupted,
  trainModel,
} from "./llm/train/loop.ts";
export type {
  EpochBatches,
  EvalMeasures,
  EvalPoint,
  LoopProgress,
  Sample,
  TrainingObjective,
  TrainingState,
  TrainLoopOptions,
} from "./llm/train/loop.ts";
export {
  computeDpoLoss,
  computeLogprobs,
  DEFAULT_DPO_BETA,
  dpoBatchLoss,
  dpoGradients,
  dpoLossLoader,
  dpoObjective,
  dpoTrainStep,
  referenceLogprobs,
  sequenceLogprobs,
} from "./llm/train/dpo.ts";
export type { DpoLoss, DpoStepResult } from "./llm/train/dpo.ts";
export {
  loadCheckpoint,
  readCheckpointState,
  restoreCheckpoint,
  saveCheckpoint,
} from "./llm/train/checkpoint.ts";
export type {
  CheckpointContents,
  CheckpointState,
  TrainingPosition,
} from "./llm/train/checkpoint.ts";
export { readSafetensorsFile, writeSafetensorsFile } from "./llm/weights/safetensors.ts";
export {
  GGML_TYPES,
  gguf,
  GgufError,
  ggufPlain,
  openGguf,
  quantizeQ8_0,
  readGguf,
  writeGguf,
} from "./llm/weights/gguf.ts";
export type {
  GgmlType,
  GgufArray,
  GgufBigIntType,
  GgufContent,
  GgufHeader,
  GgufNumberType,
  GgufReader,
  GgufTensorInfo,
  GgufTensorSource,
  GgufValue,
} from "./llm/weights/gguf.ts";
// Export: GGUF (llama.cpp, Ollama) and Hugging Face folders
export {
  EXPORT_FORMATS,
  exportGguf,
  exportGgufWithModelfile,
  exportHf,
  GGUF_ARCHITECTURES,
  GGUF_DTYPES,
  ggufArchitecture,
  ggufContent,
  GgufExportError,
  ggufVocabularyOf,
  gpt2Vocabulary,
  hfConfigOf,
  hfVocabulary,
  modelfileText,
  openExportSource,
} from "./llm/export/mod.ts";
export type {
  ExportFormat,
  ExportGgufOptions,
  ExportHfOptions,
  ExportSource,
  GgufArchitecture,
  GgufDtype,
  GgufExportSummary,
  GgufVocabulary,
  HfVocabularyIds,
} from "./llm/export/mod.ts";
export { openTensorBundle, writeTensorBundle } from "./llm/weights/tensorbundle/mod.ts";
export { convertGpt2Weights } from "./llm/model/gpt2_mapping.ts";
export {
  convertCheckpointToModelFolder,
  findLocalCheckpoint,
  openCheckpoint,
} from "./llm/model/gpt2_import.ts";
export { GPT2_SIZES, gpt2SizeFor } from "./llm/model/gpt2_sizes.ts";
export type { Gpt2Size } from "./llm/model/gpt2_sizes.ts";

// Open models: Hugging Face folders of the GPT-2, Llama (+SmolLM2), Qwen3, Gemma 3, Phi-3 and
// Phi-2 families
export { detectFamily, FAMILIES } from "./llm/families/mod.ts";
export {
  isHfModelFolder,
  loadHfModel,
  openHfCheckpoint,
  readHfConfig,
} from "./llm/families/load.ts";
export type {
  ConverterContext,
  FamilyConfig,
  HfCheckpoint,
  HfConfig,
  ModelFamily,
  SpecialTokenIds,
  WeightConverter,
  WeightPlan,
  WeightRule,
} from "./llm/families/mod.ts";
export type { LoadedHfModel, LoadHfModelOptions, OpenHfCheckpoint } from "./llm/families/load.ts";
export { saveHfModel } from "./llm/families/save.ts";
export { isPeftAdapterFolder, readPeftConfig } from "./llm/families/peft.ts";
export type { PeftAdapterConfig } from "./llm/families/peft.ts";
export { expectedStateShapes } from "./llm/families/state_shapes.ts";
export { writeRandomHfModel } from "./llm/families/random_model.ts";
export type { RandomHfModelOptions } from "./llm/families/random_model.ts";
export { checkHfFolder } from "./llm/infer/check_hf_folder.ts";
export type { HfFolderReport } from "./llm/infer/check_hf_folder.ts";

// Inference
export { complete } from "./llm/infer/complete.ts";
export type { CompleteOptions, Completion, SamplingSettings } from "./llm/infer/complete.ts";
export {
  isInstructionTuned,
  isModelFolder,
  readModelTemplate,
  readModelTokenizer,
} from "./llm/infer/model_folder.ts";
export { readTokenizerFolder, TOKENIZER_SPEC_FILE } from "./llm/tokenizer/files.ts";
export { openModelFolder } from "./llm/infer/open_model.ts";
export type { OpenedModelFolder, OpenModelOptions } from "./llm/infer/open_model.ts";
export { applyPrecision, QUANTIZATIONS } from "./llm/model/precision.ts";
export {
  answerOf,
  chatAnswer,
  formatPrompt,
  instructionMessage,
  promptFormatFor,
  stopIdsFor,
} from "./llm/infer/prompt_format.ts";
export type {
  ChatPromptOptions,
  FormattedPrompt,
  InstructionFields,
  PromptFormat,
} from "./llm/infer/prompt_format.ts";

// Chat formats: the model's Jinja chat_template, our instruction templates, or none
export {
  CHAT_TEMPLATE_CHOICES,
  chatFormatFor,
  chatPromptTemplate,
  chooseChatFormat,
  encodeChat,
  instructionChatFormat,
  isChatTemplateChoice,
  jinjaChatFormat,
  plainChatFormat,
  readChatTemplate,
} from "./llm/chat/mod.ts";
export type {
  ChatFormat,
  ChatMessage,
  ChatTemplateChoice,
  RenderedChat,
  RenderOptions,
} from "./llm/chat/mod.ts";
export { backendBindingLimit, initEngine } from "./llm/engine/backend.ts";
export { TensorBundleError, WeightsFileError } from "./llm/weights/errors.ts";
export { SafetensorsError } from "./llm/weights/safetensors.ts";

// Types the functions and classes above mention. `deno doc --lint mod.ts` (a CI gate) wants each
// export documented and each type a public signature mentions exported here. tfjs's and zod's own
// types (Tensor, Variable, ZodType) are the exception: re-exported, deno doc would lint those
// packages' declarations too (it treats node_modules as local files), so a signature mentioning
// one carries `// deno-doc-ignore private-type-ref` instead.
export type { Json, Path, SourceMap } from "./runner/pipeline.ts";
export type { StepStatus } from "./runner/plan.ts";
export type { Output, ProgressOptions, ProgressState } from "./util/progress.ts";
export type { StepOutcome } from "./runner/run.ts";
export type { PipelineProblem, SourceLocation } from "./runner/errors.ts";
export type { DamagedArtifact } from "./runner/cache.ts";
export type { HeldLock, LockOwner } from "./runner/lock.ts";
export type { FileRecord, UpstreamStage } from "./runner/stage.ts";
export type { FetchOptions } from "./datasets/download.ts";
export type { HfGpt2FileName, OpenaiGpt2FileName } from "./datasets/gpt2.ts";
export type { DataloaderArtifact, InstructionsArtifact, LoaderManifest } from "./stages/mod.ts";
export type {
  Embedding,
  LayerNorm,
  LinearLayer,
  Module,
  NamedParameter,
} from "./llm/model/layers.ts";
export type { ForwardOptions, TransformerBlock } from "./llm/model/gpt.ts";
export type {
  KVCache,
  KVCacheOptions,
  LayerKV,
  MultiHeadAttention,
} from "./llm/model/attention.ts";
export type {
  ShardedEmbedding,
  ShardedEmbeddingOptions,
  StateTensor,
} from "./llm/model/sharded.ts";
export type { AdamWState } from "./llm/train/adamw.ts";
export type {
  CheckpointSource,
  Gpt2MappingOptions,
  Gpt2WeightPlan,
} from "./llm/model/gpt2_mapping.ts";
export type { CheckpointFiles, ConvertOptions } from "./llm/model/gpt2_import.ts";
export type { NamedTensor } from "./llm/weights/safetensors.ts";
export type {
  GenerateOptions,
  GenerateSimpleOptions,
  SamplingOptions,
} from "./llm/model/generate.ts";
export type { BackendChoice, EngineInfo, EngineOptions } from "./llm/engine/backend.ts";
export type { LoadModelOptions } from "./llm/model/weights_io.ts";
export type {
  TensorBundle,
  TensorBundleEntry,
  TensorBundleIndex,
} from "./llm/weights/tensorbundle/reader.ts";
export type {
  InstructionEntry,
  InstructionSplit,
  PromptTemplate,
  SplitFractions,
  TokenizedExample,
} from "./llm/data/instructions.ts";
export type { TokenizerFolder } from "./llm/tokenizer/files.ts";
export type {
  TensorBundleWriterOptions,
  WritableTensor,
} from "./llm/weights/tensorbundle/writer.ts";
export type { Gpt2Layout } from "./llm/model/gpt2_mapping.ts";
export type { BundleHeader } from "./llm/weights/tensorbundle/bundle_proto.ts";
export type { NumericArray, TensorValues } from "./llm/weights/tensorbundle/dtypes.ts";
export type { TableBuilderOptions } from "./llm/weights/tensorbundle/table_builder.ts";
export type {
  FeedForward,
  ForwardContext,
  GatedFeedForward,
  GELU,
  Norm,
  RMSNorm,
} from "./llm/model/layers.ts";
export type { AttentionCall, AttentionOptions } from "./llm/model/attention.ts";
export type { BlockCall } from "./llm/model/gpt.ts";
export type { InitMode, ParameterInit } from "./llm/model/init.ts";

// Evaluation (MMLU as lm-evaluation-harness computes it)
export { encodePair, loglikelihoods, scoreRows } from "./llm/eval/loglikelihood.ts";
export { accStderr, pooledStderr } from "./llm/eval/metrics.ts";
export { evaluateMmlu } from "./llm/eval/mmlu/evaluate.ts";
export type { MmluEvaluation, MmluSample } from "./llm/eval/mmlu/evaluate.ts";
export { mmluContext } from "./llm/eval/mmlu/prompt.ts";
export { greedyAgreement, measureQuality, qualityDelta } from "./llm/eval/quantize_quality.ts";
export type {
  GreedyAgreement,
  QualityDelta,
  QualityMeasure,
  QualityProbe,
} from "./llm/eval/quantize_quality.ts";
export { parseMmluCsv, parseMmluParquet, readTar } from "./llm/eval/mmlu/data.ts";
export { mmluLoader } from "./datasets/mmlu.ts";
export type { BatchGenerateOptions, FinishedRow } from "./llm/infer/batch_generate.ts";
export type {
  InstructionPromptFields,
  ResponseOptions,
  ResponseProgress,
  ResponseResult,
} from "./llm/infer/responses.ts";
export type { SplitInfo, TokenizeArtifact } from "./stages/mod.ts";
export type {
  BlockCompression,
  BlockHandle,
  ParsedBlock,
  ParsedTable,
  TableEntry,
} from "./llm/weights/tensorbundle/table.ts";
export type { ScoreOptions, ScoreRow, TokenizedRequest } from "./llm/eval/loglikelihood.ts";
export type { MmluQuestion, MmluSplit } from "./llm/eval/mmlu/data.ts";
export type { MmluTask } from "./llm/eval/mmlu/subjects.ts";
export type { MmluEvalOptions, MmluLoader, MmluTaskResult } from "./llm/eval/mmlu/evaluate.ts";
export type { MmluLoaderOptions, MmluSource } from "./datasets/mmlu.ts";
