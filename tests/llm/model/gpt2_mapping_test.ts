import assert from "node:assert/strict";
import { join } from "node:path";
import {
  checkpointSourceFromMap,
  checkpointSourceFromTensorBundle,
  convertGpt2Weights,
  type Gpt2MappingOptions,
  loadGpt2Weights,
  planGpt2Weights,
} from "../../../llm/model/gpt2_mapping.ts";
import type { NamedTensor } from "../../../llm/weights/safetensors.ts";
import { openTensorBundle, readIndexOnly } from "../../../llm/weights/tensorbundle/reader.ts";
import { writeTensorBundle } from "../../../llm/weights/tensorbundle/writer.ts";
import { sharedFixture, withTempDir } from "../../fixtures.ts";
import {
  type Float32Tensor,
  hfFromOpenai,
  openaiGpt2Tensors,
} from "../weights/gpt2_test_weights.ts";

const DIMS = { layers: 2, emb: 8, vocab: 11, ctx: 5 };
const HPARAMS = { n_vocab: 11, n_ctx: 5, n_embd: 8, n_head: 2, n_layer: 2 };

/** Element [i, j] of a row-major 2-D view over the last two axes. */
const at = (t: Float32Tensor, i: number, j: number) => t.data[i * t.shape.at(-1)! + j];

async function load(
  tensors: Map<string, Float32Tensor>,
  options: Gpt2MappingOptions = { hparams: HPARAMS },
) {
  return await loadGpt2Weights(checkpointSourceFromMap(tensors, "test.ckpt"), options);
}

Deno.test("gpt2 mapping (OpenAI layout): split c_attn into q/k/v, transpose to [out, in], tie the head", async () => {
  const src = openaiGpt2Tensors(DIMS);
  const { layout, config, tensors } = await load(src);
  const d = DIMS.emb;
  assert.equal(layout, "openai");
  assert.deepEqual(config, {
    vocab_size: 11,
    context_length: 5,
    emb_dim: 8,
    n_heads: 2,
    n_layers: 2,
    drop_rate: 0,
    qkv_bias: true,
  });

  const get = (name: string): NamedTensor => {
    const t = tensors.get(name);
    assert.ok(t, `missing output ${name}`);
    return t;
  };
  assert.deepEqual(get("tok_emb.weight").data, src.get("model/wte")!.data);
  assert.equal(
    get("out_head.weight").data,
    get("tok_emb.weight").data,
    "tied head shares the array",
  );
  assert.deepEqual(get("pos_emb.weight").shape, [5, 8]);
  assert.deepEqual(get("pos_emb.weight").data, src.get("model/wpe")!.data);

  for (let b = 0; b < DIMS.layers; b++) {
    const blk = `trf_blocks.${b}`;
    const cAttnW = src.get(`model/h${b}/attn/c_attn/w`)!;
    const cAttnB = src.get(`model/h${b}/attn/c_attn/b`)!;
    for (const [k, part] of ["W_query", "W_key", "W_value"].entries()) {
      const w = get(`${blk}.att.${part}.weight`);
      assert.deepEqual(w.shape, [d, d]);
      for (let o = 0; o < d; o++) {
        for (let i = 0; i < d; i++) {
          assert.equal(at(w, o, i), at(cAttnW, i, k * d + o), `${part}[${o},${i}]`);
        }
      }
      assert.deepEqual(
        Array.from(get(`${blk}.att.${part}.bias`).data),
        Array.from(cAttnB.data.subarray(k * d, (k + 1) * d)),
      );
    }
    const transposed: Array<[string, string, number, number]> = [
      [`${blk}.att.out_proj.weight`, `model/h${b}/attn/c_proj/w`, d, d],
      [`${blk}.ff.layers.0.weight`, `model/h${b}/mlp/c_fc/w`, 4 * d, d],
      [`${blk}.ff.layers.2.weight`, `model/h${b}/mlp/c_proj/w`, d, 4 * d],
    ];
    for (const [out, from, rows, cols] of transposed) {
      const w = get(out);
      assert.deepEqual(w.shape, [rows, cols], out);
      for (let o = 0; o < rows; o++) {
        for (let i = 0; i < cols; i++) {
          assert.equal(at(w, o, i), at(src.get(from)!, i, o), `${out}[${o},${i}]`);
        }
      }
    }
    const copied: Array<[string, string]> = [
      [`${blk}.att.out_proj.bias`, `model/h${b}/attn/c_proj/b`],
      [`${blk}.ff.layers.0.bias`, `model/h${b}/mlp/c_fc/b`],
      [`${blk}.ff.layers.2.bias`, `model/h${b}/mlp/c_proj/b`],
      [`${blk}.norm1.scale`, `model/h${b}/ln_1/g`],
      [`${blk}.norm1.shift`, `model/h${b}/ln_1/b`],
      [`${blk}.norm2.scale`, `model/h${b}/ln_2/g`],
      [`${blk}.norm2.shift`, `model/h${b}/ln_2/b`],
    ];
    for (const [out, from] of copied) assert.deepEqual(get(out).data, src.get(from)!.data, out);
  }
  assert.deepEqual(get("final_norm.scale").data, src.get("model/ln_f/g")!.data);
  assert.deepEqual(get("final_norm.shift").data, src.get("model/ln_f/b")!.data);

  // Exactly the book's state_dict names, with the shapes the plan announced.
  const plan = planGpt2Weights(new Map([...src].map(([n, t]) => [n, t.shape])), {
    hparams: HPARAMS,
  });
  assert.equal(tensors.size, 5 + 16 * DIMS.layers);
  assert.deepEqual([...tensors.keys()], [...plan.outputs.keys()]);
  for (const [name, shape] of plan.outputs) assert.deepEqual(tensors.get(name)!.shape, shape, name);
});

