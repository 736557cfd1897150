/**
 * The built-in stages, registered in pipeline order, and the readers of the artifacts whose
 * layout a stage defines.
 */
import { StageRegistry } from "../runner/stage.ts";
import { dataloaderStage } from "./dataloader.ts";
import { dpoStage } from "./dpo.ts";
import { evaluateStage } from "./evaluate.ts";
import { exportStage } from "./export.ts";
import { finetuneStage, loraFinetuneStage } from "./finetune.ts";
import { instructionsStage } from "./instructions.ts";
import { generateStage } from "./generate.ts";
import { judgeStage } from "./judge.ts";
import { loadOpenaiWeightsStage } from "./load_openai_weights.ts";
import { loadHfModelStage } from "./load_hf_model.ts";
import { preferencesStage } from "./preferences.ts";
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
    .register(loadHfModelStage)
    .register(instructionsStage)
    .register(finetuneStage)
    .register(loraFinetuneStage)
    .register(preferencesStage)
    .register(dpoStage)
    .register(responsesStage)
    .register(generateStage)
    .register(evaluateStage)
    .register(judgeStage)
    .register(reportStage)
    .register(exportStage);
}

export {
  dataloaderStage,
  dpoStage,
  evaluateStage,
  exportStage,
  finetuneStage,
  generateStage,
  instructionsStage,
  judgeStage,
  loadHfModelStage,
  loadOpenaiWeightsStage,
  loraFinetuneStage,
  preferencesStage,
  pretrainStage,
  reportStage,
  responsesStage,
  tokenizeStage,
};
export { checkHfModelFolder, HF_SOURCE_FILE } from "./load_hf_model.ts";
export type { HfModelFolderInfo, HfSourceRecord, LoadHfModelParams } from "./load_hf_model.ts";
export { openDataloaderArtifact } from "./dataloader.ts";
export { openInstructionsArtifact } from "./instructions.ts";
export type { InstructionsArtifact } from "./instructions.ts";
export { openPreferencesArtifact } from "./preferences.ts";
export type { PreferencesArtifact } from "./preferences.ts";
export { openTokenizeArtifact } from "./tokenize.ts";
export type { TokenizeArtifact } from "./tokenize.ts";
export type { DataloaderArtifact, LoaderManifest, SplitInfo } from "./dataloader.ts";
