/**
 * Saving and loading a GPTModel: `model.safetensors` (F32, the book's state_dict names and
 * PyTorch layouts, so the book's `GPTModel.load_state_dict` reads it unchanged) and
 * `gpt_config.json` (the book's config keys) side by side in one folder.
 *
 * Our config has its own name because `config.json` is Hugging Face's: a model folder may hold
 * HF's files under their own names. Folders written before the rename keep our config as
 * `config.json`; it is still read there when it holds our keys (`emb_dim`, `n_layers`, no
 * `model_type`), so old cached artifacts load unchanged.
 *
 * Anything wrong with a file (truncated, wrong shapes, missing or unknown tensors, a config that
 * does not fit the weights) is an error naming the file and the tensor before any weight of the
 * model changes, never a failure deep inside tfjs.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { type NamedTensor, openSafetensors, writeSafetensorsFile } from "../weights/safetensors.ts";
import { parseJson } from "../../util/files.ts";
import { type GPTConfig, validateConfig } from "./config.ts";
import { GPTModel } from "./gpt.ts";
import { assignStateTensor, readStateTensor } from "./sharded.ts";
import { isPacked, PackedModelFiller, packedSlots, type Quantization } from "./precision.ts";

export const WEIGHTS_FILE = "model.safetensors";
/** Our model config (the book's keys) in a model folder. */
export const CONFIG_FILE = "gpt_config.json";
/**
 * Where model folders written before `gpt_config.json` existed kept our config. Read only when it
 * holds our keys: the name belongs to Hugging Face's config.
 */
export const LEGACY_CONFIG_FILE = "config.json";
/** safetensors metadata key recording that the output head shares the token embedding. */
export const TIED_HEAD_KEY = "groundup.tied_head";

/** Whether two float32 arrays hold the same bits (the same array: trivially). */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  const x = new Int32Array(a.buffer, a.byteOffset, a.length);
  const y = new Int32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * Copies of every parameter under its state_dict name (a tied head appears under both
 * `tok_emb.weight` and `out_head.weight`, as in PyTorch's state_dict; row shards are joined).
 */
export async function getStateDict(model: GPTModel): Promise<Map<string, NamedTensor>> {
  const tensors = new Map<string, NamedTensor>();
  for (const tensor of model.stateTensors()) {
    const data = await readStateTensor(tensor);
    tensors.set(tensor.name, {
      shape: [...tensor.shape],
      data: tensor.parts.length === 1 ? data.slice() : data,
    });
  }
  return tensors;
}

/** What the model expects under each state_dict name (matrices still to be packed included). */
function expectedShapes(model: GPTModel): Map<string, number[]> {
  const shapes = new Map(model.stateTensors().map(({ name, shape }) => [name, [...shape]]));
  for (const slot of packedSlots(model).values()) {
    if (!shapes.has(slot.name)) shapes.set(slot.name, [slot.rows, slot.cols]);
  }
  if (model.tiedHead && !shapes.has("out_head.weight") && shapes.has("tok_emb.weight")) {
    shapes.set("out_head.weight", shapes.get("tok_emb.weight")!);
  }
  return shapes;
}

/**
 * Checks a set of (name → shape) against the model: every parameter present (a tied head may
 * omit `out_head.weight`), nothing unknown, every shape equal. Throws naming `source`.
 */
function checkTensorSet(
  model: GPTModel,
  shapes: Map<string, readonly number[]>,
  source: string,
): void {
  const expected = expectedShapes(model);
  const optional = model.tiedHead ? new Set(["out_head.weight"]) : new Set<string>();
  const missing = [...expected.keys()].filter((name) => !shapes.has(name) && !optional.has(name));
  if (missing.length > 0) {
    throw new Error(`${source}: missing tensor(s) ${missing.map((n) => `"${n}"`).join(", ")}`);
  }
  const unknown = [...shapes.keys()].filter((name) => !expected.has(name));
  if (unknown.length > 0) {
    throw new Error(
      `${source}: unknown tensor(s) ${unknown.map((n) => `"${n}"`).join(", ")} for this model`,
    );
  }
  for (const [name, shape] of shapes) {
    const want = expected.get(name)!;
    if (!sameShape(shape, want)) {
      throw new Error(
        `${source}: tensor "${name}" has shape [${shape}] but the model expects [${want}]`,
      );
    }
  }
}

/**
 * Loads weights given by state_dict name into `model` (for our files, the book's PyTorch
 * state_dict, or the OpenAI/Hugging Face mappings). Everything is checked before anything is
 * assigned. The tensors' Float32Arrays are handed to tfjs without a copy: do not modify them
 * afterwards.
 */
export function loadStateDict(
  model: GPTModel,
  tensors: Map<string, NamedTensor>,
  source = "<state dict>",
): void {
  const shapes = new Map<string, readonly number[]>();
  for (const [name, tensor] of tensors) {
    const size = tensor.shape.reduce((a, b) => a * b, 1);
    if (tensor.data.length !== size) {
      throw new Error(
        `${source}: tensor "${name}" has shape [${tensor.shape}] (${size} values) but ${tensor.data.length} values`,
      );
    }
    shapes.set(name, tensor.shape);
  }
  checkTensorSet(model, shapes, source);
  if (model.tiedHead && tensors.has("out_head.weight")) {
    const head = tensors.get("out_head.weight")!.data;
    const embedding = tensors.get("tok_emb.weight")!.data;
    if (head !== embedding && head.some((x, i) => x !== embedding[i])) {
      throw new Error(
        `${source}: "out_head.weight" differs from "tok_emb.weight" but the model ties them`,
      );
    }
  }
  for (const target of model.stateTensors()) {
    const tensor = tensors.get(target.name);
    if (!tensor || (model.tiedHead && target.name === "out_head.weight")) continue;
    assignStateTensor(target, tensor.data);
  }
}

/** Whether parsed JSON is our config (the book's keys), not e.g. a Hugging Face config.json. */
export function isOurModelConfig(value: unknown): boolean {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
  const keys = value as Record<string, unknown>;
  return "emb_dim" in keys && "n_layers" in keys && !("model_type" in keys);
}

/** The parsed JSON of `path`, or undefined when it is missing or not JSON. */
function readJsonQuietly(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return undefined;
  }
}

