/** Helpers for comparing our cpu kernels against tfjs's stock ones. */
import * as tf from "@tensorflow/tfjs";
import { replacedCpuKernels, restoreCpuKernel } from "../../../llm/engine/kernel_registry.ts";

/**
 * max |actual - expected| / max |expected|: the error relative to the tensor's scale. (An
 * element-wise ratio would blow up on entries that cancel to nearly zero, where float32
 * summation order alone decides the last bits.)
 */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) {
    throw new Error(`length ${actual.length} vs expected ${expected.length}`);
  }
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i] - expected[i]);
    if (!(diff <= maxDiff)) maxDiff = diff; // NaN propagates as a failure
    maxRef = Math.max(maxRef, Math.abs(expected[i]));
  }
  return maxRef === 0 ? maxDiff : maxDiff / maxRef;
}

/**
 * Run `fn` with tfjs's stock cpu kernels, then put ours back exactly as they were
 * (`reinstall` re-registers them; kernels are registered globally, so tests must not leak).
 */
export function withStockKernels<T>(reinstall: () => void, fn: () => T): T {
  for (const name of replacedCpuKernels()) restoreCpuKernel(name);
  try {
    return fn();
  } finally {
    reinstall();
  }
}

/** Seeded standard-normal tensor. */
export function randn(shape: number[], seed: number): tf.Tensor {
  return tf.randomNormal(shape, 0, 1, "float32", seed);
}
