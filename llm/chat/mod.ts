/**
 * Chat: one {@link ChatFormat} per model, whatever its kind of template. See format.ts.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { readTemplateFile, TEMPLATE_FILE } from "../data/instruction_files.ts";
import { promptTemplate } from "../data/instructions.ts";
import { readModelTemplate } from "../infer/model_folder.ts";
import { HfTokenizer } from "../tokenizer/hf.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import type { ChatFormat } from "./format.ts";
import {
  chatEndTokenId,
  chatPromptTemplate,
  instructionChatFormat,
  plainChatFormat,
} from "./instruction.ts";
import { jinjaChatFormat, readChatTemplate } from "./jinja.ts";

export type { ChatFormat, ChatMessage, RenderedChat, RenderOptions } from "./format.ts";
export { encodeChat } from "./format.ts";
export {
  chatEndTokenId,
  chatPromptTemplate,
  instructionChatFormat,
  jinjaChatFormat,
  plainChatFormat,
  readChatTemplate,
};

/**
 * The chat format of a model folder: the instruction template it was fine-tuned with when its
 * template.json names one of ours (alpaca, phi3, custom: an open model fine-tuned on Alpaca
 * prompts answers them, whatever its tokenizer's chat template); else its Jinja chat template
 * (chat_template.jinja, else tokenizer_config.json's chat_template) when the tokenizer is a
 * Hugging Face one; else the instruction template it was fine-tuned with (Alpaca for models
 * tuned on the instruction data); else none.
 */
export async function chatFormatFor(dir: string, tokenizer: Tokenizer): Promise<ChatFormat> {
  if (existsSync(join(dir, TEMPLATE_FILE))) {
    const tuned = await readTemplateFile(join(dir, TEMPLATE_FILE), tokenizer);
    if (tuned.name !== "chat") return instructionChatFormat(tuned, tokenizer);
  }
  if (tokenizer instanceof HfTokenizer) {
    const source = await readChatTemplate(dir, tokenizer);
    if (source !== undefined) return jinjaChatFormat(source, tokenizer);
  } else if (existsSync(join(dir, "chat_template.jinja"))) {
    throw new Error(
      `${join(dir, "chat_template.jinja")}: a Jinja chat template needs the model's Hugging Face ` +
        `tokenizer.json (the folder's tokenizer is ${tokenizer.name})`,
    );
  }
  const template = await readModelTemplate(dir);
  return template ? instructionChatFormat(template, tokenizer) : plainChatFormat(tokenizer);
}

/**
 * How a user may pick the chat format (`--template`, the page's chat): `auto` is the model's own
 * ({@link chatFormatFor}), `chat` insists on its Jinja chat template, `none` continues plain text, `alpaca` and `phi3` are our instruction
 * templates. The one list of these names: flags, requests and the page read it.
 */
export const CHAT_TEMPLATE_CHOICES = ["auto", "chat", "none", "alpaca", "phi3"] as const;

/** One of {@link CHAT_TEMPLATE_CHOICES}. */
export type ChatTemplateChoice = typeof CHAT_TEMPLATE_CHOICES[number];

/** Whether `value` is one of {@link CHAT_TEMPLATE_CHOICES}. */
export function isChatTemplateChoice(value: unknown): value is ChatTemplateChoice {
  return (CHAT_TEMPLATE_CHOICES as readonly unknown[]).includes(value);
}

/** The format `choice` names for a model whose own format is `own`. */
export function chooseChatFormat(
  choice: ChatTemplateChoice,
  own: ChatFormat,
  tokenizer: Tokenizer,
): ChatFormat {
  if (choice === "auto") return own;
  if (choice === "chat") {
    if (own.name !== "jinja") {
      throw new Error(
        `--template chat: this model has no chat template of its own (${own.source})`,
      );
    }
    return own;
  }
  if (choice === "none") return plainChatFormat(tokenizer);
  return instructionChatFormat(promptTemplate(choice), tokenizer);
}
