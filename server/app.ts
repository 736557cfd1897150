/**
 * `serve`'s HTTP layer: one loaded model behind the OpenAI-compatible endpoints
 * (`/v1/models`, `/v1/completions`, `/v1/chat/completions`, streamed as server-sent events)
 * and Ollama's (`/api/tags`, `/api/show`, `/api/generate`, `/api/chat`, `/api/version`, streamed as
 * NDJSON), on Deno.serve.
 *
 * Generations queue for the model, one at a time. Every refusal is JSON in the shape the
 * API family's clients read: OpenAI `{error: {message, type, param, code}}`, Ollama
 * `{error}`. Bodies are bounded (413), OpenAI prompts and `max_tokens` by the context (400;
 * Ollama keeps a long prompt's end, as Ollama does), an optional API key is checked (401;
 * compared without early exit, never logged). A client that disconnects aborts its generation
 * at the next token. A long prompt is counted, and fed to the model, a slice at a time with
 * event-loop turns between, so it never holds up other requests (the model list, health).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { PromptTemplate } from "../llm/data/instructions.ts";
import type { GPTModel } from "../llm/model/gpt.ts";
import type { Tokenizer } from "../llm/tokenizer/mod.ts";
import { encodePrompt, fitPrompt, generateText, type GenerationRequest } from "./generation.ts";
import { ModelQueue } from "./queue.ts";
import { ResponseStream } from "./response_stream.ts";
import {
  ChatBody,
  type ChatMessage,
  CompletionBody,
  messageText,
  OllamaChatBody,
  OllamaGenerateBody,
  OllamaShowBody,
  parseBody,
  RequestError,
} from "./requests.ts";

export interface ServeOptions {
  model: GPTModel;
  tokenizer: Tokenizer;
  /** The id clients name in `model` (also `<name>:latest`, as Ollama's clients may add). */
  modelName: string;
  /**
   * The prompt template the model was instruction-tuned with (readModelTemplate): chat
   * messages and Ollama's non-raw prompts are put in it and the answer is cut as it says.
   * Undefined for a base model: chat continues a transcript.
   */
  template?: PromptTemplate;
  /** "sha256:…" of the weights, reported by /api/tags. */
  digest?: string;
  /** When set, every request must carry `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Largest request body accepted (default 1 MiB). */
  maxBodyBytes?: number;
  /** max_tokens when a request gives none (default 256, at most the context length). */
  defaultMaxTokens?: number;
  /** One line per request (method, path, status, tokens); never headers or bodies. */
  log?: (line: string) => void;
  /**
   * OpenAI endpoints: keep the end of a prompt longer than the context (its last
   * context-length tokens, as the book's `generate` crops) instead of refusing it with a 400.
   * Ollama's endpoints always keep the end, as Ollama does.
   */
  truncatePrompts?: boolean;
  /** While streaming, the longest stretch of generation between event-loop turns (ms). */
  streamTurnMs?: number;
}

export const SERVE_VERSION = "0.1.0";
const DEFAULT_MAX_BODY = 1 << 20;

type Family = "openai" | "ollama";

function json(body: unknown, status = 200, headers: HeadersInit = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

function errorResponse(family: Family, error: RequestError): Response {
  if (family === "ollama") return json({ error: error.message }, error.status);
  const type = error.status === 401
    ? "authentication_error"
    : error.status === 404
    ? "not_found_error"
    : "invalid_request_error";
  return json(
    { error: { message: error.message, type, param: error.param, code: error.code ?? null } },
    error.status,
    error.status === 401 ? { "www-authenticate": "Bearer" } : {},
  );
}

/** Reads the body as text, refusing more than `limit` bytes (413) before reading them all. */
async function readBody(request: Request, limit: number): Promise<string> {
  const declared = Number(request.headers.get("content-length") ?? NaN);
  const tooLarge = () =>
    new RequestError(`request body larger than ${limit} bytes`, null, 413, "body_too_large");
  if (declared > limit) throw tooLarge();
  if (!request.body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of request.body) {
    size += chunk.length;
    if (size > limit) throw tooLarge();
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) bytes.set(chunk, at), at += chunk.length;
  return new TextDecoder().decode(bytes);
}

async function readJson(request: Request, limit: number): Promise<unknown> {
  const text = await readBody(request, limit);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new RequestError(`the body is not valid JSON: ${(error as Error).message}`);
  }
}

