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
import { loadModel, saveModel } from "../model/weights_io.ts";
import type { AdamW } from "./adamw.ts";
import { loadAdamWState, saveAdamWState } from "./optimizer_io.ts";

export interface TrainingPosition {
  /** 0-based epoch the next step belongs to. */
  epoch: number;
  /** Index of the next batch within that epoch. */
  batch: number;
  /** Optimizer steps taken so far. */
  step: number;
  tokensSeen: number;
}

export interface CheckpointState<Extra> {
  format: 1;
  position: TrainingPosition;
  dropoutRngState: number;
  /** Identifies the run the checkpoint belongs to (e.g. a cache key); checked on resume. */
  runId: string;
  extra: Extra;
}

const STATE_FILE = "state.json";
const OPTIMIZER_FILE = "optimizer.safetensors";

export async function saveCheckpoint<Extra>(
  dir: string,
  model: GPTModel,
  optimizer: AdamW,
  state: Omit<CheckpointState<Extra>, "format" | "dropoutRngState">,
): Promise<void> {
  const temp = `${dir}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await saveModel(temp, model);
    const shapes = new Map(model.namedParameters().map(([name, v]) => [name, v.shape]));
    await saveAdamWState(join(temp, OPTIMIZER_FILE), optimizer.getState(), shapes);
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
  optimizer.setState(await loadAdamWState(path), path);
  return { model, optimizer, state };
}
