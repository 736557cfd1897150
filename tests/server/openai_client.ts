/**
 * The `openai` npm client, loaded without its type declarations. Its declarations make
 * Deno's checker pull in npm's @types/node for the whole test run (`deno test tests/`
 * checks every test file as one program), which changes `node:assert`'s signatures for every
 * other test. So the module is imported through a non-literal specifier (resolved by the
 * import map at run time, never type-checked) and given the few types these tests use.
 */

export interface ClientOptions {
  baseURL: string;
  apiKey: string;
  maxRetries?: number;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface Completion {
  choices: { text: string; finish_reason: string | null }[];
  usage?: Usage | null;
}

export interface ChatCompletion {
  choices: {
    message: { role: string; content: string | null };
    finish_reason: string | null;
  }[];
  usage?: Usage | null;
}

export interface ChatChunk {
  choices: { delta: { content?: string | null }; finish_reason: string | null }[];
  usage?: Usage | null;
}

type Body = Record<string, unknown>;

export interface OpenAIClient {
  models: { list(): Promise<{ data: { id: string }[] }> };
  completions: {
    create(body: Body & { stream: true }): Promise<AsyncIterable<Completion>>;
    create(body: Body): Promise<Completion>;
  };
  chat: {
    completions: {
      create(body: Body & { stream: true }): Promise<AsyncIterable<ChatChunk>>;
      create(body: Body): Promise<ChatCompletion>;
    };
  };
}

/** What the client throws for an HTTP error. */
export interface APIError extends Error {
  status: number;
}

const specifier = ["open", "ai"].join("");
const module = await import(specifier);

export const OpenAI = module.default as new (options: ClientOptions) => OpenAIClient;
export const APIErrorClass = module.APIError as new (...args: never[]) => APIError;

/** For assert.rejects: the client's HTTP error with this status (and message pattern). */
export function apiError(status: number, message?: RegExp) {
  return (error: unknown) =>
    error instanceof APIErrorClass && error.status === status &&
    (message === undefined || message.test(error.message));
}
