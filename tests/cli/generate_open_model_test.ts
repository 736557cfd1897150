/**
 * `deno task generate` on an open model's folder in the Hub's layout (a tiny random Qwen3 with
 * the real tokenizer): the prompt goes through the model's chat template by default and the
 * answer is the model's greedy turn, stopped at its end ids and limited to the tokenizer's ids;
 * `--template none` continues the plain text; contradictory flags are usage errors.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { withTempDir } from "../fixtures.ts";
import { useCpuBackend } from "../llm/model/tf_setup.ts";
import { openModelFolder } from "../../llm/infer/open_model.ts";
import { generate } from "../../llm/model/generate.ts";
import { writeTinyHfModel } from "../stages/tiny_hf_model.ts";
import { runCli } from "./cli_helpers.ts";

await useCpuBackend();

const QUESTION = "What do llamas eat?";

Deno.test("generate command: an HF folder answers in its chat template; --template none continues the text", async () => {
  await withTempDir(async (dir) => {
    const folder = await writeTinyHfModel(join(dir, "qwen3"));
    const opened = await openModelFolder(folder);
    let chatText: string, plainText: string, plainPrompt: string;
    try {
      const chatIds = opened.chat.encode([{ role: "user", content: QUESTION }], {
        enableThinking: false,
      });
      const answer = await generate(opened.model, chatIds, {
        maxNewTokens: 6,
        stopIds: opened.chat.stopIds,
        vocabLimit: opened.vocabLimit,
      });
      chatText = opened.tokenizer.decode([...chatIds, ...answer])
        .slice(opened.tokenizer.decode(chatIds).length);
      const plainIds = opened.tokenizer.encode(QUESTION);
      const continuation = await generate(opened.model, plainIds, {
        maxNewTokens: 6,
        stopIds: opened.tokenizer.eosIds,
        vocabLimit: opened.vocabLimit,
      });
      plainPrompt = opened.tokenizer.decode(plainIds);
      plainText = opened.tokenizer.decode([...plainIds, ...continuation]);
    } finally {
      opened.model.dispose();
    }
    const args = ["--model", folder, "--prompt", QUESTION, "--max-new-tokens", "6"];
    const chat = await runCli("generate", [...args, "--backend", "cpu"]);
    assert.equal(chat.code, 0, chat.stderr);
    assert.equal(chat.stdout, `${chatText}\n`);
    assert.match(chat.stderr, /tokens in .* s/);

    const plain = await runCli("generate", [...args, "--template", "none", "--backend", "cpu"]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.stdout, `${plainText}\n`);
    assert.ok(plain.stdout.startsWith(plainPrompt));

    const contradiction = await runCli("generate", [...args, "--chat", "--template", "alpaca"]);
    assert.equal(contradiction.code, 2);
    assert.match(contradiction.stderr, /--chat contradicts --template alpaca/);
  });
});

Deno.test("generate command: an HF folder that cannot load names the file", async () => {
  await withTempDir(async (dir) => {
    const folder = await writeTinyHfModel(join(dir, "bad"));
    const config = JSON.parse(await Deno.readTextFile(join(folder, "config.json")));
    await Deno.writeTextFile(
      join(folder, "config.json"),
      JSON.stringify({ ...config, model_type: "mamba" }),
    );
    const result = await runCli("generate", [
      "--model",
      folder,
      "--prompt",
      QUESTION,
      "--backend",
      "cpu",
    ]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /bad.config\.json: model_type "mamba" is not supported; supported:/,
    );
  });
});
