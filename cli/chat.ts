/**
 * `deno task chat`: talk to a model interactively, the reply streaming as it is generated.
 *
 * A base model continues the conversation's transcript (what was said so far, cropped to its
 * context by the generator). An instruction-tuned model (its own template, e.g. Alpaca) answers each message
 * on its own, as it was trained: the book's finetuned model has no notion of earlier turns.
 *
 * Input: a line is a message; end a line with `\` to continue the message on the next line.
 * `/reset` forgets the transcript, `/exit` (or end of input) quits.
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

/** How the chat banner names a template. */
function templateTitle(name: string): string {
  return ({ alpaca: "Alpaca", phi3: "Phi-3" } as Record<string, string>)[name] ?? name;
}

const USAGE = `usage: deno task chat --model M [options]

Type a message and press Enter; end a line with \\ to continue on the next one.
/reset forgets the conversation, /exit quits.

${MODEL_USAGE}
${SAMPLING_USAGE}
                       (defaults here: --max-new-tokens 200 --temperature 0.7 --top-k 50)
  -h, --help           this text
`;

/** Lines of a byte stream, without their line ends; the last one even without a newline. */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffer = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffer += chunk;
    for (let end = buffer.indexOf("\n"); end >= 0; end = buffer.indexOf("\n")) {
      yield buffer.slice(0, end).replace(/\r$/, "");
      buffer = buffer.slice(end + 1);
    }
  }
  if (buffer) yield buffer;
}

/** Whole messages: lines ending in a backslash continue on the next line. */
export async function* readMessages(
  lines: AsyncIterable<string>,
  prompt: (continuation: boolean) => void = () => {},
): AsyncGenerator<string> {
  let parts: string[] = [];
  prompt(false);
  for await (const line of lines) {
    if (line.endsWith("\\")) {
      parts.push(line.slice(0, -1));
      prompt(true);
      continue;
    }
    parts.push(line);
    yield parts.join("\n");
    parts = [];
    prompt(false);
  }
  if (parts.length > 0) yield parts.join("\n");
}

async function main(args: string[]): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({ args, options: COMMON_OPTIONS }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return void console.log(USAGE);
  checkCommonFlags(values);
  const sampling = samplingFromFlags(values, { max_new_tokens: 200, temperature: 0.7, top_k: 50 });

  const { model, tokenizer, template, dir } = await openModel(values);
  const settings = withStopToken(sampling, tokenizer);
  const interactive = Deno.stdin.isTerminal();
  console.error(
    `chatting with ${dir} (${
      template
        ? `${templateTitle(template.name)} template, one instruction at a time`
        : "base model"
    }` +
      `); /reset forgets, /exit quits, a trailing \\ continues the message`,
  );
  // Prompts go to the terminal only, so piped output holds nothing but the replies.
  const showPrompt = (continuation: boolean) => {
    if (interactive) writeOut(continuation ? "... " : "you> ");
  };

  let transcript = "";
  try {
    for await (const message of readMessages(readLines(Deno.stdin.readable), showPrompt)) {
      const command = message.trim();
      if (command === "/exit" || command === "/quit") break;
      if (command === "/reset") {
        transcript = "";
        console.error("(conversation forgotten)");
        continue;
      }
      if (command === "") continue;
      const prompt = template
        ? template.query({ instruction: message })
        : transcript
        ? `${transcript}\n${message}`
        : message;
      warnIfPromptTooLong(model, tokenizer, prompt);
      const done = await complete(model, { tokenizer, prompt, settings, onText: writeOut });
      writeOut("\n");
      if (!template) transcript = prompt + done.text;
    }
  } finally {
    model.dispose();
  }
}

if (import.meta.main) Deno.exit(await runCommand(USAGE, () => main(Deno.args)));
