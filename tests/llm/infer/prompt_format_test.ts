/**
 * Which prompt format `auto` picks, and how an instruction is formatted in each: a fine-tune's
 * own template first, else an open model's chat template, else its family's prompt style (Phi-2's
 * "Instruct: …\nOutput:", as LitGPT's Phi2 prompt style), else the plain text; the answer read
 * back from a continuation.
 */
import assert from "node:assert/strict";
import { plainChatFormat } from "../../../llm/chat/instruction.ts";
import { jinjaChatFormat, readChatTemplate } from "../../../llm/chat/jinja.ts";
import { writeTemplateFile } from "../../../llm/data/instruction_files.ts";
import { promptTemplate } from "../../../llm/data/instructions.ts";
import type { OpenedModelFolder } from "../../../llm/infer/open_model.ts";
import {
  chatAnswer,
  formatPrompt,
  instructionMessage,
  promptFormatFor,
  stopIdsFor,
} from "../../../llm/infer/prompt_format.ts";
import { createTokenizer } from "../../../llm/tokenizer/mod.ts";
import { withTempDir } from "../../fixtures.ts";
import { lenmlDir, lenmlTokenizer } from "../tokenizer/hf_files.ts";

const gpt2 = createTokenizer({ kind: "gpt2" });

/** What promptFormatFor reads of an opened model (no weights needed). */
function opened(dir: string, fields: Partial<OpenedModelFolder>): OpenedModelFolder {
  return {
    dir,
    layout: "groundup",
    family: "gpt2",
    tokenizer: gpt2,
    chat: plainChatFormat(gpt2),
    vocabLimit: 50257,
    ...fields,
  } as OpenedModelFolder;
}

Deno.test("prompt format: Phi-2 (no chat template) gets LitGPT's Instruct/Output style", async () => {
  await withTempDir(async (dir) => {
    const phi2 = opened(dir, { layout: "hf", family: "phi2" });
    const format = await promptFormatFor(phi2, "auto");
    assert.equal(format.name, "phi-2");
    const prompt = formatPrompt(phi2, format, { instruction: "What do llamas eat?" });
    assert.equal(prompt.text, "Instruct: What do llamas eat?\nOutput:");
    assert.deepEqual(prompt.ids, gpt2.encode("Instruct: What do llamas eat?\nOutput:"));
    assert.equal(prompt.answer(" Grass and hay.\n"), "Grass and hay.");
    // Our own GPT-2 folder without a template continues the text as it is.
    const ours = opened(dir, {});
    const none = await promptFormatFor(ours, "auto");
    assert.equal(none.kind, "none");
    assert.equal(formatPrompt(ours, none, { instruction: "Every effort" }).text, "Every effort");
    assert.deepEqual(stopIdsFor(ours, none), new Set([50256]));
  });
});

Deno.test("prompt format: an open model's chat template; a fine-tune's template.json wins", async () => {
  await withTempDir(async (dir) => {
    const tokenizer = await lenmlTokenizer("qwen3");
    const chat = jinjaChatFormat(
      (await readChatTemplate(lenmlDir("qwen3"), tokenizer))!,
      tokenizer,
    );
    const qwen = opened(dir, { layout: "hf", family: "qwen3", tokenizer, chat });
    const format = await promptFormatFor(qwen, "auto");
    assert.equal(format.kind, "chat");
    const entry = { instruction: "Rewrite the sentence.", input: "The cat sat." };
    assert.deepEqual(instructionMessage(entry), {
      role: "user",
      content: "Rewrite the sentence.\n\nThe cat sat.",
    });
    const prompt = formatPrompt(qwen, format, entry);
    assert.equal(
      prompt.text,
      "<|im_start|>user\nRewrite the sentence.\n\nThe cat sat.<|im_end|>\n" +
        "<|im_start|>assistant\n<think>\n\n</think>\n\n",
    );
    assert.deepEqual(
      prompt.ids,
      chat.encode([instructionMessage(entry)], { enableThinking: false }),
    );
    assert.ok(stopIdsFor(qwen, format).has(tokenizer.tokenId("<|im_end|>")!));
    assert.equal(
      chatAnswer("<think>\nhmm\n</think>\n\nThe cat was sitting.  "),
      "The cat was sitting.",
    );

    await writeTemplateFile(dir, promptTemplate("phi3"));
    const tuned = await promptFormatFor(qwen, "auto");
    assert.equal(tuned.kind === "template" && tuned.template.name, "phi3");
    assert.equal((await promptFormatFor(qwen, "chat")).kind, "chat");
    assert.equal((await promptFormatFor(qwen, "none")).kind, "none");
  });
});
