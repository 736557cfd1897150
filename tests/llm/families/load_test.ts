/**
 * loadHfModel on HF folders written here from a random model of each family: the weights come
 * back exactly (F32, BF16, F16; one file or shards; tied and untied heads), the logits are the
 * model's, and every kind of bad folder is refused with an error naming the tensor, the file and
 * the shapes. The folders are written through the family's own rule table, so these tests check
 * the loader's plumbing; that the tables match Hugging Face's layout is what parity_test.ts (on
 * folders transformers wrote) and families_test.ts check.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { join } from "node:path";
import { withTempDir } from "../../fixtures.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { getStateDict } from "../../../llm/model/weights_io.ts";
import { isHfModelFolder, loadHfModel } from "../../../llm/families/load.ts";
import { detectFamily, type ModelFamily } from "../../../llm/families/mod.ts";
import type { NamedTensor } from "../../../llm/weights/safetensors.ts";
import { useCpuBackend } from "../model/tf_setup.ts";
import { checkpointSourceFromMap, loadGpt2Weights } from "../../../llm/model/gpt2_mapping.ts";
import { hfFromOpenai, openaiGpt2Tensors } from "../weights/gpt2_test_weights.ts";
import type { Quantization } from "../../../llm/model/precision.ts";

await useCpuBackend();

type Dtype = "F32" | "BF16" | "F16";

/** Rounds to bf16 (round to nearest even), so BF16 files hold exactly these values. */
function toBf16Values(data: Float32Array): Float32Array {
  const out = Float32Array.from(data);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) {
    bits[i] = ((bits[i] + 0x7fff + ((bits[i] >>> 16) & 1)) >>> 16) << 16;
  }
  return out;
}

/** IEEE half bits of a float that is exactly representable (the tests use small dyadic values). */
function toHalfBits(x: number): number {
  if (x === 0) return Object.is(x, -0) ? 0x8000 : 0;
  const sign = x < 0 ? 0x8000 : 0;
  const a = Math.abs(x);
  const e = Math.floor(Math.log2(a));
  if (e < -14) return sign | Math.round(a / 2 ** -24); // subnormal
  return sign | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
}

/** Writes a safetensors file in `dtype` by hand (our writer only writes F32). */
async function writeTensors(
  path: string,
  tensors: [string, NamedTensor][],
  dtype: Dtype,
): Promise<void> {
  const bytesPer = dtype === "F32" ? 4 : 2;
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const [name, t] of tensors) {
    const end = offset + t.data.length * bytesPer;
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, end] };
    offset = end;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let position = 8 + json.length;
  for (const [, t] of tensors) {
    if (dtype === "F32") {
      out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), position);
    } else {
      const halves = dtype === "BF16"
        ? Uint16Array.from(new Uint32Array(Float32Array.from(t.data).buffer), (w) => w >>> 16)
        : Uint16Array.from(t.data, toHalfBits);
      out.set(new Uint8Array(halves.buffer), position);
    }
    position += t.data.length * bytesPer;
  }
  await Deno.writeFile(path, out);
}

/** Our state dict in HF names, by the family's rule table (fused tensors stacked by rows). */
function toHfNames(
  family: ModelFamily,
  state: Map<string, NamedTensor>,
  nLayers: number,
  tiedHead: boolean,
): [string, NamedTensor][] {
  const out: [string, NamedTensor][] = [];
  for (const rule of family.weightRules) {
    const layers = rule.hf.includes("{i}") ? [...Array(nLayers).keys()] : [0];
    for (const i of layers) {
      const ours = (typeof rule.ours === "string" ? [rule.ours] : rule.ours).map((o) =>
        o.replaceAll("{i}", String(i))
      );
      const parts = ours.map((o) => state.get(o));
      if (parts.some((p) => p === undefined)) continue; // e.g. biases this config has not
      if (tiedHead && ours[0] === "out_head.weight") continue;
      const rows = parts.reduce((n, p) => n + p!.shape[0], 0);
      const data = new Float32Array(parts.reduce((n, p) => n + p!.data.length, 0));
      let at = 0;
      for (const p of parts) data.set(p!.data, at), at += p!.data.length;
      out.push([rule.hf.replaceAll("{i}", String(i)), {
        shape: [rows, ...parts[0]!.shape.slice(1)],
        data,
      }]);
    }
  }
  return out;
}

