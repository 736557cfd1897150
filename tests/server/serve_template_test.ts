/**
 * `serve` with a fine-tuned model's own prompt template (template.json, as `finetune` and
 * `lora-finetune` write it): the real `openai` and `ollama` clients get the whole conversation
 * in the phi3 template and a custom one (checked by the prompt's token count), Ollama's
 * generate the prompt alone in it, answers cut as the template says, streamed or whole alike,
 * ending at end-of-text; and the incremental cut against extractResponse.
 */
import assert from "node:assert/strict";
import { Ollama } from "ollama";
import { OpenAI } from "./openai_client.ts";
import { writeTemplateFile } from "../../llm/data/instruction_files.ts";
import { type PromptTemplate, promptTemplate } from "../../llm/data/instructions.ts";
import { complete } from "../../llm/infer/complete.ts";
import { readModelTemplate } from "../../llm/infer/model_folder.ts";
import { instructionChatFormat, plainChatFormat } from "../../llm/chat/instruction.ts";
import { responseMarker, ResponseStream } from "../../server/response_stream.ts";
import { createTokenizer } from "../../llm/tokenizer/mod.ts";
import { withTempDir } from "../fixtures.ts";
import { useCpuBackend } from "../llm/model/tf_setup.ts";
import {
  serveTiny,
  startServeProcess,
  writeConstantModelFolder,
  writeTinyModelFolder,
} from "./helpers.ts";

await useCpuBackend();

const INSTRUCTION = "Name a color";
const greedy = (max: number) => ({
  max_new_tokens: max,
  temperature: 0,
  stop_token: 50256,
  seed: 123,
});
/** A conversation (37 GPT-2 tokens in the phi3 template: the models here see 64). */
const MESSAGES = [
  { role: "user" as const, content: "an earlier turn" },
  { role: "assistant" as const, content: "ok" },
  { role: "user" as const, content: INSTRUCTION },
];

/** Every way of splitting `text` into two or three pieces, cut piece by piece. */
function streamedCuts(template: PromptTemplate, text: string): string[] {
  const results: string[] = [];
  for (let i = 0; i <= text.length; i++) {
    for (let j = i; j <= text.length; j++) {
      const cut = new ResponseStream(template);
      results.push(
        [text.slice(0, i), text.slice(i, j), text.slice(j)].map((p) => cut.push(p)).join("") +
          cut.end(),
      );
    }
  }
  return results;
}

Deno.test("ResponseStream: the pieces joined are extractResponse's answer, however the text arrives", () => {
  const phi3 = promptTemplate("phi3");
  const alpaca = promptTemplate("alpaca");
  const bare = promptTemplate("Q: {instruction}\n{output}");
  assert.equal(responseMarker(phi3), "<|assistant|>:");
  assert.equal(responseMarker(alpaca), "### Response:");
  assert.equal(responseMarker(bare), "");
  const texts = [
    "<|assistant|>:\nBlue. ",
    " \n<|assist",
    "Red <|assistant|>: and <|assistant|>: green\n\n",
    "<|assistant|",
    "   ",
    "\n\n### Response:\nHe goes.\n",
    "plain answer",
  ];
  for (const template of [phi3, alpaca, bare]) {
    for (const text of texts) {
      const expected = template.extractResponse(text);
      for (const got of streamedCuts(template, text)) {
        assert.equal(got, expected, `${template.name} on ${JSON.stringify(text)}`);
      }
    }
  }
  // Text that could begin the header is held back until it is ruled out.
  const cut = new ResponseStream(phi3);
  assert.equal(cut.push("Blue <|ass"), "Blue");
  assert.equal(cut.push("ert"), " <|assert");
  assert.equal(cut.end(), "");
});

