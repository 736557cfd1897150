/**
 * Stage load-openai-weights, offline: checkpoints in OpenAI's and Hugging Face's layouts made
 * from the PyTorch parity fixture, a mirror folder laid out like the download cache, the real
 * GPT-2 124M index, and broken inputs.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { StageRegistry } from "../../runner/stage.ts";
import { PipelineError } from "../../runner/errors.ts";
import { generateStage } from "../../stages/generate.ts";
import { loadOpenaiWeightsStage } from "../../stages/load_openai_weights.ts";
import { GPTModel } from "../../llm/model/gpt.ts";
import { loadModel, loadStateDict } from "../../llm/model/weights_io.ts";
import { type NamedTensor, readSafetensorsFile } from "../../llm/weights/safetensors.ts";
import { sharedFixture, withTempDir } from "../fixtures.ts";
import { useCpuBackend } from "../llm/model/tf_setup.ts";
import { quietOutput, writePipeline } from "../runner/helpers.ts";
import {
  hparamsFor,
  readParity,
  realMirror124M,
  toHfLayout,
  toOpenaiLayout,
  writeHfFolder,
  writeOpenaiFolder,
} from "./parity_checkpoints.ts";

await useCpuBackend();

const registry = () => new StageRegistry().register(loadOpenaiWeightsStage).register(generateStage);

/** Runs a pipeline with its own mirror and download cache (nothing may reach the network). */
async function runYaml(
  dir: string,
  yaml: string,
  options: { mirror?: string; sets?: string[] } = {},
) {
  const saved = {
    mirror: Deno.env.get("GROUNDUP_MIRROR"),
    data: Deno.env.get("GROUNDUP_DATA_DIR"),
  };
  Deno.env.set("GROUNDUP_DATA_DIR", join(dir, "downloads"));
  if (options.mirror) Deno.env.set("GROUNDUP_MIRROR", options.mirror);
  else Deno.env.delete("GROUNDUP_MIRROR");
  try {
    const file = await writePipeline(dir, yaml);
    const pipeline = await loadPipeline(file, registry(), { sets: options.sets, baseDir: dir });
    return await runPipeline(pipeline, { cacheDir: join(dir, "cache"), out: quietOutput });
  } finally {
    for (
      const [name, value] of [["GROUNDUP_MIRROR", saved.mirror], ["GROUNDUP_DATA_DIR", saved.data]]
    ) {
      if (value === undefined) Deno.env.delete(name!);
      else Deno.env.set(name!, value);
    }
  }
}

const localYaml = (path: string) =>
  `name: t
stages:
  load-openai-weights:
    source: local
    path: ${path}
`;

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/**
 * The artifact must hold exactly the parity weights (conversion only moves numbers), with the
 * head tied to the embedding; with PyTorch's own (untied) head put back, the model must give
 * PyTorch's logits.
 */
async function assertReproducesParity(artifactDir: string) {
  const parity = await readParity();
  const written = await readSafetensorsFile(join(artifactDir, "model.safetensors"));
  assert.equal(written.metadata["groundup.tied_head"], "true");
  for (const [name, tensor] of parity.weights) {
    const got = written.tensors.get(name);
    assert.ok(got, `artifact lacks ${name}`);
    assert.deepEqual(got.shape, tensor.shape, name);
    const want = name === "out_head.weight" ? parity.weights.get("tok_emb.weight")! : tensor;
    assert.deepEqual(got.data, want.data, `${name} differs from the parity weights`);
  }
  assert.equal(written.tensors.size, parity.weights.size);

  const config = JSON.parse(await Deno.readTextFile(join(artifactDir, "gpt_config.json")));
  assert.deepEqual(config, { ...parity.config, drop_rate: 0, qkv_bias: true });
  assert.deepEqual(JSON.parse(await Deno.readTextFile(join(artifactDir, "tokenizer_spec.json"))), {
    kind: "gpt2",
    allowedSpecial: ["<|endoftext|>"],
  });

  const untied = new Map<string, NamedTensor>(written.tensors);
  untied.set("out_head.weight", parity.weights.get("out_head.weight")!);
  const model = new GPTModel(parity.config, { init: "zeros" });
  loadStateDict(model, untied, "artifact + PyTorch head");
  const ids = tf.tensor2d(parity.inputIds, undefined, "int32");
  const logits = model.forward(ids);
  const diff = maxAbsDiff(await logits.data(), parity.logits.data);
  tf.dispose([ids, logits]);
  model.dispose();
  assert.ok(diff <= 1e-4, `logits differ from PyTorch by ${diff}`);

  // What later stages see: loadModel ties the head, with no idea where the weights came from.
  const loaded = await loadModel(artifactDir);
  assert.equal(loaded.tiedHead, true);
  assert.equal(loaded.config.context_length, parity.config.context_length);
  loaded.dispose();
}

