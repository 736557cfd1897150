/**
 * The request bodies `serve` accepts, checked with zod: OpenAI's completions and chat
 * completions, Ollama's generate and chat. Unknown fields are ignored (clients send many);
 * a field we cannot honour (n > 1, token-id prompts) is refused by name. A failed check
 * becomes a {@link RequestError} naming the field, which the router answers with a 400.
 */
import { z } from "zod";

/** A client mistake: HTTP `status`, the offending field in `param`. */
export class RequestError extends Error {
  constructor(
    message: string,
    readonly param: string | null = null,
    readonly status = 400,
    readonly code?: string,
  ) {
    super(message);
  }
}

const stopField = z.union([z.string(), z.array(z.string()).max(4)]).nullish();

const sampling = {
  max_tokens: z.number().int().min(1).nullish(),
  max_completion_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  /** Not in OpenAI's API, but vLLM and llama.cpp accept it. */
  top_k: z.number().int().min(1).nullish(),
  seed: z.number().int().nullish(),
  stop: stopField,
  n: z.literal(1, { message: "only n = 1 is supported" }).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
};

export const CompletionBody = z.object({
  model: z.string().min(1),
  prompt: z.union([
    z.string(),
    z.array(z.string()).length(1, { message: "only one prompt per request is supported" }),
  ]),
  echo: z.literal(false, { message: "echo is not supported" }).nullish(),
  ...sampling,
});
export type CompletionBody = z.infer<typeof CompletionBody>;

const content = z.union([
  z.string(),
  // The content-part form: only text parts.
  z.array(z.object({ type: z.literal("text"), text: z.string() })),
]);

export const ChatMessage = z.object({
  role: z.enum(["system", "developer", "user", "assistant"]),
  content,
});
export type ChatMessage = { role: string; content: string };

export const ChatBody = z.object({
  model: z.string().min(1),
  messages: z.array(ChatMessage).min(1),
  /**
   * Variables for the chat template, as vLLM takes them: `enable_thinking` (Qwen3) is the one
   * we read; others are refused by name rather than silently ignored.
   */
  chat_template_kwargs: z.object({ enable_thinking: z.boolean().nullish() }).strict().nullish(),
  ...sampling,
});
export type ChatBody = z.infer<typeof ChatBody>;

const ollamaOptions = z.object({
  num_predict: z.number().int().nullish(),
  temperature: z.number().min(0).nullish(),
  top_k: z.number().int().min(1).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  stop: z.array(z.string()).nullish(),
  /** The judge asks for a 2048-token context; our models have theirs fixed, so it is ignored. */
  num_ctx: z.number().int().nullish(),
}).nullish();

const thinkField = z.union([z.boolean(), z.enum(["high", "medium", "low"])]).nullish();

/** Ollama's `think` as Qwen3's `enable_thinking`: a level (gpt-oss's) is on; absent: undefined. */
export function thinkingOf(think: boolean | string | null | undefined): boolean | undefined {
  return think == null ? undefined : think !== false;
}

export const OllamaGenerateBody = z.object({
  model: z.string().min(1),
  prompt: z.string(),
  system: z.string().nullish(),
  /** true: the prompt is used as given, without the model's template. */
  raw: z.boolean().nullish(),
  /** Ollama's thinking switch (Qwen3's `enable_thinking`); a level counts as on. */
  think: thinkField,
  stream: z.boolean().nullish(),
  options: ollamaOptions,
});
export type OllamaGenerateBody = z.infer<typeof OllamaGenerateBody>;

export const OllamaChatBody = z.object({
  model: z.string().min(1),
  messages: z.array(z.object({
    role: z.enum(["system", "user", "assistant"]),
    content: z.string(),
  })).min(1),
  /** Ollama's thinking switch (Qwen3's `enable_thinking`); a level counts as on. */
  think: thinkField,
  stream: z.boolean().nullish(),
  options: ollamaOptions,
});
export type OllamaChatBody = z.infer<typeof OllamaChatBody>;

/** Ollama's /api/show: `model` (older clients send `name`). */
export const OllamaShowBody = z.object({
  model: z.string().min(1).optional(),
  name: z.string().min(1).optional(),
  verbose: z.boolean().nullish(),
}).refine((b) => b.model !== undefined || b.name !== undefined, {
  message: "give the model's name",
  path: ["model"],
});

/** Parses `value` with `schema`, or throws a RequestError naming the first bad field. */
export function parseBody<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const param = issue.path.map(String).join(".") || null;
  throw new RequestError(`${param ?? "body"}: ${issue.message}`, param);
}

/**
 * A message as the chat format takes it: its content's text (a string, or its text parts
 * joined); OpenAI's "developer" role is the system's (chat templates know "system").
 */
export function messageText(message: z.infer<typeof ChatMessage>): ChatMessage {
  const text = typeof message.content === "string"
    ? message.content
    : message.content.map((part) => part.text).join("");
  return { role: message.role === "developer" ? "system" : message.role, content: text };
}
