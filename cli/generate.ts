/**
 * `deno task generate`: load a saved model in a fresh process and continue a prompt, printing
 * the text as it is generated (the workshop's "load the trained model in a new session").
 *
 *   deno task generate --model 124M --prompt "Every effort moves you" --top-k 50 --temperature 1.5
 *   deno task generate --model qwen3-0.6b --prompt "What do llamas eat?" --max-new-tokens 50
 *
 * An open model that ships a chat template gets the prompt as the user message of its template
 * (`--template auto`, or `--chat` for any model); the answer ends at the model's end of turn.
 */
import { parseArgs } from "node:util";
import { complete } from "../llm/infer/complete.ts";
import { formatPrompt, type PromptFormat } from "../llm/infer/prompt_format.ts";
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

Prints the prompt and its continuation, token by token (with an instruction template, Alpaca or the one the model was tuned with, or a chat template: the answer).

${MODEL_USAGE}
  --prompt TEXT        the text to continue (or the instruction, with an instruction template;
                       the user message, with a chat template)
  --chat               the prompt as the user message of the model's chat template
                       (= --template chat; the default for an open model that has one)
  --thinking           Qwen3: let the model think in a <think> block before it answers
${SAMPLING_USAGE}
                       (defaults here: --max-new-tokens 25, greedy)
  -h, --help           this text
`;

async function main(args: string[]): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        ...COMMON_OPTIONS,
        prompt: { type: "string" },
        chat: { type: "boolean", default: false },
        thinking: { type: "boolean", default: false },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return void console.log(USAGE);
  if (values.chat) {
    if (!["auto", "chat"].includes(String(values.template))) {
      throw new UsageError(`--chat contradicts --template ${values.template}`);
    }
    values.template = "chat";
  }
  checkCommonFlags(values);
  if (values.prompt === undefined) throw new UsageError("--prompt is required");
  if (values.prompt.trim() === "") {
    throw new UsageError("--prompt must not be empty (give the text to continue)");
  }
  const sampling = samplingFromFlags(values, { max_new_tokens: 25, temperature: 0 });

  const opened = await openModel(values);
  const { model, tokenizer } = opened;
  try {
    const settings = withStopToken(sampling, tokenizer);
    // An instruction ends with its response header here: the model's continuation is the answer.
    const format: PromptFormat = opened.format.kind === "template"
      ? { ...opened.format, withHeader: true }
      : opened.format;
    const prompt = formatPrompt(opened, format, { instruction: values.prompt }, {
      enableThinking: values.thinking,
    });
    warnIfPromptTooLong(model, tokenizer, prompt.text);
    // The book prints the prompt with its continuation; an instruction prints only the answer.
    if (format.kind === "none") writeOut(tokenizer.decode(prompt.ids));
    const done = await complete(model, {
      tokenizer,
      prompt: prompt.text,
      promptIds: prompt.ids,
      settings,
      // --stop-token names the only stop; by default every end id of the model and its template.
      stopIds: sampling.stop_token === undefined ? opened.stopIds : undefined,
      vocabLimit: opened.vocabLimit,
      onText: writeOut,
    });
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