Deno.test("gpt2 mapping (Hugging Face layout, with and without 'transformer.') gives the same tensors", async () => {
  const openai = openaiGpt2Tensors(DIMS);
  const expected = (await load(openai)).tensors;
  for (const prefix of ["", "transformer."]) {
    const hf = hfFromOpenai(openai, DIMS.ctx, prefix);
    hf.set("lm_head.weight", openai.get("model/wte")!);
    const hfConfig = { vocab_size: 11, n_positions: 5, n_embd: 8, n_head: 2, n_layer: 2 };
    const source = checkpointSourceFromMap(hf, "model.safetensors");
    const plan = planGpt2Weights(source.shapes, { hparams: hfConfig });
    assert.equal(plan.layout, "hf");
    assert.deepEqual(
      plan.skipped.sort(),
      [`${prefix}h.0.attn.bias`, `${prefix}h.1.attn.bias`, "lm_head.weight"].sort(),
    );
    const got = (await loadGpt2Weights(source, { hparams: hfConfig })).tensors;
    assert.deepEqual([...got.keys()], [...expected.keys()]);
    for (const [name, tensor] of expected) {
      assert.deepEqual(got.get(name), tensor, `${prefix}: ${name}`);
    }
  }
});

Deno.test("gpt2 mapping: missing tensors, wrong shapes and bad hparams name the tensor and both shapes", async () => {
  const cases: Array<[(m: Map<string, Float32Tensor>) => void, Gpt2MappingOptions, RegExp]> = [
    [
      (m) => m.delete("model/h1/ln_2/b"),
      { hparams: HPARAMS },
      /test\.ckpt: missing tensor "model\/h1\/ln_2\/b" \(expected shape \[8\]\)/,
    ],
    [
      (m) => m.set("model/h0/mlp/c_fc/w", { shape: [1, 8, 31], data: new Float32Array(248) }),
      { hparams: HPARAMS },
      /tensor "model\/h0\/mlp\/c_fc\/w" has shape \[1,8,31\], expected \[1,8,32\]/,
    ],
    [
      (m) => m.set("model/h1/attn/c_attn/w", { shape: [8, 24], data: new Float32Array(192) }),
      { hparams: HPARAMS },
      /tensor "model\/h1\/attn\/c_attn\/w" has shape \[8,24\], expected \[1,8,24\]/,
    ],
    [
      () => {},
      { hparams: { ...HPARAMS, n_embd: 16 } },
      /hparams: "n_embd" is 16 but the test\.ckpt has embedding size 8/,
    ],
    [() => {}, { hparams: { ...HPARAMS, n_layer: 3 } }, /"n_layer" is 3 but .* number of blocks 2/],
    [
      () => {},
      { hparams: { ...HPARAMS, n_head: 3 } },
      /n_head 3 does not divide the embedding size 8/,
    ],
    [() => {}, {}, /cannot tell n_heads for emb_dim 8 .* give hparams with "n_head"/],
    [
      (m) => m.set("model/extra", { shape: [1], data: new Float32Array(1) }),
      { hparams: HPARAMS },
      /do not belong .*model\/extra/,
    ],
    [(m) => m.delete("model/wte"), { hparams: HPARAMS }, /not a GPT-2 checkpoint/],
  ];
  for (const [damage, options, pattern] of cases) {
    const tensors = openaiGpt2Tensors(DIMS);
    damage(tensors);
    await assert.rejects(load(tensors, options), pattern);
  }
  // Extra tensors are accepted on request, and reported as skipped.
  const extra = openaiGpt2Tensors(DIMS);
  extra.set("model/extra", { shape: [1], data: new Float32Array(1) });
  const shapes = new Map([...extra].map(([n, t]) => [n, t.shape]));
  assert.deepEqual(planGpt2Weights(shapes, { hparams: HPARAMS, allowUnused: true }).skipped, [
    "model/extra",
  ]);
  // A source that returns fewer values than its shape promises is caught while streaming.
  const lying = checkpointSourceFromMap(openaiGpt2Tensors(DIMS));
  const read = lying.read;
  lying.read = (name) => name === "model/wpe" ? new Float32Array(3) : read(name);
  await assert.rejects(
    loadGpt2Weights(lying, { hparams: HPARAMS }),
    /"model\/wpe" has 3 values, expected 40/,
  );
});

