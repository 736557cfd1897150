/**
 * Writes the CI judge's model: the tiny GPT whose next token is always GPT-2's token 5332
 * ("85"), whatever the prompt, so that `deno task serve --model DIR --max-tokens 1` answers
 * every judge prompt with a score. .ci/run serves it for the smoke pipeline's `judge` stage;
 * the judge's own tests use the same model in-process (tests/server/helpers.ts).
 *
 *   deno run -A tools/judge_model.ts DIR
 */
import { writeConstantModelFolder } from "../tests/server/helpers.ts";
import { isModelFolder } from "../llm/infer/model_folder.ts";

const dir = Deno.args[0];
if (!dir) {
  console.error("usage: deno run -A tools/judge_model.ts DIR");
  Deno.exit(2);
}
if (isModelFolder(dir)) {
  console.log(`${dir}: already holds a model`);
} else {
  await writeConstantModelFolder(dir, 5332);
  console.log(`${dir}: wrote the tiny judge model (always answers "85")`);
}
