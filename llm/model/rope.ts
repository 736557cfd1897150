/**
 * Rotary position embedding (RoPE), "rotate half" style as in the book's Llama 3 / Qwen3 / Gemma 3
 * code and Hugging Face (llama.cpp's NEOX): the first `rotary_dim` dims of each query and key
 * head are split into halves (x1, x2) and rotated pairwise by an angle position · inv_freq[i]:
 *
 *   x1' = x1·cos − x2·sin,   x2' = x2·cos + x1·sin
 *
 * which is the book's `x·cos + cat(−x2, x1)·sin` with cos = cat(c, c), written over the halves so
 * the tables hold rotary_dim / 2 columns. Dims past `rotary_dim` pass through (Phi-2's partial
 * rotary). A dot product of rotated vectors depends only on the positions' difference, which is
 * why cached keys stay valid when batched generation shifts a row's padding.
 */
import * as tf from "@tensorflow/tfjs";
import type { RopeScaling } from "./config.ts";
import { blockKernelsActive, fusedRope } from "../engine/block_kernels.ts";

const f32 = Math.fround;

/**
 * inv_freq[i] = θ^(−2i/d) for i < d/2 (d = rotaryDim), with Llama 3's frequency scaling when
 * given. Every step is rounded to float32 as the references compute it (the book's
 * `compute_rope_params` and Hugging Face both work in float32 tensors), so the angles, and with
 * them long-prompt logits, match theirs rather than a more exact value.
 */
export function ropeInverseFrequencies(
  rotaryDim: number,
  theta: number,
  scaling?: RopeScaling,
): Float32Array {
  if (rotaryDim % 2 !== 0) throw new Error(`RoPE: rotary width ${rotaryDim} must be even`);
  const half = rotaryDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const exponent = f32((2 * i) / rotaryDim);
    inv[i] = f32(1 / f32(Math.pow(f32(theta), exponent)));
  }
  return scaling ? llama3ScaledFrequencies(inv, scaling) : inv;
}

/**
 * Llama 3's scaling: with wavelength = 2π / inv, frequencies whose wavelength is below
 * L0 / high_freq_factor are kept, those above L0 / low_freq_factor are divided by `factor`, and
 * those between are interpolated: s = (L0 / wavelength − lf) / (hf − lf),
 * inv' = (1 − s)·inv/factor + s·inv.
 */
export function llama3ScaledFrequencies(inv: Float32Array, scaling: RopeScaling): Float32Array {
  const { factor, low_freq_factor: lf, high_freq_factor: hf } = scaling;
  const L0 = scaling.original_context_length;
  const lowFreqWavelen = L0 / lf;
  const highFreqWavelen = L0 / hf;
  const twoPi = f32(2 * Math.PI);
  return inv.map((freq) => {
    // torch computes `2π / inv` as reciprocal(inv) · 2π in float32.
    const wavelen = f32(f32(1 / freq) * twoPi);
    if (wavelen < highFreqWavelen) return freq;
    const divided = f32(freq / factor);
    if (wavelen > lowFreqWavelen) return divided;
    const smooth = f32(f32(f32(f32(1 / wavelen) * L0) - lf) / (hf - lf));
    return f32(f32(f32(1 - smooth) * divided) + f32(smooth * freq));
  });
}

/** cos and sin of one call's positions, [rows (1 or batch), 1, tokens, rotary_dim / 2] each. */
export interface RopeAngles {
  /** cos of each position · inv_freq[i]. */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  cos: tf.Tensor4D;
  /** sin of each position · inv_freq[i]. */
  sin: tf.Tensor4D;
}

/**
 * The cos/sin tables of one θ (and scaling), computed once per model and grown on demand up to
 * `maxPositions` rows, so a 128k-context model does not pay for positions it never reaches.
 */
export class RotaryEmbedding {
  /** inv_freq, rotary_dim / 2 entries. */
  readonly inverseFrequencies: Float32Array;
  /** Columns of the tables: rotary_dim / 2. */
  readonly half: number;
  private cosTable = new Float32Array(0);
  private sinTable = new Float32Array(0);
  private rows = 0;

