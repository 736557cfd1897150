/**
 * Saving and loading a GPTModel: `model.safetensors` (F32, the book's state_dict names and
 * PyTorch layouts, so the book's `GPTModel.load_state_dict` reads it unchanged) and
 * `config.json` (the book's config keys) side by side in one folder.
 *
 * Anything wrong with a file (truncated, wrong shapes, missing or unknown tensors, a config that
 * does not fit the weights) is an error naming the file and the tensor before any weight of the
 * model changes, never a failure deep inside tfjs.
 */
import { dirname, join } from "node:path";
import { type NamedTensor, openSafetensors, writeSafetensorsFile } from "../weights/safetensors.ts";
import { parseJson } from "../files.ts";
import { type GPTConfig, validateConfig } from "./config.ts";
import { GPTModel } from "./gpt.ts";
import { assignStateTensor, readStateTensor } from "./sharded.ts";

export const WEIGHTS_FILE = "model.safetensors";
export const CONFIG_FILE = "config.json";
/** safetensors metadata key recording that the output head shares the token embedding. */
export const TIED_HEAD_KEY = "groundup.tied_head";

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

/** What the model expects under each state_dict name. */
function expectedShapes(model: GPTModel): Map<string, number[]> {
  return new Map(model.stateTensors().map(({ name, shape }) => [name, [...shape]]));
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

/** Saves `model` into `dir` as `model.safetensors` + `config.json` (each written atomically). */
export async function saveModel(dir: string, model: GPTModel): Promise<void> {
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
}

/** Reads and validates `config.json` of a saved model folder. */
export async function loadModelConfigFile(dir: string): Promise<GPTConfig> {
  const path = join(dir, CONFIG_FILE);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(`${path}: no such file (not a saved model folder?)`);
    }
    throw error;
  }
  return validateConfig(parseJson(text, path), path);
}

/** Options of `loadModel`. */
export interface LoadModelOptions {
  /** When given, the saved config must equal it (e.g. what a pipeline asked for). */
  expectedConfig?: GPTConfig;
  /** Config values to use instead of the saved ones that do not change shapes (a fine-tune's drop_rate). */
  overrides?: Pick<Partial<GPTConfig>, "drop_rate">;
  /** Seed of the dropout RNG (default 123, as any new model's). */
  seed?: number;
}

/**
 * Loads a model saved by `saveModel` (or any folder with the book's state_dict as
 * `model.safetensors` and its `config.json`), reading the file tensor by tensor (never one
 * buffer of the whole file).
 */
export async function loadModel(dir: string, options: LoadModelOptions = {}): Promise<GPTModel> {
  const config = { ...await loadModelConfigFile(dir), ...options.overrides };
  if (options.expectedConfig) {
    for (const [key, want] of Object.entries(options.expectedConfig)) {
      const got = config[key as keyof GPTConfig];
      if (got !== want) {
        throw new Error(
          `${join(dir, CONFIG_FILE)}: "${key}" is ${JSON.stringify(got)} but ${
            JSON.stringify(want)
          } was expected`,
        );
      }
    }
  }
  const weightsPath = join(dir, WEIGHTS_FILE);
  await using reader = await openSafetensors(weightsPath);
  const { header } = reader;
  const tiedHead = header.metadata[TIED_HEAD_KEY] === "true";
  const model = new GPTModel(config, { init: "zeros", tiedHead, seed: options.seed });
  try {
    // Check names and shapes against the config before reading any data.
    const shapes = new Map([...header.tensors].map(([name, info]) => [name, info.shape]));
    checkTensorSet(model, shapes, weightsPath);
    const tensors = new Map<string, NamedTensor>();
    for (const name of header.tensors.keys()) {
      const { shape, data } = await reader.read(name);
      tensors.set(name, { shape, data });
    }
    loadStateDict(model, tensors, weightsPath);
    return model;
  } catch (error) {
    model.dispose();
    throw error;
  }
}
