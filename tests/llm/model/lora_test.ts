import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { join } from "node:path";
import { withTempDir } from "../../fixtures.ts";
import { type GPTConfig, loadModelConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import {
  ADAPTER_CONFIG_FILE,
  applyLora,
  countLoraParameters,
  loadAdapter,
  LORA_PRESETS,
  type LoraAdapters,
  loraConfig,
  LoraLinear,
  mergeLora,
  saveAdapter,
} from "../../../llm/model/lora.ts";
import { loadModel, saveModel } from "../../../llm/model/weights_io.ts";
import { SeededRandom } from "../../../llm/random.ts";
import { AdamW } from "../../../llm/train/adamw.ts";
import { computeGradients } from "../../../llm/train/trainer.ts";
import { useCpuBackend } from "./tf_setup.ts";

await useCpuBackend();

const SMALL: GPTConfig = {
  vocab_size: 61,
  context_length: 12,
  emb_dim: 16,
  n_heads: 4,
  n_layers: 2,
  drop_rate: 0,
  qkv_bias: true,
};

const IDS = [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]];
const TARGETS = [[2, 3, 4, 5, 6, 50 % 61], [8, 9, 10, -100, -100, -100]];

function logitsOf(model: GPTModel): Float32Array {
  return tf.tidy(() =>
    model.forward(tf.tensor2d(IDS, undefined, "int32")).dataSync() as Float32Array
  );
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

/** Gives every B random values, as if trained, so the adapters change the output. */
function randomizeB(adapters: LoraAdapters, seed = 7): void {
  const rng = new SeededRandom(seed);
  for (const layer of adapters.layers.values()) {
    const values = Float32Array.from({ length: layer.B.size }, () => (rng.next() - 0.5) * 0.2);
    layer.B.assign(tf.tensor(values, layer.B.shape));
  }
}

Deno.test("LoRA trainable parameters: 3,470,608 for 124M and 7,898,384 for 355M (rank 16, every linear layer)", async () => {
  const small = await loadModelConfig("gpt2-small");
  const medium = await loadModelConfig("gpt2-medium");
  assert.equal(countLoraParameters(small, loraConfig()), 3_470_608);
  assert.equal(countLoraParameters(medium, loraConfig()), 7_898_384);
  // On a randomly initialised 124M model (tied head, as OpenAI's weights load) the count is
  // what the adapters actually hold; every other parameter is frozen.
  const model = new GPTModel(small, { tiedHead: true });
  try {
    const adapters = applyLora(model);
    assert.equal(model.numParameters({ trainableOnly: true }), 3_470_608);
    assert.equal(adapters.numParameters(), 3_470_608);
    assert.deepEqual(
      model.trainableParameters().map(([name]) => name),
      adapters.parameters().map(([name]) => name),
    );
  } finally {
    model.dispose();
  }
  // 355M: built without its random draws (20 s on a busy machine); the shapes are the same.
  const large = new GPTModel(medium, { init: "zeros" });
  try {
    applyLora(large);
    assert.equal(large.numParameters({ trainableOnly: true }), 7_898_384);
  } finally {
    large.dispose();
  }
});

Deno.test("LoRA: book names, A kaiming-uniform within ±1/√rank, B zero, so a fresh adapter changes nothing", () => {
  const model = new GPTModel(SMALL);
  const before = logitsOf(model);
  const adapters = applyLora(model, { rank: 4, alpha: 8 });
  const names = model.namedParameters().map(([name]) => name);
  assert.ok(names.includes("trf_blocks.0.att.W_query.weight"));
  assert.ok(names.includes("trf_blocks.0.att.W_query.lora.A"));
  assert.ok(names.includes("trf_blocks.1.ff.layers.2.lora.B"));
  assert.ok(names.includes("out_head.lora.A"));
  assert.equal(adapters.layers.size, 2 * 6 + 1);
  const layer = adapters.layers.get("trf_blocks.0.ff.layers.0")!;
  assert.deepEqual(layer.A.shape, [16, 4]);
  assert.deepEqual(layer.B.shape, [4, 64]);
  const a = layer.A.dataSync();
  const bound = 1 / Math.sqrt(4);
  assert.ok(a.every((v) => Math.abs(v) <= bound));
  assert.ok(Math.max(...a.map(Math.abs)) > 0.8 * bound);
  assert.ok(layer.B.dataSync().every((v) => v === 0));
  assert.equal(maxAbsDiff(logitsOf(model), before), 0);
  model.dispose();
});

Deno.test("LoRA options: target switches, and the older scaling (alpha alone) multiplies the update by rank", () => {
  const model = new GPTModel(SMALL);
  const adapters = applyLora(model, { targets: ["value", "query"], rank: 2, alpha: 16 });
  assert.deepEqual(adapters.config.targets, ["query", "value"]);
  assert.deepEqual([...adapters.layers.keys()], [
    "trf_blocks.0.att.W_query",
    "trf_blocks.0.att.W_value",
    "trf_blocks.1.att.W_query",
    "trf_blocks.1.att.W_value",
  ]);
  assert.equal(adapters.layers.get("trf_blocks.0.att.W_query")!.scale, 8);
  model.dispose();
  const old = new GPTModel(SMALL);
  const oldAdapters = applyLora(old, { rank: 2, alpha: 16, scaling: "alpha" });
  assert.equal(oldAdapters.layers.get("out_head")!.scale, 16);
  old.dispose();
  assert.throws(() => loraConfig({ targets: ["queries" as never] }), /unknown target "queries"/);
  assert.throws(() => loraConfig({ rank: 0 }), /rank must be an integer ≥ 1/);
});

Deno.test("LoRA: gradients only for A and B, no weight-gradient products for frozen weights, no optimizer state", async () => {
  // Products whose result has a weight's shape are weight gradients (no activation has that
  // shape here: 12 rows).
  const weightShapes = new Set(["16,16", "64,16", "16,64", "61,16", "16,61"]);
  const countWeightGradients = async (model: GPTModel) => {
    const info = await tf.profile(() => {
      const { loss, grads } = computeGradients(model, { inputs: IDS, targets: TARGETS });
      loss.dispose();
      const names = [...grads.keys()];
      for (const g of grads.values()) g.dispose();
      return names as unknown as tf.Tensor;
    });
    const products = info.kernels.filter((k) =>
      (k.name === "BatchMatMul" || k.name === "_FusedMatMul") &&
      k.outputShapes.some((s) => weightShapes.has(s!.slice(-2).join()))
    );
    return { products: products.length, names: info.result as unknown as string[] };
  };
  const full = new GPTModel(SMALL);
  const fullRun = await countWeightGradients(full);
  // q, k, v, out_proj, two feed-forward layers per block, and the head.
  assert.equal(fullRun.products, 2 * 6 + 1);
  full.dispose();

  const model = new GPTModel(SMALL);
  // Rank 3, so that the adapters' own gradients ([in, 3], [3, out]) have other shapes.
  const adapters = applyLora(model, { rank: 3 });
  randomizeB(adapters);
  const loraRun = await countWeightGradients(model);
  assert.equal(loraRun.products, 0);
  assert.deepEqual(loraRun.names, adapters.parameters().map(([name]) => name));
  const optimizer = new AdamW(model.trainableParameters(), { lr: 1e-3 });
  assert.deepEqual(optimizer.parameters.map(([n]) => n), adapters.parameters().map(([n]) => n));
  model.dispose();

  // A head stored as vocabulary row shards (as on WebGPU for big vocabularies): none either.
  const sharded = new GPTModel(SMALL, { maxTensorBytes: 3000 });
  assert.equal(sharded.vocabShards.length, 2);
  for (const rows of sharded.vocabShards) weightShapes.add(`${rows},16`);
  const shardedFull = await countWeightGradients(sharded);
  assert.equal(shardedFull.products, 2 * 6 + 2);
  randomizeB(applyLora(sharded, { rank: 3 }));
  assert.equal((await countWeightGradients(sharded)).products, 0);
  sharded.dispose();
});

Deno.test("LoRA merge: the merged model (book names, plain layers) gives the same logits as base + adapter", async () => {
  const variants = [{ tiedHead: false }, { tiedHead: true }, { maxTensorBytes: 3000 }];
  for (const options of variants) {
    const model = new GPTModel(SMALL, options);
    const adapters = applyLora(model, { rank: 4, alpha: 8 });
    randomizeB(adapters);
    const adapted = logitsOf(model);
    const merged = await mergeLora(model, adapters);
    assert.equal(merged.tiedHead, false);
    assert.ok(merged.namedParameters().every(([name]) => !name.includes("lora")));
    assert.ok(
      ![merged.out_head, ...merged.trf_blocks.map((b) => b.att.W_query)].some((l) =>
        l instanceof LoraLinear
      ),
    );
    const diff = maxAbsDiff(logitsOf(merged), adapted);
    assert.ok(diff <= 1e-5, `merged vs adapted logits differ by ${diff}`);
    // The adapter really changed the model.
    const plain = new GPTModel(SMALL, options);
    assert.ok(maxAbsDiff(logitsOf(plain), adapted) > 1e-3);
    plain.dispose();
    assert.equal(merged.vocabShards.length, model.vocabShards.length);
    await withTempDir(async (dir) => {
      await saveModel(dir, merged);
      const loaded = await loadModel(dir);
      assert.equal(maxAbsDiff(logitsOf(loaded), logitsOf(merged)), 0);
      loaded.dispose();
    });
    merged.dispose();
    model.dispose();
  }
});

Deno.test("LoRA adapter: adapter.safetensors + adapter.json round trip onto a fresh base", async () => {
  await withTempDir(async (dir) => {
    const base = new GPTModel(SMALL, { seed: 5 });
    await saveModel(join(dir, "base"), base);
    const adapters = applyLora(base, { rank: 2, alpha: 4, targets: ["query", "value", "head"] });
    randomizeB(adapters);
    const adapted = logitsOf(base);
    await saveAdapter(join(dir, "adapter"), base, adapters, "test-base");
    const manifest = JSON.parse(await Deno.readTextFile(join(dir, "adapter", ADAPTER_CONFIG_FILE)));
    assert.equal(manifest.rank, 2);
    assert.equal(manifest.baseModel, "test-base");
    const fresh = await loadModel(join(dir, "base"));
    const loaded = await loadAdapter(join(dir, "adapter"), fresh);
    assert.deepEqual(loaded.config, adapters.config);
    assert.equal(maxAbsDiff(logitsOf(fresh), adapted), 0);
    // A model of another shape is refused with the reason.
    const other = new GPTModel({ ...SMALL, emb_dim: 8, n_heads: 2 });
    await assert.rejects(loadAdapter(join(dir, "adapter"), other), /emb_dim 16, this model has 8/);
    other.dispose();
    fresh.dispose();
    base.dispose();
  });
});

Deno.test("LoRA dropout acts only in training mode", () => {
  const model = new GPTModel(SMALL);
  const adapters = applyLora(model, { dropout: 0.5 });
  randomizeB(adapters);
  const evalA = logitsOf(model);
  assert.equal(maxAbsDiff(logitsOf(model), evalA), 0);
  adapters.train(true);
  assert.ok(maxAbsDiff(logitsOf(model), evalA) > 1e-4);
  adapters.train(false);
  assert.equal(maxAbsDiff(logitsOf(model), evalA), 0);
  model.dispose();
});

Deno.test("LoRA targets by role on a GQA model; presets; a rank above a layer's width is refused", () => {
  // Llama-style: 4 query heads of 4 over 2 key/value heads, so k and v have 8 outputs.
  const gqa: GPTConfig = {
    ...SMALL,
    family: "llama",
    head_dim: 4,
    n_kv_groups: 2,
    hidden_dim: 24,
    mlp: "swiglu",
    norm: "rmsnorm",
    pos_emb: "rope",
    qkv_bias: false,
  };
  const model = new GPTModel(gqa);
  const adapters = applyLora(model, { rank: 2, targets: ["v", "gate"] });
  assert.deepEqual(
    [...adapters.layers.keys()],
    [
      "trf_blocks.0.att.W_value",
      "trf_blocks.0.ff.fc1",
      "trf_blocks.1.att.W_value",
      "trf_blocks.1.ff.fc1",
    ],
  );
  assert.deepEqual(adapters.layers.get("trf_blocks.0.att.W_value")!.B.shape, [2, 8]);
  model.dispose();
  // The litgpt preset (query + value) and the book's (every layer and the head).
  const litgpt = new GPTModel(gqa);
  const roles = (
    m: GPTModel,
  ) => [
    ...new Set(m.linearLayers().filter((l) => l.layer instanceof LoraLinear).map((l) => l.role)),
  ];
  applyLora(litgpt, { ...LORA_PRESETS.litgpt, rank: 2 });
  assert.deepEqual(roles(litgpt), ["q", "v"]);
  litgpt.dispose();
  const book = new GPTModel(gqa);
  applyLora(book, { ...LORA_PRESETS.book, rank: 2 });
  assert.deepEqual(roles(book), ["q", "k", "v", "o", "gate", "up", "down", "head"]);
  book.dispose();
  // k and v are 8 wide: rank 9 names the first such layer, and nothing is wrapped.
  const tooWide = new GPTModel(gqa);
  assert.throws(
    () => applyLora(tooWide, { rank: 9, targets: ["q", "k"] }),
    /rank 9 is larger than layer "trf_blocks\.0\.att\.W_key" allows \(\[8, 16\]: at most rank 8\)/,
  );
  assert.equal(tooWide.linearLayers().filter((l) => l.layer instanceof LoraLinear).length, 0);
  assert.ok(tooWide.trainableParameters().length > 0, "the model is not left frozen");
  tooWide.dispose();
});
