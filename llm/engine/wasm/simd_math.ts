/**
 * Loops of fused_math.ts (the GELU, causal softmax and cross-entropy forwards, dropout both ways)
 * and the AdamW update on the SIMD kernels: same signatures, results to float32 accuracy (dropout
 * bit for bit), 2–3× faster. Inputs are copied into the module's memory in chunks that stay
 * cache-sized, processed there and copied out.
 *
 * `simdMath()` is undefined where WebAssembly SIMD is unavailable; callers then use the JS loops.
 * The other backward loops stay in JS (fused_math.ts): multiply-adds without exp.
 */
import { MULBERRY32_STEP } from "../../random.ts";
import { rowNegativeLogLikelihood } from "../fused_math.ts";
import { type SimdKernels, simdKernels } from "./simd_kernels.ts";

/** Floats per chunk for elementwise kernels: 256 KiB in, 512 KiB out (L2-sized). */
const CHUNK = 65536;

export class SimdMath {
  constructor(private readonly k: SimdKernels) {}

  /** GELU forward; `withTanh` also returns tanh(u) for the backward (training). */
  geluForward(x: Float32Array, withTanh: boolean): { y: Float32Array; tanh?: Float32Array } {
    const n = x.length;
    const y = new Float32Array(n);
    const tanh = withTanh ? new Float32Array(n) : undefined;
    const chunk = Math.min(CHUNK, n);
    // Regions: x at 0, y after it, tanh after that (each padded for the vector tail).
    const stride = chunk + 16;
    const heap = this.k.reserve(3 * stride);
    const yAt = stride, tAt = 2 * stride;
    for (let start = 0; start < n; start += chunk) {
      const count = Math.min(chunk, n - start);
      heap.set(x.subarray(start, start + count), 0);
      if (tanh) this.k.exports.geluWithTanh(0, yAt * 4, tAt * 4, count);
      else this.k.exports.gelu(0, yAt * 4, tAt * 4, count);
      y.set(heap.subarray(yAt, yAt + count), start);
      tanh?.set(heap.subarray(tAt, tAt + count), start);
    }
    return { y, tanh };
  }

  /**
   * As fused_math.ts dropoutMask + applyDropoutMask: the same mulberry32 keep mask from `seed`
   * and x·mask/(1 − rate). Undefined for rate ≥ 1 (everything dropped: the JS loop handles it).
   */
  dropout(
    x: Float32Array,
    rate: number,
    seed: number,
  ): { y: Float32Array; mask: Uint8Array } | undefined {
    const threshold = Math.ceil(rate * 2 ** 32);
    if (!(threshold < 2 ** 32)) return undefined;
    const n = x.length;
    const y = new Float32Array(n);
    const mask = new Uint8Array(n);
    const chunk = Math.min(CHUNK, n);
    const stride = chunk + 16;
    // Regions: x, y, then the mask bytes (a quarter of a float region).
    const heap = this.k.reserve(2 * stride + stride / 4 + 16);
    const bytes = this.k.bytes();
    const [yAt, maskByte] = [stride, 2 * stride * 4];
    const keepScale = 1 / (1 - rate);
    for (let start = 0; start < n; start += chunk) {
      const count = Math.min(chunk, n - start);
      heap.set(x.subarray(start, start + count), 0);
      // mulberry32 draws element i from state seed + (i + 1)·step: this chunk starts at `start`.
      const stateBase = (seed + Math.imul(start, MULBERRY32_STEP)) >>> 0;
      this.k.exports.dropout(0, yAt * 4, maskByte, count, stateBase, threshold | 0, keepScale);
      y.set(heap.subarray(yAt, yAt + count), start);
      mask.set(bytes.subarray(maskByte, maskByte + count), start);
    }
    return { y, mask };
  }

  /** As fused_math.ts applyDropoutMask (the dropout backward). */
  applyDropoutMask(x: Float32Array, mask: Uint8Array, rate: number): Float32Array {
    const n = x.length;
    const out = new Float32Array(n);
    const chunk = Math.min(CHUNK, n);
    const stride = chunk + 16;
    const heap = this.k.reserve(2 * stride + stride / 4 + 16);
    const bytes = this.k.bytes();
    const [outAt, maskByte] = [stride, 2 * stride * 4];
    for (let start = 0; start < n; start += chunk) {
      const count = Math.min(chunk, n - start);
      heap.set(x.subarray(start, start + count), 0);
      bytes.set(mask.subarray(start, start + count), maskByte);
      this.k.exports.dropoutApply(0, maskByte, outAt * 4, count, 1 / (1 - rate));
      out.set(heap.subarray(outAt, outAt + count), start);
    }
    return out;
  }

