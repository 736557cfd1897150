/**
 * Talking to a judge model over HTTP: Ollama's `POST /api/chat` (the book's way: stream false,
 * seed 123, temperature 0, num_ctx 2048) or any OpenAI-compatible `POST /v1/chat/completions`
 * (OpenAI, vLLM, llama.cpp's server, LM Studio, our own `serve`).
 *
 * Every request has a timeout; connection errors, timeouts, 429 and 5xx are retried a bounded
 * number of times with exponential backoff (a 429's Retry-After is honoured). A judge that
 * cannot be reached at all is a {@link JudgeUnreachableError} naming the URL and how to start
 * one. The API key is read from the environment variable the config names and is never put
 * into an error message or a record: messages are scrubbed of it as a last line of defence.
 */
import { sleep } from "../../util/timers.ts";

export type JudgeApi = "ollama" | "openai";

export interface JudgeConfig {
  api: JudgeApi;
  /** Server base URL; default http://localhost:11434 (Ollama) or https://api.openai.com. */
  url?: string;
  /** Default "llama3" (Ollama) or "gpt-4o-mini" (OpenAI). */
  model?: string;
  /** Name of the environment variable holding the API key (sent as a Bearer token). */
  apiKeyEnv?: string;
  /** Per-request timeout (default 120 s). */
  timeoutMs?: number;
  /** Retries after the first attempt (default 4). */
  retries?: number;
  /** First backoff delay, doubled each retry (default 1 s), capped at maxBackoffMs (30 s). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Largest Retry-After honoured (default 120 s). */
  maxRetryAfterMs?: number;
  /** Sampling sent with each request (the book's: seed 123, temperature 0, num_ctx 2048). */
  seed?: number;
  temperature?: number;
  numCtx?: number;
}

export const DEFAULT_URLS: Record<JudgeApi, string> = {
  ollama: "http://localhost:11434",
  openai: "https://api.openai.com",
};
export const DEFAULT_MODELS: Record<JudgeApi, string> = { ollama: "llama3", openai: "gpt-4o-mini" };

export interface JudgeReply {
  content: string;
  /** The model the server says answered (OpenAI's `model`, Ollama's `model`). */
  model: string;
}

export interface JudgeIdentity {
  /** How the judge is asked: a server's API, or `local` (a model run in this process). */
  api: JudgeApi | "local";
  /** The server's base URL (absent for a local judge). */
  url?: string;
  model: string;
  /**
   * The digest of the model's weights: Ollama's (from /api/tags); a local judge's, from the
   * sha256 of its weight files.
   */
  digest?: string;
  /** Why Ollama's digest could not be looked up (the server answered /api/tags with an error). */
  digest_unchecked?: string;
  /** A local judge: where its model came from (an upstream stage, a Hub repository). */
  source?: Record<string, string | null>;
  /** A local judge: how it generates (its chat template, greedy, new tokens at most). */
  generation?: Record<string, string | number | boolean>;
}

/** The judge could not be reached (connection refused, DNS, every retry timed out). */
export class JudgeUnreachableError extends Error {}

/** The judge answered with an error that retrying will not fix, or gave up after retries. */
export class JudgeRequestError extends Error {
  constructor(message: string, readonly status?: number) {
    super(message);
  }
}

export interface JudgeClientDeps {
  fetch?: typeof fetch;
  /** Waits (injectable so tests can record the backoff instead of sleeping). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  env?: (name: string) => string | undefined;
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date; undefined when absent or odd. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null || header.trim() === "") return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

export class JudgeClient {
  readonly api: JudgeApi;
  readonly url: string;
  readonly model: string;
  /** The weights' digest, once `identify` found one (recorded with each answer). */
  digest?: string;
  readonly #apiKey: string | undefined;
  readonly #config: Required<
    Pick<
      JudgeConfig,
      | "timeoutMs"
      | "retries"
      | "backoffMs"
      | "maxBackoffMs"
      | "maxRetryAfterMs"
      | "seed"
      | "temperature"
      | "numCtx"
    >
  >;
  readonly #fetch: typeof fetch;
  readonly #sleep: NonNullable<JudgeClientDeps["sleep"]>;

