/**
 * OpenAI's API over the served model: `/v1/models`, `/v1/completions` (the prompt as given)
 * and `/v1/chat/completions` (the whole conversation through the model's chat format, with
 * vLLM's `chat_template_kwargs.enable_thinking`), whole or streamed as server-sent events.
 */
import type { ServeContext } from "./context.ts";
import type { GenerationResult } from "./generation.ts";
import { json, readJson } from "./http.ts";
import { ChatBody, CompletionBody, messageText, parseBody } from "./requests.ts";
import { dataEvent, openaiStream } from "./sse.ts";

type Handler = (request: Request, abort: AbortController) => Promise<Response> | Response;

/** The OpenAI endpoints, by path. */
export function openaiRoutes(ctx: ServeContext): Record<string, ["GET" | "POST", Handler]> {
  return {
    "/v1/models": ["GET", () => models(ctx)],
    "/v1/completions": ["POST", (request, abort) => completions(ctx, request, abort)],
    "/v1/chat/completions": ["POST", (request, abort) => chatCompletions(ctx, request, abort)],
  };
}

/** The model list: OpenAI's fields, and what the model is (vLLM's `max_model_len` too). */
function models(ctx: ServeContext): Response {
  const info = ctx.served.info();
  return json({
    object: "list",
    data: [{
      id: ctx.modelName,
      object: "model",
      created: ctx.created,
      owned_by: "groundup",
      max_model_len: info.contextLength,
      family: info.family,
      parameters: info.parameters,
      quantization: info.quantization,
      template: info.template,
    }],
  });
}

function sampling(body: ChatBody | CompletionBody) {
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

function now(): number {
  return Math.floor(Date.now() / 1000);
}

async function completions(ctx: ServeContext, request: Request, abort: AbortController) {
  const body = parseBody(CompletionBody, await readJson(request, ctx.maxBodyBytes));
  ctx.checkModel(body.model);
  const text = typeof body.prompt === "string" ? body.prompt : body.prompt[0];
  const settings = ctx.settings(
    sampling(body),
    body.max_tokens ? "max_tokens" : "max_completion_tokens",
  );
  const gen = { ...settings, ids: await ctx.prompt({ text }, "prompt", ctx.truncatePrompts) };
  const base = {
    id: ctx.nextId("cmpl"),
    object: "text_completion",
    created: now(),
    model: ctx.modelName,
  };
  const choice = (text: string, finish: string | null) => ({
    index: 0,
    text,
    logprobs: null,
    finish_reason: finish,
  });
  const run = { signal: abort.signal, streamTurnMs: ctx.streamTurnMs };
  if (!body.stream) {
    const done = await ctx.served.run(gen, run);
    return json({ ...base, choices: [choice(done.text, done.finishReason)], usage: usage(done) });
  }
  return openaiStream(abort, async (send) => {
    const done = await ctx.served.run(gen, {
      ...run,
      onText: (text) => send(dataEvent({ ...base, choices: [choice(text, null)] })),
    });
    await send(dataEvent({ ...base, choices: [choice("", done.finishReason)] }));
    if (body.stream_options?.include_usage) {
      await send(dataEvent({ ...base, choices: [], usage: usage(done) }));
    }
  });
}

async function chatCompletions(ctx: ServeContext, request: Request, abort: AbortController) {
  const body = parseBody(ChatBody, await readJson(request, ctx.maxBodyBytes));
  ctx.checkModel(body.model);
  const settings = ctx.settings(
    sampling(body),
    body.max_tokens ? "max_tokens" : "max_completion_tokens",
  );
  const thinking = body.chat_template_kwargs?.enable_thinking ?? undefined;
  const ids = await ctx.prompt(
    { messages: body.messages.map(messageText), enableThinking: thinking },
    "messages",
    ctx.truncatePrompts,
  );
  const gen = { ...settings, ids };
  const base = {
    id: ctx.nextId("chatcmpl"),
    created: now(),
    model: ctx.modelName,
    system_fingerprint: null,
  };
  const run = { signal: abort.signal, streamTurnMs: ctx.streamTurnMs, cutAs: ctx.served.chat };
  if (!body.stream) {
    const done: GenerationResult = await ctx.served.run(gen, run);
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
    dataEvent({
      ...base,
      object: "chat.completion.chunk",
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    });
  return openaiStream(abort, async (send) => {
    await send(chunk({ role: "assistant", content: "" }, null));
    const done = await ctx.served.run(gen, {
      ...run,
      onText: (text) => send(chunk({ content: text }, null)),
    });
    await send(chunk({}, done.finishReason));
    if (body.stream_options?.include_usage) {
      await send(
        dataEvent({ ...base, object: "chat.completion.chunk", choices: [], usage: usage(done) }),
      );
    }
  });
}
