/**
 * Memory of a quantized load, measured: a Llama-3-8B-shaped random model written as a sharded
 * bf16 Hugging Face folder (~16 GB), loaded with `quantize: int8` (or bf16) by `openModelFolder`'s
 * path (loadHfModel: an "empty" model, each matrix packed as its rows stream from the file),
 * then a few greedy tokens decoded. The load runs in a child process so that its peak resident
 * memory (VmHWM) is the load's own.
 *
 *   deno run -A bench/load_8b.ts [--dir /tmp/groundup-8b] [--quantize int8] [--new-tokens 3]
 *                                [--layers 32] [--keep]
 *
 * The folder is written without ever holding the model: random bf16 values (uniform ±0.03,
 * drawn once into a 64 MiB pool that the tensors read from at varying offsets) streamed into
 * 5 shards with an index, as the Hub's 8B checkpoints are laid out. It is deleted afterwards
 * unless --keep. Prints one JSON line: peak RSS, load seconds, packed weight bytes, decode
 * tokens/s, and the load average.
 */
import { join } from "node:path";
import { flag, peakRssMb } from "./common.ts";

/** Llama-3-8B's config.json (the parts the llama family reads). */
function llama8bConfig(layers: number): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: 128_256,
    hidden_size: 4096,
    intermediate_size: 14_336,
    num_hidden_layers: layers,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    head_dim: 128,
    hidden_act: "silu",
    max_position_embeddings: 8192,
    rms_norm_eps: 1e-5,
    rope_theta: 500_000,
    rope_scaling: null,
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: false,
    torch_dtype: "bfloat16",
    bos_token_id: 128_000,
    eos_token_id: 128_001,
  };
}

/** HF tensor names and shapes of the Llama layout, in file order. */
function llamaTensors(layers: number): [string, number[]][] {
  const [d, ff, kv, vocab] = [4096, 14_336, 8 * 128, 128_256];
  const tensors: [string, number[]][] = [["model.embed_tokens.weight", [vocab, d]]];
  for (let i = 0; i < layers; i++) {
    const at = `model.layers.${i}`;
    tensors.push(
      [`${at}.self_attn.q_proj.weight`, [d, d]],
      [`${at}.self_attn.k_proj.weight`, [kv, d]],
      [`${at}.self_attn.v_proj.weight`, [kv, d]],
      [`${at}.self_attn.o_proj.weight`, [d, d]],
      [`${at}.mlp.gate_proj.weight`, [ff, d]],
      [`${at}.mlp.up_proj.weight`, [ff, d]],
      [`${at}.mlp.down_proj.weight`, [d, ff]],
      [`${at}.input_layernorm.weight`, [d]],
      [`${at}.post_attention_layernorm.weight`, [d]],
    );
  }
  tensors.push(["model.norm.weight", [d]], ["lm_head.weight", [vocab, d]]);
  return tensors;
}

const POOL_VALUES = 32 * 2 ** 20; // 64 MiB of bf16

/** Uniform ±0.03 as bf16 bits (norm weights: 1.0). */
function randomPool(): Uint16Array {
  const pool = new Uint16Array(POOL_VALUES);
  const f = new Float32Array(1);
  const bits = new Uint32Array(f.buffer);
  let state = 0x9e3779b9;
  for (let i = 0; i < pool.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    f[0] = ((state >>> 0) / 2 ** 32 - 0.5) * 0.06;
    pool[i] = bits[0] >>> 16;
  }
  return pool;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}

