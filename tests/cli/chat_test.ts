/**
 * `deno task chat` with piped input: multi-line messages, /reset, /exit, the Alpaca switch, and
 * an open model chatting in its own template with the history.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { withTempDir } from "../fixtures.ts";
import { useCpuBackend } from "../llm/model/tf_setup.ts";
import { parityWords, writeParityModelFolder } from "../stages/parity_checkpoints.ts";
import { runCli } from "./cli_helpers.ts";
import { writeTemplateFile } from "../../llm/data/instruction_files.ts";
import { promptTemplate } from "../../llm/data/instructions.ts";
import type { ChatMessage } from "../../llm/chat/format.ts";
import { openModelFolder } from "../../llm/infer/open_model.ts";
import { generate } from "../../llm/model/generate.ts";
import { writeTinyQwen3 } from "../server/helpers.ts";

await useCpuBackend();

const greedy = ["--max-new-tokens", "8", "--temperature", "0", "--backend", "cpu"];

Deno.test("chat: replies stream per message; \\ continues a line; /reset forgets; /exit quits", async () => {
  await withTempDir(async (dir) => {
    const { cases } = await writeParityModelFolder(dir);
    const prompt = parityWords(cases[0].prompt);
    const reply = " " + parityWords(cases[0].expected_new_tokens);
    const [first, second] = [
      prompt.split(" ").slice(0, 2).join(" "),
      prompt.split(" ").slice(2).join(" "),
    ];
    const input = [
      prompt, // a fresh conversation: PyTorch's greedy reply
      prompt, // the same words again, now after the first exchange
      "/reset",
      `${first} \\`, // the same message over two lines, after /reset
      second,
      "/exit",
      prompt, // never read
      "",
    ].join("\n");
    const result = await runCli("chat", ["--model", dir, ...greedy], { stdin: input });
    assert.equal(result.code, 0, result.stderr);
    const replies = result.stdout.split("\n");
    assert.equal(replies.pop(), "", "every reply ends with a newline");
    assert.equal(replies.length, 3, result.stdout);
    assert.equal(replies[0], reply);
    assert.notEqual(replies[1], reply, "the transcript carries over without /reset");
    assert.equal(replies[2], reply, "after /reset a multi-line message starts afresh");
    assert.match(result.stderr, /base model/);
    assert.match(result.stderr, /\(conversation forgotten\)/);
  });
});

Deno.test("chat: an instruction-tuned model (its manifest says so) gets the Alpaca template", async () => {
  await withTempDir(async (dir) => {
    await writeParityModelFolder(dir);
    const manifest = { params: { dataset: "instruction-data" }, metrics: {} };
    await Deno.writeTextFile(join(dir, "manifest.json"), JSON.stringify(manifest));
    const tuned = await runCli("chat", ["--model", dir, ...greedy], { stdin: "t01 t02\n" });
    assert.equal(tuned.code, 0, tuned.stderr);
    assert.match(tuned.stderr, /Alpaca template/);
    assert.equal(tuned.stdout.split("\n").length, 2);

    const forcedOff = await runCli("chat", ["--model", dir, "--template", "none", ...greedy], {
      stdin: "",
    });
    assert.equal(forcedOff.code, 0, forcedOff.stderr);
    assert.match(forcedOff.stderr, /base model/);
  });
});

Deno.test("chat: a fine-tuned model's template.json (phi3) is the template it chats with", async () => {
  await withTempDir(async (dir) => {
    await writeParityModelFolder(dir);
    await writeTemplateFile(dir, promptTemplate("phi3"));
    const tuned = await runCli("chat", ["--model", dir, ...greedy], { stdin: "t01 t02\n" });
    assert.equal(tuned.code, 0, tuned.stderr);
    assert.match(tuned.stderr, /Phi-3 template/);
    const forced = await runCli("chat", ["--model", dir, "--template", "alpaca", ...greedy], {
      stdin: "",
    });
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stderr, /Alpaca template/);
  });
});

Deno.test("chat: an open model (a Qwen3 folder) chats in its own template, each turn with the history before it", async () => {
  await withTempDir(async (dir) => {
    await writeTinyQwen3(dir);
    const result = await runCli("chat", ["--model", dir, ...greedy], {
      stdin: "What do llamas eat?\nAnd alpacas?\n",
    });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /the model's chat template/);
    // The same two turns here: greedy on the template's ids, the first reply in the history.
    const opened = await openModelFolder(dir);
    try {
      const reply = async (messages: ChatMessage[]) => {
        const ids = opened.chat.encode(messages);
        const tokens = await generate(opened.model, ids, {
          maxNewTokens: 8,
          temperature: 0,
          stopIds: opened.chat.stopIds,
          vocabLimit: opened.vocabLimit,
        });
        return opened.tokenizer.decode(tokens);
      };
      const first = await reply([{ role: "user", content: "What do llamas eat?" }]);
      const second = await reply([
        { role: "user", content: "What do llamas eat?" },
        { role: "assistant", content: first },
        { role: "user", content: "And alpacas?" },
      ]);
      assert.equal(result.stdout, `${first}\n${second}\n`);
    } finally {
      opened.model.dispose();
    }
  });
});
