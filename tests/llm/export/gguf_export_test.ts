/**
 * The GGUF export without llama.cpp: what the file holds (names, types, llama.cpp's transforms),
 * GPT-2's vocabulary against OpenAI's own files, the Modelfile, and bad input refused with
 * nothing written. (llama_cpp_test.ts runs the files in llama.cpp.)
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  exportGguf,
  exportGgufWithModelfile,
  ggufArchitecture,
  gpt2Vocabulary,
  modelfileText,
  permuteRotaryRows,
} from "../../../llm/export/mod.ts";
import { ggufVocabularyOf } from "../../../llm/export/vocab.ts";
import { loadHfModel } from "../../../llm/families/load.ts";
import type { GPTConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { getStateDict, saveModel } from "../../../llm/model/weights_io.ts";
import { Gpt2Tokenizer } from "../../../llm/tokenizer/gpt2.ts";
import { openGguf } from "../../../llm/weights/gguf.ts";
import { localFixture, REPO_ROOT, sharedFixture, withTempDir } from "../../fixtures.ts";
import { lenmlTokenizer } from "../tokenizer/hf_files.ts";

const TINY_GPT2: GPTConfig = {
  vocab_size: 50257,
  context_length: 32,
  emb_dim: 32,
  n_heads: 2,
  n_layers: 1,
  drop_rate: 0,
  qkv_bias: false,
};

Deno.test("gguf export: GPT-2's tokens and merges from js-tiktoken equal OpenAI's encoder.json and vocab.bpe", async () => {
  const v = gpt2Vocabulary();
  const encoder = JSON.parse(
    await Deno.readTextFile(sharedFixture("gpt2-tokenizer", "encoder.json")),
  );
  assert.equal(v.tokens.length, 50257);
  for (const [token, id] of Object.entries(encoder)) assert.equal(v.tokens[id as number], token);
  const merges = (await Deno.readTextFile(sharedFixture("gpt2-tokenizer", "vocab.bpe")))
    .split("\n").slice(1).filter(Boolean);
  assert.deepEqual(v.merges, merges);
});

Deno.test("gguf export: llama rows permuted to interleaved pairs, rope_freqs, q8_0 types", async () => {
  // permute: head of 4 rows [a0 a1 b0 b1] (halves a, b) → [a0 b0 a1 b1].
  assert.deepEqual(
    [...permuteRotaryRows(Float32Array.from([0, 1, 2, 3, 10, 11, 12, 13]), 2, 1)],
    [0, 2, 1, 3, 10, 12, 11, 13],
  );
  const { model, config } = await loadHfModel(localFixture("hf", "llama3"));
  try {
    await withTempDir(async (dir) => {
      const bytes = Array.from({ length: 256 }, (_, i) => String.fromCharCode(0x100 + i));
      const vocabulary = {
        model: "gpt2" as const,
        pre: "gpt-2",
        tokens: bytes,
        tokenTypes: bytes.map(() => 1),
        merges: [],
        addBos: false,
      };
      const path = join(dir, "llama.gguf");
      await exportGguf(model, vocabulary, path, { dtype: "q8_0" });
      using file = await openGguf(path);
      const meta = (k: string) => file.header.metadata.get(k)?.value;
      assert.equal(meta("general.architecture"), "llama");
      assert.equal(meta("general.file_type"), 7);
      assert.equal(meta("llama.attention.head_count_kv"), 2);
      assert.equal(meta("llama.rope.freq_base"), 500000);
      const info = (n: string) => file.header.tensors.get(n)!;
      assert.equal(info("blk.0.attn_q.weight").type, "Q8_0");
      assert.equal(info("blk.0.attn_norm.weight").type, "F32");
      assert.ok(!file.header.tensors.has("output.weight"), "tied: llama.cpp reuses token_embd");
      // rope_freqs: 1 for kept frequencies, 32 for divided ones, between for smoothed ones.
      const freqs = await file.read("rope_freqs.weight");
      assert.equal(freqs.length, 8);
      assert.equal(freqs[0], 1);
      assert.equal(freqs[7], 32);
      assert.ok(freqs.some((f) => f > 1 && f < 32), "one smoothed frequency");
      // attn_k (2 kv heads of 16) is W_key with rows interleaved; Q8_0 within half a step.
      const state = await getStateDict(model);
      const wk = state.get("trf_blocks.0.att.W_key.weight")!.data;
      const expected = permuteRotaryRows(wk, config.n_kv_groups!, config.emb_dim);
      const stored = await file.read("blk.0.attn_k.weight");
      const amax = Math.max(...expected.map(Math.abs));
      assert.ok(stored.every((x, i) => Math.abs(x - expected[i]) <= amax / 127), "Q8_0 error");
      assert.ok(stored.some((x, i) => x !== wk[i]), "rows moved");
    });
  } finally {
    model.dispose();
  }
});

Deno.test("gguf export: Gemma 3 norms are stored + 1, the query scale folded into attn_q_norm", async () => {
  const { model, config } = await loadHfModel(localFixture("hf", "gemma3"));
  try {
    await withTempDir(async (dir) => {
      const tokens = Array.from({ length: 256 }, (_, i) => `t${i}`);
      const path = join(dir, "gemma.gguf");
      await exportGguf(model, {
        model: "gpt2",
        pre: "gpt-2",
        tokens,
        tokenTypes: tokens.map(() => 1),
        merges: [],
        addBos: false,
      }, path);
      using file = await openGguf(path);
      const state = await getStateDict(model);
      const w = state.get("trf_blocks.1.post_ff_norm.scale")!.data;
      assert.deepEqual(await file.read("blk.1.post_ffw_norm.weight"), w.map((x) => 1 + x));
      const q = state.get("trf_blocks.0.att.q_norm.scale")!.data;
      const scale = Math.sqrt(config.head_dim!) / Math.sqrt(config.query_pre_attn_scalar!);
      const stored = await file.read("blk.0.attn_q_norm.weight");
      stored.forEach((x, i) => assert.ok(Math.abs(x - (1 + q[i]) * scale) < 1e-6));
      assert.equal(file.header.metadata.get("gemma3.attention.sliding_window_pattern")?.value, 2);
      assert.equal(file.header.metadata.get("gemma3.rope.freq_base_swa")?.value, 10000);
    });
  } finally {
    model.dispose();
  }
});

Deno.test("gguf export: a model llama.cpp has no architecture for is refused before writing", async () => {
  assert.throws(
    () => ggufArchitecture({ ...TINY_GPT2, mlp: "swiglu", hidden_dim: 64 }),
    /GGUF export: llama.cpp's "gpt2" architecture cannot express this model: a non-GPT-2 norm or MLP/,
  );
  assert.throws(
    () =>
      ggufArchitecture({
        ...TINY_GPT2,
        family: "llama",
        pos_emb: "rope",
        norm: "rmsnorm",
        mlp: "swiglu",
        qk_norm: true,
      }),
    /llama.cpp's "llama" architecture cannot express this model: QK-norm/,
  );
  const model = new GPTModel({ ...TINY_GPT2, norm: "rmsnorm" }, { tiedHead: true });
  try {
    await withTempDir(async (dir) => {
      await assert.rejects(
        exportGguf(model, gpt2Vocabulary(), join(dir, "x.gguf")),
        /cannot express this model: a non-GPT-2 norm or MLP/,
      );
      assert.deepEqual([...Deno.readDirSync(dir)], []);
    });
  } finally {
    model.dispose();
  }
});

Deno.test("gguf export: the Modelfile, and an existing target refused untouched", async () => {
  const model = new GPTModel(TINY_GPT2, { tiedHead: true });
  try {
    await withTempDir(async (dir) => {
      const path = join(dir, "out", "gpt2.gguf");
      const source = { model, tokenizer: new Gpt2Tokenizer() };
      const summary = await exportGgufWithModelfile(source, path, { dtype: "f16" });
      assert.equal(summary.architecture, "gpt2");
      assert.equal(
        await Deno.readTextFile(join(dir, "out", "Modelfile")),
        'FROM ./gpt2.gguf\nPARAMETER stop "<|endoftext|>"\n',
      );
      using file = await openGguf(path);
      // The book's model has no QKV biases; llama.cpp's gpt2 needs them: zeros.
      assert.ok((await file.read("blk.0.attn_qkv.bias")).every((x) => x === 0));
      assert.equal(file.header.tensors.get("blk.0.attn_qkv.weight")!.type, "F16");
      // A tokenizer works as well as a vocabulary: the same bytes.
      const viaTokenizer = join(dir, "via-tokenizer.gguf");
      await exportGguf(model, new Gpt2Tokenizer(), viaTokenizer, { dtype: "f16" });
      assert.deepEqual(await Deno.readFile(viaTokenizer), await Deno.readFile(path));
      const before = await Deno.readFile(path);
      await assert.rejects(
        exportGgufWithModelfile(source, path),
        /GGUF export: .*gpt2\.gguf already exists; choose another --out or remove it/,
      );
      assert.deepEqual(await Deno.readFile(path), before);
    });
  } finally {
    model.dispose();
  }
  // A chat model's Modelfile carries its template and stop words.
  const llama = await ggufVocabularyOf(await lenmlTokenizer("llama3"), 128256);
  const text = modelfileText("/x/model.gguf", llama);
  assert.match(text, /^FROM \.\/model\.gguf\nTEMPLATE """.*<\|start_header_id\|>assistant/s);
  assert.match(text, /PARAMETER stop "<\|eot_id\|>"/);
  assert.ok(llama.chatTemplate?.includes("<|start_header_id|>"), "the chat template in GGUF");
  assert.equal(llama.pre, "llama-bpe");
  // This tokenizer.json (Llama 3.0's) has no BOS in its post-processor: llama.cpp adds none.
  assert.equal(llama.addBos, false);
  assert.equal(llama.bosId, 128000);
});

Deno.test("deno task export: a saved GPT-2 folder to GGUF; an HF export into a non-empty folder refused", async () => {
  const model = new GPTModel(TINY_GPT2, { tiedHead: true });
  try {
    await withTempDir(async (dir) => {
      const saved = join(dir, "saved");
      await saveModel(saved, model);
      const run = (...args: string[]) =>
        new Deno.Command("deno", {
          args: ["run", "-A", join(REPO_ROOT, "cli", "export.ts"), ...args],
          cwd: dir,
        }).output();
      const gguf = await run("--model", saved, "--format", "gguf", "--out", "m/model.gguf");
      const text = new TextDecoder();
      assert.equal(gguf.code, 0, text.decode(gguf.stderr));
      assert.match(text.decode(gguf.stdout), /wrote m\/model\.gguf \(gpt2, f32, \d+ tensors/);
      using file = await openGguf(join(dir, "m", "model.gguf"));
      assert.equal(file.header.metadata.get("tokenizer.ggml.pre")?.value, "gpt-2");
      await Deno.mkdir(join(dir, "busy"));
      await Deno.writeTextFile(join(dir, "busy", "keep.txt"), "x");
      const hf = await run("--model", saved, "--format", "hf", "--out", "busy");
      assert.notEqual(hf.code, 0);
      assert.match(text.decode(hf.stderr), /busy already exists and is not empty/);
      assert.deepEqual([...Deno.readDirSync(join(dir, "busy"))].map((e) => e.name), ["keep.txt"]);
    });
  } finally {
    model.dispose();
  }
});
