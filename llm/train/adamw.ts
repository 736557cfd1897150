/**
 * AdamW exactly as PyTorch's `torch.optim.AdamW` computes it (single-tensor path, no amsgrad):
 *
 *   p ← p − lr·wd·p                                   (decoupled weight decay, first)
 *   m ← β1·m + (1 − β1)·g
 *   v ← β2·v + (1 − β2)·g²
 *   p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
 *
 * The update is a plain loop over Float32Arrays: tfjs's own `tf.train.adam` spends ~30 s per
 * 124M step in tensor-op overhead where this loop takes under a second. Every parameter is
 * decayed, as the book's `AdamW(model.parameters(), ...)` does.
 */
import * as tf from "@tensorflow/tfjs";
import type { NamedParameter } from "../model/layers.ts";
import { type AdamWConstants, type SimdMath, simdMath } from "../engine/wasm/simd_math.ts";

export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** PyTorch's default is 0.01; the book uses 0.1. */
  weightDecay?: number;
  /**
   * false: the update in a JS loop (double precision, rounded to float32) instead of WebAssembly
   * SIMD in float32 like PyTorch's (default: SIMD where available; ≈ 2.8× faster).
   */
  simd?: boolean;
}

/** Everything needed to resume the optimizer exactly (keyed by parameter name). */
export interface AdamWState {
  /** Steps taken (PyTorch's `state["step"]`); the bias corrections depend on it. */
  step: number;
  /** First-moment (mean) estimates per parameter name. */
  m: Map<string, Float32Array>;
  /** Second-moment (uncentred variance) estimates per parameter name. */
  v: Map<string, Float32Array>;
}

/**
 * PyTorch's AdamW (decoupled weight decay), updating tfjs variables in place; its state can be
 * saved and restored exactly.
 */
export class AdamW {
  /** Learning rate of the next step; a schedule may change it between steps. */
  lr: number;
  /** Decay of the first-moment estimate (default 0.9). */
  readonly beta1: number;
  /** Decay of the second-moment estimate (default 0.999). */
  readonly beta2: number;
  /** Added to the denominator for stability (default 1e-8). */
  readonly eps: number;
  /** Decoupled weight decay, applied as p ← p·(1 − lr·weightDecay) (default 0.01, PyTorch's). */
  readonly weightDecay: number;
  /** Number of steps taken (PyTorch's `state["step"]`, shared by all parameters here). */
  step = 0;
  readonly #params: NamedParameter[];
  readonly #m = new Map<string, Float32Array>();
  readonly #v = new Map<string, Float32Array>();
  /** The float32 WebAssembly SIMD update, or undefined for the JS loop (`simd: false`). */
  readonly #simd: SimdMath | undefined;

  /** `params`: the (name, variable) pairs to update, e.g. `model.trainableParameters()`. */
  constructor(params: NamedParameter[], options: AdamWOptions) {
    this.#params = params;
    this.lr = options.lr;
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.01;
    this.#simd = options.simd === false ? undefined : simdMath();
    const names = new Set<string>();
    for (const [name, variable] of params) {
      if (names.has(name)) throw new Error(`AdamW: parameter "${name}" listed twice`);
      names.add(name);
      this.#m.set(name, new Float32Array(variable.size));
      this.#v.set(name, new Float32Array(variable.size));
    }
  }

  /** The (name, variable) pairs it updates, in the order given. */
  get parameters(): readonly NamedParameter[] {
    return this.#params;
  }

