/**
 * The chat playground behind POST /api/ui/chat, a client of `serve`'s generation path: the model
 * opened by `openModelFolder` (ours or a Hugging Face folder), one at a time (kept until another
 * is asked for), held as a {@link ServedModel} whose one queue serves requests in turn, the prompt
 * built by server/prompt.ts from the whole conversation in the model's chat format (or the one
 * the page picks), the answer cut and stopped as `serve` does, streamed by server/sse.ts.
 *
 * Request: {model: "<stage>/<key>", messages: [{role: "user"|"assistant", content}],
 *           template?: "auto"|"none"|"alpaca"|"phi3", enable_thinking?, temperature?, top_k?,
 *           max_tokens?, seed?}
 * Events:  meta {prompt, template, queued}, token {text}..., done {tokens, seconds, stopped},
 *          or error {error}.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  CHAT_TEMPLATE_CHOICES,
  type ChatTemplateChoice,
  chooseChatFormat,
  isChatTemplateChoice,
} from "../llm/chat/mod.ts";
import { type BackendChoice, initEngine } from "../llm/engine/backend.ts";
import { isHfModelFolder } from "../llm/families/load.ts";
import { isModelFolder, readModelTemplate } from "../llm/infer/model_folder.ts";
import { openModelFolder } from "../llm/infer/open_model.ts";
import type { Quantization } from "../llm/model/precision.ts";
import { promptText } from "./prompt.ts";
import { ModelQueue } from "./queue.ts";
import { ServedModel } from "./served_model.ts";
import { namedEvent, streamed } from "./sse.ts";

export const MAX_CHAT_TOKENS = 1024;
const MAX_PROMPT_CHARS = 32_000;

export interface ChatRequest {
  messages: { role: "user" | "assistant"; content: string }[];
  template: ChatTemplateChoice;
  /** Qwen3's `enable_thinking`; undefined: the template's default. */
  enable_thinking?: boolean;
  temperature: number;
  top_k?: number;
  max_tokens: number;
  seed: number;
}

class BadRequest extends Error {}

/** Checks a chat request body, naming the field that is wrong. */
export function parseChatRequest(body: unknown): ChatRequest {
  const b = (body ?? {}) as Record<string, unknown>;
  const messages = b.messages;
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new BadRequest("messages: expected a non-empty list of {role, content}");
  }
  for (const [i, m] of messages.entries()) {
    if (
      typeof m !== "object" || m === null || !["user", "assistant"].includes(m.role) ||
      typeof m.content !== "string"
    ) {
      throw new BadRequest(`messages[${i}]: expected {role: "user"|"assistant", content: string}`);
    }
  }
  if (messages.at(-1).role !== "user") {
    throw new BadRequest("messages: the last must be the user's");
  }
  const number = (name: string, fallback: number, min: number, max: number, integer = false) => {
    const v = b[name] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) {
      throw new BadRequest(`${name}: expected a number from ${min} to ${max}`);
    }
    if (integer && !Number.isInteger(v)) throw new BadRequest(`${name}: expected an integer`);
    return v;
  };
  const template = b.template ?? "auto";
  if (!isChatTemplateChoice(template)) {
    throw new BadRequest(`template: expected ${CHAT_TEMPLATE_CHOICES.join(", ")}`);
  }
  const thinking = b.enable_thinking ?? undefined;
  if (thinking !== undefined && typeof thinking !== "boolean") {
    throw new BadRequest("enable_thinking: expected true or false");
  }
  return {
    messages,
    template,
    ...(thinking === undefined ? {} : { enable_thinking: thinking }),
    temperature: number("temperature", 0.7, 0, 5),
    top_k: b.top_k === undefined || b.top_k === null || b.top_k === 0
      ? undefined
      : number("top_k", 50, 1, 1_000_000, true),
    max_tokens: number("max_tokens", 100, 1, MAX_CHAT_TOKENS, true),
    seed: number("seed", 123, 0, 2 ** 31, true),
  };
}

