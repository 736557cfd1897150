/**
 * The model's own chat template: the Jinja `chat_template` of tokenizer_config.json (or the
 * folder's chat_template.jinja), rendered with `@huggingface/jinja` exactly as transformers'
 * `apply_chat_template` renders it with Python's Jinja2: `messages`, `add_generation_prompt`,
 * `bos_token`, `eos_token` (and the other special-token strings of tokenizer_config.json), and
 * Qwen3's `enable_thinking` when it is set.
 */
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import type { HfTokenizer } from "../tokenizer/hf.ts";
import {
  type ChatFormat,
  type ChatMessage,
  encodeChat,
  fillMarkers,
  markerOf,
  mentionsSpecialTokens,
  type RenderedChat,
  type RenderOptions,
  specialTokenTexts,
} from "./format.ts";

/** Tokens that end a turn or a text in the families we know, when the tokenizer has them. */
const KNOWN_END_TOKENS = [
  "<|eot_id|>", // Llama 3
  "<|eom_id|>", // Llama 3.1 (end of a tool message)
  "<|im_end|>", // Qwen, SmolLM2
  "<end_of_turn>", // Gemma
  "<|end|>", // Phi-3
  "<|endoftext|>",
  "<|end_of_text|>",
  "<eos>",
  "</s>",
];

/**
 * The chat template of a model folder: chat_template.jinja when present (what transformers
 * saves since 4.43), else tokenizer_config.json's chat_template (a string, or a list of named
 * templates of which "default" is used). Undefined when the model has none (a base model).
 */
export async function readChatTemplate(
  dir: string,
  tokenizer: HfTokenizer,
): Promise<string | undefined> {
  const file = join(dir, "chat_template.jinja");
  try {
    return await Deno.readTextFile(file);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      throw new Error(`${file}: cannot read: ${(error as Error).message}`);
    }
  }
  const value = tokenizer.config.chat_template;
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const named = value.find((t) => t?.name === "default") ?? value[0];
    if (typeof named?.template === "string") return named.template;
  }
  throw new Error(
    `${join(dir, "tokenizer_config.json")}: chat_template should be a string or a list of ` +
      `{name, template}; got ${JSON.stringify(value).slice(0, 80)}`,
  );
}

/** The strings tokenizer_config.json names as special tokens, as templates see them. */
function specialTokenVariables(tokenizer: HfTokenizer): Record<string, string> {
  const variables: Record<string, string> = {};
  for (const key of ["unk_token", "pad_token", "sep_token", "cls_token", "mask_token"]) {
    const value = tokenizer.config[key];
    const content = typeof value === "string"
      ? value
      : (value as { content?: unknown } | null)?.content;
    if (typeof content === "string") variables[key] = content;
  }
  return { ...variables, bos_token: tokenizer.bosToken, eos_token: tokenizer.eosToken };
}

/**
 * A {@link ChatFormat} from a Jinja chat template and the model's tokenizer. Throws, naming the
 * problem, when the template does not parse.
 */
export function jinjaChatFormat(source: string, tokenizer: HfTokenizer): ChatFormat {
  let template: Template;
  try {
    template = new Template(source);
  } catch (error) {
    throw new Error(
      `${tokenizer.source}: the chat template does not parse: ${(error as Error).message}`,
    );
  }
  const variables = specialTokenVariables(tokenizer);
  const renderText = (messages: readonly ChatMessage[], options: RenderOptions = {}): string => {
    const items: Record<string, unknown> = {
      ...variables,
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: options.addGenerationPrompt ?? true,
    };
    if (options.enableThinking !== undefined) items.enable_thinking = options.enableThinking;
    try {
      return template.render(items);
    } catch (error) {
      throw new Error(`chat template of ${tokenizer.source}: ${(error as Error).message}`);
    }
  };

  /**
   * Where each message's text lands: render again with a placeholder for each text and check
   * that putting the texts back gives the same prompt. Templates that trim the text (Llama 3,
   * Gemma 3) are tried with trimmed texts too. Undefined when the template transforms the text
   * otherwise.
   */
  const locate = (messages: readonly ChatMessage[], options?: RenderOptions) => {
    const text = renderText(messages, options);
    const marked = messages.map((m, i) => ({ role: m.role, content: markerOf(i) }));
    let shape: string;
    try {
      shape = renderText(marked, options);
    } catch {
      return { text, chat: undefined };
    }
    for (const values of [messages.map((m) => m.content), messages.map((m) => m.content.trim())]) {
      const chat = fillMarkers(shape, values);
      if (chat.text === text) return { text, chat };
    }
    return { text, chat: undefined };
  };

  const render = (messages: readonly ChatMessage[], options?: RenderOptions): RenderedChat => {
    if (!mentionsSpecialTokens(tokenizer, messages)) return { text: renderText(messages, options) };
    const { chat } = locate(messages, options);
    if (chat) return chat;
    // The template changes the text in a way we cannot follow: break every special-token string
    // in the messages with a zero-width space so that none can become a control token.
    const specials = specialTokenTexts(tokenizer);
    const defused = messages.map((m) => ({
      ...m,
      content: specials.reduce(
        (text, s) => text.replaceAll(s, `${s.slice(0, 1)}\u200B${s.slice(1)}`),
        m.content,
      ),
    }));
    return { text: renderText(defused, options) };
  };

  return {
    name: "jinja",
    source,
    stopIds: stopIdsOf(tokenizer, renderText),
    render: (messages, options) => renderText(messages, options),
    encode: (messages, options) => encodeChat(tokenizer, render(messages, options)),
  };
}

/**
 * The tokenizer's eos ids, the special token the template writes right after an assistant's
 * message (its end-of-turn token, found by rendering a short chat), and the known end tokens
 * the tokenizer has as special tokens.
 */
function stopIdsOf(
  tokenizer: HfTokenizer,
  render: (messages: readonly ChatMessage[], options?: RenderOptions) => string,
): ReadonlySet<number> {
  const stops = new Set(tokenizer.eosIds);
  const answer = "\uE000answer\uE000";
  try {
    const text = render(
      [{ role: "user", content: "\uE000question\uE000" }, { role: "assistant", content: answer }],
      { addGenerationPrompt: false },
    );
    const after = text.slice(text.indexOf(answer) + answer.length).trimStart();
    for (const [content, id] of tokenizer.specialTokens) {
      if (after.startsWith(content)) stops.add(id);
    }
  } catch {
    // A template that refuses this chat still has its eos ids and the known end tokens.
  }
  for (const token of KNOWN_END_TOKENS) {
    const id = tokenizer.specialTokens.get(token);
    if (id !== undefined) stops.add(id);
  }
  return stops;
}