  constructor(config: JudgeConfig, deps: JudgeClientDeps = {}) {
    this.api = config.api;
    this.url = (config.url ?? DEFAULT_URLS[config.api]).replace(/\/+$/, "");
    this.model = config.model ?? DEFAULT_MODELS[config.api];
    if (config.apiKeyEnv !== undefined) {
      const key = deps.env ? deps.env(config.apiKeyEnv) : Deno.env.get(config.apiKeyEnv);
      if (!key) {
        throw new Error(
          `the judge's API key variable ${config.apiKeyEnv} is not set (or empty)`,
        );
      }
      this.#apiKey = key;
    }
    this.#config = {
      timeoutMs: config.timeoutMs ?? 120_000,
      retries: config.retries ?? 4,
      backoffMs: config.backoffMs ?? 1000,
      maxBackoffMs: config.maxBackoffMs ?? 30_000,
      maxRetryAfterMs: config.maxRetryAfterMs ?? 120_000,
      seed: config.seed ?? 123,
      temperature: config.temperature ?? 0,
      numCtx: config.numCtx ?? 2048,
    };
    this.#fetch = deps.fetch ?? fetch;
    this.#sleep = deps.sleep ?? sleep;
  }

  /** Removes the API key from any text that might leave this object. */
  #scrub(text: string): string {
    return this.#apiKey ? text.split(this.#apiKey).join("[API key]") : text;
  }

  #endpoint(): string {
    if (this.api === "ollama") return `${this.url}/api/chat`;
    return this.url.endsWith("/v1")
      ? `${this.url}/chat/completions`
      : `${this.url}/v1/chat/completions`;
  }

  #headers(): Record<string, string> {
    return {
      "content-type": "application/json",
      ...(this.#apiKey ? { authorization: `Bearer ${this.#apiKey}` } : {}),
    };
  }

  /**
   * How to get a judge running, for the unreachable message. Pulling the model is advice only
   * at Ollama's own address: elsewhere the name may be another server's (the smoke pipeline's
   * `judge` is our own `serve`), and no Ollama model of that name need exist.
   */
  #howToStart(): string {
    if (this.api === "openai") {
      return `start an OpenAI-compatible server (e.g. \`deno task serve --model …\`, vLLM, ` +
        `llama.cpp's server) or set the judge's URL (url:)`;
    }
    if (this.url === DEFAULT_URLS.ollama) {
      return `start one with \`ollama serve\` and \`ollama pull ${this.model}\`, or set the judge's ` +
        `URL (url:) to a running server`;
    }
    return `start the server meant to answer there with the model "${this.model}" (Ollama: ` +
      `\`OLLAMA_HOST=${new URL(this.url).host} ollama serve\`; the pipeline's comments may say ` +
      `which), or set the judge's URL (url:) to a running one`;
  }

  /**
   * One request with timeout and retries; returns the parsed JSON body of a 2xx reply.
   * `what` names the request in errors.
   */
  async #request(
    method: "GET" | "POST",
    endpoint: string,
    body: unknown,
    signal?: AbortSignal,
  ): Promise<unknown> {
    const { retries, backoffMs, maxBackoffMs, maxRetryAfterMs, timeoutMs } = this.#config;
    let lastProblem = "";
    let unreachable = false;
    for (let attempt = 0; attempt <= retries; attempt++) {
      signal?.throwIfAborted();
      let wait = Math.min(backoffMs * 2 ** attempt, maxBackoffMs);
      try {
        const timeout = AbortSignal.timeout(timeoutMs);
        const response = await this.#fetch(endpoint, {
          method,
          headers: this.#headers(),
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
        });
        const text = await response.text();
        if (response.ok) {
          try {
            return JSON.parse(text);
          } catch {
            throw new JudgeRequestError(
              `${method} ${endpoint}: the reply is not JSON: ${this.#scrub(text.slice(0, 200))}`,
              response.status,
            );
          }
        }
        const detail = this.#scrub(text.slice(0, 300));
        lastProblem = `HTTP ${response.status}${detail ? `: ${detail}` : ""}`;
        unreachable = false;
        if (response.status === 429) {
          const asked = retryAfterMs(response.headers.get("retry-after"));
          if (asked !== undefined) wait = Math.min(asked, maxRetryAfterMs);
        } else if (response.status < 500) {
          throw new JudgeRequestError(`${method} ${endpoint}: ${lastProblem}`, response.status);
        }
      } catch (error) {
        if (error instanceof JudgeRequestError) throw error;
        if (signal?.aborted) throw signal.reason;
        const timedOut = error instanceof DOMException && error.name === "TimeoutError";
        lastProblem = timedOut
          ? `no reply within ${timeoutMs / 1000} s`
          : this.#scrub(error instanceof Error ? error.message : String(error));
        unreachable = !timedOut;
      }
      if (attempt < retries) await this.#sleep(wait, signal);
    }
    const tries = `${retries + 1} attempt${retries === 0 ? "" : "s"}`;
    if (unreachable) {
      throw new JudgeUnreachableError(
        `cannot reach the judge at ${this.url} (${this.api} API, model ${this.model}) after ` +
          `${tries}: ${lastProblem}. Is it running? ${this.#howToStart()}`,
      );
    }
    throw new JudgeRequestError(`${method} ${endpoint}: gave up after ${tries}: ${lastProblem}`);
  }

  /** Sends one user message; returns the judge's reply text and model name. */
  async ask(content: string, signal?: AbortSignal): Promise<JudgeReply> {
    const messages = [{ role: "user", content }];
    const { seed, temperature, numCtx } = this.#config;
    const endpoint = this.#endpoint();
    if (this.api === "ollama") {
      const reply = await this.#request("POST", endpoint, {
        model: this.model,
        messages,
        stream: false,
        options: { seed, temperature, num_ctx: numCtx },
      }, signal) as { message?: { content?: unknown }; model?: unknown };
      if (typeof reply?.message?.content !== "string") {
        throw new JudgeRequestError(`POST ${endpoint}: the reply has no message.content`);
      }
      return { content: reply.message.content, model: String(reply.model ?? this.model) };
    }
    const reply = await this.#request("POST", endpoint, {
      model: this.model,
      messages,
      temperature,
      seed,
    }, signal) as { choices?: { message?: { content?: unknown } }[]; model?: unknown };
    const text = reply?.choices?.[0]?.message?.content;
    if (typeof text !== "string") {
      throw new JudgeRequestError(`POST ${endpoint}: the reply has no choices[0].message.content`);
    }
    return { content: text, model: String(reply.model ?? this.model) };
  }

  /**
   * Who the judge is: for Ollama, the model's digest from /api/tags (so a re-pulled model
   * with the same name is told apart); for OpenAI-compatible servers, the name only (the
   * reply's `model` is recorded with each score).
   */
  async identify(signal?: AbortSignal): Promise<JudgeIdentity> {
    const identity: JudgeIdentity = { api: this.api, url: this.url, model: this.model };
    if (this.api !== "ollama") return identity;
    let tags: { models?: { name?: string; model?: string; digest?: string }[] };
    try {
      tags = await this.#request("GET", `${this.url}/api/tags`, undefined, signal) as typeof tags;
    } catch (error) {
      // A judge that is down cannot judge either; one that answers chat but not the model list
      // (a proxy, another server) still can: the run goes on and says what it could not check.
      if (!(error instanceof JudgeRequestError)) throw error;
      identity.digest_unchecked = error.message;
      return identity;
    }
    const names = [this.model, `${this.model}:latest`];
    const found = tags?.models?.find((m) =>
      names.includes(m.name ?? "") || names.includes(m.model ?? "")
    );
    if (!found) {
      throw new JudgeRequestError(
        `the judge at ${this.url} has no model "${this.model}" (it has: ${
          tags?.models?.map((m) => m.name).join(", ") || "none"
        }); pull it with \`ollama pull ${this.model}\``,
      );
    }
    if (found.digest) identity.digest = this.digest = found.digest;
    else identity.digest_unchecked = `${this.url}/api/tags lists no digest for "${this.model}"`;
    return identity;
  }
}
