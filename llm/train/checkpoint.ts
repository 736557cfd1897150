/**
 * Training checkpoints: everything needed to continue a run exactly where it stopped —
 * the weights, AdamW's moments and step count, the dropout RNG's state and the position in
 * the data order, plus whatever the caller wants to carry (history, samples).
 *
 * A checkpoint is a folder written under a temporary name and renamed into place, so a
 * crash while saving leaves the previous checkpoint intact.
 */
import { join } from "node:path";
import type { GPTModel } from "../model/gpt.ts";
import type { NamedParameter } from "../model/layers.ts";
import { groupShards, stateNameOf } from "../model/sharded.ts";
import { loadModel, saveModel } from "../model/weights_io.ts";
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
}

const STATE_FILE = "state.json";
const OPTIMIZER_FILE = "optimizer.safetensors";

/**
 * Writes a checkpoint of `model` (all its weights), `optimizer` and `state` into `dir`,
 * replacing the previous one only once the new one is complete.
 */
export async function saveCheckpoint<Extra>(
  dir: string,
  model: GPTModel,
  optimizer: AdamW,
  state: Omit<CheckpointState<Extra>, "format" | "dropoutRngState">,
): Promise<void> {
  const temp = `${dir}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await saveModel(temp, model);
    const { state: joined, shapes } = joinShardedState(optimizer.getState(), optimizer.parameters);
    await saveAdamWState(join(temp, OPTIMIZER_FILE), joined, shapes);
    const full: CheckpointState<Extra> = {
      format: 1,
      ...state,
      dropoutRngState: model.dropoutRng.state,
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
    throw error;
  }
}

/** The checkpoint's state, or undefined when there is none (a half-written one never counts). */
export async function readCheckpointState<Extra>(
  dir: string,
): Promise<CheckpointState<Extra> | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(dir, STATE_FILE));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  try {
    const state = JSON.parse(text) as CheckpointState<Extra>;
    if (state.format !== 1) throw new Error(`unknown format ${state.format}`);
    return state;
  } catch (error) {
    throw new Error(
      `${join(dir, STATE_FILE)}: not a valid checkpoint: ${(error as Error).message}`,
    );
  }
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
