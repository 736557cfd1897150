/**
 * The arithmetic of the fused ops (fused_ops.ts) on plain Float32Arrays: one forward loop and one
 * backward loop per op, so a layer norm, a GELU or a dropout costs one pass over memory and one
 * output buffer instead of the 5–10 whole-tensor kernels (and buffers) its plain-tfjs form takes.
 * Sums are accumulated in double precision; stored results are float32.
 */
import { MULBERRY32_STEP } from "../random.ts";

// ---------------------------------------------------------------------------------------------
// exp

const LOG2E = Math.LOG2E;
// ln 2 split in two so k·LN2_HI is exact for |k| < 2^11 (Cody–Waite range reduction).
const LN2_HI = 0.693145751953125;
const LN2_LO = 1.428606765330187e-6;
const POW2_OFFSET = 150;
/** 2^(k − 150) for k = 0..300: the scale step of `fastExp` as a table lookup. */
const POW2 = Float64Array.from({ length: 301 }, (_, k) => Math.pow(2, k - POW2_OFFSET));

/**
 * e^v to about 1.2e-7 relative error (float32 rounding is 6e-8): a degree-7 polynomial after
 * range reduction, 2–3× faster than `Math.exp` in V8 (which calls out to C per element). The
 * result is exact enough for softmax and tanh in float32; it saturates to 0 below −104 (where
 * float32's e^v is 0 anyway) and to e^88.7 above (float32 overflow). NaN stays NaN.
 */
export function fastExp(v: number): number {
  if (v < -104) v = -104;
  else if (v > 88.7) v = 88.7;
  // Round v·log2(e) to the nearest integer; `| 0` truncates, so shift by ±0.5 first. (Math.round
  // is several times slower here.)
  const k = (v * LOG2E + (v < 0 ? -0.5 : 0.5)) | 0;
  const r = v - k * LN2_HI - k * LN2_LO; // |r| ≤ ln2/2 (+ rounding)
  const p = 1 +
    r * (1 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (1 / 720 + r / 5040))))));
  return p * POW2[k + POW2_OFFSET];
}

/**
 * out[i] = e^(x[i]·scale − shift) for i in [start, end), returning their sum: the inner loop of
 * every softmax here, where scale·x − shift ≤ 0 (shift is the row's maximum). `fastExp` written
 * out in the loop: V8 does not inline it reliably, and the call doubles the cost per element.
 */
function expRowInto(
  x: Float32Array,
  start: number,
  end: number,
  scale: number,
  shift: number,
  out: Float32Array,
): number {
  let sum = 0;
  for (let i = start; i < end; i++) {
    let v = x[i] * scale - shift;
    if (v < -104) v = -104;
    const k = (v * LOG2E - 0.5) | 0; // v ≤ 0: truncation after −0.5 rounds to nearest
    const r = v - k * LN2_HI - k * LN2_LO;
    const p = 1 +
      r * (1 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (1 / 720 + r / 5040))))));
    const e = p * POW2[k + POW2_OFFSET];
    out[i] = e;
    sum += e;
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------
// Layer norm over the last axis (the book's LayerNorm: biased variance, eps inside the root)

/** y = scale·(x − mean)/√(var + eps) + shift per row of `dim`; also returns mean and 1/√(var+eps). */
export function layerNormForward(
  x: Float32Array,
  scale: Float32Array,
  shift: Float32Array,
  dim: number,
  eps: number,
): { y: Float32Array; mean: Float32Array; rstd: Float32Array } {
  const rows = x.length / dim;
  const y = new Float32Array(x.length);
  const mean = new Float32Array(rows);
  const rstd = new Float32Array(rows);
  for (let r = 0, start = 0; r < rows; r++, start += dim) {
    const end = start + dim;
    let sum = 0;
    for (let i = start; i < end; i++) sum += x[i];
    const mu = sum / dim;
    let squares = 0;
    for (let i = start; i < end; i++) {
      const centered = x[i] - mu;
      squares += centered * centered;
    }
    const inv = 1 / Math.sqrt(squares / dim + eps);
    mean[r] = mu;
    rstd[r] = inv;
    for (let i = start, j = 0; i < end; i++, j++) y[i] = (x[i] - mu) * inv * scale[j] + shift[j];
  }
  return { y, mean, rstd };
}

/**
 * Gradients of layer norm: with x̂ = (x − mean)·rstd and g = dy·scale,
 * dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), dscale = Σ_rows dy·x̂, dshift = Σ_rows dy.
 */