Deno.test("serve: a model folder's phi3 template.json: chat gets the whole conversation and Ollama's generate the prompt in it; the answer is cut after <|assistant|>:, whole and streamed", async () => {
  await withTempDir(async (dir) => {
    await writeTinyModelFolder(dir, 64);
    await writeTemplateFile(dir, promptTemplate("phi3"));
    const template = await readModelTemplate(dir);
    assert.equal(template?.name, "phi3");
    const served = await serveTiny(dir, { template });
    try {
      const query = "<|user|>\nName a color\n<|assistant|>:\n";
      const conversation = "<|user|>\nan earlier turn\n<|assistant|>:\nok\n\n" + query;
      assert.equal(served.chat.name, "phi3");
      assert.equal(served.chat.render(MESSAGES), conversation);
      const promptTokens = served.tokenizer.encode(conversation).length;
      const expected = await complete(served.model, {
        tokenizer: served.tokenizer,
        prompt: conversation,
        settings: greedy(10),
      });
      const answer = template!.extractResponse(expected.text);
      assert.ok(answer.length > 0);
      // Ollama's generate: the prompt alone as the user's message.
      const generateExpected = await complete(served.model, {
        tokenizer: served.tokenizer,
        prompt: query,
        settings: greedy(10),
      });
      const generateAnswer = template!.extractResponse(generateExpected.text);

      const client = new OpenAI({ baseURL: `${served.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const body = { model: "tiny", messages: MESSAGES, max_tokens: 10, temperature: 0 };
      const reply = await client.chat.completions.create(body);
      assert.equal(reply.choices[0].message.content, answer);
      assert.deepEqual(reply.usage, {
        prompt_tokens: promptTokens,
        completion_tokens: expected.tokens,
        total_tokens: promptTokens + expected.tokens,
      });
      let streamed = "";
      let streamedUsage;
      for await (
        const chunk of await client.chat.completions.create({
          ...body,
          stream: true,
          stream_options: { include_usage: true },
        })
      ) {
        streamed += chunk.choices[0]?.delta.content ?? "";
        if (chunk.usage) streamedUsage = chunk.usage;
      }
      assert.equal(streamed, answer);
      assert.deepEqual(streamedUsage, reply.usage);

      // /v1/completions stays raw: the prompt as given, the continuation uncut.
      const raw = await client.completions.create({
        model: "tiny",
        prompt: conversation,
        max_tokens: 10,
        temperature: 0,
      });
      assert.equal(raw.choices[0].text, expected.text);

      const ollama = new Ollama({ host: served.url });
      const options = { num_predict: 10, temperature: 0, seed: 123 };
      const generated = await ollama.generate({
        model: "tiny",
        prompt: INSTRUCTION,
        stream: false,
        options,
      });
      assert.equal(generated.response, generateAnswer);
      assert.equal(generated.prompt_eval_count, served.tokenizer.encode(query).length);
      const chat = await ollama.chat({ model: "tiny", messages: MESSAGES, stream: false, options });
      assert.equal(chat.message.content, answer);
      let chatStreamed = "";
      for await (
        const part of await ollama.chat({
          model: "tiny",
          messages: MESSAGES,
          stream: true,
          options,
        })
      ) {
        chatStreamed += part.message.content;
      }
      assert.equal(chatStreamed, answer);
    } finally {
      await served.close();
    }
  });
});

Deno.test("serve: a custom template.json: its prompt, its response header cut once from the answer; a model that ends the text stops", async () => {
  await withTempDir(async (dir) => {
    // The model always says "85" (GPT-2 token 5332); the custom header is "85" too, so the
    // first one the model writes is the header, dropped from the answer.
    await writeConstantModelFolder(dir, 5332, 64);
    await writeTemplateFile(dir, promptTemplate("Task: {instruction}\n85{output}"));
    const template = await readModelTemplate(dir);
    assert.equal(template?.name, "custom");
    const served = await serveTiny(dir, { template });
    try {
      const query = "Task: an earlier turn\n85ok\n\nTask: Name a color\n85";
      const client = new OpenAI({ baseURL: `${served.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const body = { model: "tiny", messages: MESSAGES, max_tokens: 4, temperature: 0 };
      const reply = await client.chat.completions.create(body);
      assert.equal(reply.choices[0].message.content, "858585");
      assert.equal(reply.choices[0].finish_reason, "length");
      assert.equal(reply.usage?.prompt_tokens, served.tokenizer.encode(query).length);
      let streamed = "";
      for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) {
        streamed += chunk.choices[0]?.delta.content ?? "";
      }
      assert.equal(streamed, "858585");
      const ollama = new Ollama({ host: served.url });
      const raw = await ollama.generate({
        model: "tiny",
        prompt: INSTRUCTION,
        raw: true,
        stream: false,
        options: { num_predict: 2, temperature: 0 },
      });
      assert.equal(raw.response, "8585", "raw: no template, no cut");
      assert.equal(raw.prompt_eval_count, served.tokenizer.encode(INSTRUCTION).length);
    } finally {
      await served.close();
    }
  });
  await withTempDir(async (dir) => {
    await writeConstantModelFolder(dir, 50256, 64); // <|endoftext|> at once
    await writeTemplateFile(dir, promptTemplate("phi3"));
    const served = await serveTiny(dir, { template: await readModelTemplate(dir) });
    try {
      const client = new OpenAI({ baseURL: `${served.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const reply = await client.chat.completions.create({
        model: "tiny",
        messages: MESSAGES,
        max_tokens: 8,
        temperature: 0,
      });
      assert.equal(reply.choices[0].message.content, "");
      assert.equal(reply.choices[0].finish_reason, "stop");
      assert.equal(reply.usage?.completion_tokens, 0);
    } finally {
      await served.close();
    }
  });
});

Deno.test("serve CLI: a model folder's phi3 template.json is applied (and named at start); --template none serves it as a base model", async () => {
  await withTempDir(async (dir) => {
    await writeTinyModelFolder(dir, 64);
    await writeTemplateFile(dir, promptTemplate("phi3"));
    const tokenizer = createTokenizer({ kind: "gpt2" });
    for (
      const [flags, banner, prompt] of [
        [
          [],
          /\(phi3 template for chat/,
          instructionChatFormat(promptTemplate("phi3"), tokenizer).render(MESSAGES),
        ],
        [["--template", "none"], /\(base model/, plainChatFormat(tokenizer).render(MESSAGES)],
      ] as const
    ) {
      const served = await startServeProcess(dir, flags);
      try {
        assert.match(served.seen, banner);
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
        assert.equal(reply.usage?.prompt_tokens, tokenizer.encode(prompt).length);
      } finally {
        await served.stop();
      }
    }
  });
});
