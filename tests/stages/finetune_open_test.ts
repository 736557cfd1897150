/**
 * Fine-tuning open models (issue 18): tiny random Qwen3 and Llama models in exact Hugging Face
 * layout (real tokenizer files), the instruction data in the model's own chat template, LoRA
 * with PEFT adapters and full fine-tuning, the results written back in HF's layout.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { builtinStages, openInstructionsArtifact } from "../../stages/mod.ts";
import { writeRandomHfModel } from "../../llm/families/random_model.ts";
import { openModelFolder } from "../../llm/infer/open_model.ts";
import { applyAdapter } from "../../llm/infer/adapter.ts";
import { readSafetensorsFile } from "../../llm/weights/safetensors.ts";
import { SHARED_FIXTURES, withTempDir } from "../fixtures.ts";
import { quietOutput, writePipeline } from "../runner/helpers.ts";
import { lenmlDir } from "../llm/tokenizer/hf_files.ts";

Deno.env.set("GROUNDUP_MIRROR", SHARED_FIXTURES);

type Family = "qwen3" | "llama";

/** A random model of `family` in HF layout in `dir` (Qwen3's or Llama 3's real tokenizer). */
async function randomBase(dir: string, family: Family, seed = 123) {
  await Deno.mkdir(dir, { recursive: true });
  if (family === "qwen3") {
    await writeRandomHfModel(dir, {
      family,
      tokenizerDir: lenmlDir("qwen3"),
      vocabSize: 151_669,
      eosTokenIds: [151645],
      seed,
    });
  } else {
    await writeRandomHfModel(dir, {
      family,
      tokenizerDir: lenmlDir("llama3"),
      vocabSize: 128_256,
      bosTokenId: 128000,
      eosTokenIds: [128001, 128009],
      hidden: 48,
      heads: 6,
      kvHeads: 2,
      headDim: 8,
      seed,
    });
  }
}

/** load-hf-model (local) → instructions (the model's tokenizer) → `finetune`. */
async function run(dir: string, base: string, instructions: string, finetune: string) {
  const file = await writePipeline(
    dir,
    `name: open-ft
seed: 123
backend: cpu
stages:
  base:
    uses: load-hf-model
    source: local
    path: ${base}
  instructions:
    needs: base
    limit: 40
    tokenizer: model
    allowed_max_length: 96
${instructions}
${finetune}`,
  );
  const pipeline = await loadPipeline(file, builtinStages());
  return await runPipeline(pipeline, { cacheDir: join(dir, "cache"), out: quietOutput });
}

const LORA = (extra: string) =>
  `  lora-finetune:
    needs: [base, instructions]
    epochs: 2
    batch_size: 4
    lr: 1.0e-2
    eval_freq: 4
    eval_iter: 2
    sample_tokens: 4
    initial_eval: true
${extra}`;

/** W + (alpha/r)·B·A of a PEFT module, from the three files, against the merged model's W. */
function checkMerge(
  base: Map<string, { shape: number[]; data: Float32Array }>,
  adapter: Map<string, { shape: number[]; data: Float32Array }>,
  merged: Map<string, { shape: number[]; data: Float32Array }>,
  scale: number,
): number {
  let modules = 0;
  for (const [name, a] of adapter) {
    const match = /^base_model\.model\.(.+)\.lora_A\.weight$/.exec(name);
    if (!match) continue;
    const module = match[1];
    const b = adapter.get(`base_model.model.${module}.lora_B.weight`)!;
    const weightName = `${module}.weight`;
    const w = base.get(weightName) ?? base.get("model.embed_tokens.weight")!; // a tied head
    const [out, r] = b.shape;
    const inF = a.shape[1];
    assert.deepEqual(a.shape, [r, inF], `${name}: [r, in]`);
    assert.deepEqual(w.shape, [out, inF], `${weightName}: [out, in]`);
    const got = merged.get(weightName)!;
    let worst = 0;
    for (let o = 0; o < out; o++) {
      for (let i = 0; i < inF; i++) {
        let sum = 0;
        for (let k = 0; k < r; k++) sum += b.data[o * r + k] * a.data[k * inF + i];
        const want = w.data[o * inF + i] + scale * sum;
        worst = Math.max(worst, Math.abs(got.data[o * inF + i] - want));
      }
    }
    assert.ok(worst < 1e-5, `${weightName}: W + s·B·A differs from the merged weight by ${worst}`);
    modules++;
  }
  return modules;
}