// Tiny configs of each family in HF's terms (what config.json would say).
const HF_CONFIGS: Record<string, Record<string, unknown>> = {
  llama: {
    model_type: "llama",
    vocab_size: 48,
    hidden_size: 16,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    num_hidden_layers: 2,
    intermediate_size: 24,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-5,
    rope_theta: 500000,
    rope_scaling: {
      rope_type: "llama3",
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 16,
    },
    tie_word_embeddings: true,
  },
  qwen3: {
    model_type: "qwen3",
    vocab_size: 48,
    hidden_size: 16,
    head_dim: 8,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    num_hidden_layers: 2,
    intermediate_size: 24,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    tie_word_embeddings: false,
  },
  gemma3: {
    model_type: "gemma3_text",
    vocab_size: 48,
    hidden_size: 16,
    head_dim: 8,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    num_hidden_layers: 3,
    intermediate_size: 24,
    max_position_embeddings: 64,
    query_pre_attn_scalar: 8,
    sliding_window: 4,
    sliding_window_pattern: 3,
    rope_theta: 1000000,
    rope_local_base_freq: 10000,
    torch_dtype: "bfloat16",
  },
  phi3: {
    model_type: "phi3",
    vocab_size: 48,
    hidden_size: 16,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    num_hidden_layers: 2,
    intermediate_size: 24,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: false,
  },
  phi2: {
    model_type: "phi",
    vocab_size: 48,
    hidden_size: 16,
    num_attention_heads: 2,
    num_hidden_layers: 2,
    intermediate_size: 32,
    max_position_embeddings: 64,
    partial_rotary_factor: 0.5,
    layer_norm_eps: 1e-5,
    hidden_act: "gelu_new",
    tie_word_embeddings: false,
  },
};

/** A random model of `name`'s family and its HF-named tensors (values rounded to bf16). */
async function randomHfModel(name: string, seed = 7) {
  const hf = HF_CONFIGS[name];
  const family = detectFamily(hf, name);
  const { config, tiedHead } = family.toConfig(hf, name);
  const model = new GPTModel(config, { seed, tiedHead });
  // Round every weight to bf16 so the BF16 twin holds the same values; norms get random values
  // (not all ones / zeros) so a mix-up between them shows.
  for (const tensor of model.stateTensors()) {
    for (const part of tensor.parts) {
      const values = (await part.data()) as Float32Array;
      const noisy = values.map((v, i) => v + Math.sin(i * 1.7 + tensor.name.length) * 0.05);
      part.assign(tf.tensor(toBf16Values(noisy), part.shape));
    }
  }
  const state = await getStateDict(model);
  return {
    hf,
    family,
    config,
    tiedHead,
    model,
    state,
    tensors: toHfNames(family, state, config.n_layers, tiedHead),
  };
}

async function writeFolder(
  dir: string,
  hf: Record<string, unknown>,
  tensors: [string, NamedTensor][],
  options: { dtype?: Dtype; shards?: number } = {},
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(hf, null, 2));
  const { dtype = "F32", shards = 1 } = options;
  if (shards === 1) {
    await writeTensors(join(dir, "model.safetensors"), tensors, dtype);
    return;
  }
  const weightMap: Record<string, string> = {};
  const per = Math.ceil(tensors.length / shards);
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, "0")}-of-${
      String(shards).padStart(5, "0")
    }.safetensors`;
    const part = tensors.slice(s * per, (s + 1) * per);
    for (const [name] of part) weightMap[name] = file;
    await writeTensors(join(dir, file), part, dtype);
  }
  await Deno.writeTextFile(
    join(dir, "model.safetensors.index.json"),
    JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }),
  );
}

async function logitsOf(model: GPTModel, ids: number[]): Promise<Float32Array> {
  const input = tf.tensor2d([ids], undefined, "int32");
  const logits = model.forward(input);
  const values = (await logits.data()) as Float32Array;
  tf.dispose([input, logits]);
  return values;
}

for (const name of Object.keys(HF_CONFIGS)) {
  Deno.test(`${name}: an HF folder (F32, BF16, sharded) loads to the model's own weights`, async () => {
    const source = await randomHfModel(name);
    const ids = [1, 5, 9, 2, 40, 33, 7, 7, 12, 0, 47, 3];
    const want = await logitsOf(source.model, ids);
    await withTempDir(async (root) => {
      const variants: [string, { dtype?: Dtype; shards?: number }][] = [
        ["f32", {}],
        ["bf16", { dtype: "BF16" }],
        ["sharded", { shards: 3 }],
      ];
      for (const [label, options] of variants) {
        const dir = join(root, label);
        await writeFolder(dir, source.hf, source.tensors, options);
        assert.ok(isHfModelFolder(dir));
        const loaded = await loadHfModel(dir);
        try {
          assert.equal(loaded.family.name, source.family.name);
          assert.deepStrictEqual(loaded.config, source.config);
          assert.equal(loaded.model.tiedHead, source.tiedHead);
          const got = await getStateDict(loaded.model);
          assert.deepStrictEqual([...got.keys()].sort(), [...source.state.keys()].sort());
          for (const [key, tensor] of source.state) {
            assert.deepStrictEqual(got.get(key)!.data, tensor.data, `${label}: ${key}`);
          }
          assert.deepStrictEqual(await logitsOf(loaded.model, ids), want);
        } finally {
          loaded.model.dispose();
        }
      }
    });
    source.model.dispose();
  });
}

