/**
 * `serve`'s HTTP layer: one loaded model behind the OpenAI-compatible endpoints
 * (`/v1/models`, `/v1/completions`, `/v1/chat/completions`, streamed as server-sent events;
 * server/openai.ts) and Ollama's (`/api/tags`, `/api/show`, `/api/generate`, `/api/chat`,
 * `/api/version`, streamed as NDJSON; server/ollama.ts), on Deno.serve. This file routes,
 * checks the API key and turns errors into each API's shape.
 *
 * Generations queue for the model, one at a time (server/served_model.ts); chat prompts are the
 * whole conversation in the model's chat format (server/prompt.ts). Every refusal is JSON in the
 * shape the API family's clients read: OpenAI `{error: {message, type, param, code}}`, Ollama
 * `{error}`. Bodies are bounded (413), `max_tokens` is bounded by the context (400), an
 * optional API key is checked (401; compared without early exit, never logged). A client that
 * disconnects aborts its generation at the next token.
 */
import type { ChatFormat } from "../llm/chat/format.ts";
import { plainChatFormat } from "../llm/chat/instruction.ts";
import type { GPTModel } from "../llm/model/gpt.ts";
import type { Tokenizer } from "../llm/tokenizer/mod.ts";
import { ServeContext } from "./context.ts";
import { json, sameSecret } from "./http.ts";
import { ollamaRoutes } from "./ollama.ts";
import { openaiRoutes } from "./openai.ts";
import { ModelQueue } from "./queue.ts";
import { RequestError } from "./requests.ts";
import { ServedModel } from "./served_model.ts";
import type { Quantization } from "../llm/model/precision.ts";

export { fileDigest } from "./http.ts";
export { SERVE_VERSION } from "./ollama.ts";

export interface ServeOptions {
  model: GPTModel;
  tokenizer: Tokenizer;
  /**
   * How chat messages (and Ollama's non-raw prompts) become the prompt, and which ids end a
   * reply: the model's ChatFormat (`openModelFolder`'s `chat`). Default: none (a base model
   * continues the transcript).
   */
  chat?: ChatFormat;
  /** The model's family (default: its config's, else gpt2). */
  family?: string;
  /** Ids the model may emit (default: every row of its embedding). */
  vocabLimit?: number;
  /** How the weights are held (`--quantize`; default none), as /api/show and /v1/models say. */
  quantize?: Quantization;
  /** The id clients name in `model` (also `<name>:latest`, as Ollama's clients may add). */
  modelName: string;
  /** "sha256:…" of the weights, reported by /api/tags. */
  digest?: string;
  /** When set, every request must carry `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Largest request body accepted (default 1 MiB). */
  maxBodyBytes?: number;
  /** max_tokens when a request gives none (default 256, at most the context length). */
  defaultMaxTokens?: number;
  /** Qwen3's `enable_thinking` when a chat request does not say (default: the template's). */
  enableThinking?: boolean;
  /**
   * OpenAI endpoints: keep the end of a prompt longer than the context (its last
   * context-length tokens, as the book's `generate` crops) instead of refusing it with a 400.
   * Ollama's endpoints always keep the end, as Ollama does.
   */
  truncatePrompts?: boolean;
  /** One line per request (method, path, status, tokens); never headers or bodies. */
  log?: (line: string) => void;
  /** Called with the prompt ids of every generating request (tests, debugging). */
  onPrompt?: (ids: readonly number[]) => void;
  /** While streaming, the longest stretch of generation between event-loop turns (ms). */
  streamTurnMs?: number;
}

const DEFAULT_MAX_BODY = 1 << 20;

type Family = "openai" | "ollama";

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

/** 401 unless the request carries `Authorization: Bearer <apiKey>`. */
function checkApiKey(request: Request, apiKey: string): void {
  const header = request.headers.get("authorization") ?? "";
  const given = header.match(/^Bearer\s+(.+)$/i)?.[1] ?? "";
  if (!sameSecret(given, apiKey)) {
    throw new RequestError(
      given ? "invalid API key" : "missing API key (Authorization: Bearer …)",
      null,
      401,
      "invalid_api_key",
    );
  }
}

/** The 500 of an unexpected error, in the family's shape. */
function serverError(family: Family, error: unknown): Response {
  const message = error instanceof Error ? error.message : String(error);
  return family === "ollama"
    ? json({ error: message }, 500)
    : json({ error: { message, type: "server_error", param: null, code: null } }, 500);
}

export function createServeHandler(options: ServeOptions): {
  handler: (request: Request) => Promise<Response>;
  queue: ModelQueue;
} {
  const served = new ServedModel({
    model: options.model,
    tokenizer: options.tokenizer,
    chat: options.chat ?? plainChatFormat(options.tokenizer),
    family: options.family,
    vocabLimit: options.vocabLimit,
    quantize: options.quantize,
  });
  const ctx = new ServeContext({
    served,
    modelName: options.modelName,
    digest: options.digest,
    maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY,
    defaultMaxTokens: options.defaultMaxTokens ?? 256,
    streamTurnMs: options.streamTurnMs,
    enableThinking: options.enableThinking,
    truncatePrompts: options.truncatePrompts,
    onPrompt: options.onPrompt,
  });
  const routes = { ...openaiRoutes(ctx), ...ollamaRoutes(ctx) };
  const log = options.log ?? (() => {});

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
      if (options.apiKey !== undefined) checkApiKey(request, options.apiKey);
      response = await route[1](request, abort);
    } catch (error) {
      if (error instanceof RequestError) response = errorResponse(family, error);
      else if (abort.signal.aborted) response = new Response(null, { status: 499 });
      else response = serverError(family, error);
    }
    // Past this point a streamed body learns of a disconnect from its cancel().
    clearInterval(watch);
    log(`${request.method} ${path} ${response.status} ${(performance.now() - t0).toFixed(0)} ms`);
    return response;
  }

  return { handler, queue: served.queue };
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