/**
 * The name of a model folder's chat format without loading it: "jinja" (a Hugging Face folder
 * with a chat template), its instruction template's ("alpaca", "phi3", "custom"), or "none".
 */
export async function chatFormatNameOf(dir: string): Promise<string> {
  if (isHfModelFolder(dir)) {
    if (existsSync(join(dir, "chat_template.jinja"))) return "jinja";
    try {
      const config = JSON.parse(await Deno.readTextFile(join(dir, "tokenizer_config.json")));
      if (config?.chat_template) return "jinja";
    } catch { /* no tokenizer_config.json: no template there */ }
  }
  return (await readModelTemplate(dir))?.name ?? "none";
}

export class ChatService {
  #loaded?: { dir: string; served: ServedModel };
  /** The one queue: loading a model and generating with it take their turn together. */
  readonly #queue = new ModelQueue();
  #engine?: Promise<unknown>;

  /** `quantize`: how every model it opens holds its weights (`deno task ui --quantize`). */
  constructor(
    readonly backend: BackendChoice = "auto",
    readonly quantize: Quantization = "none",
  ) {}

  /** The name of the model's own chat format (see {@link chatFormatNameOf}). */
  templateOf(dir: string): Promise<string> {
    return chatFormatNameOf(dir);
  }

  /** The model in `dir`, opened unless it is the one already held (call in the queue's turn). */
  async #load(dir: string): Promise<ServedModel> {
    if (this.#loaded?.dir === dir) return this.#loaded.served;
    if (!isModelFolder(dir)) throw new BadRequest(`model: ${dir} holds no model`);
    this.#engine ??= initEngine({ backend: this.backend });
    await this.#engine;
    this.dispose();
    const opened = await openModelFolder(dir, { quantize: this.quantize });
    const served = new ServedModel({ ...opened, quantize: this.quantize }, this.#queue);
    this.#loaded = { dir, served };
    return served;
  }

  /** Answers with an event stream; the work waits its turn behind earlier requests. */
  stream(dir: string, body: unknown): Response {
    let request: ChatRequest;
    try {
      request = parseChatRequest(body);
    } catch (error) {
      return new Response(JSON.stringify({ error: (error as Error).message }), {
        status: 400,
        headers: { "content-type": "application/json" },
      });
    }
    const queued = this.#queue.length;
    // A client that went away (the stream was cancelled) stops the generation.
    const gone = new AbortController();
    const response = streamed("text/event-stream; charset=utf-8", gone, async (send) => {
      await this.#queue.run(async () => {
        const served = await this.#load(dir);
        const chat = chooseChatFormat(request.template, served.chat, served.tokenizer);
        const input = { messages: request.messages, enableThinking: request.enable_thinking };
        const prompt = promptText(chat, input);
        if (prompt.length > MAX_PROMPT_CHARS) {
          throw new BadRequest(`the prompt is over ${MAX_PROMPT_CHARS} characters`);
        }
        await send(namedEvent("meta", { prompt, template: chat.name, queued }));
        const done = await served.generate({
          ids: served.prompt(input, chat),
          maxTokens: request.max_tokens,
          temperature: request.temperature,
          topK: request.top_k,
          seed: request.seed,
          stop: [],
        }, {
          signal: gone.signal,
          cutAs: chat,
          onText: (text) => send(namedEvent("token", { text })),
        });
        await send(namedEvent("done", {
          tokens: done.completionTokens,
          seconds: done.seconds,
          // As `deno task chat` says it: a stop token, or the length limit.
          stopped: done.finishReason === "stop" ? "stop_token" : "max_new_tokens",
        }));
      }, gone.signal);
    }, (message) => namedEvent("error", { error: message }));
    response.headers.set("cache-control", "no-store");
    return response;
  }

  dispose(): void {
    this.#loaded?.served.model.dispose();
    this.#loaded = undefined;
  }
}
