/**
 * The HF export read back: every parity fixture (tests/fixtures/hf) and a GPT-2 loaded, exported
 * with HF names and config.json, and loaded again with loadHfModel gives the same config and
 * bit-identical weights; GPT-2's tensors are GPT2LMHeadModel's (Conv1D [in, out]). Bad targets
 * are refused with nothing written.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { exportHf } from "../../../llm/export/hf.ts";
import { loadHfModel } from "../../../llm/families/load.ts";
import type { GPTConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { getStateDict } from "../../../llm/model/weights_io.ts";
import { Gpt2Tokenizer } from "../../../llm/tokenizer/gpt2.ts";
import { openSafetensors } from "../../../llm/weights/safetensors.ts";
import { localFixture, withTempDir } from "../../fixtures.ts";

async function assertSameModel(a: GPTModel, b: GPTModel, label: string): Promise<void> {
  assert.equal(b.tiedHead, a.tiedHead, `${label}: tied head`);
  const sa = await getStateDict(a);
  const sb = await getStateDict(b);
  assert.deepEqual([...sb.keys()].sort(), [...sa.keys()].sort(), `${label}: tensor names`);
  for (const [name, t] of sa) {
    assert.deepEqual(sb.get(name)!.shape, t.shape, `${label}: ${name} shape`);
    assert.ok(
      sb.get(name)!.data.every((x, i) => Object.is(x, t.data[i])),
      `${label}: ${name} values`,
    );
  }
}

for (
  const fixture of [
    "llama3",
    "llama3-bf16",
    "smollm2",
    "qwen3",
    "gemma3",
    "gemma3-bf16",
    "phi3",
    "phi2",
  ]
) {
  Deno.test(`HF export: the ${fixture} fixture exported and loaded again is the same model`, async () => {
    const original = await loadHfModel(localFixture("hf", fixture));
    try {
      await withTempDir(async (dir) => {
        const out = join(dir, "export");
        const result = await exportHf(original.model, out);
        assert.deepEqual(result.files, ["config.json", "model.safetensors"]);
        const again = await loadHfModel(out);
        try {
          assert.equal(again.family.name, original.family.name);
          assert.deepEqual(again.config, original.config);
          await assertSameModel(original.model, again.model, fixture);
          // Our names and shapes are the family's table read backwards: the fixture's own.
          await using ours = await openSafetensors(join(out, "model.safetensors"));
          await using theirs = await openSafetensors(
            localFixture("hf", fixture, "model.safetensors"),
          );
          const shapes = (h: typeof ours.header) =>
            Object.fromEntries([...h.tensors].map(([n, t]) => [n, t.shape]));
          assert.deepEqual(shapes(ours.header), shapes(theirs.header));
        } finally {
          again.model.dispose();
        }
      });
    } finally {
      original.model.dispose();
    }
  });
}

Deno.test("HF export: GPT-2 becomes a GPT2LMHeadModel (Conv1D [in, out], tokenizer files) and loads back", async () => {
  const config: GPTConfig = {
    vocab_size: 50257,
    context_length: 32,
    emb_dim: 16,
    n_heads: 2,
    n_layers: 2,
    drop_rate: 0,
    qkv_bias: true,
  };
  const model = new GPTModel(config, { seed: 3, tiedHead: true });
  try {
    await withTempDir(async (dir) => {
      const out = join(dir, "gpt2-hf");
      const result = await exportHf(model, out, { tokenizer: new Gpt2Tokenizer() });
      assert.deepEqual(result.files, [
        "config.json",
        "generation_config.json",
        "merges.txt",
        "model.safetensors",
        "tokenizer_config.json",
        "vocab.json",
      ]);
      const hfConfig = JSON.parse(await Deno.readTextFile(join(out, "config.json")));
      assert.deepEqual(hfConfig.architectures, ["GPT2LMHeadModel"]);
      assert.equal(hfConfig.eos_token_id, 50256);
      await using file = await openSafetensors(join(out, "model.safetensors"));
      // c_attn: [in, 3·out]; its first column block is W_query transposed.
      const cAttn = await file.read("transformer.h.0.attn.c_attn.weight");
      assert.deepEqual(cAttn.shape, [16, 48]);
      const state = await getStateDict(model);
      const wq = state.get("trf_blocks.0.att.W_query.weight")!.data; // [out 16, in 16]
      assert.equal(cAttn.data[1 * 48 + 2], wq[2 * 16 + 1]); // c_attn[in 1, out 2] = Wq[2, 1]
      const wv = state.get("trf_blocks.0.att.W_value.weight")!.data;
      assert.equal(cAttn.data[3 * 48 + 32 + 5], wv[5 * 16 + 3]);
      assert.ok(!file.header.tensors.has("lm_head.weight"), "tied: no lm_head");
      const vocab = JSON.parse(await Deno.readTextFile(join(out, "vocab.json")));
      assert.equal(vocab["Ġthe"], 262);
      const merges = (await Deno.readTextFile(join(out, "merges.txt"))).split("\n");
      assert.deepEqual(merges.slice(0, 3), ["#version: 0.2", "Ġ t", "Ġ a"]);
      const again = await loadHfModel(out);
      try {
        assert.deepEqual(again.config, { ...config, family: "gpt2" });
        await assertSameModel(model, again.model, "gpt2");
      } finally {
        again.model.dispose();
      }
    });
  } finally {
    model.dispose();
  }
});

Deno.test("HF export: a non-empty target folder is refused and nothing is written", async () => {
  const { model } = await loadHfModel(localFixture("hf", "qwen3"));
  try {
    await withTempDir(async (dir) => {
      const out = join(dir, "taken");
      await Deno.mkdir(out);
      await Deno.writeTextFile(join(out, "notes.txt"), "mine");
      await assert.rejects(
        exportHf(model, out),
        /HF export: .*taken already exists and is not empty; choose a new folder or empty it/,
      );
      assert.deepEqual([...Deno.readDirSync(out)].map((e) => e.name), ["notes.txt"]);
      assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["taken"], "no temp folder");
      // An empty folder is fine.
      await Deno.remove(join(out, "notes.txt"));
      await exportHf(model, out);
    });
  } finally {
    model.dispose();
  }
});
