/** Small random GPT-2 checkpoints in OpenAI's and Hugging Face's names and layouts, for tests. */

export interface Float32Tensor {
  shape: number[];
  data: Float32Array;
}

export interface Gpt2Dims {
  layers: number;
  emb: number;
  vocab: number;
  ctx: number;
}

/** Deterministic values in [-0.5, 0.5) (an LCG; no randomness needed beyond distinctness). */
export function randomTensor(shape: number[], seed: number): Float32Tensor {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  let state = seed >>> 0;
  for (let i = 0; i < data.length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    data[i] = state / 2 ** 32 - 0.5;
  }
  return { shape, data };
}

/** OpenAI TensorFlow names: `model/h<i>/attn/c_attn/w` [1, in, out], ... (insertion order as TF lists them). */
export function openaiGpt2Tensors(
  { layers, emb, vocab, ctx }: Gpt2Dims,
): Map<string, Float32Tensor> {
  let seed = 1;
  const t = (shape: number[]) => randomTensor(shape, seed++);
  const tensors = new Map<string, Float32Tensor>();
  tensors.set("model/wte", t([vocab, emb]));
  tensors.set("model/wpe", t([ctx, emb]));
  for (let i = 0; i < layers; i++) {
    const h = `model/h${i}`;
    tensors.set(`${h}/ln_1/g`, t([emb]));
    tensors.set(`${h}/ln_1/b`, t([emb]));
    tensors.set(`${h}/attn/c_attn/w`, t([1, emb, 3 * emb]));
    tensors.set(`${h}/attn/c_attn/b`, t([3 * emb]));
    tensors.set(`${h}/attn/c_proj/w`, t([1, emb, emb]));
    tensors.set(`${h}/attn/c_proj/b`, t([emb]));
    tensors.set(`${h}/ln_2/g`, t([emb]));
    tensors.set(`${h}/ln_2/b`, t([emb]));
    tensors.set(`${h}/mlp/c_fc/w`, t([1, emb, 4 * emb]));
    tensors.set(`${h}/mlp/c_fc/b`, t([4 * emb]));
    tensors.set(`${h}/mlp/c_proj/w`, t([1, 4 * emb, emb]));
    tensors.set(`${h}/mlp/c_proj/b`, t([emb]));
  }
  tensors.set("model/ln_f/g", t([emb]));
  tensors.set("model/ln_f/b", t([emb]));
  return tensors;
}

/**
 * The same numbers in Hugging Face's names (`h.<i>.attn.c_attn.weight` [in, out]), with the
 * per-block causal-mask buffers `attn.bias` that HF files carry, and optionally a prefix.
 */
export function hfFromOpenai(
  openai: Map<string, Float32Tensor>,
  ctx: number,
  prefix = "",
): Map<string, Float32Tensor> {
  const hf = new Map<string, Float32Tensor>();
  for (const [name, tensor] of openai) {
    const shape = tensor.shape.length === 3 ? tensor.shape.slice(1) : tensor.shape;
    const renamed = name
      .replace(/^model\//, "")
      .replace(/^h(\d+)\//, "h.$1.")
      .replaceAll("/", ".")
      .replace(/\.w$/, ".weight")
      .replace(/\.g$/, ".weight")
      .replace(/\.b$/, ".bias")
      .replace(/^(wte|wpe)$/, "$1.weight");
    hf.set(prefix + renamed, { shape, data: tensor.data });
    if (name.endsWith("/ln_1/g")) {
      const mask = new Float32Array(ctx * ctx).map((_, k) =>
        (k % ctx) <= Math.floor(k / ctx) ? 1 : 0
      );
      hf.set(prefix + renamed.replace("ln_1.weight", "attn.bias"), {
        shape: [1, 1, ctx, ctx],
        data: mask,
      });
    }
  }
  return hf;
}