/** Writes the sharded bf16 folder; returns its bytes. */
async function writeFolder(dir: string, layers: number, shards: number): Promise<number> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    join(dir, "config.json"),
    JSON.stringify(llama8bConfig(layers), null, 2),
  );
  const tensors = llamaTensors(layers);
  const pool = randomPool();
  const poolBytes = new Uint8Array(pool.buffer);
  const one = new Uint8Array(new Uint16Array(4096).fill(0x3f80).buffer); // bf16 1.0
  const perShard = Math.ceil(tensors.length / shards);
  const weightMap: Record<string, string> = {};
  let total = 0;
  let cursor = 0;
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, "0")}-of-${
      String(shards).padStart(5, "0")
    }.safetensors`;
    const part = tensors.slice(s * perShard, (s + 1) * perShard);
    const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
    let offset = 0;
    for (const [name, shape] of part) {
      const bytes = shape.reduce((a, b) => a * b, 1) * 2;
      header[name] = { dtype: "BF16", shape, data_offsets: [offset, offset + bytes] };
      offset += bytes;
      weightMap[name] = file;
    }
    let json = JSON.stringify(header);
    json += " ".repeat((8 - (json.length % 8)) % 8);
    const jsonBytes = new TextEncoder().encode(json);
    using out = await Deno.open(join(dir, file), { write: true, create: true, truncate: true });
    const prefix = new Uint8Array(8);
    new DataView(prefix.buffer).setBigUint64(0, BigInt(jsonBytes.length), true);
    await writeAll(out, prefix);
    await writeAll(out, jsonBytes);
    for (const [, shape] of part) {
      let left = shape.reduce((a, b) => a * b, 1) * 2;
      if (shape.length === 1) {
        await writeAll(out, one.subarray(0, left));
        continue;
      }
      while (left > 0) {
        const start = cursor % (poolBytes.length - 2);
        const n = Math.min(left, poolBytes.length - start) & ~1;
        await writeAll(out, poolBytes.subarray(start, start + n));
        left -= n;
        cursor += 7919 * 2 + n;
      }
    }
    total += offset;
  }
  await Deno.writeTextFile(
    join(dir, "model.safetensors.index.json"),
    JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2),
  );
  return total;
}

/** The child: load with quantize, decode a few tokens, print one JSON line. */
async function loadAndDecode(dir: string, quantize: "int8" | "bf16", newTokens: number) {
  const { initEngine } = await import("../llm/engine/backend.ts");
  const { loadHfModel } = await import("../llm/families/load.ts");
  const { generate } = await import("../llm/model/generate.ts");
  const { weightBytes } = await import("../llm/model/precision.ts");
  await initEngine({ backend: "cpu", blasThreads: 2, log: () => {} });
  const rssBefore = peakRssMb();
  let start = performance.now();
  const { model } = await loadHfModel(dir, { quantize, maxContext: 256 });
  const loadSeconds = (performance.now() - start) / 1000;
  const rssAfterLoad = peakRssMb();
  let firstTokenSeconds = 0;
  start = performance.now();
  const tokens = await generate(model, [128_000, 9906, 11, 358], {
    maxNewTokens: newTokens,
    temperature: 0,
    onToken: (_t, index) => {
      if (index === 0) {
        firstTokenSeconds = (performance.now() - start) / 1000;
        start = performance.now();
      }
    },
  });
  const decodeSeconds = (performance.now() - start) / 1000;
  console.log(JSON.stringify({
    bench: "load-8b",
    quantize,
    layers: model.config.n_layers,
    weight_gb: +(weightBytes(model) / 1e9).toFixed(2),
    load_s: +loadSeconds.toFixed(1),
    peak_rss_before_load_mb: rssBefore,
    peak_rss_after_load_mb: rssAfterLoad,
    first_token_s: +firstTokenSeconds.toFixed(2),
    decode_tokens_per_s: +((tokens.length - 1) / decodeSeconds).toFixed(3),
    tokens,
    peak_rss_mb: peakRssMb(),
    loadavg: Deno.loadavg(),
  }));
  model.dispose();
}

const dir = flag("dir", "/tmp/groundup-8b");
const quantize = flag("quantize", "int8") as "int8" | "bf16";
const newTokens = Number(flag("new-tokens", "3"));
if (Deno.args.includes("--child")) {
  await loadAndDecode(dir, quantize, newTokens);
} else {
  const layers = Number(flag("layers", "32"));
  let start = performance.now();
  const bytes = await writeFolder(dir, layers, 5);
  console.log(JSON.stringify({
    bench: "load-8b",
    wrote_gb: +(bytes / 1e9).toFixed(2),
    write_s: +((performance.now() - start) / 1000).toFixed(1),
  }));
  try {
    start = performance.now();
    const child = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL(import.meta.url).pathname,
        "--child",
        "--dir",
        dir,
        "--quantize",
        quantize,
        "--new-tokens",
        String(newTokens),
      ],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (!child.success) throw new Error(`the loading process failed (exit ${child.code})`);
  } finally {
    if (!Deno.args.includes("--keep")) await Deno.remove(dir, { recursive: true });
  }
}
