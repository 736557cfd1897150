import assert from "node:assert/strict";
import { join } from "node:path";
import { withTempDir } from "../../fixtures.ts";
import {
  countParameters,
  type GPTConfig,
  listModelConfigs,
  loadModelConfig,
  validateConfig,
} from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { useCpuBackend } from "./tf_setup.ts";

await useCpuBackend();

/** The book's GPT_CONFIG_124M (ch04). */
const BOOK_124M: GPTConfig = {
  vocab_size: 50257,
  context_length: 1024,
  emb_dim: 768,
  n_heads: 12,
  n_layers: 12,
  drop_rate: 0.1,
  qkv_bias: false,
};

Deno.test("the named GPT-2 configs have the pretrained shapes (REFERENCE.md table)", async () => {
  assert.deepEqual(await listModelConfigs(), [
    "gpt2-large",
    "gpt2-medium",
    "gpt2-small",
    "gpt2-xl",
    "tiny",
  ]);
  const table = {
    "gpt2-small": [768, 12, 12],
    "gpt2-medium": [1024, 24, 16],
    "gpt2-large": [1280, 36, 20],
    "gpt2-xl": [1600, 48, 25],
  };
  for (const [name, [emb, layers, heads]] of Object.entries(table)) {
    const config = await loadModelConfig(name);
    assert.deepEqual(
      config,
      {
        vocab_size: 50257,
        context_length: 1024,
        emb_dim: emb,
        n_heads: heads,
        n_layers: layers,
        drop_rate: 0.1,
        qkv_bias: true,
      },
      name,
    );
  }
  const tiny = await loadModelConfig("tiny");
  assert.equal(tiny.vocab_size, 50257);
});

Deno.test("overrides give the workshop's pretraining config", async () => {
  const config = await loadModelConfig("gpt2-small", { context_length: 256, qkv_bias: false });
  assert.equal(config.context_length, 256);
  assert.equal(config.qkv_bias, false);
});

Deno.test("124M parameter count: 163,009,536 untied, 124,412,160 with the head tied to wte", () => {
  assert.equal(countParameters(BOOK_124M), 163_009_536);
  assert.equal(countParameters(BOOK_124M, { tiedHead: true }), 124_412_160);
});

Deno.test("a 124M model holds exactly 163,009,536 parameters (124,412,160 tied)", () => {
  for (const [tiedHead, expected] of [[false, 163_009_536], [true, 124_412_160]] as const) {
    const model = new GPTModel(BOOK_124M, { init: "zeros", tiedHead });
    assert.equal(model.numParameters(), expected);
    model.dispose();
  }
});

Deno.test("invalid configs are rejected with the file and key named", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "bad.yaml");
    await Deno.writeTextFile(
      path,
      "vocab_size: 10\ncontext_length: 8\nemb_dim: 6\nn_heads: 4\nn_layers: 1\ndrop_rate: 0\nqkv_bias: false\n",
    );
    await assert.rejects(
      loadModelConfig(path),
      (e: Error) => e.message.includes(path) && e.message.includes("divisible"),
    );
    await Deno.writeTextFile(path, "vocab_size: 10\ncontext_length: 8\n");
    await assert.rejects(loadModelConfig(path), /missing key "emb_dim"/);
  });
  const good = { ...BOOK_124M };
  assert.throws(
    () => validateConfig({ ...good, n_embd: 3 }, "x.yaml"),
    /x\.yaml: unknown key\(s\) n_embd/,
  );
  assert.throws(
    () => validateConfig({ ...good, n_layers: 1.5 }, "x.yaml"),
    /"n_layers" must be a positive integer/,
  );
  assert.throws(
    () => validateConfig({ ...good, drop_rate: 1 }, "x.yaml"),
    /"drop_rate" must be a number in \[0, 1\)/,
  );
  assert.throws(
    () => validateConfig({ ...good, qkv_bias: "yes" }, "x.yaml"),
    /"qkv_bias" must be true or false/,
  );
  await assert.rejects(loadModelConfig("gpt2-tiny"), /not found.*known names: gpt2-large/);
});