  /** As fused_math.ts causalSoftmaxForward: row-wise softmax(scores/divisor), causal mask. */
  causalSoftmaxForward(
    scores: Float32Array,
    numQueries: number,
    numKeys: number,
    offset: number,
    divisor: number,
  ): Float32Array {
    const out = new Float32Array(scores.length);
    const scale = 1 / divisor;
    const size = numQueries * numKeys;
    const heap = this.k.reserve(2 * (size + 16));
    const dstAt = size + 16;
    for (let m = 0; m * size < scores.length; m++) {
      heap.set(scores.subarray(m * size, (m + 1) * size), 0);
      this.k.exports.causalSoftmax(0, dstAt * 4, numQueries, numKeys, offset, scale);
      out.set(heap.subarray(dstAt, dstAt + size), m * size);
    }
    return out;
  }

  /**
   * As fused_math.ts crossEntropyForward. With `keepExps` false (no gradient wanted: evaluation)
   * the [rows, vocab] exponentials are neither stored nor allocated.
   */
  crossEntropyForward(
    logits: Float32Array,
    targets: Int32Array,
    vocab: number,
    ignoreIndex: number,
    keepExps: boolean,
  ): { loss: number; exps?: Float32Array; inverseSums: Float32Array; kept: number } {
    const rows = targets.length;
    const exps = keepExps ? new Float32Array(logits.length) : undefined;
    const inverseSums = new Float32Array(rows);
    const rowsPerChunk = Math.max(1, Math.floor(4 * CHUNK / vocab));
    const chunkFloats = rowsPerChunk * vocab;
    const heap = this.k.reserve(2 * (chunkFloats + 16));
    const dstAt = chunkFloats + 16;
    const { rowMax, expShiftSum, expShiftSumOnly } = this.k.exports;
    let total = 0;
    let kept = 0;
    for (let first = 0; first < rows; first += rowsPerChunk) {
      const count = Math.min(rowsPerChunk, rows - first);
      heap.set(logits.subarray(first * vocab, (first + count) * vocab), 0);
      for (let i = 0; i < count; i++) {
        const r = first + i;
        const at = i * vocab;
        const max = rowMax(at * 4, vocab);
        const sum = exps
          ? expShiftSum(at * 4, (dstAt + at) * 4, vocab, 1, max)
          : expShiftSumOnly(at * 4, 0, vocab, 1, max);
        inverseSums[r] = 1 / sum;
        const nll = rowNegativeLogLikelihood(logits, r, vocab, targets[r], ignoreIndex, sum, max);
        if (nll === undefined) continue;
        total += nll;
        kept++;
      }
      exps?.set(heap.subarray(dstAt, dstAt + count * vocab), first * vocab);
    }
    return { loss: total / kept, exps, inverseSums, kept };
  }

  /** One AdamW update (llm/train/adamw.ts) of `param` (into `out`, which may be `param`), `m` and `v` in place. */
  adamwUpdate(
    param: Float32Array,
    grad: Float32Array,
    m: Float32Array,
    v: Float32Array,
    out: Float32Array,
    c: AdamWConstants,
  ): void {
    const n = param.length;
    const chunk = Math.min(CHUNK / 4, n);
    const stride = chunk + 16;
    const heap = this.k.reserve(4 * stride);
    const [pAt, gAt, mAt, vAt] = [0, stride, 2 * stride, 3 * stride];
    for (let start = 0; start < n; start += chunk) {
      const end = Math.min(n, start + chunk);
      const count = end - start;
      heap.set(param.subarray(start, end), pAt);
      heap.set(grad.subarray(start, end), gAt);
      heap.set(m.subarray(start, end), mAt);
      heap.set(v.subarray(start, end), vAt);
      this.k.exports.adamw(
        pAt * 4,
        gAt * 4,
        mAt * 4,
        vAt * 4,
        pAt * 4,
        count,
        c.decay,
        c.beta1,
        1 - c.beta1,
        c.beta2,
        1 - c.beta2,
        c.eps,
        -c.stepSize,
        c.biasCorrection2Sqrt,
      );
      out.set(heap.subarray(pAt, pAt + count), start);
      m.set(heap.subarray(mAt, mAt + count), start);
      v.set(heap.subarray(vAt, vAt + count), start);
    }
  }
}

/** AdamW's per-step constants (llm/train/adamw.ts). */
export interface AdamWConstants {
  beta1: number;
  beta2: number;
  eps: number;
  /** 1 − lr·weight_decay. */
  decay: number;
  /** lr / (1 − β1ᵗ). */
  stepSize: number;
  /** √(1 − β2ᵗ). */
  biasCorrection2Sqrt: number;
}

let instance: SimdMath | null | undefined;

/** The SIMD loops, or undefined without WebAssembly SIMD. */
export function simdMath(): SimdMath | undefined {
  if (instance === undefined) {
    const kernels = simdKernels();
    instance = kernels ? new SimdMath(kernels) : null;
  }
  return instance ?? undefined;
}