/**
 * The file holding our config in `dir`: `gpt_config.json`, else (a folder written before the
 * rename) `config.json` when it holds our keys; undefined when there is neither.
 */
export function modelConfigPath(dir: string): string | undefined {
  const path = join(dir, CONFIG_FILE);
  if (existsSync(path)) return path;
  const legacy = join(dir, LEGACY_CONFIG_FILE);
  return isOurModelConfig(readJsonQuietly(legacy)) ? legacy : undefined;
}

/** Writes a file atomically: a temporary file beside it, renamed into place once complete. */
async function writeTextFileAtomic(path: string, text: string): Promise<void> {
  const temp = join(dirname(path), `.${path.split(/[\\/]/).pop()}.${crypto.randomUUID()}.tmp`);
  try {
    await Deno.writeTextFile(temp, text);
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
}

/** Saves `model` into `dir` as `model.safetensors` + `gpt_config.json` (each written atomically). */
export async function saveModel(dir: string, model: GPTModel): Promise<void> {
  if (isPacked(model)) {
    throw new Error(
      `saveModel ${dir}: the model's weights are quantized (packed for inference); save the ` +
        `float32 model it was loaded from instead`,
    );
  }
  await Deno.mkdir(dir, { recursive: true });
  const tensors = new Map<string, NamedTensor>();
  for (const tensor of model.stateTensors()) {
    // The backing buffer (or the joined shards) is only read by the writer: no copy needed.
    tensors.set(tensor.name, { shape: [...tensor.shape], data: await readStateTensor(tensor) });
  }
  await writeSafetensorsFile(join(dir, WEIGHTS_FILE), tensors, {
    format: "pt",
    [TIED_HEAD_KEY]: String(model.tiedHead),
  });
  await writeTextFileAtomic(join(dir, CONFIG_FILE), JSON.stringify(model.config, null, 2) + "\n");
  // A folder saved before the rename keeps no stale second copy of our config.
  const legacy = join(dir, LEGACY_CONFIG_FILE);
  if (isOurModelConfig(readJsonQuietly(legacy))) await Deno.remove(legacy);
}

/**
 * Reads and validates our config of a saved model folder (`gpt_config.json`, or an old folder's
 * `config.json`). A Hugging Face config.json is named as such, not read as ours.
 */
export async function loadModelConfigFile(dir: string): Promise<GPTConfig> {
  const path = modelConfigPath(dir);
  if (path === undefined) {
    const hf = readJsonQuietly(join(dir, LEGACY_CONFIG_FILE)) as
      | Record<string, unknown>
      | undefined;
    if (hf && typeof hf === "object" && "model_type" in hf) {
      throw new Error(
        `${join(dir, LEGACY_CONFIG_FILE)}: a Hugging Face config (model_type ${
          JSON.stringify(hf.model_type)
        }), not a groundup GPT config (${CONFIG_FILE}): load the folder as a Hugging Face model`,
      );
    }
    throw new Error(`${join(dir, CONFIG_FILE)}: no such file (not a saved model folder?)`);
  }
  return validateConfig(parseJson(await Deno.readTextFile(path), path), path);
}

/** Options of `loadModel`. */
export interface LoadModelOptions {
  /** When given, the saved config must equal it (e.g. what a pipeline asked for). */
  expectedConfig?: GPTConfig;
  /** Config values to use instead of the saved ones that do not change shapes (a fine-tune's drop_rate). */
  overrides?: Pick<Partial<GPTConfig>, "drop_rate">;
  /** Seed of the dropout RNG (default 123, as any new model's). */
  seed?: number;
  /**
   * Hold the weights packed as int8 (Q8_0) or bf16 for inference (llm/model/precision.ts): the
   * float32 model is never built; each matrix is packed as it is read.
   */
  quantize?: Quantization;
}

/**
 * Loads a model saved by `saveModel` (or any folder with the book's state_dict as
 * `model.safetensors` and its `gpt_config.json`), reading the file tensor by tensor (never one
 * buffer of the whole file).
 */
export async function loadModel(dir: string, options: LoadModelOptions = {}): Promise<GPTModel> {
  const config = { ...await loadModelConfigFile(dir), ...options.overrides };
  if (options.expectedConfig) {
    for (const [key, want] of Object.entries(options.expectedConfig)) {
      const got = config[key as keyof GPTConfig];
      if (got !== want) {
        throw new Error(
          `${modelConfigPath(dir) ?? join(dir, CONFIG_FILE)}: "${key}" is ${
            JSON.stringify(got)
          } but ${JSON.stringify(want)} was expected`,
        );
      }
    }
  }
  const weightsPath = join(dir, WEIGHTS_FILE);
  await using reader = await openSafetensors(weightsPath);
  const { header } = reader;
  const tiedHead = header.metadata[TIED_HEAD_KEY] === "true";
  const quantize = options.quantize ?? "none";
  // "empty": no matrix is allocated; each is packed, or becomes a variable over the file's
  // (mapped) values, as it is read: nothing is zero-filled and then overwritten. A vocabulary
  // sharded for WebGPU is allocated and assigned.
  const model = new GPTModel(config, { init: "empty", tiedHead, seed: options.seed });
  try {
    // Check names and shapes against the config before reading any data.
    const shapes = new Map([...header.tensors].map(([name, info]) => [name, info.shape]));
    checkTensorSet(model, shapes, weightsPath);
    const filler = new PackedModelFiller(model, quantize);
    for (const name of header.tensors.keys()) {
      const { data } = await reader.read(name);
      if (tiedHead && name === "out_head.weight") {
        // The head is the embedding: a file that ties them must hold the same values.
        const embedding = (await reader.read("tok_emb.weight")).data;
        if (!sameBits(data, embedding)) {
          throw new Error(
            `${weightsPath}: "out_head.weight" differs from "tok_emb.weight" but the model ties them`,
          );
        }
        continue;
      }
      filler.set(name, data);
    }
    filler.checkComplete(weightsPath);
    return model;
  } catch (error) {
    model.dispose();
    throw error;
  }
}