  /** Tables for positions 0..maxPositions-1 of a `rotaryDim`-wide rotation with base `theta`. */
  constructor(
    readonly rotaryDim: number,
    readonly theta: number,
    readonly maxPositions: number,
    readonly scaling?: RopeScaling,
  ) {
    this.inverseFrequencies = ropeInverseFrequencies(rotaryDim, theta, scaling);
    this.half = rotaryDim / 2;
  }

  /** Makes sure rows 0..positions-1 exist (doubling, capped at maxPositions). */
  private grow(positions: number): void {
    if (positions <= this.rows) return;
    if (positions > this.maxPositions) {
      throw new Error(`RoPE: position ${positions - 1} is past the table's ${this.maxPositions}`);
    }
    const rows = Math.min(this.maxPositions, Math.max(positions, 2 * this.rows, 64));
    const { half, inverseFrequencies: inv } = this;
    const cos = new Float32Array(rows * half);
    const sin = new Float32Array(rows * half);
    cos.set(this.cosTable);
    sin.set(this.sinTable);
    for (let p = this.rows; p < rows; p++) {
      for (let i = 0; i < half; i++) {
        // The angle is a float32 product, as `positions · inv_freq` is in the references.
        const angle = f32(p * inv[i]);
        cos[p * half + i] = Math.cos(angle);
        sin[p * half + i] = Math.sin(angle);
      }
    }
    this.cosTable = cos;
    this.sinTable = sin;
    this.rows = rows;
  }

  /**
   * Angles for `positions`, one list per row (or one list shared by every row), as tensors
   * [rows, 1, tokens, half] that broadcast over the heads.
   */
  angles(positions: readonly (readonly number[])[]): RopeAngles {
    const rows = positions.length;
    const tokens = positions[0].length;
    let last = 0;
    for (const row of positions) for (const p of row) last = Math.max(last, p);
    this.grow(last + 1);
    const { half } = this;
    const cos = new Float32Array(rows * tokens * half);
    const sin = new Float32Array(rows * tokens * half);
    positions.forEach((row, b) => {
      row.forEach((p, t) => {
        const to = (b * tokens + t) * half;
        cos.set(this.cosTable.subarray(p * half, (p + 1) * half), to);
        sin.set(this.sinTable.subarray(p * half, (p + 1) * half), to);
      });
    });
    const shape: [number, number, number, number] = [rows, 1, tokens, half];
    return { cos: tf.tensor4d(cos, shape), sin: tf.tensor4d(sin, shape) };
  }
}

/**
 * Rotates the first 2·half dims of x [batch, heads, tokens, headDim] by `angles` (see the module
 * comment); the remaining dims pass through unchanged. With `tokenMajor`, x is
 * [batch, tokens, heads, headDim] (the projections' own order, which the in-place KV cache reads
 * without a transpose).
 */
// deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
export function applyRope(x: tf.Tensor4D, angles: RopeAngles, tokenMajor = false): tf.Tensor4D {
  // The cpu engine: the same arithmetic in one kernel (tfjs's Slice of each half is slow there).
  if (blockKernelsActive()) return fusedRope(x, angles.cos, angles.sin, tokenMajor);
  const [batch, dim1, dim2, headDim] = x.shape;
  const half = angles.cos.shape[3];
  const x1 = tf.slice(x, [0, 0, 0, 0], [batch, dim1, dim2, half]);
  const x2 = tf.slice(x, [0, 0, 0, half], [batch, dim1, dim2, half]);
  // Token-major: the angles [rows, 1, tokens, half] broadcast as [rows, tokens, 1, half].
  const [cos, sin] = tokenMajor
    ? [angles.cos, angles.sin].map((t) => tf.reshape(t, [t.shape[0], t.shape[2], 1, half]))
    : [angles.cos, angles.sin];
  const parts = [
    tf.sub(tf.mul(x1, cos), tf.mul(x2, sin)),
    tf.add(tf.mul(x2, cos), tf.mul(x1, sin)),
  ];
  if (2 * half < headDim) {
    parts.push(tf.slice(x, [0, 0, 0, 2 * half], [batch, dim1, dim2, headDim - 2 * half]));
  }
  return tf.concat(parts, 3) as tf.Tensor4D;
}
