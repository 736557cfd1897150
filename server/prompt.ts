/**
 * The one place where a request becomes the prompt ids the model continues, for every way of
 * talking to a served model (OpenAI's and Ollama's chat and completions, Ollama's generate, the
 * page's chat): a conversation goes through the model's {@link ChatFormat} whole (system
 * messages and history included), a raw prompt is encoded as it is. And how the answer is cut:
 * a fine-tuned GPT-2's instruction template drops a repeated response header and trims it.
 */
import type { ChatFormat, ChatMessage } from "../llm/chat/format.ts";
import type { Tokenizer } from "../llm/tokenizer/mod.ts";
import { ResponseStream } from "./response_stream.ts";

/** What a request asks the model to continue. */
export type PromptInput =
  /** A conversation, rendered by the chat format and ending with the assistant's header. */
  | { messages: readonly ChatMessage[]; enableThinking?: boolean }
  /** Text used as it is (`/v1/completions`, Ollama's `raw`): special-token text counts. */
  | { text: string };

/** The prompt ids of `input` with the chat format `chat`. */
export function promptIds(chat: ChatFormat, tokenizer: Tokenizer, input: PromptInput): number[] {
  if ("text" in input) return tokenizer.encode(input.text);
  return chat.encode(input.messages, {
    addGenerationPrompt: true,
    ...(input.enableThinking === undefined ? {} : { enableThinking: input.enableThinking }),
  });
}

/** The prompt text of `input` (what the page shows above a reply). */
export function promptText(chat: ChatFormat, input: PromptInput): string {
  if ("text" in input) return input.text;
  return chat.render(input.messages, {
    addGenerationPrompt: true,
    ...(input.enableThinking === undefined ? {} : { enableThinking: input.enableThinking }),
  });
}

/**
 * Cuts the model's text into the answer as the chat format says, whole or piece by piece: an
 * instruction template's `extractResponse` (see {@link ResponseStream}); every other format
 * (a Jinja chat template, none, a raw prompt) keeps the text as it is, since its answer ends at a
 * stop id that is not part of the text.
 */
export class AnswerCut {
  readonly #stream?: ResponseStream;
  readonly #extract?: (text: string) => string;

  constructor(chat: ChatFormat | undefined) {
    if (chat?.template) {
      this.#stream = new ResponseStream(chat.template);
      this.#extract = (text) => chat.template!.extractResponse(text);
    }
  }

  /** The part of the answer that is certain once `piece` more of the text arrived. */
  push(piece: string): string {
    return this.#stream ? this.#stream.push(piece) : piece;
  }

  /** The rest of the answer at the end of generation. */
  end(): string {
    return this.#stream ? this.#stream.end() : "";
  }

  /** The answer within the whole text. */
  whole(text: string): string {
    return this.#extract ? this.#extract(text) : text;
  }
}
