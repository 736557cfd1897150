/** The chat endpoint's request checks and the prompt it builds (server/prompt.ts, as serve's). */
import assert from "node:assert/strict";
import { ChatService, parseChatRequest } from "../../server/ui_chat.ts";
import { openModelFolder } from "../../llm/infer/open_model.ts";
import { generate } from "../../llm/model/generate.ts";
import { withTempDir } from "../fixtures.ts";
import { useCpuBackend } from "../llm/model/tf_setup.ts";
import { writeTinyQwen3 } from "../server/helpers.ts";
import { promptText } from "../../server/prompt.ts";
import { chooseChatFormat, plainChatFormat } from "../../llm/chat/mod.ts";
import { Gpt2Tokenizer } from "../../llm/tokenizer/mod.ts";

Deno.test("ui chat: the whole conversation in the chosen format; a base model continues the transcript as `deno task chat` builds it", () => {
  const request = parseChatRequest({
    messages: [
      { role: "user", content: "Every effort" },
      { role: "assistant", content: " moves you" },
      { role: "user", content: "Next" },
    ],
  });
  const gpt2 = new Gpt2Tokenizer();
  const own = plainChatFormat(gpt2);
  const prompt = (choice: "auto" | "alpaca" | "phi3") =>
    promptText(chooseChatFormat(choice, own, gpt2), { messages: request.messages });
  assert.equal(prompt("auto"), "Every effort moves you\nNext");
  assert.match(
    prompt("alpaca"),
    /### Instruction:\nEvery effort\n\n### Response:\n moves you\n\n.*### Instruction:\nNext\n\n### Response:\n$/s,
  );
  // A phi3 fine-tune chats in its own template (exercise 7.1's format), history included.
  assert.equal(
    prompt("phi3"),
    "<|user|>\nEvery effort\n<|assistant|>:\n moves you\n\n<|user|>\nNext\n<|assistant|>:\n",
  );
  assert.deepEqual(
    [request.temperature, request.top_k, request.max_tokens, request.seed, request.template],
    [0.7, undefined, 100, 123, "auto"],
  );
});

Deno.test("ui chat: a bad request names the field", () => {
  const user = [{ role: "user", content: "hi" }];
  const cases: [unknown, RegExp][] = [
    [{}, /messages/],
    [{ messages: [{ role: "system", content: "x" }] }, /messages\[0\]/],
    [{ messages: [...user, { role: "assistant", content: "x" }] }, /last must be the user/],
    [{ messages: user, temperature: -1 }, /temperature/],
    [{ messages: user, top_k: 2.5 }, /top_k/],
    [{ messages: user, max_tokens: 5000 }, /max_tokens/],
    [{ messages: user, template: "chatml" }, /template/],
  ];
  for (const [body, message] of cases) assert.throws(() => parseChatRequest(body), message);
});

Deno.test("ui chat: an open model (a Qwen3 folder) answers in its own template, as serve answers, the history included", async () => {
  await useCpuBackend();
  await withTempDir(async (dir) => {
    await writeTinyQwen3(dir);
    const messages = [
      { role: "user" as const, content: "What do llamas eat?" },
      { role: "assistant" as const, content: "Grass." },
      { role: "user" as const, content: "And alpacas?" },
    ];
    const service = new ChatService("cpu");
    const opened = await openModelFolder(dir);
    try {
      assert.equal(await service.templateOf(dir), "jinja");
      const response = service.stream(dir, { messages, temperature: 0, max_tokens: 6 });
      const events = [...(await response.text()).matchAll(/event: (\w+)\ndata: (.*)\n\n/g)]
        .map(([, name, data]) => ({ name, data: JSON.parse(data) }));
      const meta = events.find((e) => e.name === "meta")!.data;
      assert.equal(meta.template, "jinja");
      assert.equal(meta.prompt, opened.chat.render(messages));
      const tokens = await generate(opened.model, opened.chat.encode(messages), {
        maxNewTokens: 6,
        temperature: 0,
        stopIds: opened.chat.stopIds,
        vocabLimit: opened.vocabLimit,
      });
      const text = events.filter((e) => e.name === "token").map((e) => e.data.text).join("");
      assert.equal(text, opened.tokenizer.decode(tokens));
      assert.equal(events.at(-1)!.name, "done");
      assert.equal(events.at(-1)!.data.tokens, tokens.length);
    } finally {
      opened.model.dispose();
      service.dispose();
    }
  });
});