/** True when `given` equals `expected`, in time that does not depend on where they differ. */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * The prompt for chat messages. An instruction-tuned model answers one instruction: the last
 * user message in its template, with the response header (`template.query`, as `deno task
 * chat` does). A base model continues the
 * transcript, as `deno task chat` builds it: each user (or system) message on a new line,
 * each assistant reply appended to what it answered.
 */
export function chatPrompt(
  messages: readonly ChatMessage[],
  template: PromptTemplate | undefined,
): string {
  if (template) {
    const last = [...messages].reverse().find((m) => m.role === "user");
    if (!last) throw new RequestError("messages: no user message to answer", "messages");
    return template.query({ instruction: last.content });
  }
  let transcript = "";
  for (const message of messages) {
    if (message.role === "assistant") transcript += message.content;
    else transcript = transcript ? `${transcript}\n${message.content}` : message.content;
  }
  return transcript;
}

/** SHA-256 of a file, streamed (weights can be gigabytes): "sha256:<hex>". */
export async function fileDigest(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  for await (const chunk of file.readable) hash.update(chunk);
  return `sha256:${hash.digest("hex")}`;
}

interface Sampling {
  maxTokens?: number | null;
  temperature?: number | null;
  topK?: number | null;
  topP?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
}

export function createServeHandler(options: ServeOptions): {
  handler: (request: Request) => Promise<Response>;
  queue: ModelQueue;
} {
  const { model, tokenizer, modelName, template } = options;
  const context = model.config.context_length;
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const defaultMaxTokens = Math.min(options.defaultMaxTokens ?? 256, context);
  const queue = new ModelQueue();
  const created = Math.floor(Date.now() / 1000);
  const log = options.log ?? (() => {});
  let counter = 0;

  function checkModel(name: string) {
    if (name !== modelName && name !== `${modelName}:latest`) {
      throw new RequestError(
        `model "${name}" not found: this server serves "${modelName}"`,
        "model",
        404,
        "model_not_found",
      );
    }
  }

  /** The generation settings of a request, checked against the model. */
  function settings(prompt: string, s: Sampling, param: string): GenerationRequest {
    const maxTokens = s.maxTokens ?? defaultMaxTokens;
    if (maxTokens > context) {
      throw new RequestError(
        `${param}: ${maxTokens} is more than the model's context of ${context} tokens`,
        param,
      );
    }
    return {
      prompt,
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
   * A prompt the model can take: no longer than its context (else refused, or cut to its end
   * with `truncate`: Ollama's endpoints always, as Ollama does; OpenAI's with the option), its
   * tokens in the vocabulary.
   */
  async function checkPrompt(request: GenerationRequest, param: string, family: Family) {
    const truncate = family === "ollama" || options.truncatePrompts === true;
    try {
      request.prompt = await fitPrompt(tokenizer, request.prompt, context, truncate);
      encodePrompt(model, tokenizer, request.prompt);
    } catch (error) {
      throw new RequestError(`${param}: ${(error as Error).message}`, param);
    }
  }

  /** Runs `request` in its turn; `onText` receives the pieces when streaming. */
  function run(
    request: GenerationRequest,
    signal: AbortSignal,
    onText?: (text: string) => void | Promise<void>,
  ) {
    return queue.run(() =>
      generateText(model, tokenizer, request, {
        signal,
        onText,
        streamTurnMs: options.streamTurnMs,
      }), signal);
  }

  /**
   * Runs a templated request (chat, Ollama's generate): a fine-tuned model's answer is cut
   * as its template says (the response header dropped, trimmed), streamed or whole alike.
   */
  async function answer(
    request: GenerationRequest,
    signal: AbortSignal,
    onText?: (text: string) => void | Promise<void>,
  ) {
    if (!template) return await run(request, signal, onText);
    const cut = new ResponseStream(template);
    const done = await run(
      request,
      signal,
      onText && (async (text) => {
        const piece = cut.push(text);
        if (piece) await onText(piece);
      }),
    );
    const rest = cut.end();
    if (onText && rest) await onText(rest);
    return { ...done, text: template.extractResponse(done.text) };
  }

  /**
   * A streamed response: `produce` writes chunks with `send`; the client going away (the
   * stream cancelled or the request's signal) aborts `abort`.
   */
  function streamed(
    contentType: string,
    abort: AbortController,
    produce: (send: (chunk: string) => Promise<void>) => Promise<void>,
    onError: (message: string) => string,
  ): Response {
    const encoder = new TextEncoder();
    // Set while a piece waits for the connection to take the previous one: generation pauses
    // until the client reads (backpressure), which is also what gives the server's I/O a turn.
    let taken: PromiseWithResolvers<void> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        const send = async (chunk: string) => {
          controller.enqueue(encoder.encode(chunk));
          if ((controller.desiredSize ?? 1) <= 0 && !abort.signal.aborted) {
            taken = Promise.withResolvers();
            await taken.promise;
          }
        };
        produce(send).then(
          () => controller.close(),
          (error) => {
            if (abort.signal.aborted) return; // nobody is listening any more
            try {
              controller.enqueue(
                encoder.encode(onError(error instanceof Error ? error.message : String(error))),
              );
              controller.close();
            } catch { /* the stream is already gone */ }
          },
        );
      },
      pull() {
        taken?.resolve();
      },
      cancel() {
        abort.abort(new DOMException("the client disconnected", "AbortError"));
        taken?.resolve();
      },
    }, { highWaterMark: 1 });
    return new Response(body, {
      headers: { "content-type": contentType, "cache-control": "no-cache" },
    });
  }

  // ---- OpenAI -------------------------------------------------------------------------------

  async function openaiCompletion(request: Request, abort: AbortController) {
    const body = parseBody(CompletionBody, await readJson(request, maxBody));
    checkModel(body.model);
    const prompt = typeof body.prompt === "string" ? body.prompt : body.prompt[0];
    const gen = settings(
      prompt,
      samplingOf(body),
      body.max_tokens ? "max_tokens" : "max_completion_tokens",
    );
    await checkPrompt(gen, "prompt", "openai");
    const id = `cmpl-${++counter}`;
    const base = { id, object: "text_completion", created: now(), model: modelName };
    if (!body.stream) {
      const done = await run(gen, abort.signal);
      return json({
        ...base,
        choices: [{ index: 0, text: done.text, logprobs: null, finish_reason: done.finishReason }],
        usage: usage(done),
      });
    }
    return sse(abort, async (send) => {
      const done = await run(gen, abort.signal, (text) =>
        send(event({
          ...base,
          choices: [{ index: 0, text, logprobs: null, finish_reason: null }],
        })));
      send(event({
        ...base,
        choices: [{ index: 0, text: "", logprobs: null, finish_reason: done.finishReason }],
      }));
      if (body.stream_options?.include_usage) {
        send(event({ ...base, choices: [], usage: usage(done) }));
      }
    });
  }

  async function openaiChat(request: Request, abort: AbortController) {
    const body = parseBody(ChatBody, await readJson(request, maxBody));
    checkModel(body.model);
    const prompt = chatPrompt(body.messages.map(messageText), template);
    const gen = settings(
      prompt,
      samplingOf(body),
      body.max_tokens ? "max_tokens" : "max_completion_tokens",
    );
    await checkPrompt(gen, "messages", "openai");
    const id = `chatcmpl-${++counter}`;
    const base = { id, created: now(), model: modelName, system_fingerprint: null };
    if (!body.stream) {
      const done = await answer(gen, abort.signal);
      return json({
        ...base,
        object: "chat.completion",
        choices: [{
          index: 0,
          message: { role: "assistant", content: done.text, refusal: null },
          logprobs: null,
          finish_reason: done.finishReason,
        }],
        usage: usage(done),
      });
    }
    const chunk = (delta: object, finish: string | null) =>
      event({
        ...base,
        object: "chat.completion.chunk",
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      });
    return sse(abort, async (send) => {
      send(chunk({ role: "assistant", content: "" }, null));
      const done = await answer(
        gen,
        abort.signal,
        (text) => send(chunk({ content: text }, null)),
      );
      send(chunk({}, done.finishReason));
      if (body.stream_options?.include_usage) {
        send(event({ ...base, object: "chat.completion.chunk", choices: [], usage: usage(done) }));
      }
    });
  }

  function sse(
    abort: AbortController,
    produce: (send: (chunk: string) => Promise<void>) => Promise<void>,
  ) {
    return streamed(
      "text/event-stream",
      abort,
      async (send) => {
        await produce(send);
        await send("data: [DONE]\n\n");
      },
      (message) => event({ error: { message, type: "server_error", param: null, code: null } }),
    );
  }

  // ---- Ollama -------------------------------------------------------------------------------

  async function ollamaGenerate(request: Request, abort: AbortController) {
    const body = parseBody(OllamaGenerateBody, await readJson(request, maxBody));
    checkModel(body.model);
    let prompt = body.prompt;
    if (!body.raw) {
      if (template) prompt = template.query({ instruction: prompt });
      else if (body.system) prompt = `${body.system}\n${prompt}`;
    }
    const templated = template !== undefined && !body.raw;
    return ollamaReply(body, prompt, templated, abort, "prompt", (text) => ({ response: text }));
  }

  async function ollamaChat(request: Request, abort: AbortController) {
    const body = parseBody(OllamaChatBody, await readJson(request, maxBody));
    checkModel(body.model);
    const prompt = chatPrompt(body.messages, template);
    return ollamaReply(
      body,
      prompt,
      template !== undefined,
      abort,
      "messages",
      (text) => ({ message: { role: "assistant", content: text } }),
    );
  }

  async function ollamaReply(
    body: OllamaGenerateBody | OllamaChatBody,
    prompt: string,
    templated: boolean,
    abort: AbortController,
    promptParam: string,
    payload: (text: string) => object,
  ) {
    const o = body.options ?? {};
    // Ollama's num_predict: -1 (or -2) means "until the context is full".
    const maxTokens = o.num_predict == null
      ? undefined
      : o.num_predict < 0
      ? context
      : o.num_predict;
    if (maxTokens === 0) {
      throw new RequestError("options.num_predict: must not be 0", "options.num_predict");
    }
    const gen = settings(prompt, {
      maxTokens,
      temperature: o.temperature ?? 0.8,
      topK: o.top_k,
      topP: o.top_p,
      seed: o.seed,
      stop: o.stop,
    }, "options.num_predict");
    await checkPrompt(gen, promptParam, "ollama");
    const t0 = performance.now();
    const final = (done: Awaited<ReturnType<typeof generateText>>) => ({
      model: modelName,
      created_at: new Date().toISOString(),
      ...payload(""),
      done: true,
      done_reason: done.finishReason,
      total_duration: Math.round((performance.now() - t0) * 1e6),
      load_duration: 0,
      prompt_eval_count: done.promptTokens,
      eval_count: done.completionTokens,
      eval_duration: Math.round(done.seconds * 1e9),
    });
    const generate = templated ? answer : run;
    if (body.stream === false) {
      const done = await generate(gen, abort.signal);
      return json({ ...final(done), ...payload(done.text) });
    }
    const line = (value: object) => JSON.stringify(value) + "\n";
    return streamed("application/x-ndjson", abort, async (send) => {
      const done = await generate(gen, abort.signal, (text) =>
        send(line({
          model: modelName,
          created_at: new Date().toISOString(),
          ...payload(text),
          done: false,
        })));
      send(line(final(done)));
    }, (message) => line({ error: message }));
  }

  const parameters = modelParameterCount(model);
  const details = {
    parent_model: "",
    format: "safetensors",
    family: "gpt2",
    families: ["gpt2"],
    parameter_size: `${(parameters / 1e6).toFixed(1)}M`,
    quantization_level: "F32",
  };
  const modifiedAt = new Date(created * 1000).toISOString();

  function ollamaTags() {
    return json({
      models: [{
        name: modelName,
        model: modelName,
        modified_at: modifiedAt,
        size: parameters * 4,
        digest: (options.digest ?? "").replace(/^sha256:/, ""),
        details,
      }],
    });
  }

  /** What `ollama show` prints: details, the architecture (model_info) and the template. */
  async function ollamaShow(request: Request) {
    const body = parseBody(OllamaShowBody, await readJson(request, maxBody));
    checkModel(body.model ?? body.name!);
    const c = model.config;
    return json({
      license: "",
      modelfile: `# served by groundup ${SERVE_VERSION}\nFROM ${modelName}\n` +
        (template ? `TEMPLATE ${JSON.stringify(template.source)}\n` : ""),
      parameters: "",
      // The prompt layout chat messages are put in ({instruction}/{input}, as the stages
      // write it); empty for a base model, which continues a transcript.
      template: template?.source ?? "",
      details,
      model_info: {
        "general.architecture": "gpt2",
        "general.parameter_count": parameters,
        "gpt2.context_length": c.context_length,
        "gpt2.embedding_length": c.emb_dim,
        "gpt2.block_count": c.n_layers,
        "gpt2.attention.head_count": c.n_heads,
        "gpt2.feed_forward_length": 4 * c.emb_dim,
        "gpt2.attention.layer_norm_epsilon": 1e-5,
        "tokenizer.ggml.model": tokenizer.name,
        "groundup.template": template?.name ?? null,
        "groundup.digest": options.digest ?? null,
      },
      capabilities: ["completion"],
      modified_at: modifiedAt,
    });
  }

  // ---- routing ------------------------------------------------------------------------------

  const routes: Record<
    string,
    [string, Family, (r: Request, a: AbortController) => Promise<Response> | Response]
  > = {
    "/v1/models": ["GET", "openai", () =>
      json({
        object: "list",
        data: [{ id: modelName, object: "model", created, owned_by: "groundup" }],
      })],
    "/v1/completions": ["POST", "openai", openaiCompletion],
    "/v1/chat/completions": ["POST", "openai", openaiChat],
    "/api/tags": ["GET", "ollama", ollamaTags],
    "/api/version": ["GET", "ollama", () => json({ version: SERVE_VERSION })],
    "/api/show": ["POST", "ollama", ollamaShow],
    "/api/generate": ["POST", "ollama", ollamaGenerate],
    "/api/chat": ["POST", "ollama", ollamaChat],
  };

  async function handler(request: Request): Promise<Response> {
    const t0 = performance.now();
    const path = new URL(request.url).pathname.replace(/\/+$/, "") || "/";
    const route = routes[path];
    const family: Family = path.startsWith("/api/") ? "ollama" : "openai";
    const abort = new AbortController();
    // A client that hangs up before a whole (non-streamed) reply is ready: request.signal
    // says so. It is polled, not listened to: a listener makes Deno warn about its legacy
    // behaviour (the signal also fires once a response is delivered).
    const watch = setInterval(() => {
      if (request.signal.aborted) {
        abort.abort(new DOMException("the client disconnected", "AbortError"));
      }
    }, 50);
    let response: Response;
    try {
      if (!route) throw new RequestError(`no endpoint ${path}`, null, 404, "unknown_url");
      if (request.method !== route[0]) {
        throw new RequestError(`${path} takes ${route[0]}, not ${request.method}`, null, 405);
      }
      if (options.apiKey !== undefined) {
        const header = request.headers.get("authorization") ?? "";
        const given = header.match(/^Bearer\s+(.+)$/i)?.[1] ?? "";
        if (!sameSecret(given, options.apiKey)) {
          throw new RequestError(
            given ? "invalid API key" : "missing API key (Authorization: Bearer …)",
            null,
            401,
            "invalid_api_key",
          );
        }
      }
      response = await route[2](request, abort);
    } catch (error) {
      if (error instanceof RequestError) response = errorResponse(family, error);
      else if (abort.signal.aborted) response = new Response(null, { status: 499 });
      else {
        const message = error instanceof Error ? error.message : String(error);
        response = family === "ollama"
          ? json({ error: message }, 500)
          : json({ error: { message, type: "server_error", param: null, code: null } }, 500);
      }
    }
    // Past this point a streamed body learns of a disconnect from its cancel().
    clearInterval(watch);
    log(`${request.method} ${path} ${response.status} ${(performance.now() - t0).toFixed(0)} ms`);
    return response;
  }

  return { handler, queue };
}

