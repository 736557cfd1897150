/**
 * The PyTorch parity fixture (tests/fixtures/parity/qkv_bias, the book's state_dict names)
 * rewritten the way OpenAI and Hugging Face publish GPT-2, so the loading stage can be checked
 * against PyTorch's logits. The layout rules are written out here independently of
 * llm/weights/gpt2_mapping.ts, from REFERENCE.md: q, k, v concatenated on the last axis of
 * `c_attn`, matrices stored [in, out] (OpenAI adds a leading axis of 1), the head tied to `wte`.
 */
import { join } from "node:path";
import { validateConfig } from "../../llm/model/config.ts";
import { GPTModel } from "../../llm/model/gpt.ts";
import { loadStateDict, saveModel } from "../../llm/model/weights_io.ts";
import {
  type NamedTensor,
  readSafetensorsFile,
  writeSafetensorsFile,
} from "../../llm/weights/safetensors.ts";
import { writeTensorBundle } from "../../llm/weights/tensorbundle/writer.ts";
import { localFixture, sharedFixture } from "../fixtures.ts";

export const PARITY_DIR = localFixture("parity", "qkv_bias");

export async function readParity() {
  const config = validateConfig(
    JSON.parse(await Deno.readTextFile(join(PARITY_DIR, "config.json"))),
    "parity config",
  );
  const weights = (await readSafetensorsFile(join(PARITY_DIR, "weights.safetensors"))).tensors;
  const expected = (await readSafetensorsFile(join(PARITY_DIR, "expected.safetensors"))).tensors;
  const inputs = JSON.parse(await Deno.readTextFile(join(PARITY_DIR, "inputs.json")));
  return {
    config,
    weights,
    logits: expected.get("logits")!,
    inputIds: inputs.input_ids as number[][],
  };
}

/** [out, in] → [in, out]. */
function transposed(t: NamedTensor): NamedTensor {
  const [rows, cols] = t.shape;
  const data = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) data[c * rows + r] = t.data[r * cols + c];
  }
  return { shape: [cols, rows], data };
}

/** Matrices side by side along the last axis: [in, a] + [in, b] → [in, a + b]. */
function concatColumns(parts: NamedTensor[]): NamedTensor {
  const rows = parts[0].shape[0];
  const cols = parts.reduce((n, p) => n + p.shape[1], 0);
  const data = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let at = r * cols;
    for (const p of parts) {
      data.set(p.data.subarray(r * p.shape[1], (r + 1) * p.shape[1]), at);
      at += p.shape[1];
    }
  }
  return { shape: [rows, cols], data };
}

function concat(parts: NamedTensor[]): NamedTensor {
  const data = new Float32Array(parts.reduce((n, p) => n + p.data.length, 0));
  let at = 0;
  for (const p of parts) data.set(p.data, at), at += p.data.length;
  return { shape: [data.length], data };
}

/** The parity weights under OpenAI's TensorFlow names, matrices [1, in, out]. */
export function toOpenaiLayout(
  book: Map<string, NamedTensor>,
  layers: number,
): Map<string, NamedTensor> {
  const get = (name: string) => {
    const t = book.get(name);
    if (!t) throw new Error(`parity weights lack ${name}`);
    return { shape: t.shape, data: t.data }; // without the reader's safetensors dtype
  };
  const matrix = (t: NamedTensor): NamedTensor => ({ shape: [1, ...t.shape], data: t.data });
  const out = new Map<string, NamedTensor>();
  out.set("model/wte", get("tok_emb.weight"));
  out.set("model/wpe", get("pos_emb.weight"));
  for (let i = 0; i < layers; i++) {
    const b = `trf_blocks.${i}`, h = `model/h${i}`;
    const qkv = ["W_query", "W_key", "W_value"];
    out.set(
      `${h}/attn/c_attn/w`,
      matrix(concatColumns(qkv.map((p) => transposed(get(`${b}.att.${p}.weight`))))),
    );
    out.set(`${h}/attn/c_attn/b`, concat(qkv.map((p) => get(`${b}.att.${p}.bias`))));
    out.set(`${h}/attn/c_proj/w`, matrix(transposed(get(`${b}.att.out_proj.weight`))));
    out.set(`${h}/attn/c_proj/b`, get(`${b}.att.out_proj.bias`));
    out.set(`${h}/mlp/c_fc/w`, matrix(transposed(get(`${b}.ff.layers.0.weight`))));
    out.set(`${h}/mlp/c_fc/b`, get(`${b}.ff.layers.0.bias`));
    out.set(`${h}/mlp/c_proj/w`, matrix(transposed(get(`${b}.ff.layers.2.weight`))));
    out.set(`${h}/mlp/c_proj/b`, get(`${b}.ff.layers.2.bias`));
    out.set(`${h}/ln_1/g`, get(`${b}.norm1.scale`));
    out.set(`${h}/ln_1/b`, get(`${b}.norm1.shift`));
    out.set(`${h}/ln_2/g`, get(`${b}.norm2.scale`));
    out.set(`${h}/ln_2/b`, get(`${b}.norm2.shift`));
  }
  out.set("model/ln_f/g", get("final_norm.scale"));
  out.set("model/ln_f/b", get("final_norm.shift"));
  return out;
}