Deno.test("load-openai-weights: a TensorFlow checkpoint in OpenAI's layout reproduces PyTorch's logits", async () => {
  await withTempDir(async (dir) => {
    const parity = await readParity();
    const folder = join(dir, "openai-ckpt");
    await writeOpenaiFolder(
      folder,
      toOpenaiLayout(parity.weights, parity.config.n_layers),
      hparamsFor(parity.config),
    );
    const report = await runYaml(dir, localYaml(folder));
    assert.ok(report.ok, report.error?.message);
    const artifact = report.artifacts["load-openai-weights"];
    await assertReproducesParity(artifact.dir);
    assert.equal(artifact.manifest.metrics.layout, "openai");
    assert.equal(artifact.manifest.metrics.size, "custom");
    const source = JSON.parse(await Deno.readTextFile(join(artifact.dir, "source.json")));
    assert.equal(source.files.index, join(folder, "model.ckpt.index"));

    // Same checkpoint again: cached; a changed checkpoint (its index changes): converted again.
    assert.equal((await runYaml(dir, localYaml(folder))).steps[0].outcome, "cached");
    const bumped = toOpenaiLayout(parity.weights, parity.config.n_layers);
    bumped.set("model/ln_f/b", { shape: [32], data: new Float32Array(32).fill(0.5) });
    await writeOpenaiFolder(folder, bumped, hparamsFor(parity.config));
    assert.equal((await runYaml(dir, localYaml(folder))).steps[0].outcome, "ran");
  });
});

Deno.test("load-openai-weights: Hugging Face safetensors (prefixed names, mask buffers) give the same artifact", async () => {
  await withTempDir(async (dir) => {
    const parity = await readParity();
    const hf = toHfLayout(toOpenaiLayout(parity.weights, parity.config.n_layers), "transformer.");
    // HF files carry each block's causal mask as a buffer, and may store the tied head.
    const ctx = parity.config.context_length;
    for (let i = 0; i < parity.config.n_layers; i++) {
      hf.set(`transformer.h.${i}.attn.bias`, {
        shape: [1, 1, ctx, ctx],
        data: new Float32Array(ctx * ctx),
      });
    }
    hf.set("lm_head.weight", parity.weights.get("tok_emb.weight")!);
    const folder = join(dir, "hf");
    await writeHfFolder(folder, hf, {
      vocab_size: 97,
      n_positions: 16,
      n_embd: 32,
      n_head: 4,
      n_layer: 2,
      model_type: "gpt2",
    });
    const report = await runYaml(dir, localYaml(folder));
    assert.ok(report.ok, report.error?.message);
    await assertReproducesParity(report.artifacts["load-openai-weights"].dir);
    assert.equal(report.artifacts["load-openai-weights"].manifest.metrics.layout, "hf");
  });
});

