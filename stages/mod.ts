/**
 * The built-in stages, registered in pipeline order, and the readers of the artifacts whose
 * layout a stage defines.
 */
import { StageRegistry } from "../runner/stage.ts";
import { dataloaderStage } from "./dataloader.ts";
import { evaluateStage } from "./evaluate.ts";
import { exportStage } from "./export.ts";
import { finetuneStage, loraFinetuneStage } from "./finetune.ts";
import { instructionsStage } from "./instructions.ts";
import { generateStage } from "./generate.ts";
import { judgeStage } from "./judge.ts";
import { loadOpenaiWeightsStage } from "./load_openai_weights.ts";
import { pretrainStage } from "./pretrain.ts";
import { reportStage } from "./report.ts";
import { responsesStage } from "./responses.ts";
import { tokenizeStage } from "./tokenize.ts";

/** A registry holding every built-in stage. */
export function builtinStages(): StageRegistry {
  return new StageRegistry()
    .register(tokenizeStage)
    .register(dataloaderStage)
    .register(pretrainStage)
    .register(loadOpenaiWeightsStage)
    .register(instructionsStage)
    .register(finetuneStage)
    .register(loraFinetuneStage)
    .register(responsesStage)
    .register(generateStage)
    .register(evaluateStage)
    .register(judgeStage)
    .register(reportStage)
    .register(exportStage);
}

export {
  dataloaderStage,
  evaluateStage,
  exportStage,
  finetuneStage,
  generateStage,
  instructionsStage,
  judgeStage,
  loadOpenaiWeightsStage,
  loraFinetuneStage,
  pretrainStage,
  reportStage,
  responsesStage,
  tokenizeStage,
};
export { openDataloaderArtifact } from "./dataloader.ts";
export { openInstructionsArtifact } from "./instructions.ts";
export type { InstructionsArtifact } from "./instructions.ts";
export { openTokenizeArtifact } from "./tokenize.ts";
export type { TokenizeArtifact } from "./tokenize.ts";
export type { DataloaderArtifact, LoaderManifest, SplitInfo } from "./dataloader.ts";
