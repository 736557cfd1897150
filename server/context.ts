/**
 * What the OpenAI and Ollama endpoints share: the served model and its name, the limits, and
 * the two steps every generating request takes: its sampling settings checked against the
 * model, and its prompt built (server/prompt.ts) and checked, each error a {@link RequestError}
 * naming the field.
 */
import type { ChatMessage } from "../llm/chat/format.ts";
import { fitPrompt, type GenerationRequest } from "./generation.ts";
import { type PromptInput, promptText } from "./prompt.ts";
import { RequestError } from "./requests.ts";
import type { ServedModel } from "./served_model.ts";

/** Sampling as a request gives it (any API's field names mapped to these). */
export interface Sampling {
  maxTokens?: number | null;
  temperature?: number | null;
  topK?: number | null;
  topP?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
}

/** The settings a request's generation runs with (its prompt aside). */
export type GenerationSettings = Omit<GenerationRequest, "ids">;

export interface ServeContextOptions {
  served: ServedModel;
  /** The id clients name in `model` (also `<name>:latest`, as Ollama's clients may add). */
  modelName: string;
  /** "sha256:…" of the weights. */
  digest?: string;
  maxBodyBytes: number;
  /** max_tokens when a request gives none (at most the context length). */
  defaultMaxTokens: number;
  /** While streaming, the longest stretch of generation between event-loop turns (ms). */
  streamTurnMs?: number;
  /** Qwen3's `enable_thinking` when a request does not say (undefined: the template's default). */
  enableThinking?: boolean;
  /** OpenAI endpoints: keep the end of a prompt longer than the context instead of a 400. */
  truncatePrompts?: boolean;
  /** Called with the prompt ids of every generating request (tests, debugging). */
  onPrompt?: (ids: readonly number[]) => void;
}

export class ServeContext {
  readonly served: ServedModel;
  readonly modelName: string;
  readonly digest?: string;
  readonly maxBodyBytes: number;
  readonly defaultMaxTokens: number;
  readonly streamTurnMs?: number;
  readonly enableThinking?: boolean;
  readonly truncatePrompts: boolean;
  readonly onPrompt?: (ids: readonly number[]) => void;
  /** When the server started (seconds since 1970), reported as the model's creation. */
  readonly created = Math.floor(Date.now() / 1000);
  #counter = 0;

  constructor(options: ServeContextOptions) {
    this.served = options.served;
    this.modelName = options.modelName;
    this.digest = options.digest;
    this.maxBodyBytes = options.maxBodyBytes;
    this.defaultMaxTokens = Math.min(options.defaultMaxTokens, options.served.contextLength);
    this.streamTurnMs = options.streamTurnMs;
    this.enableThinking = options.enableThinking;
    this.truncatePrompts = options.truncatePrompts ?? false;
    this.onPrompt = options.onPrompt;
  }

  /** A new response id, `<prefix>-<n>`. */
  nextId(prefix: string): string {
    return `${prefix}-${++this.#counter}`;
  }

  /** 404 unless `name` is the served model. */
  checkModel(name: string): void {
    if (name !== this.modelName && name !== `${this.modelName}:latest`) {
      throw new RequestError(
        `model "${name}" not found: this server serves "${this.modelName}"`,
        "model",
        404,
        "model_not_found",
      );
    }
  }

  /** The generation settings of a request, checked against the model (`param`: max tokens). */
  settings(s: Sampling, param: string): GenerationSettings {
    const context = this.served.contextLength;
    const maxTokens = s.maxTokens ?? this.defaultMaxTokens;
    if (maxTokens > context) {
      throw new RequestError(
        `${param}: ${maxTokens} is more than the model's context of ${context} tokens`,
        param,
      );
    }
    return {
      maxTokens,
      temperature: s.temperature ?? 1,
      ...(s.topK ? { topK: s.topK } : {}),
      ...(s.topP && s.topP < 1 ? { topP: s.topP } : {}),
      // Without a seed each request samples afresh; with one, the same request repeats.
      seed: s.seed ?? Math.floor(Math.random() * 2 ** 31),
      stop: s.stop == null ? [] : typeof s.stop === "string" ? [s.stop] : s.stop,
    };
  }

  /**
   * The prompt ids of `input`, a chat with the server's `enable_thinking` default unless the
   * request said; a problem is a 400 naming `param`. A prompt longer than the context is
   * refused (400 naming both counts) unless `truncate` (Ollama's endpoints, as Ollama does;
   * OpenAI's with `truncatePrompts`): then a text keeps its end, a conversation loses its
   * oldest messages (never the system's nor the last), and generation sees the last
   * context-length tokens, as the book's `generate` crops. A long prompt is counted from its
   * end a slice at a time with event-loop turns between ({@link fitPrompt}), before it is
   * encoded whole, so other requests are answered meanwhile.
   */
  async prompt(input: PromptInput, param: string, truncate = false): Promise<number[]> {
    const context = this.served.contextLength;
    let ids: number[];
    try {
      const fitted = await this.#fit(this.#withDefaults(input), truncate);
      ids = this.served.prompt(fitted);
    } catch (error) {
      throw new RequestError(`${param}: ${(error as Error).message}`, param);
    }
    if (ids.length > context && !truncate) {
      throw new RequestError(
        `${param}: the prompt has ${ids.length.toLocaleString("en")} tokens, more than the ` +
          `model's context of ${context} tokens`,
        param,
      );
    }
    this.onPrompt?.(ids);
    return ids;
  }

  #withDefaults(input: PromptInput): PromptInput {
    if (!("messages" in input) || input.enableThinking !== undefined) return input;
    if (this.enableThinking === undefined) return input;
    return { ...input, enableThinking: this.enableThinking };
  }

  /** `input` cut to what the context can hold, or a RangeError when it cannot be cut. */
  async #fit(input: PromptInput, truncate: boolean): Promise<PromptInput> {
    const { tokenizer, chat, contextLength } = this.served;
    if ("text" in input) {
      return { text: await fitPrompt(tokenizer, input.text, contextLength, truncate) };
    }
    let messages = input.messages;
    for (;;) {
      const text = promptText(chat, { ...input, messages });
      const fitted = await fitPrompt(tokenizer, text, contextLength, truncate);
      if (fitted.length === text.length) return { ...input, messages };
      const fewer = withoutOldest(messages);
      if (!fewer) return { ...input, messages }; // generation keeps the end of what is left
      messages = fewer;
    }
  }
}

/**
 * `messages` without the oldest one that is neither a system message nor the last (and
 * without the replies that would then open the conversation); undefined when none can go.
 */
function withoutOldest(messages: readonly ChatMessage[]): ChatMessage[] | undefined {
  const first = messages.findIndex((m) => m.role !== "system");
  if (first < 0 || first >= messages.length - 1) return undefined;
  const rest = [...messages];
  rest.splice(first, 1);
  while (rest[first]?.role === "assistant" && first < rest.length - 1) rest.splice(first, 1);
  return rest;
}
