/**
 * Chat formats over our instruction templates (alpaca, phi3, custom), and the format of a base
 * model without any template.
 */
import type { PromptTemplate } from "../data/instructions.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import {
  type ChatFormat,
  type ChatMessage,
  encodeChat,
  fillMarkers,
  markerOf,
  mentionsSpecialTokens,
  type RenderedChat,
  type RenderOptions,
} from "./format.ts";

/**
 * A chat in one of our instruction templates. Every user turn is an instruction, every assistant
 * turn its response (`template.example`); the last user turn is the query (`template.query`,
 * ending with the response header) or, without a generation prompt, the bare prompt. Turns are
 * separated by a blank line. A system message has no place in these templates: its text leads
 * the next instruction, followed by a blank line.
 */
export function instructionChatFormat(template: PromptTemplate, tokenizer: Tokenizer): ChatFormat {
  const render = (messages: readonly ChatMessage[], options: RenderOptions = {}): RenderedChat => {
    const values: string[] = [];
    const mark = (text: string) => markerOf(values.push(text) - 1);
    const turns: string[] = [];
    let system: string[] = [];
    const instruction = (content?: string) => {
      const parts = [...system.map(mark), ...(content === undefined ? [] : [mark(content)])];
      system = [];
      return parts.join("\n\n");
    };
    messages.forEach((message, i) => {
      if (message.role === "system") {
        system.push(message.content);
      } else if (message.role === "user") {
        const entry = { instruction: instruction(message.content) };
        const next = messages[i + 1];
        if (next?.role === "assistant") {
          turns.push(template.example({ ...entry, input: "", output: mark(next.content) }));
        } else if (i === messages.length - 1 && options.addGenerationPrompt !== false) {
          turns.push(template.query(entry));
        } else {
          turns.push(template.prompt(entry));
        }
      } else if (message.role !== "assistant" || messages[i - 1]?.role !== "user") {
        throw new Error(
          `the ${template.name} template takes user and assistant turns (an assistant turn ` +
            `answers the user turn before it); message ${i} is ${JSON.stringify(message.role)}`,
        );
      }
    });
    // A system message with no user turn after it becomes the instruction itself.
    if (system.length > 0) {
      const entry = { instruction: instruction() };
      turns.push(
        options.addGenerationPrompt !== false ? template.query(entry) : template.prompt(entry),
      );
    }
    return fillMarkers(turns.join("\n\n"), values);
  };
  return {
    name: template.name,
    source: template.source,
    stopIds: tokenizer.eosIds,
    template,
    render: (messages, options) => render(messages, options).text,
    encode(messages, options) {
      const chat = render(messages, options);
      const safe = mentionsSpecialTokens(tokenizer, messages) ? chat : { text: chat.text };
      return encodeChat(tokenizer, safe);
    },
  };
}

/**
 * No template, for a base model that continues text: the transcript of the conversation, each
 * user (or system) message on a new line and each assistant message right after what it
 * continued (the model's own continuation, as `deno task chat` has always built it). Special-token
 * text in messages is plain text.
 */
export function plainChatFormat(tokenizer: Tokenizer): ChatFormat {
  const render = (messages: readonly ChatMessage[]) => {
    let transcript = "";
    for (const message of messages) {
      if (message.role === "assistant") transcript += message.content;
      else transcript = transcript ? `${transcript}\n${message.content}` : message.content;
    }
    return transcript;
  };
  return {
    name: "none",
    source: "",
    stopIds: tokenizer.eosIds,
    render,
    encode: (messages) => tokenizer.encode(render(messages), { special: false }),
  };
}

/** The user message of an instruction entry: the instruction, then its input when there is one. */
export function instructionUserMessage(entry: { instruction: string; input?: string }): string {
  return entry.input?.trim() ? `${entry.instruction}\n\n${entry.input}` : entry.instruction;
}

/**
 * Instruction data in a chat model's own template (`template: chat`): the instruction (and its
 * input) is the user's message, the output the assistant's reply. The prompt is the chat rendered
 * up to the assistant's header (Qwen3 without a thinking block, as `enable_thinking=False`), so a
 * training example is exactly the prompt a model is given at generation time followed by the
 * answer; the end-of-turn token after the answer is what the collate appends (see
 * {@link chatEndTokenId}).
 */
export function chatPromptTemplate(chat: ChatFormat): PromptTemplate {
  const prompt = (entry: { instruction: string; input?: string }) =>
    chat.render([{ role: "user", content: instructionUserMessage(entry) }], {
      addGenerationPrompt: true,
      enableThinking: false,
    });
  return {
    name: "chat",
    source: chat.source,
    prompt,
    query: prompt,
    example: (entry) => prompt(entry) + entry.output,
    extractResponse: (continuation) => continuation.trim(),
  };
}

/**
 * The special token a chat template writes right after an assistant's message (Qwen3's
 * `<|im_end|>`, Llama 3's `<|eot_id|>`, Gemma 3's `<end_of_turn>`): what a model fine-tuned on
 * the template must learn to end its answer with. Undefined when the template writes none.
 */
export function chatEndTokenId(
  chat: ChatFormat,
  specialTokens: ReadonlyMap<string, number>,
): number | undefined {
  const answer = "\uE000answer\uE000";
  const text = chat.render(
    [{ role: "user", content: "question" }, { role: "assistant", content: answer }],
    { addGenerationPrompt: false, enableThinking: false },
  );
  const at = text.indexOf(answer);
  if (at < 0) return undefined;
  const after = text.slice(at + answer.length).trimStart();
  let best: [string, number] | undefined;
  for (const [content, id] of specialTokens) {
    if (after.startsWith(content) && (!best || content.length > best[0].length)) {
      best = [content, id];
    }
  }
  return best?.[1];
}
