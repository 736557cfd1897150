/**
 * AdamW state in a safetensors file, for training checkpoints: `m.<param>` and `v.<param>`
 * tensors plus the step count in the metadata. Written atomically (temp file + rename).
 */
import {
  type NamedTensor,
  readSafetensorsFile,
  writeSafetensorsFile,
} from "../weights/safetensors.ts";
import type { AdamWState } from "./adamw.ts";

const STEP_KEY = "groundup.adamw.step";

/** Writes `state` to `path`; `shapes` gives each parameter's shape (e.g. from the model). */
export async function saveAdamWState(
  path: string,
  state: AdamWState,
  shapes: Map<string, readonly number[]>,
): Promise<void> {
  const tensors = new Map<string, NamedTensor>();
  for (const [kind, buffers] of [["m", state.m], ["v", state.v]] as const) {
    for (const [name, data] of buffers) {
      const shape = shapes.get(name);
      if (!shape) throw new Error(`saveAdamWState: no shape given for parameter "${name}"`);
      tensors.set(`${kind}.${name}`, { shape: [...shape], data });
    }
  }
  await writeSafetensorsFile(path, tensors, { [STEP_KEY]: String(state.step) });
}

/** Reads a state written by `saveAdamWState`; `AdamW.setState` then checks it fits. */
export async function loadAdamWState(path: string): Promise<AdamWState> {
  const { tensors, metadata } = await readSafetensorsFile(path);
  const step = Number(metadata[STEP_KEY]);
  if (!Number.isInteger(step) || step < 0) {
    throw new Error(
      `${path}: metadata "${STEP_KEY}" must be a step count, got ${
        JSON.stringify(metadata[STEP_KEY])
      }`,
    );
  }
  const state: AdamWState = { step, m: new Map(), v: new Map() };
  for (const [key, tensor] of tensors) {
    const match = /^(m|v)\.(.+)$/.exec(key);
    if (!match) {
      throw new Error(`${path}: unexpected tensor "${key}" (expected m.<param> or v.<param>)`);
    }
    state[match[1] as "m" | "v"].set(match[2], tensor.data);
  }
  return state;
}
