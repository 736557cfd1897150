/**
 * Loading a Hugging Face model folder (config.json + model.safetensors, or
 * model.safetensors.index.json + its shards) into our GPTModel.
 *
 * Order matters, so that a model that cannot load fails before it costs anything:
 *   1. config.json → family → our config;
 *   2. the fp32 size against the memory available (refused with both sizes);
 *   3. every file's header: shards present, tensors where the index says, dtypes F32/BF16/F16;
 *   4. every checkpoint name and shape against the model (an error names the tensor, its file
 *      and both shapes), before any weight is assigned;
 *   5. values, one tensor at a time: a shard can exceed the 4 GiB a Node Buffer holds, so no
 *      file is ever read whole; BF16/F16 are widened to float32 on read.
 */
import { existsSync, readFileSync } from "node:fs";
import { halfToFloat } from "../weights/gguf.ts";
import { join } from "node:path";
import { ensureMemory } from "../../util/disk.ts";
import { parseJson } from "../../util/files.ts";
import { countParameters, type GPTConfig } from "../model/config.ts";
import { bytesPerParameter } from "../model/precision.ts";
import { GPTModel } from "../model/gpt.ts";
import {
  PackedModelFiller,
  packedSlots,
  type Quantization,
  weightBytes,
} from "../model/precision.ts";
import { openSafetensors, type SafetensorsReader } from "../weights/safetensors.ts";
import type { ConverterContext, HfCheckpoint, ModelFamily } from "./family.ts";
import type { HfConfig } from "./hf_config.ts";
import { detectFamily } from "./mod.ts";
import { buildSteps } from "./rules.ts";

/** HF's file names in a model folder. */
export const HF_CONFIG_FILE = "config.json";
export const HF_WEIGHTS_FILE = "model.safetensors";
export const HF_WEIGHTS_INDEX_FILE = "model.safetensors.index.json";

/** The dtypes the loader converts to float32. */
const LOADABLE_DTYPES = new Set(["F32", "BF16", "F16"]);

/** Whether `dir` holds a config.json whose JSON has a `model_type` (an HF model folder). */
export function isHfModelFolder(dir: string): boolean {
  try {
    const parsed = JSON.parse(readFileSync(join(dir, HF_CONFIG_FILE), "utf8"));
    return typeof parsed === "object" && parsed !== null && "model_type" in parsed;
  } catch {
    return false;
  }
}

/** Reads config.json of an HF folder as an object. */
export async function readHfConfig(dir: string): Promise<HfConfig> {
  const path = join(dir, HF_CONFIG_FILE);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(`${path}: no such file (not a Hugging Face model folder?)`);
    }
    throw error;
  }
  const parsed = parseJson(text, path);
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new Error(`${path}: expected a JSON object`);
  }
  return parsed as HfConfig;
}

/** An opened checkpoint; dispose it (`await using`) to close its files. */
export interface OpenHfCheckpoint extends HfCheckpoint, AsyncDisposable {
  /** The weights files, in the order they were opened. */
  files: string[];
  /** The checkpoint dtype of every tensor (F32, BF16, F16). */
  dtypes: ReadonlyMap<string, string>;
  /** Where a tensor's bytes lie: its file and the byte offset of its first value there. */
  locate(name: string): { path: string; offset: number; dtype: string; shape: readonly number[] };
}

/** The shard index: tensor name → shard file name. */
async function readWeightMap(indexPath: string): Promise<Map<string, string>> {
  const parsed = parseJson(await Deno.readTextFile(indexPath), indexPath);
  const map = (parsed as { weight_map?: unknown })?.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map)) {
    throw new Error(`${indexPath}: expected {"weight_map": {tensor name: shard file}}`);
  }
  const entries = Object.entries(map as Record<string, unknown>);
  for (const [name, file] of entries) {
    if (typeof file !== "string" || file === "" || /[\\/]/.test(file)) {
      throw new Error(
        `${indexPath}: weight_map."${name}" must be a file name in the folder, got ${
          JSON.stringify(file)
        }`,
      );
    }
  }
  return new Map(entries as [string, string][]);
}