Deno.test("load-openai-weights: the 124M release through a mirror: size check, real index, CRC of the data", async () => {
  await withTempDir(async (dir) => {
    const mirror = join(dir, "mirror");
    const folder = await realMirror124M(mirror);
    const data = join(folder, "model.ckpt.data-00000-of-00001");
    const yaml =
      `name: gpt2\nmodel:\n  emb_dim: 768\n  n_layers: 12\nstages:\n  load-openai-weights: {}\n`;

    // A data file of the wrong size is refused before anything is read.
    await Deno.writeFile(data, new Uint8Array(1000));
    const short = await runYaml(dir, yaml, { mirror });
    assert.equal(short.ok, false);
    assert.match(
      short.error!.message,
      /model\.ckpt\.data-00000-of-00001: size mismatch: expected 497759232 bytes, found 1000/,
    );

    // The right size (a sparse file of zeros): the real index plans every 124M tensor, and the
    // first tensor read fails its CRC32C, naming the file and the tensor.
    await Deno.truncate(data, 497_759_232);
    const zeros = await runYaml(dir, yaml, { mirror });
    assert.equal(zeros.ok, false);
    assert.match(
      zeros.error!.message,
      /model\.ckpt\.data-00000-of-00001: tensor "model\/wte" .* fails its checksum/,
    );
    // A failed stage leaves no artifact behind.
    assert.equal(zeros.artifacts["load-openai-weights"], undefined);
  });
});

Deno.test("load-openai-weights: a checkpoint that is not the requested size names what differs", async () => {
  await withTempDir(async (dir) => {
    const parity = await readParity();
    const mirror = join(dir, "mirror");
    const folder = join(mirror, "gpt2", "355M");
    await writeOpenaiFolder(
      folder,
      toOpenaiLayout(parity.weights, parity.config.n_layers),
      hparamsFor(parity.config),
    );
    await Deno.copyFile(
      sharedFixture("gpt2-tokenizer", "encoder.json"),
      join(folder, "encoder.json"),
    );
    await Deno.writeTextFile(join(folder, "vocab.bpe"), "#version: 0.2\n");
    await Deno.writeTextFile(join(folder, "model.ckpt.meta"), "graph (not read)");
    const report = await runYaml(
      dir,
      `name: t\nstages:\n  load-openai-weights:\n    size: 355M\n`,
      { mirror },
    );
    assert.equal(report.ok, false);
    assert.match(
      report.error!.message,
      /model\.ckpt\.index: this checkpoint is not GPT-2 355M: vocab_size 97 \(expected 50257\), context_length 16 \(expected 1024\), emb_dim 32 \(expected 1024\), n_layers 2 \(expected 24\), n_heads 4 \(expected 16\)/,
    );

    // The Hugging Face copy is looked up as hf/openai-community/<repo>/ in the mirror.
    const hfFolder = join(mirror, "hf", "openai-community", "gpt2-large");
    await writeHfFolder(hfFolder, toHfLayout(toOpenaiLayout(parity.weights, 2)), {
      vocab_size: 97,
      n_positions: 16,
      n_embd: 32,
      n_head: 4,
      n_layer: 2,
    });
    const hf = await runYaml(
      dir,
      `name: t\nstages:\n  load-openai-weights: {source: hf, size: 774M}\n`,
      { mirror },
    );
    assert.match(
      hf.error!.message,
      /gpt2-large[/\\]model\.safetensors: this checkpoint is not GPT-2 774M: vocab_size 97/,
    );
  });
});