export function layerNormBackward(
  dy: Float32Array,
  x: Float32Array,
  scale: Float32Array,
  mean: Float32Array,
  rstd: Float32Array,
  dim: number,
): { dx: Float32Array; dscale: Float32Array; dshift: Float32Array } {
  const rows = x.length / dim;
  const dx = new Float32Array(x.length);
  const dscale = new Float64Array(dim);
  const dshift = new Float64Array(dim);
  for (let r = 0, start = 0; r < rows; r++, start += dim) {
    const mu = mean[r];
    const inv = rstd[r];
    let sumG = 0;
    let sumGXhat = 0;
    for (let i = start, j = 0; j < dim; i++, j++) {
      const xhat = (x[i] - mu) * inv;
      const d = dy[i];
      const g = d * scale[j];
      sumG += g;
      sumGXhat += g * xhat;
      dscale[j] += d * xhat;
      dshift[j] += d;
    }
    const meanG = sumG / dim;
    const meanGXhat = sumGXhat / dim;
    for (let i = start, j = 0; j < dim; i++, j++) {
      const xhat = (x[i] - mu) * inv;
      dx[i] = inv * (dy[i] * scale[j] - meanG - xhat * meanGXhat);
    }
  }
  return { dx, dscale: Float32Array.from(dscale), dshift: Float32Array.from(dshift) };
}

// ---------------------------------------------------------------------------------------------
// GELU, tanh approximation

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_CUBIC = 0.044715;

/**
 * y = 0.5·x·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³); also the tanh values, for the backward.
 * tanh(u) = sign(u)·(1 − e)/(1 + e) with e = e^(−2|u|) ≤ 1, `fastExp` written out in the loop.
 */
export function geluForward(x: Float32Array): { y: Float32Array; tanh: Float32Array } {
  const y = new Float32Array(x.length);
  const tanh = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    const u = SQRT_2_OVER_PI * (v + GELU_CUBIC * v * v * v);
    let w = u < 0 ? 2 * u : -2 * u; // −2|u|
    if (w < -104) w = -104;
    const k = (w * LOG2E - 0.5) | 0;
    const r = w - k * LN2_HI - k * LN2_LO;
    const p = 1 +
      r * (1 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (1 / 720 + r / 5040))))));
    const e = p * POW2[k + POW2_OFFSET];
    const magnitude = (1 - e) / (1 + e);
    const t = u < 0 ? -magnitude : magnitude;
    tanh[i] = t;
    y[i] = 0.5 * v * (1 + t);
  }
  return { y, tanh };
}

/** dx = dy·(0.5·(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²)), t the forward's tanh. */
export function geluBackward(dy: Float32Array, x: Float32Array, tanh: Float32Array): Float32Array {
  const dx = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    const t = tanh[i];
    const inner = SQRT_2_OVER_PI * (1 + 3 * GELU_CUBIC * v * v);
    dx[i] = dy[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * inner);
  }
  return dx;
}

// ---------------------------------------------------------------------------------------------
// Dropout

/**
 * A keep mask (1 = kept) for `size` elements, each dropped with probability `rate`, from a
 * mulberry32 stream seeded with `seed` (the same generator as llm/random.ts, inlined because it
 * runs once per element).
 */
