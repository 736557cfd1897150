/**
 * `deno task generate` in a new process: PyTorch's greedy continuation of the parity model,
 * a GPT-2 size going through the load-openai-weights stage, and command-line mistakes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { withTempDir } from "../fixtures.ts";
import { useCpuBackend } from "../llm/model/tf_setup.ts";
import {
  parityWords,
  realMirror124M,
  writeParityModelFolder,
} from "../stages/parity_checkpoints.ts";
import { runCli } from "./cli_helpers.ts";

await useCpuBackend();

Deno.test("generate command: prints the prompt and PyTorch's greedy continuation", async () => {
  await withTempDir(async (dir) => {
    const { cases } = await writeParityModelFolder(dir);
    for (const c of cases) {
      const prompt = parityWords(c.prompt);
      const result = await runCli("generate", [
        "--model",
        dir,
        "--prompt",
        prompt,
        "--max-new-tokens",
        String(c.max_new_tokens),
        "--backend",
        "cpu",
      ]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `${prompt} ${parityWords(c.expected_new_tokens)}\n`);
      assert.match(result.stderr, /8 tokens in .* stopped at max-new-tokens/);
    }
  });
});

Deno.test("generate command: a GPT-2 size runs the load-openai-weights stage (mirror, checks)", async () => {
  await withTempDir(async (dir) => {
    // The real 124M release files we have, and a data file of the right size whose contents
    // are wrong: the stage must get as far as checking the first tensor's CRC32C.
    const folder = await realMirror124M(join(dir, "mirror"));
    using data = await Deno.create(join(folder, "model.ckpt.data-00000-of-00001"));
    await data.truncate(497_759_232);
    const result = await runCli(
      "generate",
      [
        "--model",
        "124M",
        "--prompt",
        "Every effort moves you",
        "--backend",
        "cpu",
        "--mirror",
        join(dir, "mirror"),
        "--cache-dir",
        join(dir, "cache"),
      ],
      { env: { GROUNDUP_DATA_DIR: join(dir, "downloads") } },
    );
    assert.equal(result.code, 1);
    assert.match(result.stderr, /load-openai-weights/);
    assert.match(result.stderr, /tensor "model\/wte" .* fails its checksum/);
    assert.equal(result.stdout, "");
  });
});

Deno.test("generate command: mistakes exit 2 with the usage, before any model is loaded", async () => {
  const noModel = await runCli("generate", ["--prompt", "hi"]);
  assert.equal(noModel.code, 2);
  assert.match(noModel.stderr, /error: --model is required\n\nusage: deno task generate/);

  const badTopP = await runCli("generate", ["--model", "124M", "--prompt", "hi", "--top-p", "2"]);
  assert.equal(badTopP.code, 2);
  assert.match(badTopP.stderr, /--top-p "2": expected a number > 0 ≤ 1/);
  assert.doesNotMatch(badTopP.stderr, /engine:/);

  const notAModel = await runCli("generate", ["--model", "/no/such/folder", "--prompt", "hi"]);
  assert.equal(notAModel.code, 1);
  assert.match(
    notAModel.stderr,
    /--model \/no\/such\/folder: not a model folder \(model\.safetensors \+ gpt_config\.json, or a Hugging Face folder\), a GPT-2 size/,
  );
});