  /**
   * Applies one update. `grads` maps parameter names to gradients (a parameter without one, e.g.
   * unused in the loss, is left alone as PyTorch does with `grad is None`). The gradient tensors
   * are read, not disposed.
   */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  async applyGradients(grads: Map<string, tf.Tensor>): Promise<void> {
    for (const name of grads.keys()) {
      if (!this.#m.has(name)) throw new Error(`AdamW: gradient for unknown parameter "${name}"`);
    }
    this.step += 1;
    const { lr, beta1, beta2, eps, weightDecay } = this;
    // PyTorch's step_size and bias_correction2_sqrt.
    const stepSize = lr / (1 - beta1 ** this.step);
    const biasCorrection2Sqrt = Math.sqrt(1 - beta2 ** this.step);
    const decay = 1 - lr * weightDecay;

    for (const [name, variable] of this.#params) {
      const grad = grads.get(name);
      if (!grad) continue;
      if (grad.size !== variable.size) {
        throw new Error(
          `AdamW: gradient for "${name}" has shape [${grad.shape}], parameter [${variable.shape}]`,
        );
      }
      const g = (await grad.data()) as Float32Array;
      const constants = { beta1, beta2, eps, decay, stepSize, biasCorrection2Sqrt };
      const own = ownedCpuBuffer(variable);
      if (own) {
        // Update the weights where they lie: no 4-bytes-a-parameter allocation per step.
        this.#update(own, g, this.#m.get(name)!, this.#v.get(name)!, own, constants);
        continue;
      }
      // On the cpu backend data() hands out the tensor's own buffer: read it, never write it.
      const current = (await variable.data()) as Float32Array;
      const next = new Float32Array(current.length);
      this.#update(current, g, this.#m.get(name)!, this.#v.get(name)!, next, constants);
      const updated = tf.tensor(next, variable.shape, "float32");
      variable.assign(updated);
      updated.dispose();
    }
  }

  #update(...args: Parameters<typeof adamwUpdate>): void {
    if (this.#simd) this.#simd.adamwUpdate(...args);
    else adamwUpdate(...args);
  }

  /** A copy of the optimizer state, for checkpoints. */
  getState(): AdamWState {
    const copy = (map: Map<string, Float32Array>) =>
      new Map([...map].map(([k, a]) => [k, a.slice()]));
    return { step: this.step, m: copy(this.#m), v: copy(this.#v) };
  }

  /** Restores a state from `getState` (or a checkpoint); names and sizes must match. */
  setState(state: AdamWState, source = "<optimizer state>"): void {
    if (!Number.isInteger(state.step) || state.step < 0) {
      throw new Error(`${source}: step must be a non-negative integer, got ${state.step}`);
    }
    for (const [kind, saved, own] of [["m", state.m, this.#m], ["v", state.v, this.#v]] as const) {
      for (const name of saved.keys()) {
        if (!own.has(name)) throw new Error(`${source}: ${kind} for unknown parameter "${name}"`);
      }
      for (const [name, buffer] of own) {
        const values = saved.get(name);
        if (!values) throw new Error(`${source}: missing ${kind} for parameter "${name}"`);
        if (values.length !== buffer.length) {
          throw new Error(
            `${source}: ${kind} for "${name}" has ${values.length} values, expected ${buffer.length}`,
          );
        }
      }
    }
    for (const [name, buffer] of this.#m) buffer.set(state.m.get(name)!);
    for (const [name, buffer] of this.#v) buffer.set(state.v.get(name)!);
    this.step = state.step;
  }
}

/**
 * The variable's Float32Array on the cpu backend when nothing else refers to it (tfjs's cpu
 * backend shares one buffer between a tensor and its clones/reshapes and counts the references),
 * so writing into it changes this variable alone; undefined otherwise (other backends, shared
 * buffers), where the update goes through `assign`.
 */
function ownedCpuBuffer(variable: tf.Variable): Float32Array | undefined {
  if (tf.getBackend() !== "cpu") return undefined;
  const backend = tf.backend() as unknown as {
    data?: { get(id: unknown): { values?: unknown; refCount?: number } | undefined };
  };
  const entry = backend.data?.get(variable.dataId);
  if (!entry || entry.refCount !== 1 || !(entry.values instanceof Float32Array)) return undefined;
  return entry.values.length === variable.size ? entry.values : undefined;
}

/**
 * The element loop (`out` may be `param` itself: each element is read before it is written), kept in a small plain function so V8 optimises it once for every parameter
 * (inside the async method it would run as on-stack-replaced code).
 */
function adamwUpdate(
  param: Float32Array,
  grad: Float32Array,
  m: Float32Array,
  v: Float32Array,
  out: Float32Array,
  c: AdamWConstants,
): void {
  const { beta1, beta2, eps, decay, stepSize, biasCorrection2Sqrt } = c;
  const oneMinusBeta1 = 1 - beta1;
  const oneMinusBeta2 = 1 - beta2;
  for (let i = 0; i < out.length; i++) {
    const g = grad[i];
    // Rounded to float32 as PyTorch's stored exp_avg / exp_avg_sq are before they are used.
    const mi = Math.fround(beta1 * m[i] + oneMinusBeta1 * g);
    const vi = Math.fround(beta2 * v[i] + oneMinusBeta2 * g * g);
    m[i] = mi;
    v[i] = vi;
    out[i] = param[i] * decay - stepSize * (mi / (Math.sqrt(vi) / biasCorrection2Sqrt + eps));
  }
}

/**
 * Scales the gradients in place (new tensors replace the map's entries) so their global L2 norm
 * is at most `maxNorm`, as `torch.nn.utils.clip_grad_norm_` does; returns the norm before
 * clipping. Replaced tensors are disposed.
 */
export async function clipGradientsByGlobalNorm(
  grads: Map<string, tf.Tensor>,
  maxNorm: number,
): Promise<number> {
  let sumOfSquares = 0;
  for (const grad of grads.values()) {
    const values = await grad.data();
    for (let i = 0; i < values.length; i++) sumOfSquares += values[i] * values[i];
  }
  const totalNorm = Math.sqrt(sumOfSquares);
  const coefficient = maxNorm / (totalNorm + 1e-6);
  if (coefficient < 1) {
    for (const [name, grad] of grads) {
      grads.set(name, tf.mul(grad, coefficient));
      grad.dispose();
    }
  }
  return totalNorm;
}
