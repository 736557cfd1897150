/** The built-in stages, registered in pipeline order. */
import { StageRegistry } from "../runner/stage.ts";
import { dataloaderStage } from "./dataloader.ts";
import { generateStage } from "./generate.ts";
import { judgeStage } from "./judge.ts";
import { loadOpenaiWeightsStage } from "./load_openai_weights.ts";
import { pretrainStage } from "./pretrain.ts";
import { tokenizeStage } from "./tokenize.ts";

export function builtinStages(): StageRegistry {
  return new StageRegistry()
    .register(tokenizeStage)
    .register(dataloaderStage)
    .register(pretrainStage)
    .register(loadOpenaiWeightsStage)
    .register(generateStage)
    .register(judgeStage);
}

export {
  dataloaderStage,
  generateStage,
  judgeStage,
  loadOpenaiWeightsStage,
  pretrainStage,
  tokenizeStage,
};
