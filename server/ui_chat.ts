/**
 * The chat playground behind POST /api/ui/chat: one model loaded at a time (kept until another
 * is asked for), requests served one after another, tokens sent as server-sent events as they
 * are decoded by the same code as `deno task serve` (server/generation.ts `generateText`:
 * seeded sampling, incremental decoding, event-loop turns so pieces go out while the model
 * runs, and a client that hangs up stops the model at the next token).
 *
 * Request: {model: "<stage>/<key>", messages: [{role: "user"|"assistant", content}],
 *           template?: "auto"|"none"|"alpaca", temperature?, top_k?, max_tokens?, seed?}
 * Events:  meta {prompt, template, queued}, token {text}..., done {tokens, seconds, stopped},
 *          or error {error}.
 */
import { type BackendChoice, initEngine } from "../llm/engine/backend.ts";
import type { GPTModel } from "../llm/model/gpt.ts";
import { loadModel } from "../llm/model/weights_io.ts";
import type { Tokenizer } from "../llm/tokenizer/mod.ts";
import { generateText } from "./generation.ts";
import { isModelFolder, readModelTemplate, readModelTokenizer } from "../llm/infer/model_folder.ts";
import { type PromptTemplate, promptTemplate } from "../llm/data/instructions.ts";

export const MAX_CHAT_TOKENS = 1024;
const MAX_PROMPT_CHARS = 32_000;

interface Loaded {
  dir: string;
  model: GPTModel;
  tokenizer: Tokenizer;
  /** The model's own prompt template (template.json; Alpaca for older fine-tunes); none: base. */
  template?: PromptTemplate;
}

export interface ChatRequest {
  messages: { role: "user" | "assistant"; content: string }[];
  template: "auto" | "none" | "alpaca" | "phi3";
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
  if (template !== "auto" && template !== "none" && template !== "alpaca" && template !== "phi3") {
    throw new BadRequest(`template: expected auto, none, alpaca or phi3`);
  }
  return {
    messages,
    template,
    temperature: number("temperature", 0.7, 0, 5),
    top_k: b.top_k === undefined || b.top_k === null || b.top_k === 0
      ? undefined
      : number("top_k", 50, 1, 1_000_000, true),
    max_tokens: number("max_tokens", 100, 1, MAX_CHAT_TOKENS, true),
    seed: number("seed", 123, 0, 2 ** 31, true),
  };
}

/**
 * The text the model continues: the template's query around the last message (its prompt and
 * response header, so the continuation is the answer), or (a base model)
 * the transcript as `deno task chat` builds it: each reply right after its prompt, each new
 * message on a new line.
 */
export function buildPrompt(request: ChatRequest, template?: PromptTemplate): string {
  if (template) return template.query({ instruction: request.messages.at(-1)!.content });
  let transcript = "";
  for (const m of request.messages) {
    transcript = m.role === "assistant"
      ? transcript + m.content
      : transcript
      ? `${transcript}\n${m.content}`
      : m.content;
  }
  return transcript;
}

export class ChatService {
  #loaded?: Loaded;
  #queue: Promise<unknown> = Promise.resolve();
  #waiting = 0;
  #engine?: Promise<unknown>;

  constructor(readonly backend: BackendChoice = "auto") {}

  /** The name of the model's own template ("alpaca", "phi3", "custom"), or "none" (a base model). */
  async templateOf(dir: string): Promise<string> {
    return (await readModelTemplate(dir))?.name ?? "none";
  }

  async #load(dir: string): Promise<Loaded> {
    if (this.#loaded?.dir === dir) return this.#loaded;
    if (!isModelFolder(dir)) throw new BadRequest(`model: ${dir} holds no model`);
    this.#engine ??= initEngine({ backend: this.backend });
    await this.#engine;
    this.#loaded?.model.dispose();
    this.#loaded = undefined;
    const tokenizer = await readModelTokenizer(dir);
    const model = await loadModel(dir);
    this.#loaded = { dir, model, tokenizer, template: await readModelTemplate(dir) };
    return this.#loaded;
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
    const encoder = new TextEncoder();
    const queued = this.#waiting++;
    let closed = false;
    // A client that went away (the stream was cancelled) stops the generation.
    const gone = new AbortController();
    const body$ = new ReadableStream<Uint8Array>({
      start: (controller) => {
        const send = (event: string, data: unknown) => {
          if (closed) return;
          controller.enqueue(encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
        };
        const job = async () => {
          try {
            if (closed) return;
            const loaded = await this.#load(dir);
            const template = request.template === "auto"
              ? loaded.template
              : request.template === "none"
              ? undefined
              : promptTemplate(request.template);
            const prompt = buildPrompt(request, template);
            if (prompt.length > MAX_PROMPT_CHARS) {
              throw new BadRequest(`the prompt is over ${MAX_PROMPT_CHARS} characters`);
            }
            send("meta", { prompt, template: template?.name ?? "none", queued });
            const done = await generateText(loaded.model, loaded.tokenizer, {
              prompt,
              maxTokens: request.max_tokens,
              temperature: request.temperature,
              topK: request.top_k,
              seed: request.seed,
              stop: [],
            }, { signal: gone.signal, onText: (text) => send("token", { text }) });
            send("done", {
              tokens: done.completionTokens,
              seconds: done.seconds,
              // As `deno task chat` says it: the end-of-text token, or the length limit.
              stopped: done.finishReason === "stop" ? "stop_token" : "max_new_tokens",
            });
          } catch (error) {
            send("error", { error: (error as Error).message });
          } finally {
            this.#waiting--;
            if (!closed) closed = true, controller.close();
          }
        };
        this.#queue = this.#queue.then(job, job);
      },
      cancel: () => {
        closed = true;
        gone.abort(new DOMException("client went away", "AbortError"));
      },
    });
    return new Response(body$, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
      },
    });
  }

  dispose(): void {
    this.#loaded?.model.dispose();
    this.#loaded = undefined;
  }
}
