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
    render: (messages, options) => render(messages, options).text,
    encode(messages, options) {
      const chat = render(messages, options);
      const safe = mentionsSpecialTokens(tokenizer, messages) ? chat : { text: chat.text };
      return encodeChat(tokenizer, safe);
    },
  };
}

/**
 * No template: the messages' text joined by blank lines, for a base model that continues text.
 * Special-token text in messages is plain text.
 */
export function plainChatFormat(tokenizer: Tokenizer): ChatFormat {
  const render = (messages: readonly ChatMessage[]) => messages.map((m) => m.content).join("\n\n");
  return {
    name: "none",
    source: "",
    stopIds: tokenizer.eosIds,
    render,
    encode: (messages) => tokenizer.encode(render(messages), { special: false }),
  };
}