/**
 * Opens the weights of an HF folder: `model.safetensors`, or the shards named by
 * `model.safetensors.index.json`. Only headers are read; values come one tensor at a time.
 */
export async function openHfCheckpoint(dir: string): Promise<OpenHfCheckpoint> {
  const single = join(dir, HF_WEIGHTS_FILE);
  const indexPath = join(dir, HF_WEIGHTS_INDEX_FILE);
  const readers = new Map<string, SafetensorsReader>(); // file path → reader
  const location = new Map<string, string>(); // tensor name → file path
  const closeAll = () => {
    for (const reader of readers.values()) reader.close();
  };
  let description: string;
  try {
    if (existsSync(single)) {
      description = single;
      const reader = await openSafetensors(single);
      readers.set(single, reader);
      for (const name of reader.header.tensors.keys()) location.set(name, single);
    } else if (existsSync(indexPath)) {
      description = indexPath;
      const weightMap = await readWeightMap(indexPath);
      const byFile = new Map<string, string[]>();
      for (const [name, file] of weightMap) {
        byFile.set(file, [...(byFile.get(file) ?? []), name]);
      }
      for (const [file, names] of byFile) {
        const path = join(dir, file);
        if (!existsSync(path)) {
          throw new Error(
            `${indexPath}: shard "${file}" is missing (${path} does not exist); it holds ` +
              `${names.length} tensor(s), e.g. "${names[0]}"`,
          );
        }
        const reader = await openSafetensors(path);
        readers.set(path, reader);
        for (const name of names) {
          if (!reader.header.tensors.has(name)) {
            throw new Error(
              `${path}: no tensor "${name}", which ${indexPath} says is in this shard`,
            );
          }
          location.set(name, path);
        }
      }
    } else {
      const other = ["pytorch_model.bin", "pytorch_model.bin.index.json"].filter((f) =>
        existsSync(join(dir, f))
      );
      throw new Error(
        `${dir}: no ${HF_WEIGHTS_FILE} or ${HF_WEIGHTS_INDEX_FILE}` +
          (other.length > 0 ? ` (${other.join(", ")} is PyTorch's pickle format: not read)` : ""),
      );
    }
  } catch (error) {
    closeAll();
    throw error;
  }
  const shapes = new Map<string, readonly number[]>();
  const dtypes = new Map<string, string>();
  for (const [name, path] of location) {
    const info = readers.get(path)!.header.tensors.get(name)!;
    if (!LOADABLE_DTYPES.has(info.dtype)) {
      closeAll();
      throw new Error(
        `${path}: tensor "${name}" is ${info.dtype}; only F32, BF16 and F16 weights are read`,
      );
    }
    shapes.set(name, info.shape);
    dtypes.set(name, info.dtype);
  }
  return {
    shapes,
    dtypes,
    files: [...readers.keys()],
    description,
    fileOf: (name) => location.get(name) ?? description,
    locate: (name) => {
      const path = location.get(name);
      if (!path) throw new Error(`${description}: no tensor named "${name}"`);
      const { header } = readers.get(path)!;
      const info = header.tensors.get(name)!;
      return {
        path,
        offset: header.dataStart + info.dataOffsets[0],
        dtype: info.dtype,
        shape: info.shape,
      };
    },
    read: async (name) => {
      const path = location.get(name);
      if (!path) throw new Error(`${description}: no tensor named "${name}"`);
      return (await readers.get(path)!.read(name)).data;
    },
    [Symbol.asyncDispose]: () => Promise.resolve(closeAll()),
  };
}