Deno.test("gpt2: HF's GPT2LMHeadModel folder loads through the GPT-2 mapping", async () => {
  const dims = { layers: 2, emb: 8, vocab: 11, ctx: 5 };
  const hf = hfFromOpenai(openaiGpt2Tensors(dims), dims.ctx, "transformer.");
  // GPT2LMHeadModel's state dict also holds the tied head.
  hf.set("lm_head.weight", hf.get("transformer.wte.weight")!);
  const config = {
    model_type: "gpt2",
    activation_function: "gelu_new",
    vocab_size: 11,
    n_positions: 5,
    n_ctx: 5,
    n_embd: 8,
    n_head: 2,
    n_layer: 2,
  };
  const want = await loadGpt2Weights(checkpointSourceFromMap(hf), { hparams: config });
  await withTempDir(async (dir) => {
    await writeFolder(dir, config, [...hf]);
    const loaded = await loadHfModel(dir);
    try {
      assert.equal(loaded.family.name, "gpt2");
      assert.deepStrictEqual(loaded.config, { ...want.config, family: "gpt2" });
      assert.equal(loaded.model.tiedHead, true);
      const got = await getStateDict(loaded.model);
      for (const [key, tensor] of want.tensors) {
        assert.deepStrictEqual(got.get(key)!.data, tensor.data, key);
      }
    } finally {
      loaded.model.dispose();
    }
  });
});

Deno.test("F16 weights widen to the same float32 values", async () => {
  // F16 holds 10 mantissa bits: use values that are exact in it.
  const source = await randomHfModel("llama");
  const half = source.tensors.map(([n, t]): [string, NamedTensor] => [
    n,
    { shape: t.shape, data: t.data.map((v) => Math.round(v * 256) / 256) },
  ]);
  await withTempDir(async (root) => {
    await writeFolder(join(root, "a"), source.hf, half, { dtype: "F16" });
    await writeFolder(join(root, "b"), source.hf, half, { dtype: "F32" });
    const a = await loadHfModel(join(root, "a"));
    const b = await loadHfModel(join(root, "b"));
    const [sa, sb] = [await getStateDict(a.model), await getStateDict(b.model)];
    for (const [key, tensor] of sb) assert.deepStrictEqual(sa.get(key)!.data, tensor.data, key);
    a.model.dispose();
    b.model.dispose();
  });
  source.model.dispose();
});

/** Runs loadHfModel on a folder made by `edit` and returns the error message. */
async function loadError(
  edit: (
    dir: string,
    tensors: [string, NamedTensor][],
    hf: Record<string, unknown>,
  ) => Promise<void> | void,
  options: {
    shards?: number;
    availableMemory?: number;
    family?: string;
    quantize?: Quantization;
  } = {},
): Promise<string> {
  const source = await randomHfModel(options.family ?? "phi3");
  source.model.dispose();
  return await withTempDir(async (root) => {
    const dir = join(root, "m");
    const tensors = source.tensors.map(([n, t]): [string, NamedTensor] => [n, t]);
    await writeFolder(dir, source.hf, tensors, { shards: options.shards });
    await edit(dir, tensors, { ...source.hf });
    const error = await loadHfModel(dir, {
      availableMemory: options.availableMemory,
      quantize: options.quantize,
    }).then(
      (loaded) => {
        loaded.model.dispose();
        throw new Error("expected the load to fail");
      },
      (e: Error) => e,
    );
    return error.message.replaceAll(dir, "<dir>");
  });
}

function assertIncludes(message: string, ...parts: string[]): void {
  for (const part of parts) assert.ok(message.includes(part), `"${part}" not in: ${message}`);
}