Deno.test("load-openai-weights: wrong shapes, missing tensors, truncated data and empty folders are clear errors", async () => {
  await withTempDir(async (dir) => {
    const parity = await readParity();
    const hparams = hparamsFor(parity.config);
    const good = () => toOpenaiLayout(parity.weights, parity.config.n_layers);

    const wrongShape = good();
    wrongShape.set("model/h1/mlp/c_proj/w", {
      shape: [1, 128, 31],
      data: new Float32Array(128 * 31),
    });
    await writeOpenaiFolder(join(dir, "shape"), wrongShape, hparams);
    const shape = await runYaml(dir, localYaml(join(dir, "shape")));
    assert.match(
      shape.error!.message,
      /shape[/\\]model\.ckpt\.index: tensor "model\/h1\/mlp\/c_proj\/w" has shape \[1,128,31\], expected \[1,128,32\]/,
    );

    const missing = good();
    missing.delete("model/h0/ln_2/g");
    await writeOpenaiFolder(join(dir, "missing"), missing, hparams);
    const gone = await runYaml(dir, localYaml(join(dir, "missing")));
    assert.match(
      gone.error!.message,
      /missing[/\\]model\.ckpt\.index: missing tensor "model\/h0\/ln_2\/g" \(expected shape \[32\]\)/,
    );

    await writeOpenaiFolder(join(dir, "truncated"), good(), hparams);
    const dataPath = join(dir, "truncated", "model.ckpt.data-00000-of-00001");
    await Deno.truncate(dataPath, (await Deno.stat(dataPath)).size - 4);
    const cut = await runYaml(dir, localYaml(join(dir, "truncated")));
    assert.match(
      cut.error!.message,
      /model\.ckpt\.data-00000-of-00001: file is \d+ bytes but tensor ".*" ends at byte \d+ \(truncated data file\)/,
    );

    const wrongHparams = join(dir, "hparams");
    await writeOpenaiFolder(wrongHparams, good(), { ...hparams, n_layer: 3 });
    const hp = await runYaml(dir, localYaml(wrongHparams));
    assert.match(
      hp.error!.message,
      /hparams: "n_layer" is 3 but the .*model\.ckpt\.index has number of blocks 2/,
    );

    await Deno.mkdir(join(dir, "empty"));
    const empty = await runYaml(dir, localYaml(join(dir, "empty")));
    assert.match(
      empty.error!.message,
      /empty: no GPT-2 checkpoint found: expected a TensorFlow checkpoint/,
    );
  });
});

Deno.test("load-openai-weights: the size follows the pipeline's model; contradictions fail before running", async () => {
  await withTempDir(async (dir) => {
    const load = async (yaml: string, sets: string[] = []) => {
      const file = await writePipeline(dir, yaml);
      return await loadPipeline(file, registry(), { sets, baseDir: dir });
    };
    const withModel = (model: string, stage = "{}") =>
      `name: t\nmodel: ${model}\nstages:\n  load-openai-weights: ${stage}\n`;
    const paramsOf = async (yaml: string, sets: string[] = []) =>
      (await load(yaml, sets)).stages[0].params;

    const repo = new URL("../../configs/models/", import.meta.url).pathname;
    assert.deepEqual(await paramsOf(withModel(`${repo}gpt2-large.yaml`)), {
      source: "openai",
      size: "774M",
      drop_rate: 0,
    });
    assert.deepEqual(await paramsOf(`name: t\nstages:\n  load-openai-weights: {}\n`), {
      source: "openai",
      size: "124M",
      drop_rate: 0,
    });
    // The same size by name or by model gives the same parameters, hence the same cache key.
    assert.deepEqual(
      await paramsOf(withModel(`${repo}gpt2-medium.yaml`, "{source: hf}")),
      await paramsOf(`name: t\nstages:\n  load-openai-weights: {source: hf, size: 355M}\n`),
    );

    await assert.rejects(
      () => load(withModel(`${repo}gpt2-small.yaml`, "{size: 774M}")),
      (e: PipelineError) =>
        /size 774M contradicts the pipeline's model \(emb_dim 768, n_layers 12 = GPT-2 124M\).*gpt2-large\.yaml/
          .test(e.message),
    );
    await assert.rejects(
      () => load(withModel(`${repo}tiny.yaml`)),
      /the model \(emb_dim 32, n_layers 2\) is not a GPT-2 size; set `size:`/,
    );
    await assert.rejects(
      () => load(`name: t\nstages:\n  load-openai-weights: {source: local}\n`),
      /source: local needs `path:`/,
    );
    await assert.rejects(
      () => load(`name: t\nstages:\n  load-openai-weights: {size: 2B}\n`),
      /key "size"/,
    );
  });
});
