/**
 * A model as the servers hold it: the weights, the tokenizer, the chat format, the ids it may
 * emit, and the one queue its generations wait in. `serve` (OpenAI and Ollama, server/app.ts)
 * and the page's chat (server/ui_chat.ts) both generate through here: the prompt from
 * server/prompt.ts, the decoding from server/generation.ts, the answer cut as the format says.
 */
import type { ChatFormat } from "../llm/chat/format.ts";
import type { GPTModel } from "../llm/model/gpt.ts";
import { type Quantization, weightBytes } from "../llm/model/precision.ts";
import type { Tokenizer } from "../llm/tokenizer/mod.ts";
import {
  checkPromptIds,
  generateText,
  type GenerationRequest,
  type GenerationResult,
} from "./generation.ts";
import { AnswerCut, promptIds, type PromptInput } from "./prompt.ts";
import { ModelQueue } from "./queue.ts";

/** What a served model is made of (what `openModelFolder` returns has all of it). */
export interface ServedModelParts {
  model: GPTModel;
  tokenizer: Tokenizer;
  /** How messages become a prompt and which ids end a reply. */
  chat: ChatFormat;
  /** `gpt2`, `llama`, `qwen3`, ... (default: the config's family, else gpt2). */
  family?: string;
  /** Ids the model may emit (default: every row of the embedding). */
  vocabLimit?: number;
  /** How the weights are held (default none: fp32). */
  quantize?: Quantization;
}

/** Ollama's name of the number format `quantize` holds the matrices in. */
const QUANTIZATION_LEVEL: Record<Quantization, string> = {
  none: "F32",
  bf16: "BF16",
  int8: "Q8_0",
};

/** What clients are told about the model (/v1/models, /api/tags, /api/show). */
export interface ModelInfo {
  family: string;
  parameters: number;
  /** Bytes the weights take in memory: packed matrices at their stored size (Ollama's `size`). */
  bytes: number;
  contextLength: number;
  /** The weights' number format as Ollama names it: "F32", "BF16" or "Q8_0" (`--quantize`). */
  quantization: string;
  /** The chat format's name: "jinja", "alpaca", "phi3", "custom" or "none". */
  template: string;
}

/** How one generation is run. */
export interface RunOptions {
  /** Aborting ends the generation at the next token (or drops it while it waits). */
  signal?: AbortSignal;
  /** Receives the answer piece by piece (streaming). */
  onText?: (text: string) => void | Promise<void>;
  /** When streaming, the longest stretch of generation between event-loop turns (ms). */
  streamTurnMs?: number;
  /** Cut the answer as this chat format says (a chat); undefined: the text as it is (raw). */
  cutAs?: ChatFormat;
  /** Ids that end the answer (default: `cutAs`'s, else the model's chat format's). */
  stopIds?: ReadonlySet<number>;
}

export class ServedModel {
  readonly model: GPTModel;
  readonly tokenizer: Tokenizer;
  readonly chat: ChatFormat;
  readonly family: string;
  readonly vocabLimit: number;
  readonly quantize: Quantization;
  /** Generations wait here for their turn, one at a time. */
  readonly queue: ModelQueue;

  constructor(parts: ServedModelParts, queue: ModelQueue = new ModelQueue()) {
    this.model = parts.model;
    this.tokenizer = parts.tokenizer;
    this.chat = parts.chat;
    this.family = parts.family ?? parts.model.config.family ?? "gpt2";
    this.vocabLimit = parts.vocabLimit ?? parts.model.config.vocab_size;
    this.quantize = parts.quantize ?? "none";
    this.queue = queue;
  }

  /** The longest sequence the model sees. */
  get contextLength(): number {
    return this.model.config.context_length;
  }

  info(): ModelInfo {
    return {
      family: this.family,
      parameters: this.model.numParameters(),
      bytes: weightBytes(this.model),
      contextLength: this.contextLength,
      quantization: QUANTIZATION_LEVEL[this.quantize],
      template: this.chat.name,
    };
  }

  /**
   * The prompt ids of `input` (with `chat`, default the model's format), checked: not empty,
   * inside the vocabulary. Throws a RangeError saying what is wrong.
   */
  prompt(input: PromptInput, chat: ChatFormat = this.chat): number[] {
    const ids = promptIds(chat, this.tokenizer, input);
    checkPromptIds(this.model, ids);
    return ids;
  }

  /** Generates now: the caller holds the model's turn (see {@link run}). */
  async generate(request: GenerationRequest, options: RunOptions = {}): Promise<GenerationResult> {
    const cut = new AnswerCut(options.cutAs);
    const { onText } = options;
    const done = await generateText(
      {
        model: this.model,
        tokenizer: this.tokenizer,
        // A chat ends at its format's end of turn; a raw prompt at the model's own.
        stopIds: options.stopIds ?? (options.cutAs ?? this.chat).stopIds,
        vocabLimit: this.vocabLimit,
      },
      request,
      {
        signal: options.signal,
        streamTurnMs: options.streamTurnMs,
        onText: onText && (async (text) => {
          const piece = cut.push(text);
          if (piece) await onText(piece);
        }),
      },
    );
    const rest = cut.end();
    if (onText && rest) await onText(rest);
    return { ...done, text: cut.whole(done.text) };
  }

  /** Generates in its turn, after the generations queued before it. */
  run(request: GenerationRequest, options: RunOptions = {}): Promise<GenerationResult> {
    return this.queue.run(() => this.generate(request, options), options.signal);
  }
}