/** Logits of the model in `dir` (with the adapter in `adapter` applied) on a few ids. */
async function logitsOf(dir: string, ids: number[], adapter?: string): Promise<Float32Array> {
  const opened = await openModelFolder(dir);
  try {
    if (adapter) await applyAdapter(opened, adapter);
    const out = opened.model.forward(tf.tensor2d([ids], [1, ids.length], "int32"));
    const data = await out.data() as Float32Array;
    out.dispose();
    return data;
  } finally {
    opened.model.dispose();
  }
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

for (const family of ["qwen3", "llama"] as const) {
  Deno.test(`lora-finetune on a random ${family} model: chat template, loss down, PEFT adapter = merged weights, reloads`, async () => {
    await withTempDir(async (dir) => {
      const base = join(dir, "base");
      await randomBase(base, family);
      // Qwen3 with LitGPT's recipe (query + value); Llama with the book's (every layer + head).
      const lora = family === "qwen3"
        ? "    preset: litgpt\n    rank: 4\n    lora_dropout: 0.0\n"
        : "    rank: 4\n    alpha: 8\n";
      const report = await run(dir, base, "    template: chat", LORA(lora));
      assert.ok(report.ok, report.error?.stack);

      // The data: the model's template, the end of turn appended, the family's pad id.
      const data = await openInstructionsArtifact(report.artifacts.instructions.dir);
      assert.equal(data.template.name, "chat");
      const endToken = family === "qwen3" ? "<|im_end|>" : "<|eot_id|>";
      assert.equal(data.tokenizer.decode([data.endId]), endToken);
      const entry = (await data.entries("train"))[0];
      const prompt = data.template.prompt(entry);
      assert.ok(prompt.includes(entry.instruction));
      if (family === "qwen3") {
        assert.ok(prompt.endsWith("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
      } else assert.ok(prompt.endsWith("<|start_header_id|>assistant<|end_header_id|>\n\n"));

      const out = report.artifacts["lora-finetune"];
      const history = JSON.parse(await Deno.readTextFile(join(out.dir, "history.json")));
      const first = history.initial.val_loss, last = history.evaluations.at(-1).val_loss;
      assert.ok(last < first - 0.05, `validation loss ${first} → ${last} should fall`);

      // PEFT's files: config and names.
      const config = JSON.parse(await Deno.readTextFile(join(out.dir, "adapter_config.json")));
      assert.equal(config.peft_type, "LORA");
      assert.equal(config.task_type, "CAUSAL_LM");
      assert.equal(config.base_model_name_or_path, base);
      assert.equal(config.r, 4);
      const scale = config.lora_alpha / config.r;
      assert.equal(scale, family === "qwen3" ? 4 : 2);
      assert.deepEqual(
        config.target_modules,
        family === "qwen3" ? ["q_proj", "v_proj"] : [
          "down_proj",
          "gate_proj",
          "k_proj",
          "lm_head",
          "o_proj",
          "q_proj",
          "up_proj",
          "v_proj",
        ],
      );
      const adapter =
        (await readSafetensorsFile(join(out.dir, "adapter_model.safetensors"))).tensors;
      const a = adapter.get("base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight")!;
      const b = adapter.get("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight")!;
      // GQA: v has n_kv × head_dim outputs (2 × 16 for Qwen3's shape, 2 × 8 for Llama's).
      assert.deepEqual(a.shape, [4, family === "qwen3" ? 32 : 48]);
      assert.deepEqual(b.shape, [family === "qwen3" ? 32 : 16, 4]);

      // W + (alpha/r)·B·A equals the merged weights, module by module.
      const baseWeights = (await readSafetensorsFile(join(base, "model.safetensors"))).tensors;
      const merged = (await readSafetensorsFile(join(out.dir, "model.safetensors"))).tensors;
      const modules = checkMerge(baseWeights, adapter, merged, scale);
      assert.equal(modules, family === "qwen3" ? 4 : 15);
      const mergedConfig = JSON.parse(await Deno.readTextFile(join(out.dir, "config.json")));
      // An adapter on a tied head unties it: the merged head is the embedding plus the update.
      assert.equal(mergedConfig.tie_word_embeddings, family === "qwen3");

      // The fine-tune opens as an HF model; the base + the adapter gives the same logits.
      const ids = data.tokenizer.encode(prompt);
      const fromMerged = await logitsOf(out.dir, ids);
      const fromAdapter = await logitsOf(base, ids, out.dir);
      const fromBase = await logitsOf(base, ids);
      assert.ok(maxDiff(fromMerged, fromAdapter) < 1e-4, `${maxDiff(fromMerged, fromAdapter)}`);
      assert.ok(maxDiff(fromMerged, fromBase) > 1e-3, "the adapter changes the model");
    });
  });
}

Deno.test("--adapter: an adapter for another base is refused naming both", async () => {
  await withTempDir(async (dir) => {
    const qwen = join(dir, "qwen"), llama = join(dir, "llama");
    await randomBase(qwen, "qwen3");
    await randomBase(llama, "llama");
    const report = await run(
      dir,
      qwen,
      "    template: alpaca",
      `  lora-finetune:
    needs: [base, instructions]
    preset: litgpt
    rank: 2
    epochs: 1
    batch_size: 8
    sample_tokens: 0
`,
    );
    assert.ok(report.ok, report.error?.stack);
    const adapterDir = report.artifacts["lora-finetune"].dir;
    // Another family's shapes.
    const opened = await openModelFolder(llama);
    try {
      await assert.rejects(applyAdapter(opened, adapterDir), (error: Error) => {
        assert.match(
          error.message,
          new RegExp(adapterDir.replaceAll(/[.*+?^${}()|[\]\\]/g, "\\$&")),
        );
        assert.match(error.message, /\[out 64, in 32\].*\[out 48, in 48\]/);
        assert.ok(error.message.includes(qwen) && error.message.includes(llama), error.message);
        return true;
      });
    } finally {
      opened.model.dispose();
    }
    // Same shapes, another name: a copy of the base under a recorded repository.
    const other = join(dir, "other");
    await randomBase(other, "qwen3", 7);
    const config = JSON.parse(await Deno.readTextFile(join(other, "config.json")));
    await Deno.writeTextFile(
      join(other, "config.json"),
      JSON.stringify({ ...config, _name_or_path: "someone/another-model" }),
    );
    const second = await openModelFolder(other);
    try {
      await assert.rejects(
        applyAdapter(second, adapterDir),
        /made for .*qwen.*the base model is someone\/another-model/,
      );
    } finally {
      second.model.dispose();
    }
  });
});

Deno.test("full finetune of a random qwen3 model: alpaca with the family's pad and eos, HF layout out", async () => {
  await withTempDir(async (dir) => {
    const base = join(dir, "base");
    await randomBase(base, "qwen3");
    const report = await run(
      dir,
      base,
      "    template: alpaca",
      `  finetune:
    needs: [base, instructions]
    epochs: 1
    batch_size: 4
    lr: 1.0e-3
    eval_freq: 4
    eval_iter: 2
    sample_tokens: 0
    mask_instructions: true
`,
    );
    assert.ok(report.ok, report.error?.stack);
    const data = await openInstructionsArtifact(report.artifacts.instructions.dir);
    // Qwen3's files: eos <|im_end|> ends every example, pad <|endoftext|> pads.
    assert.equal(data.tokenizer.decode([data.endId]), "<|im_end|>");
    assert.equal(data.tokenizer.decode([data.padId]), "<|endoftext|>");
    const out = report.artifacts.finetune.dir;
    const opened = await openModelFolder(out);
    try {
      assert.equal(opened.layout, "hf");
      assert.equal(opened.family, "qwen3");
      // Trained on Alpaca prompts, so it is talked to in Alpaca, not its tokenizer's template.
      assert.equal(opened.chat.name, "alpaca");
    } finally {
      opened.model.dispose();
    }
  });
});
