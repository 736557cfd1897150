/**
 * Training checkpoints: everything needed to continue a run exactly where it stopped —
 * the weights, AdamW's moments and step count, the dropout RNG's state and the position in
 * the data order, plus whatever the caller wants to carry (history, samples).
 *
 * A checkpoint is a folder written under a temporary name and renamed into place, so a
 * crash while saving (or a full disk) leaves the previous checkpoint intact. Its state.json,
 * written last, records the size and sha256 of every other file: a checkpoint damaged later
 * (truncated, overwritten) is reported and set aside as `checkpoint.corrupt-<time>` instead
 * of resuming with garbage, and the run starts from scratch, saying so.
 */
import { basename, dirname, join } from "node:path";
import { describeFsError, ensureFreeSpace, isDiskFull } from "../../util/disk.ts";
import { type DamageWords, findDamage, recordFiles } from "../../util/file_manifest.ts";
import type { GPTModel } from "../model/gpt.ts";
import type { NamedParameter } from "../model/layers.ts";
import { groupShards, stateNameOf } from "../model/sharded.ts";
import { loadModel, saveModel } from "../model/weights_io.ts";
import { type NamedTensor, openSafetensors, writeSafetensorsFile } from "../weights/safetensors.ts";
import * as tf from "@tensorflow/tfjs";
import type { AdamW, AdamWState } from "./adamw.ts";
import { loadAdamWState, saveAdamWState } from "./optimizer_io.ts";

/** Where a run stands: the next step's epoch and batch, and what was done before it. */
export interface TrainingPosition {
  /** 0-based epoch the next step belongs to. */
  epoch: number;
  /** Index of the next batch within that epoch. */
  batch: number;
  /** Optimizer steps taken so far. */
  step: number;
  /** Input tokens trained on so far. */
  tokensSeen: number;
}

/** state.json of a checkpoint: everything but the weights and the optimizer's moments. */
export interface CheckpointState<Extra> {
  /** The layout version of the checkpoint folder. */
  format: 1;
  /** Where training continues. */
  position: TrainingPosition;
  /** The model's dropout RNG, so resumed masks are the ones an uninterrupted run draws. */
  dropoutRngState: number;
  /** Identifies the run the checkpoint belongs to (e.g. a cache key); checked on resume. */
  runId: string;
  /** Whatever the caller carries (the loop's history and samples). */
  extra: Extra;
  /** Size and sha256 of each file of the checkpoint (absent in checkpoints of older versions). */
  files?: Record<string, { size: number; sha256: string }>;
}

const STATE_FILE = "state.json";
const OPTIMIZER_FILE = "optimizer.safetensors";
/** The named tensors of a checkpoint that holds only what is trained (a LoRA adapter). */
const TRAINABLE_FILE = "trainable.safetensors";

/** What `saveCheckpoint` writes. */
export interface CheckpointContents<Extra> {
  /** Its weights, all of them (frozen ones too). */
  model: GPTModel;
  /** Its moments and step count. */
  optimizer: AdamW;
  /** Where training stands; the dropout RNG state and file list are added by `saveCheckpoint`. */
  state: Omit<CheckpointState<Extra>, "format" | "dropoutRngState" | "files">;
  /**
   * Save only these tensors (by name) instead of the whole model: a fine-tune whose base stays
   * frozen keeps its checkpoints small. Restore them with {@link restoreCheckpoint}.
   */
  trainable?: readonly NamedParameter[];
}

/**
 * Writes a checkpoint of `model` (all its weights, or only `contents.trainable`), `optimizer` and
 * `state` into `dir`, replacing the previous one only once the new one is complete.
 */
