/**
 * Ollama's API over the served model: `/api/tags`, `/api/show`, `/api/version`,
 * `/api/generate` and `/api/chat`, whole or streamed as NDJSON. As in Ollama, `generate` puts
 * the prompt (and `system`) in the model's chat template unless `raw: true`; `chat` renders the
 * whole conversation; `think` is Qwen3's `enable_thinking`.
 */
import type { ServeContext } from "./context.ts";
import type { GenerationResult } from "./generation.ts";
import { json, readJson } from "./http.ts";
import type { PromptInput } from "./prompt.ts";
import {
  type ChatMessage,
  OllamaChatBody,
  OllamaGenerateBody,
  OllamaShowBody,
  parseBody,
  RequestError,
  thinkingOf,
} from "./requests.ts";
import type { ServedModel } from "./served_model.ts";
import { ndjsonLine, ollamaStream } from "./sse.ts";

/** The version `/api/version` reports. */
export const SERVE_VERSION = "0.1.0";

type Handler = (request: Request, abort: AbortController) => Promise<Response> | Response;

/** The Ollama endpoints, by path. */
export function ollamaRoutes(ctx: ServeContext): Record<string, ["GET" | "POST", Handler]> {
  const modifiedAt = new Date(ctx.created * 1000).toISOString();
  return {
    "/api/tags": ["GET", () => tags(ctx, modifiedAt)],
    "/api/version": ["GET", () => json({ version: SERVE_VERSION })],
    "/api/show": ["POST", (request) => show(ctx, request, modifiedAt)],
    "/api/generate": ["POST", (request, abort) => generate(ctx, request, abort)],
    "/api/chat": ["POST", (request, abort) => chat(ctx, request, abort)],
  };
}

/** Ollama's `details` of a model. */
function details(served: ServedModel) {
  const info = served.info();
  return {
    parent_model: "",
    format: "safetensors",
    family: info.family,
    families: [info.family],
    parameter_size: `${(info.parameters / 1e6).toFixed(1)}M`,
    quantization_level: info.quantization,
  };
}

function tags(ctx: ServeContext, modifiedAt: string): Response {
  return json({
    models: [{
      name: ctx.modelName,
      model: ctx.modelName,
      modified_at: modifiedAt,
      size: ctx.served.info().bytes,
      digest: (ctx.digest ?? "").replace(/^sha256:/, ""),
      details: details(ctx.served),
    }],
  });
}

/**
 * The architecture as `ollama show` lists it (GGUF's key names, `<arch>.` the family): sizes,
 * attention, RoPE and norm settings, read from the model's resolved config.
 */
export function modelInfo(served: ServedModel): Record<string, unknown> {
  const c = served.model.resolved;
  const arch = served.family;
  const info: Record<string, unknown> = {
    "general.architecture": arch,
    "general.parameter_count": served.info().parameters,
    [`${arch}.context_length`]: c.context_length,
    [`${arch}.embedding_length`]: c.emb_dim,
    [`${arch}.block_count`]: c.n_layers,
    [`${arch}.feed_forward_length`]: c.hidden_dim,
    [`${arch}.attention.head_count`]: c.n_heads,
    [`${arch}.attention.head_count_kv`]: c.n_kv_groups,
    [`${arch}.attention.key_length`]: c.head_dim,
    [`${arch}.attention.value_length`]: c.head_dim,
    [`${arch}.attention.${c.norm === "rmsnorm" ? "layer_norm_rms_epsilon" : "layer_norm_epsilon"}`]:
      c.norm_eps,
    [`${arch}.vocab_size`]: c.vocab_size,
  };
  if (c.pos_emb === "rope") {
    info[`${arch}.rope.freq_base`] = c.rope_theta;
    info[`${arch}.rope.dimension_count`] = c.rotary_dim;
    if (Number.isFinite(c.sliding_window)) {
      info[`${arch}.attention.sliding_window`] = c.sliding_window;
    }
  }
  const tokenizer = served.tokenizer;
  info["tokenizer.ggml.model"] = tokenizer.name;
  if (tokenizer.bosId !== undefined) info["tokenizer.ggml.bos_token_id"] = tokenizer.bosId;
  if (tokenizer.endOfTextId !== undefined) {
    info["tokenizer.ggml.eos_token_id"] = tokenizer.endOfTextId;
  }
  return info;
}

