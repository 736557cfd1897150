/**
 * Chat formats: how a conversation becomes the prompt a model continues, and which tokens end
 * the model's turn. One interface for every caller (serve, chat, the page, responses, generate)
 * over three kinds of formats:
 * - the model's own Jinja `chat_template` (Llama 3, Qwen3, Gemma 3, Phi-3, SmolLM2; jinja.ts),
 * - our instruction templates (alpaca, phi3, custom: llm/data/instructions.ts's PromptTemplate),
 *   which the workshop's fine-tuned GPT-2 models were trained with (instruction.ts),
 * - none: a base model continues the text as it is (instruction.ts).
 * `chatFormatFor` (mod.ts) picks the one a model folder calls for.
 *
 * Whatever a message says is text: a user who types "<|im_end|>" gets the characters, not the
 * control token (see {@link encodeChat}).
 */
import type { PromptTemplate } from "../data/instructions.ts";
import { HfTokenizer } from "../tokenizer/hf.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";

/** One message of a conversation (OpenAI's and Ollama's shape). */
export interface ChatMessage {
  /** "system", "user" or "assistant" (templates may know others, e.g. "tool"). */
  role: string;
  /** What the message says. */
  content: string;
}

/** How to render a conversation. */
export interface RenderOptions {
  /** End with the header of the assistant's turn, so the model answers (default true). */
  addGenerationPrompt?: boolean;
  /** Qwen3's `enable_thinking`: false asks for an answer without a thinking block. */
  enableThinking?: boolean;
}

/** A conversation as a prompt, the place of each message's text in it. */
export interface RenderedChat {
  /** The prompt text. */
  text: string;
  /**
   * [start, end) of every message's content inside `text`, when known: special-token text
   * there is encoded as plain text. Undefined: no message contains special-token text.
   */
  contentSpans?: [number, number][];
}

/** Messages → prompt (text and ids), and the ids that end the model's turn. */
export interface ChatFormat {
  /** "jinja" (the model's chat_template), "alpaca", "phi3", "custom" or "none". */
  readonly name: string;
  /** The template's source (Jinja text or the instruction template string; "" for none). */
  readonly source: string;
  /** Ids that end the answer: the tokenizer's eos ids and the template's end-of-turn tokens. */
  readonly stopIds: ReadonlySet<number>;
  /**
   * The instruction template of an alpaca, phi3 or custom format: its `extractResponse` says how
   * an answer is cut (the response header dropped if the model repeats it, whitespace trimmed).
   */
  readonly template?: PromptTemplate;
  /** The prompt text of `messages`. */
  render(messages: readonly ChatMessage[], options?: RenderOptions): string;
  /** The prompt ids of `messages`: BOS once, control tokens only where the template put them. */
  encode(messages: readonly ChatMessage[], options?: RenderOptions): number[];
}

/**
 * Ids of a rendered chat. Control tokens count only outside `contentSpans` (Hugging Face
 * tokenizers); for GPT-2 and the regex tokenizer, whose only special token is `<|endoftext|>`,
 * a chat whose messages spell one is encoded without special tokens. The tokenizer's BOS is
 * added unless the template wrote it (Gemma 3's and Llama 3's templates do).
 */
export function encodeChat(tokenizer: Tokenizer, chat: RenderedChat): number[] {
  const spans = chat.contentSpans;
  if (tokenizer instanceof HfTokenizer) {
    const inContent = (at: number) => spans?.some(([a, b]) => at >= a && at < b) ?? false;
    const ids = tokenizer.encodeWithControlAt(chat.text, (at) => !inContent(at));
    const bos = tokenizer.prefixIds;
    const hasBos = bos.every((id, i) => ids[i] === id);
    return hasBos ? ids : [...bos, ...ids];
  }
  return tokenizer.encode(chat.text, { special: spans === undefined, addBos: true });
}

/** The text of special tokens a tokenizer recognises (for checking what users typed). */
export function specialTokenTexts(tokenizer: Tokenizer): string[] {
  if (tokenizer instanceof HfTokenizer) return [...tokenizer.specialTokens.keys()];
  return ["<|endoftext|>"];
}

/** Whether any message spells a special token of `tokenizer`. */
export function mentionsSpecialTokens(
  tokenizer: Tokenizer,
  messages: readonly ChatMessage[],
): boolean {
  const specials = specialTokenTexts(tokenizer);
  return messages.some((m) => specials.some((s) => m.content.includes(s)));
}

/** A placeholder for the `index`-th message text while a template is rendered. */
export function markerOf(index: number): string {
  return `\uE000${index}\uE000`;
}

/**
 * `shape` (a rendering with {@link markerOf} placeholders) with each placeholder replaced by its
 * value, and where each value landed.
 */
export function fillMarkers(shape: string, values: readonly string[]): RenderedChat {
  const spans: [number, number][] = [];
  let text = "", last = 0;
  for (const match of shape.matchAll(/\uE000(\d+)\uE000/g)) {
    text += shape.slice(last, match.index);
    const value = values[Number(match[1])];
    spans.push([text.length, text.length + value.length]);
    text += value;
    last = match.index + match[0].length;
  }
  return { text: text + shape.slice(last), contentSpans: spans };
}
