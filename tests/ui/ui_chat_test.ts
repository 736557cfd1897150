/** The chat endpoint's request checks and the prompt it builds. */
import assert from "node:assert/strict";
import { buildPrompt, parseChatRequest } from "../../server/ui_chat.ts";
import { promptTemplate } from "../../llm/data/instructions.ts";

Deno.test("ui chat: a base model continues the transcript as `deno task chat` builds it", () => {
  const request = parseChatRequest({
    messages: [
      { role: "user", content: "Every effort" },
      { role: "assistant", content: " moves you" },
      { role: "user", content: "Next" },
    ],
  });
  assert.equal(buildPrompt(request, undefined), "Every effort moves you\nNext");
  assert.match(
    buildPrompt(request, promptTemplate("alpaca")),
    /### Instruction:\nNext\n\n### Response:\n$/,
  );
  // A phi3 fine-tune chats in its own template (exercise 7.1's format).
  assert.equal(buildPrompt(request, promptTemplate("phi3")), "<|user|>\nNext\n<|assistant|>:\n");
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