Deno.test("bad folders are refused, naming the tensor, the file and the shapes", async (t) => {
  await t.step("unsupported model_type", async () => {
    const message = await loadError(async (dir, _, hf) => {
      await Deno.writeTextFile(
        join(dir, "config.json"),
        JSON.stringify({ ...hf, model_type: "mamba" }),
      );
    });
    assertIncludes(
      message,
      "<dir>/config.json",
      '"mamba"',
      "llama",
      "qwen3",
      "gemma3_text",
      "phi3",
      "phi",
    );
  });
  await t.step("missing tensor", async () => {
    const message = await loadError(async (dir, tensors) => {
      const kept = tensors.filter(([n]) => n !== "model.layers.1.mlp.down_proj.weight");
      await writeTensors(join(dir, "model.safetensors"), kept, "F32");
    });
    assertIncludes(
      message,
      '<dir>/model.safetensors: missing tensor "model.layers.1.mlp.down_proj.weight" (expected shape [16,24]',
    );
  });
  await t.step("wrong shape", async () => {
    const message = await loadError(async (dir, tensors) => {
      const edited = tensors.map(([n, t]): [string, NamedTensor] =>
        n === "model.layers.0.self_attn.qkv_proj.weight"
          ? [n, { shape: [24, 16], data: t.data.subarray(0, 24 * 16) }]
          : [n, t]
      );
      await writeTensors(join(dir, "model.safetensors"), edited, "F32");
    });
    assertIncludes(
      message,
      '<dir>/model.safetensors: tensor "model.layers.0.self_attn.qkv_proj.weight" has shape [24,16] but config.json implies [32,16]',
    );
  });
  await t.step("unknown tensor", async () => {
    const message = await loadError(async (dir, tensors) => {
      const extra: [string, NamedTensor] = ["model.layers.2.mlp.down_proj.weight", {
        shape: [2],
        data: new Float32Array(2),
      }];
      await writeTensors(join(dir, "model.safetensors"), [...tensors, extra], "F32");
    });
    assertIncludes(
      message,
      '<dir>/model.safetensors: unknown tensor "model.layers.2.mlp.down_proj.weight" [2]',
    );
  });
  await t.step("a tied model's redundant lm_head.weight of the wrong shape", async () => {
    const message = await loadError(async (dir, tensors) => {
      const head: [string, NamedTensor] = ["lm_head.weight", {
        shape: [16, 48],
        data: new Float32Array(16 * 48),
      }];
      await writeTensors(join(dir, "model.safetensors"), [...tensors, head], "F32");
    }, { family: "llama" });
    assertIncludes(
      message,
      '<dir>/model.safetensors: tensor "lm_head.weight" has shape [16,48] but the head is tied to the embedding [48,16]',
    );
  });
  await t.step("missing shard", async () => {
    const message = await loadError(async (dir) => {
      await Deno.remove(join(dir, "model-00002-of-00003.safetensors"));
    }, { shards: 3 });
    assertIncludes(
      message,
      "<dir>/model.safetensors.index.json",
      'shard "model-00002-of-00003.safetensors" is missing',
    );
  });
  await t.step("a shard without a tensor the index places there", async () => {
    const message = await loadError(async (dir) => {
      const indexPath = join(dir, "model.safetensors.index.json");
      const index = JSON.parse(await Deno.readTextFile(indexPath));
      index.weight_map["lm_head.weight"] = "model-00001-of-00003.safetensors";
      await Deno.writeTextFile(indexPath, JSON.stringify(index));
    }, { shards: 3 });
    assertIncludes(message, '<dir>/model-00001-of-00003.safetensors: no tensor "lm_head.weight"');
  });
  await t.step("truncated file", async () => {
    const message = await loadError(async (dir) => {
      const path = join(dir, "model.safetensors");
      const bytes = await Deno.readFile(path);
      await Deno.writeFile(path, bytes.subarray(0, bytes.length - 100));
    });
    assertIncludes(message, "<dir>/model.safetensors", "truncated");
  });
  await t.step("no weights file", async () => {
    const message = await loadError(async (dir) => {
      await Deno.remove(join(dir, "model.safetensors"));
    });
    assertIncludes(message, "<dir>: no model.safetensors or model.safetensors.index.json");
  });
  await t.step("not enough memory: both sizes", async () => {
    const message = await loadError(() => {}, { availableMemory: 10_000 });
    assertIncludes(
      message,
      "not enough memory for <dir> at fp32",
      "needs about",
      "10.0 KB available",
    );
  });
  await t.step("not enough memory even quantized: the quantized size", async () => {
    const message = await loadError(() => {}, { availableMemory: 10_000, quantize: "int8" });
    assertIncludes(message, "not enough memory for <dir> at int8", "10.0 KB available");
  });
});

Deno.test("isHfModelFolder: config.json with model_type only", async () => {
  await withTempDir(async (dir) => {
    assert.equal(isHfModelFolder(dir), false);
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify({ vocab_size: 3 }));
    assert.equal(isHfModelFolder(dir), false); // our own config.json
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify({ model_type: "llama" }));
    assert.equal(isHfModelFolder(dir), true);
  });
});

Deno.test("maxContext caps a RoPE model's context", async () => {
  const source = await randomHfModel("llama");
  await withTempDir(async (dir) => {
    await writeFolder(dir, source.hf, source.tensors);
    const loaded = await loadHfModel(dir, { maxContext: 16 });
    assert.equal(loaded.config.context_length, 16);
    loaded.model.dispose();
  });
  source.model.dispose();
});