/** The same tensors under Hugging Face's names (Conv1D [in, out], no leading axis). */
export function toHfLayout(
  openai: Map<string, NamedTensor>,
  prefix = "",
): Map<string, NamedTensor> {
  const out = new Map<string, NamedTensor>();
  for (const [name, t] of openai) {
    const hfName = name === "model/wte"
      ? "wte.weight"
      : name === "model/wpe"
      ? "wpe.weight"
      : name.replace(/^model\//, "").replace(/^h(\d+)\//, "h.$1.").replaceAll("/", ".")
        .replace(/\.(w|g)$/, ".weight").replace(/\.b$/, ".bias");
    out.set(prefix + hfName, {
      shape: t.shape.length === 3 ? t.shape.slice(1) : t.shape,
      data: t.data,
    });
  }
  return out;
}

/** OpenAI's `hparams.json` for a config. */
export function hparamsFor(
  config: {
    vocab_size: number;
    context_length: number;
    emb_dim: number;
    n_heads: number;
    n_layers: number;
  },
) {
  return {
    n_vocab: config.vocab_size,
    n_ctx: config.context_length,
    n_embd: config.emb_dim,
    n_head: config.n_heads,
    n_layer: config.n_layers,
  };
}

/** Writes an OpenAI release folder (checkpoint, hparams.json, model.ckpt.*) for the tensors. */
export async function writeOpenaiFolder(
  dir: string,
  tensors: Map<string, NamedTensor>,
  hparams: Record<string, number>,
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await writeTensorBundle(join(dir, "model.ckpt"), tensors);
  await Deno.writeTextFile(join(dir, "hparams.json"), JSON.stringify(hparams, null, 2));
  await Deno.writeTextFile(
    join(dir, "checkpoint"),
    'model_checkpoint_path: "model.ckpt"\nall_model_checkpoint_paths: "model.ckpt"\n',
  );
}

/** Writes a Hugging Face folder (model.safetensors + config.json). */
export async function writeHfFolder(
  dir: string,
  tensors: Map<string, NamedTensor>,
  config: Record<string, unknown>,
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await writeSafetensorsFile(join(dir, "model.safetensors"), tensors, { format: "pt" });
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(config, null, 2));
}

/** Words for the parity model's 97 ids: t00..t94, then the simple tokenizer's two specials. */
export const PARITY_VOCABULARY = [
  ...Array.from({ length: 95 }, (_, i) => `t${String(i).padStart(2, "0")}`),
  "<|endoftext|>",
  "<|unk|>",
];

/** Token ids as the parity vocabulary's words, e.g. [58, 0] → "t58 t00". */
export const parityWords = (ids: number[]) => ids.map((id) => PARITY_VOCABULARY[id]).join(" ");

/**
 * The greedy cases of the parity fixture's generate.json, and a model folder (saveModel +
 * a simple tokenizer over {@link PARITY_VOCABULARY}) holding the weights they were made with
 * (named by the file's `weights` key: the reference generates after its two AdamW steps).
 * Needs a tfjs backend.
 */
export async function writeParityModelFolder(dir: string): Promise<
  { cases: { prompt: number[]; max_new_tokens: number; expected_new_tokens: number[] }[] }
> {
  const generateJson = JSON.parse(await Deno.readTextFile(join(PARITY_DIR, "generate.json")));
  const prefix = `${(generateJson.weights ?? "after_step2").replace(/\.$/, "")}.`;
  const parity = await readParity();
  const expected = (await readSafetensorsFile(join(PARITY_DIR, "expected.safetensors"))).tensors;
  const weights = new Map(
    [...parity.weights.keys()].map((name) => [name, expected.get(prefix + name)!]),
  );
  const model = new GPTModel(parity.config, { init: "zeros" });
  try {
    loadStateDict(model, weights, `expected.safetensors (${prefix}*)`);
    await saveModel(dir, model);
  } finally {
    model.dispose();
  }
  await Deno.writeTextFile(join(dir, "tokenizer_spec.json"), JSON.stringify({ kind: "simple" }));
  await Deno.writeTextFile(join(dir, "vocab.json"), JSON.stringify(PARITY_VOCABULARY));
  return { cases: generateJson.cases };
}

/** A mirror folder holding the 124M release files we have real copies of. */
export async function realMirror124M(mirror: string): Promise<string> {
  const folder = join(mirror, "gpt2", "124M");
  await Deno.mkdir(folder, { recursive: true });
  for (const name of ["encoder.json", "vocab.bpe", "hparams.json"]) {
    await Deno.copyFile(sharedFixture("gpt2-tokenizer", name), join(folder, name));
  }
  for (const name of ["model.ckpt.index", "checkpoint"]) {
    await Deno.copyFile(
      sharedFixture("tf-checkpoint", "gpt2_124M_index_only", name),
      join(folder, name),
    );
  }
  await Deno.writeTextFile(join(folder, "model.ckpt.meta"), "graph (not read)");
  return folder;
}
