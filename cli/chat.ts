/**
 * `deno task chat`: talk to a model interactively, the reply streaming as it is generated.
 *
 * The whole conversation goes to the model in its chat format, as `serve` builds it
 * (server/prompt.ts): an open model's own chat template (Llama 3, Qwen3, ...), a fine-tuned
 * GPT-2's instruction template (Alpaca, Phi-3, custom) with the earlier turns as examples, or
 * for a base model the transcript it continues (what was said so far, cropped to its context by
 * the generator). A reply ends at the format's stop ids (end of text, end of turn).
 *
 * Input: a line is a message; end a line with `\` to continue the message on the next line.
 * `/reset` forgets the transcript, `/exit` (or end of input) quits.
 */
import { parseArgs } from "node:util";
import type { ChatMessage } from "../llm/chat/format.ts";
import { ServedModel } from "../server/served_model.ts";
import {
  checkCommonFlags,
  COMMON_OPTIONS,
  MODEL_USAGE,
  openModel,
  runCommand,
  SAMPLING_USAGE,
  samplingFromFlags,
  UsageError,
  withStopToken,
  writeOut,
} from "./common.ts";

/** How the chat banner names a chat format. */
function formatTitle(name: string): string {
  if (name === "none") return "base model";
  if (name === "jinja") return "the model's chat template";
  const title = ({ alpaca: "Alpaca", phi3: "Phi-3" } as Record<string, string>)[name] ?? name;
  return `${title} template`;
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

  const opened = await openModel(values);
  const { model, tokenizer, chat, dir } = opened;
  const settings = withStopToken(sampling, tokenizer);
  // --stop-token names one id (or none); by default a reply ends at the format's stop ids.
  const stopIds = values["stop-token"] === undefined
    ? chat.stopIds
    : new Set(settings.stop_token === null ? [] : [settings.stop_token]);
  const served = new ServedModel(opened);
  const interactive = Deno.stdin.isTerminal();
  console.error(
    `chatting with ${dir} (${formatTitle(chat.name)}${
      opened.quantize === "none" ? "" : `, ${opened.quantize} weights`
    }); /reset forgets, /exit quits, ` +
      `a trailing \\ continues the message`,
  );
  // Prompts go to the terminal only, so piped output holds nothing but the replies.
  const showPrompt = (continuation: boolean) => {
    if (interactive) writeOut(continuation ? "... " : "you> ");
  };

  let history: ChatMessage[] = [];
  try {
    for await (const message of readMessages(readLines(Deno.stdin.readable), showPrompt)) {
      const command = message.trim();
      if (command === "/exit" || command === "/quit") break;
      if (command === "/reset") {
        history = [];
        console.error("(conversation forgotten)");
        continue;
      }
      if (command === "") continue;
      const messages = [...history, { role: "user", content: message }];
      const ids = served.prompt({ messages });
      const context = model.config.context_length;
      if (ids.length > context) {
        console.error(
          `warning: the conversation has ${ids.length} tokens but the model sees at most ` +
            `${context}: its first ${ids.length - context} tokens are dropped (/reset forgets it)`,
        );
      }
      const done = await served.generate({
        ids,
        maxTokens: settings.max_new_tokens,
        temperature: settings.temperature,
        topK: settings.top_k,
        topP: settings.top_p,
        seed: settings.seed,
        stop: [],
      }, { cutAs: chat, stopIds, onText: writeOut });
      writeOut("\n");
      history = [...messages, { role: "assistant", content: done.text }];
    }
  } finally {
    model.dispose();
  }
}

if (import.meta.main) Deno.exit(await runCommand(USAGE, () => main(Deno.args)));
