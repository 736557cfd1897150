/**
 * How a prompt reaches an opened model, for the paths that take one prompt or one instruction
 * at a time (the `generate` and `responses` stages, `deno task generate`):
 *   chat      through the model's chat format (an open model's Jinja chat template): the
 *             instruction is the user message, the answer is what the model writes in its turn;
 *   template  one of our instruction templates (alpaca, phi3, custom; a fine-tune's own);
 *   none      the text as it is, for a base model to continue.
 * `auto` picks as LitGPT's `LLM.generate` does for the model in hand: a fine-tune's own template,
 * else the model's chat template, else its family's prompt style (Phi-2's
 * "Instruct: …\nOutput:"), else none.
 */
import type { ChatFormat, ChatMessage } from "../chat/format.ts";
import { type PromptTemplate, promptTemplate } from "../data/instructions.ts";
import { FAMILIES } from "../families/mod.ts";
import type { OpenedModelFolder } from "./open_model.ts";
import { readModelTemplate } from "./model_folder.ts";

/** An instruction: what the user asks, and its input (the book's entries). */
export interface InstructionFields {
  /** The task, or a plain prompt. */
  instruction: string;
  /** Its input, if any ("" and absent both mean none). */
  input?: string;
}

/** How prompts are formatted for one model. */
export type PromptFormat =
  | { kind: "chat"; name: "chat"; chat: ChatFormat }
  | {
    kind: "template";
    name: string;
    template: PromptTemplate;
    /**
     * End the prompt with the response header (`template.query`): a model that was not tuned
     * on the template needs it to start answering (Phi-2's "Output:"). Default false: the
     * book's `format_input`, after which a fine-tune writes the header itself.
     */
    withHeader?: boolean;
  }
  | { kind: "none"; name: "none" };

/**
 * LitGPT's prompt styles for families whose checkpoints ship no chat template, as our template
 * strings (`{output}` last; the text before it is the response header).
 */
const FAMILY_PROMPT_STYLES: Record<string, string> = {
  // litgpt/prompts.py Phi2: f"Instruct: {prompt}\nOutput:"
  "phi-2": "Instruct: {instruction}[[\n{input}]]\nOutput:{output}",
};

/** The prompt style of an open model's family (undefined for ours and most families). */
function familyPromptStyle(
  opened: OpenedModelFolder,
): { name: string; template: PromptTemplate } | undefined {
  if (opened.layout !== "hf") return undefined;
  const style = FAMILIES.find((f) => f.name === opened.family)?.promptStyle;
  const source = style === undefined ? undefined : FAMILY_PROMPT_STYLES[style];
  return source === undefined ? undefined : { name: style!, template: promptTemplate(source) };
}

/**
 * The format `choice` names for `opened`: `auto` (see the module comment), `chat`, `none`, or an
 * instruction template (alpaca, phi3, a custom template string).
 */
export async function promptFormatFor(
  opened: OpenedModelFolder,
  choice: string,
): Promise<PromptFormat> {
  if (choice === "none") return { kind: "none", name: "none" };
  if (choice === "chat") return { kind: "chat", name: "chat", chat: opened.chat };
  if (choice !== "auto") {
    const template = promptTemplate(choice);
    return { kind: "template", name: template.name, template };
  }
  const tuned = await readModelTemplate(opened.dir);
  if (tuned) return { kind: "template", name: tuned.name, template: tuned };
  if (opened.chat.name === "jinja") return { kind: "chat", name: "chat", chat: opened.chat };
  const style = familyPromptStyle(opened);
  if (style) return { kind: "template", ...style, withHeader: true };
  return { kind: "none", name: "none" };
}

/** The user message of an instruction: its text, and its input after a blank line. */
export function instructionMessage(entry: InstructionFields): ChatMessage {
  const input = entry.input?.trim() ? `\n\n${entry.input}` : "";
  return { role: "user", content: entry.instruction + input };
}

/**
 * The answer in a chat model's turn: a leading thinking block (Qwen3's `<think>…</think>`, empty
 * when thinking is off) removed, whitespace trimmed.
 */
export function chatAnswer(continuation: string): string {
  return continuation.replace(/^\s*<think>[\s\S]*?<\/think>/, "").trim();
}

/** How the answer is read from a continuation of a prompt in `format`. */
export function answerOf(format: PromptFormat): (continuation: string) => string {
  if (format.kind === "chat") return chatAnswer;
  if (format.kind === "template") {
    return (continuation) => format.template.extractResponse(continuation);
  }
  return (continuation) => continuation;
}

/** Options of a chat rendering. */
export interface ChatPromptOptions {
  /** Qwen3's `enable_thinking` (default false: answer without a thinking block). */
  enableThinking?: boolean;
}

/** One prompt ready for the model: its text, its ids, and how to read the answer. */
export interface FormattedPrompt {
  /** The prompt text (a chat's rendering). */
  text: string;
  /** Its ids (the chat format's own encoding for chats; else `tokenizer.encode(text)`). */
  ids: number[];
  /** The answer in the model's continuation. */
  answer(continuation: string): string;
}

/**
 * Formats an instruction (or a plain prompt, as `{instruction: text}`) for the model. With
 * `format.kind === "none"` the text is the instruction itself.
 */
export function formatPrompt(
  opened: Pick<OpenedModelFolder, "tokenizer">,
  format: PromptFormat,
  entry: InstructionFields,
  options: ChatPromptOptions = {},
): FormattedPrompt {
  if (format.kind === "chat") {
    const messages = [instructionMessage(entry)];
    const render = { addGenerationPrompt: true, enableThinking: options.enableThinking ?? false };
    return {
      text: format.chat.render(messages, render),
      ids: format.chat.encode(messages, render),
      answer: answerOf(format),
    };
  }
  const text = format.kind !== "template"
    ? entry.instruction
    : format.withHeader
    ? format.template.query(entry)
    : format.template.prompt(entry);
  return {
    text,
    ids: opened.tokenizer.encode(text),
    answer: answerOf(format),
  };
}

/**
 * The ids that end an answer: a chat format's (end of turn and end of text), else the
 * tokenizer's end-of-text ids.
 */
export function stopIdsFor(
  opened: Pick<OpenedModelFolder, "tokenizer">,
  format: PromptFormat,
): Set<number> {
  return new Set(format.kind === "chat" ? format.chat.stopIds : opened.tokenizer.eosIds);
}