Deno.test("gpt2 mapping: the real 124M index maps completely and infers the 124M config", async () => {
  const index = await readIndexOnly(
    sharedFixture("tf-checkpoint", "gpt2_124M_index_only", "model.ckpt.index"),
  );
  const shapes = new Map([...index.entries].map(([name, entry]) => [name, entry.shape]));
  // The values of OpenAI's 124M hparams.json.
  const hparams = { n_vocab: 50257, n_ctx: 1024, n_embd: 768, n_head: 12, n_layer: 12 };
  for (const options of [{}, { hparams }]) {
    const plan = planGpt2Weights(shapes, options, index.indexPath);
    assert.deepEqual(plan.config, {
      vocab_size: 50257,
      context_length: 1024,
      emb_dim: 768,
      n_heads: 12,
      n_layers: 12,
      drop_rate: 0,
      qkv_bias: true,
    });
    assert.deepEqual(plan.skipped, []);
    assert.equal(plan.outputs.size, 5 + 16 * 12);
    assert.deepEqual(plan.outputs.get("trf_blocks.11.att.W_value.weight"), [768, 768]);
    assert.deepEqual(plan.outputs.get("trf_blocks.0.ff.layers.0.weight"), [3072, 768]);
    assert.deepEqual(plan.outputs.get("out_head.weight"), [50257, 768]);
    // Parameters with the head tied: the book's 124,412,160 (no qkv bias) + 12 × 3 × 768 biases.
    let params = 0;
    for (const [name, shape] of plan.outputs) {
      if (name !== "out_head.weight") params += shape.reduce((a, b) => a * b, 1);
    }
    assert.equal(params, 124_412_160 + 12 * 3 * 768);
  }
});

Deno.test("gpt2 mapping: streams from a TensorBundle written in OpenAI's layout", async () => {
  const dims = { layers: 3, emb: 16, vocab: 20, ctx: 7 };
  const openai = openaiGpt2Tensors(dims);
  await withTempDir(async (dir) => {
    const prefix = join(dir, "model.ckpt");
    await writeTensorBundle(prefix, openai);
    const bundle = await openTensorBundle(prefix);
    const fromDisk = new Map<string, NamedTensor>();
    const options = { hparams: { n_head: 4 } };
    const source = checkpointSourceFromTensorBundle(bundle);
    for await (const [name, tensor] of convertGpt2Weights(source, options)) {
      fromDisk.set(name, tensor);
    }
    const inMemory = (await loadGpt2Weights(checkpointSourceFromMap(openai), options)).tensors;
    assert.deepEqual(fromDisk, inMemory);
    assert.equal(fromDisk.get("out_head.weight")!.data, fromDisk.get("tok_emb.weight")!.data);
  });
});