/** Options of {@link loadHfModel}. */
export interface LoadHfModelOptions {
  /**
   * Build the model for at most this many positions instead of the config's
   * max_position_embeddings (131072 for Llama 3.2): RoPE families only, where the context is
   * not part of the weights.
   */
  maxContext?: number;
  /**
   * Bytes of memory available for the weights; default: what the system reports now. The fp32
   * size of the model must fit in it.
   */
  availableMemory?: number;
  /**
   * Hold the weights packed as int8 (Q8_0) or bf16 for inference (llm/model/precision.ts): each
   * matrix is packed as it is read, a block of rows at a time, so the float32 model is never
   * built and the memory check counts the packed size.
   */
  quantize?: Quantization;
}

/** A loaded HF model and where it came from. */
export interface LoadedHfModel {
  /** The model with the checkpoint's weights (float32). */
  model: GPTModel;
  /** The family config.json's `model_type` belongs to. */
  family: ModelFamily;
  /** Our config of the model (its context capped by `maxContext`). */
  config: GPTConfig;
  /** config.json as parsed (token ids, dtype, anything the families do not map). */
  hfConfig: HfConfig;
}

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * Loads an HF model folder into a GPTModel (see the module comment for the order of checks).
 * The family comes from config.json's `model_type`.
 */
export async function loadHfModel(
  dir: string,
  options: LoadHfModelOptions = {},
): Promise<LoadedHfModel> {
  const configPath = join(dir, HF_CONFIG_FILE);
  const hfConfig = await readHfConfig(dir);
  const family = detectFamily(hfConfig, configPath);
  const { config: fullConfig, tiedHead } = family.toConfig(hfConfig, configPath);
  const config = { ...fullConfig };
  if (options.maxContext !== undefined && config.pos_emb === "rope") {
    config.context_length = Math.min(config.context_length, options.maxContext);
  }

  const quantize = options.quantize ?? "none";
  const bytes = countParameters(config, { tiedHead }) * bytesPerParameter(quantize);
  ensureMemory(
    Math.round(bytes),
    `${dir} at ${quantize === "none" ? "fp32" : quantize}`,
    options.availableMemory,
  );
  return await loadInto(dir, { config, tiedHead, family, hfConfig, quantize }, options);
}

/** Every name and shape the converter plans against the model's, before any value is read. */
export function checkPlan(
  checkpoint: HfCheckpoint,
  outputs: ReadonlyMap<string, readonly number[]>,
  expected: ReadonlyMap<string, readonly number[]>,
  tiedHead: boolean,
  family: ModelFamily,
  dir: string,
): void {
  for (const [name, shape] of expected) {
    if (tiedHead && name === "out_head.weight") continue;
    const planned = outputs.get(name);
    if (!planned || !sameShape(planned, shape)) {
      throw new Error(
        `${checkpoint.description}: the ${family.name} mapping gives ${
          planned ? `[${planned}]` : "nothing"
        } for "${name}", the model built from ${join(dir, HF_CONFIG_FILE)} expects [${shape}]`,
      );
    }
  }
}

/** Bytes of checkpoint data read per call while streaming a matrix into its packed form. */
const STREAM_CHUNK_BYTES = 16 * 2 ** 20;

/**
 * The load: the model is built "empty" (no weight matrix allocated, nothing zero-filled), and
 * each matrix is filled as it is read: float32 (a variable over the converted values, no copy),
 * or packed, after a memory check that counts the packed size. Packed loads of the rule-table
 * families read the checkpoint's bytes a block of rows at a time (bf16 rows kept bit for bit
 * under `quantize: bf16`), so no float32 matrix is ever whole in memory; GPT-2's mapping
 * (transposes) converts one tensor at a time through its converter.
 */