export async function saveCheckpoint<Extra>(
  dir: string,
  contents: CheckpointContents<Extra>,
): Promise<void> {
  const { model, optimizer, state, trainable } = contents;
  // Weights plus AdamW's two moments: 12 bytes a parameter, and the previous checkpoint
  // stays on disk until the new one is complete. Fail before writing anything if it won't fit.
  const saved = trainable ? trainable.reduce((n, [, v]) => n + v.size, 0) : model.numParameters();
  await ensureFreeSpace(
    dirname(dir),
    12 * saved + 1_000_000,
    `a checkpoint (the previous one in ${dir} is kept)`,
  );
  const temp = `${dir}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  try {
    if (trainable) {
      await Deno.mkdir(temp, { recursive: true });
      const tensors = new Map<string, NamedTensor>();
      for (const [name, variable] of trainable) {
        tensors.set(name, {
          shape: [...variable.shape],
          data: (await variable.data()) as Float32Array,
        });
      }
      await writeSafetensorsFile(join(temp, TRAINABLE_FILE), tensors, { format: "pt" });
    } else {
      await saveModel(temp, model);
    }
    const { state: joined, shapes } = joinShardedState(optimizer.getState(), optimizer.parameters);
    await saveAdamWState(join(temp, OPTIMIZER_FILE), joined, shapes);
    const full: CheckpointState<Extra> = {
      format: 1,
      ...state,
      dropoutRngState: model.dropoutRng.state,
      files: await recordFiles(temp, STATE_FILE),
    };
    await Deno.writeTextFile(join(temp, STATE_FILE), JSON.stringify(full) + "\n");
    // Replace the previous checkpoint: move it aside, move the new one in, drop the old one.
    const old = `${dir}.old-${crypto.randomUUID().slice(0, 8)}`;
    let hadOld = true;
    try {
      await Deno.rename(dir, old);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      hadOld = false;
    }
    await Deno.rename(temp, dir);
    if (hadOld) await Deno.remove(old, { recursive: true });
  } catch (error) {
    await Deno.remove(temp, { recursive: true }).catch(() => {});
    if (isDiskFull(error)) {
      throw new Error(
        `writing a checkpoint: ${
          describeFsError(error, temp)
        }; the previous checkpoint in ${dir} is kept`,
      );
    }
    throw error;
  }
}

/** A checkpoint's files are compared with what was written (its state.json's list). */
const CHECKPOINT_DAMAGE: DamageWords = {
  recordedSize: (bytes) => `${bytes} were written`,
  changed: "has changed since it was written (sha256 differs)",
};

/**
 * Checkpoints verified in this process (dir → state.json's text and each file's size and
 * mtime), so reading the state and then loading hashes the files once.
 */
const verified = new Map<string, string>();

async function fingerprint(dir: string, text: string, files: Record<string, unknown>) {
  const stats = [];
  for (const name of Object.keys(files)) {
    const stat = await Deno.stat(join(dir, name)).catch(() => undefined);
    stats.push([name, stat?.size, stat?.mtime?.getTime()]);
  }
  return JSON.stringify([text, stats]);
}

/**
 * Move a damaged checkpoint out of the way (`checkpoint.corrupt-<time>`, kept for inspection)
 * and say what happens next.
 */
async function setAside(dir: string, problem: string, warn: (line: string) => void) {
  const aside = `${dir}.corrupt-${new Date().toISOString().replace(/[:.]/g, "-")}`;
  await Deno.rename(dir, aside);
  warn(
    `the checkpoint in ${dir} is damaged (${problem}); moved it to ${
      basename(aside)
    } and starting from scratch`,
  );
}

/**
 * The checkpoint's state, or undefined when there is none (a half-written one never counts).
 * A checkpoint whose files no longer match the sizes and hashes it recorded, or whose
 * state.json is unreadable, is set aside (reported through `warn`) and counts as none.
 */
export async function readCheckpointState<Extra>(
  dir: string,
  warn: (line: string) => void = (line) => console.error(`warning: ${line}`),
): Promise<CheckpointState<Extra> | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(dir, STATE_FILE));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  let state: CheckpointState<Extra>;
  try {
    state = JSON.parse(text) as CheckpointState<Extra>;
    if (state.format !== 1) throw new Error(`unknown format ${state.format}`);
  } catch (error) {
    await setAside(dir, `${STATE_FILE} is not valid: ${(error as Error).message}`, warn);
    return undefined;
  }
  if (state.files) {
    const seen = await fingerprint(dir, text, state.files);
    if (verified.get(dir) !== seen) {
      const problem = await findDamage(dir, state.files, "contents", CHECKPOINT_DAMAGE);
      if (problem) {
        verified.delete(dir);
        await setAside(dir, problem, warn);
        return undefined;
      }
      verified.set(dir, seen);
    }
  }
  return state;
}

/**
 * Restore a checkpoint into a fresh model/optimizer pair. The weights file is checked against
 * the model's config and parameter shapes; the optimizer state against its parameters.
 */
export async function loadCheckpoint<Extra>(
  dir: string,
  makeOptimizer: (model: GPTModel) => AdamW,
): Promise<{ model: GPTModel; optimizer: AdamW; state: CheckpointState<Extra> }> {
  const state = await readCheckpointState<Extra>(dir);
  if (!state) throw new Error(`${dir}: no checkpoint`);
  const model = await loadModel(dir);
  model.dropoutRng.state = state.dropoutRngState;
  const optimizer = makeOptimizer(model);
  const path = join(dir, OPTIMIZER_FILE);
  optimizer.setState(splitShardedState(await loadAdamWState(path), optimizer.parameters), path);
  return { model, optimizer, state };
}

/**
 * Restore a checkpoint written with `contents.trainable` into the model and optimizer at hand
 * (the frozen base already loaded, the adapters in place): every named tensor must be in the
 * file with its shape; the dropout RNG and AdamW's state come back too.
 */
export async function restoreCheckpoint<Extra>(
  dir: string,
  model: GPTModel,
  optimizer: AdamW,
  trainable: readonly NamedParameter[],
): Promise<CheckpointState<Extra>> {
  const state = await readCheckpointState<Extra>(dir);
  if (!state) throw new Error(`${dir}: no checkpoint`);
  const path = join(dir, TRAINABLE_FILE);
  {
    await using reader = await openSafetensors(path);
    const names = new Set(trainable.map(([name]) => name));
    const unknown = [...reader.header.tensors.keys()].filter((n) => !names.has(n));
    if (unknown.length > 0) throw new Error(`${path}: unknown tensor(s) ${unknown.join(", ")}`);
    for (const [name, variable] of trainable) {
      const info = reader.header.tensors.get(name);
      if (!info) throw new Error(`${path}: missing tensor "${name}"`);
      if (info.shape.join() !== variable.shape.join()) {
        throw new Error(
          `${path}: "${name}" has shape [${info.shape}], expected [${variable.shape}]`,
        );
      }
      const { data } = await reader.read(name);
      variable.assign(tf.tensor(data, variable.shape, "float32"));
    }
  }
  model.dropoutRng.state = state.dropoutRngState;
  const optimizerPath = join(dir, OPTIMIZER_FILE);
  optimizer.setState(
    splitShardedState(await loadAdamWState(optimizerPath), optimizer.parameters),
    optimizerPath,
  );
  return state;
}

/**
 * The optimizer state keyed by state_dict names: the moments of a vocabulary matrix held as row
 * shards (webgpu, see model/sharded.ts) are joined in row order, so a checkpoint taken on one
 * backend resumes on another, whatever the split.
 */
export function joinShardedState(
  state: AdamWState,
  params: readonly NamedParameter[],
): { state: AdamWState; shapes: Map<string, number[]> } {
  const joined: AdamWState = { step: state.step, m: new Map(), v: new Map() };
  const shapes = new Map<string, number[]>();
  const tensors = groupShards(params);
  let index = 0;
  for (const tensor of tensors) {
    // groupShards keeps the parameters' order: this tensor's parts are the next parts.length.
    const names = params.slice(index, index + tensor.parts.length).map(([name]) => name);
    index += tensor.parts.length;
    shapes.set(tensor.name, tensor.shape);
    for (const kind of ["m", "v"] as const) {
      const parts = names.map((name) => state[kind].get(name));
      if (parts.some((part) => part === undefined)) continue; // setState will name what is missing
      if (parts.length === 1) {
        joined[kind].set(tensor.name, parts[0]!);
        continue;
      }
      const whole = new Float32Array(parts.reduce((n, part) => n + part!.length, 0));
      let offset = 0;
      for (const part of parts) {
        whole.set(part!, offset);
        offset += part!.length;
      }
      joined[kind].set(tensor.name, whole);
    }
  }
  return { state: joined, shapes };
}

/**
 * The inverse of `joinShardedState` for the parameters at hand: each row shard takes its rows of
 * the saved whole. Entries saved under a parameter's own name (unsharded, or a checkpoint written
 * before states were joined) are used as they are.
 */
export function splitShardedState(
  saved: AdamWState,
  params: readonly NamedParameter[],
): AdamWState {
  const split: AdamWState = { step: saved.step, m: new Map(), v: new Map() };
  // The names this model accounts for: its parameters and the wholes their shards come from.
  const known = new Set(params.flatMap(([name]) => [name, stateNameOf(name).stateName]));
  for (const kind of ["m", "v"] as const) {
    for (const [name, variable] of params) {
      const own = saved[kind].get(name);
      if (own) {
        split[kind].set(name, own);
        continue;
      }
      const { stateName, startRow } = stateNameOf(name);
      const whole = saved[kind].get(stateName);
      if (stateName === name || !whole) continue; // setState will name what is missing
      const cols = variable.size / variable.shape[0];
      split[kind].set(
        name,
        whole.slice(startRow * cols, (startRow + variable.shape[0]) * cols),
      );
    }
    // Anything else in the file goes through, for setState to reject by name.
    for (const [name, values] of saved[kind]) if (!known.has(name)) split[kind].set(name, values);
  }
  return split;
}
