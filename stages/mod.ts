/** The built-in stages, registered in pipeline order. */
import { StageRegistry } from "../runner/stage.ts";
import { dataloaderStage } from "./dataloader.ts";
import { tokenizeStage } from "./tokenize.ts";

export function builtinStages(): StageRegistry {
  return new StageRegistry()
    .register(tokenizeStage)
    .register(dataloaderStage);
}

export { dataloaderStage, tokenizeStage };