export function dropoutMask(size: number, rate: number, seed: number): Uint8Array {
  const mask = new Uint8Array(size);
  let state = seed >>> 0;
  for (let i = 0; i < size; i++) {
    let t = (state = (state + MULBERRY32_STEP) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const uniform = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    mask[i] = uniform >= rate ? 1 : 0;
  }
  return mask;
}

/** out = x·mask/(1 − rate): PyTorch's inverted dropout (also the backward, with dy for x). */
export function applyDropoutMask(x: Float32Array, mask: Uint8Array, rate: number): Float32Array {
  const out = new Float32Array(x.length);
  const keepScale = 1 / (1 - rate);
  for (let i = 0; i < x.length; i++) out[i] = mask[i] ? x[i] * keepScale : 0;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Causal softmax (attention weights)

/**
 * softmax(scores / divisor) over the last axis with a causal mask: in each [queries, keys]
 * matrix, query i (absolute position offset + i) sees keys 0..offset+i; the rest get weight 0
 * (the book's masked_fill(-inf) before the softmax). Rows with no visible key (impossible for
 * offset ≥ 0) would be NaN, as in PyTorch.
 */
export function causalSoftmaxForward(
  scores: Float32Array,
  numQueries: number,
  numKeys: number,
  offset: number,
  divisor: number,
): Float32Array {
  const out = new Float32Array(scores.length);
  const scale = 1 / divisor;
  const matrices = scores.length / (numQueries * numKeys);
  for (let m = 0; m < matrices; m++) {
    for (let q = 0; q < numQueries; q++) {
      const start = (m * numQueries + q) * numKeys;
      const visible = Math.min(numKeys, offset + q + 1);
      const end = start + visible;
      let max = -Infinity;
      for (let i = start; i < end; i++) {
        const v = scores[i] * scale;
        if (v > max || Number.isNaN(v)) max = v;
      }
      const inv = 1 / expRowInto(scores, start, end, scale, max, out);
      for (let i = start; i < end; i++) out[i] *= inv;
      // Masked keys keep their 0.
    }
  }
  return out;
}

/** dscores = p·(dp − Σ p·dp) / divisor, row by row (masked entries have p = 0, hence 0). */
export function softmaxBackward(
  dp: Float32Array,
  p: Float32Array,
  rowLength: number,
  divisor: number,
): Float32Array {
  const out = new Float32Array(p.length);
  for (let start = 0; start < p.length; start += rowLength) {
    const end = start + rowLength;
    let dot = 0;
    for (let i = start; i < end; i++) dot += p[i] * dp[i];
    for (let i = start; i < end; i++) out[i] = (p[i] * (dp[i] - dot)) / divisor;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Softmax cross-entropy over the vocabulary

/**
 * Mean over kept rows of logsumexp(row) − row[target] (rows whose target equals `ignoreIndex`
 * are skipped; NaN when all are, as PyTorch's 0/0). Also returns, for the backward, each row's
 * e^(x − max) in a fresh buffer and 1/Σe^(x − max) per row (normalising here would cost a third
 * pass over the [rows, vocab] logits; the backward folds it into its own pass), and the number of
 * kept rows.
 */
export function crossEntropyForward(
  logits: Float32Array,
  targets: Int32Array,
  vocab: number,
  ignoreIndex: number,
): { loss: number; exps: Float32Array; inverseSums: Float32Array; kept: number } {
  const rows = targets.length;
  const exps = new Float32Array(logits.length);
  const inverseSums = new Float32Array(rows);
  let total = 0;
  let kept = 0;
  for (let r = 0; r < rows; r++) {
    const start = r * vocab;
    const end = start + vocab;
    let max = -Infinity;
    for (let i = start; i < end; i++) {
      const v = logits[i];
      if (v > max || Number.isNaN(v)) max = v;
    }
    const sum = expRowInto(logits, start, end, 1, max, exps);
    inverseSums[r] = 1 / sum;
    const nll = rowNegativeLogLikelihood(logits, r, vocab, targets[r], ignoreIndex, sum, max);
    if (nll === undefined) continue;
    total += nll;
    kept++;
  }
  return { loss: total / kept, exps, inverseSums, kept };
}

/**
 * log Σe^(x − max) + max − x[target] for row `r`, given the row's Σe^(x − max) and max;
 * undefined for an ignored row. A target outside the vocabulary is an error naming the row.
 */
export function rowNegativeLogLikelihood(
  logits: Float32Array,
  r: number,
  vocab: number,
  target: number,
  ignoreIndex: number,
  sumExp: number,
  max: number,
): number | undefined {
  if (target === ignoreIndex) return undefined;
  if (target < 0 || target >= vocab) {
    throw new Error(`crossEntropy: target ${target} at row ${r} is outside [0, ${vocab})`);
  }
  return Math.log(sumExp) + max - logits[r * vocab + target];
}

/**
 * In place: the forward's exps → d loss / d logits = (softmax − onehot(target))·dLoss/kept on
 * kept rows, 0 on ignored rows.
 */
export function crossEntropyBackwardInPlace(
  exps: Float32Array,
  inverseSums: Float32Array,
  targets: Int32Array,
  vocab: number,
  ignoreIndex: number,
  kept: number,
  dLoss: number,
): Float32Array {
  const scale = dLoss / kept;
  for (let r = 0; r < targets.length; r++) {
    const start = r * vocab;
    const end = start + vocab;
    const target = targets[r];
    if (target === ignoreIndex) {
      exps.fill(0, start, end);
      continue;
    }
    const factor = inverseSums[r] * scale;
    for (let i = start; i < end; i++) exps[i] *= factor;
    exps[start + target] -= scale;
  }
  return exps;
}
