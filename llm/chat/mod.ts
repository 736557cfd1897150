/**
 * Chat: one {@link ChatFormat} per model, whatever its kind of template. See format.ts.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { readTemplateFile, TEMPLATE_FILE } from "../data/instruction_files.ts";
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