async function loadInto(
  dir: string,
  context: Omit<ConverterContext, "expected"> & {
    family: ModelFamily;
    quantize: Quantization;
  },
  options: LoadHfModelOptions,
): Promise<LoadedHfModel> {
  const { config, tiedHead, family, hfConfig, quantize } = context;
  const model = new GPTModel(config, { init: "empty", tiedHead });
  try {
    if (quantize !== "none") {
      ensureMemory(weightBytes(model, quantize), `${dir} at ${quantize}`, options.availableMemory);
    }
    await using checkpoint = await openHfCheckpoint(dir);
    const filler = new PackedModelFiller(model, quantize);
    const expected = new Map<string, readonly number[]>(
      model.stateTensors().map((t) => [t.name, t.shape]),
    );
    for (const slot of packedSlots(model).values()) expected.set(slot.name, [slot.rows, slot.cols]);
    if (tiedHead) expected.set("out_head.weight", expected.get("tok_emb.weight")!);
    const converterContext = { config, tiedHead, hfConfig, expected };
    const converter = family.converter(converterContext);
    checkPlan(checkpoint, converter.plan(checkpoint).outputs, expected, tiedHead, family, dir);
    if (quantize !== "none" && family.weightRules.length > 0) {
      for (const step of buildSteps(family.weightRules, converterContext)) {
        await streamStep(checkpoint, step, filler);
      }
    } else {
      for await (const [name, tensor] of converter.convert(checkpoint)) {
        if (tiedHead && name === "out_head.weight") continue;
        filler.set(name, tensor.data);
      }
    }
    filler.checkComplete(checkpoint.description);
    return { model, family, config, hfConfig };
  } catch (error) {
    model.dispose();
    throw error;
  }
}

/**
 * One checkpoint tensor into its target(s) (a fused tensor's row blocks, in order): packed
 * matrices a chunk of rows at a time, straight from the file; small tensors whole.
 */
async function streamStep(
  checkpoint: OpenHfCheckpoint,
  step: { source: string; targets: { name: string; shape: number[] }[] },
  filler: PackedModelFiller,
): Promise<void> {
  if (!step.targets.every((t) => filler.isPacked(t.name))) {
    const data = await checkpoint.read(step.source);
    let offset = 0;
    for (const target of step.targets) {
      const size = target.shape.reduce((a, b) => a * b, 1);
      filler.set(target.name, data.subarray(offset, offset + size));
      offset += size;
    }
    return;
  }
  const { path, offset, dtype } = checkpoint.locate(step.source);
  const width = dtype === "F32" ? 4 : 2;
  using file = await Deno.open(path, { read: true });
  let position = offset;
  for (const target of step.targets) {
    const [rows, cols] = target.shape;
    const rowBytes = cols * width;
    const chunkRows = Math.max(1, Math.floor(STREAM_CHUNK_BYTES / rowBytes));
    const buffer = new Uint8Array(Math.min(rows, chunkRows) * rowBytes);
    for (let first = 0; first < rows; first += chunkRows) {
      const count = Math.min(chunkRows, rows - first);
      const bytes = buffer.subarray(0, count * rowBytes);
      await readAt(file, position, bytes, `${path}: tensor "${step.source}"`);
      position += bytes.length;
      if (dtype === "BF16") {
        filler.setBf16Rows(target.name, first, new Uint16Array(bytes.buffer, 0, count * cols));
      } else if (dtype === "F16") {
        const half = new Uint16Array(bytes.buffer, 0, count * cols);
        const values = new Float32Array(half.length);
        for (let i = 0; i < half.length; i++) values[i] = halfToFloat(half[i]);
        filler.setRows(target.name, first, values);
      } else {
        filler.setRows(target.name, first, new Float32Array(bytes.buffer, 0, count * cols));
      }
    }
  }
}

/** Fills `into` with the file's bytes from `position` (a short file is an error). */
async function readAt(file: Deno.FsFile, position: number, into: Uint8Array, where: string) {
  await file.seek(position, Deno.SeekMode.Start);
  let done = 0;
  while (done < into.length) {
    const n = await file.read(into.subarray(done));
    if (n === null) throw new Error(`${where}: the file ends ${into.length - done} bytes early`);
    done += n;
  }
}