function samplingOf(body: ChatBody | CompletionBody): Sampling {
  return {
    maxTokens: body.max_tokens ?? body.max_completion_tokens,
    temperature: body.temperature,
    topK: body.top_k,
    topP: body.top_p,
    seed: body.seed,
    stop: body.stop,
  };
}

function usage(done: { promptTokens: number; completionTokens: number }) {
  return {
    prompt_tokens: done.promptTokens,
    completion_tokens: done.completionTokens,
    total_tokens: done.promptTokens + done.completionTokens,
  };
}

function event(value: unknown): string {
  return `data: ${JSON.stringify(value)}\n\n`;
}

function now(): number {
  return Math.floor(Date.now() / 1000);
}

function modelParameterCount(model: GPTModel): number {
  return model.numParameters();
}

export interface RunningServer {
  url: string;
  server: Deno.HttpServer<Deno.NetAddr>;
  queue: ModelQueue;
}

/** Starts serving on `hostname:port` (port 0: any free port); stop with `server.shutdown()`. */
export function startServer(
  options: ServeOptions & { hostname?: string; port?: number; signal?: AbortSignal },
): RunningServer {
  const { handler, queue } = createServeHandler(options);
  const server = Deno.serve({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? 0,
    signal: options.signal,
    onListen: () => {},
  }, handler);
  const { hostname, port } = server.addr;
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return { url: `http://${host}:${port}`, server, queue };
}