/** What `ollama show` prints: details, the architecture (model_info) and the template. */
async function show(ctx: ServeContext, request: Request, modifiedAt: string) {
  const body = parseBody(OllamaShowBody, await readJson(request, ctx.maxBodyBytes));
  ctx.checkModel(body.model ?? body.name!);
  const chat = ctx.served.chat;
  return json({
    license: "",
    modelfile: `# served by groundup ${SERVE_VERSION}\nFROM ${ctx.modelName}\n` +
      (chat.source ? `TEMPLATE ${JSON.stringify(chat.source)}\n` : ""),
    parameters: "",
    // The chat format's source: the model's Jinja chat_template, or our instruction template
    // ({instruction}/{input}); empty for a base model, which continues a transcript.
    template: chat.source,
    details: details(ctx.served),
    model_info: {
      ...modelInfo(ctx.served),
      "groundup.template": chat.name,
      "groundup.digest": ctx.digest ?? null,
    },
    capabilities: chat.source.includes("enable_thinking")
      ? ["completion", "thinking"]
      : ["completion"],
    modified_at: modifiedAt,
  });
}

async function generate(ctx: ServeContext, request: Request, abort: AbortController) {
  const body = parseBody(OllamaGenerateBody, await readJson(request, ctx.maxBodyBytes));
  ctx.checkModel(body.model);
  if (body.raw) return reply(ctx, body, { text: body.prompt }, false, abort, "prompt", generated);
  const messages: ChatMessage[] = [
    ...(body.system ? [{ role: "system", content: body.system }] : []),
    { role: "user", content: body.prompt },
  ];
  const input = { messages, enableThinking: thinkingOf(body.think) };
  return reply(ctx, body, input, true, abort, "prompt", generated);
}

async function chat(ctx: ServeContext, request: Request, abort: AbortController) {
  const body = parseBody(OllamaChatBody, await readJson(request, ctx.maxBodyBytes));
  ctx.checkModel(body.model);
  const input = { messages: body.messages, enableThinking: thinkingOf(body.think) };
  return reply(ctx, body, input, true, abort, "messages", (text) => ({
    message: { role: "assistant", content: text },
  }));
}

const generated = (text: string) => ({ response: text });

/** Generates for `input` and answers as Ollama does (`payload` shapes the text), whole or NDJSON. */
async function reply(
  ctx: ServeContext,
  body: OllamaGenerateBody | OllamaChatBody,
  input: PromptInput,
  isChat: boolean,
  abort: AbortController,
  promptParam: string,
  payload: (text: string) => object,
) {
  const o = body.options ?? {};
  // Ollama's num_predict: -1 (or -2) means "until the context is full".
  const maxTokens = o.num_predict == null
    ? undefined
    : o.num_predict < 0
    ? ctx.served.contextLength
    : o.num_predict;
  if (maxTokens === 0) {
    throw new RequestError("options.num_predict: must not be 0", "options.num_predict");
  }
  const settings = ctx.settings({
    maxTokens,
    temperature: o.temperature ?? 0.8,
    topK: o.top_k,
    topP: o.top_p,
    seed: o.seed,
    stop: o.stop,
  }, "options.num_predict");
  // As Ollama does, a prompt longer than the context keeps its end (see ServeContext.prompt).
  const gen = { ...settings, ids: await ctx.prompt(input, promptParam, true) };
  const t0 = performance.now();
  const final = (done: GenerationResult) => ({
    model: ctx.modelName,
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
  const run = {
    signal: abort.signal,
    streamTurnMs: ctx.streamTurnMs,
    ...(isChat ? { cutAs: ctx.served.chat } : {}),
  };
  if (body.stream === false) {
    const done = await ctx.served.run(gen, run);
    return json({ ...final(done), ...payload(done.text) });
  }
  return ollamaStream(abort, async (send) => {
    const done = await ctx.served.run(gen, {
      ...run,
      onText: (text) =>
        send(ndjsonLine({
          model: ctx.modelName,
          created_at: new Date().toISOString(),
          ...payload(text),
          done: false,
        })),
    });
    await send(ndjsonLine(final(done)));
  });
}
