/**
 * `deno task generate`: load a saved model in a fresh process and continue a prompt, printing
 * the text as it is generated (the workshop's "load the trained model in a new session").
 *
 *   deno task generate --model 124M --prompt "Every effort moves you" --top-k 50 --temperature 1.5
 */
import { parseArgs } from "node:util";
import { complete } from "../llm/infer/complete.ts";
import {
  checkCommonFlags,
  COMMON_OPTIONS,
  MODEL_USAGE,
  openModel,
  runCommand,
  SAMPLING_USAGE,
  samplingFromFlags,
  UsageError,
  warnIfPromptTooLong,
  withStopToken,
  writeOut,
} from "./common.ts";

const USAGE = `usage: deno task generate --model M --prompt TEXT [options]

Prints the prompt and its continuation, token by token (with an instruction template, Alpaca or the one the model was tuned with: the answer).

${MODEL_USAGE}
  --prompt TEXT        the text to continue (or the instruction, with an instruction template)
${SAMPLING_USAGE}
                       (defaults here: --max-new-tokens 25, greedy)
  -h, --help           this text
`;

async function main(args: string[]): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: { ...COMMON_OPTIONS, prompt: { type: "string" } },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return void console.log(USAGE);
  checkCommonFlags(values);
  if (values.prompt === undefined) throw new UsageError("--prompt is required");
  if (values.prompt.trim() === "") {
    throw new UsageError("--prompt must not be empty (give the text to continue)");
  }
  const sampling = samplingFromFlags(values, { max_new_tokens: 25, temperature: 0 });

  const { model, tokenizer, template } = await openModel(values);
  try {
    const settings = withStopToken(sampling, tokenizer);
    const prompt = template ? template.query({ instruction: values.prompt }) : values.prompt;
    warnIfPromptTooLong(model, tokenizer, prompt);
    // The book prints the prompt with its continuation; an instruction prints only the answer.
    if (!template) writeOut(tokenizer.decode(tokenizer.encode(prompt)));
    const done = await complete(model, { tokenizer, prompt, settings, onText: writeOut });
    writeOut("\n");
    console.error(
      `${done.tokens} tokens in ${done.seconds.toFixed(2)} s (${
        (done.tokens / Math.max(done.seconds, 1e-9)).toFixed(1)
      } tokens/s), stopped at ${
        done.stopped === "stop_token" ? "the stop token" : "max-new-tokens"
      }`,
    );
  } finally {
    model.dispose();
  }
}

if (import.meta.main) Deno.exit(await runCommand(USAGE, () => main(Deno.args)));
