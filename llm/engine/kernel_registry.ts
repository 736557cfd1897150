/**
 * Replacing TensorFlow.js `cpu` kernels by name, keeping the stock kernel as a fallback.
 *
 * tfjs looks a kernel up in its registry on every call, so swapping the registered function
 * makes every op that dispatches to it (including the ones gradients are built from) use ours,
 * with no change to model code. A fast kernel returns `undefined` for any case it does not
 * handle and the stock kernel runs instead, so correctness never depends on coverage.
 */
import * as tf from "@tensorflow/tfjs";

/** The parts of tfjs's MathBackendCPU the fast kernels use. */
export interface CpuBackend {
  data: { get(dataId: tf.DataId): { values?: unknown } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: unknown): tf.TensorInfo;
  disposeIntermediateTensorInfo(info: tf.TensorInfo): void;
}

export interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  attrs?: tf.NamedAttrMap;
  backend: CpuBackend;
}

/** A replacement kernel: a result, or `undefined` to let the stock kernel handle this call. */
export type FastKernel = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[] | undefined;

const BACKEND = "cpu";
const stockKernels = new Map<string, tf.KernelConfig>();

/** Register `fast` as the cpu kernel `kernelName`; calls it declines go to the stock kernel. */
export function replaceCpuKernel(kernelName: string, fast: FastKernel): void {
  const stock = stockKernels.get(kernelName) ?? tf.getKernel(kernelName, BACKEND);
  if (!stock) throw new Error(`tfjs has no '${kernelName}' kernel on the cpu backend to replace`);
  stockKernels.set(kernelName, stock);
  tf.unregisterKernel(kernelName, BACKEND);
  tf.registerKernel({
    ...stock,
    kernelFunc: (args) => fast(args as KernelArgs) ?? stock.kernelFunc(args),
  });
}

/** Put the stock kernel back (no-op if `kernelName` was never replaced). */
export function restoreCpuKernel(kernelName: string): void {
  const stock = stockKernels.get(kernelName);
  if (!stock) return;
  tf.unregisterKernel(kernelName, BACKEND);
  tf.registerKernel(stock);
  stockKernels.delete(kernelName);
}

/** Names of the cpu kernels currently replaced. */
export function replacedCpuKernels(): string[] {
  return [...stockKernels.keys()];
}

/** Run whichever cpu kernel is registered under `kernelName` now (ours or stock). */
export function runCpuKernel(
  kernelName: string,
  backend: CpuBackend,
  inputs: tf.NamedTensorInfoMap,
  attrs: tf.NamedAttrMap = {},
): tf.TensorInfo {
  const kernel = tf.getKernel(kernelName, BACKEND);
  if (!kernel) throw new Error(`tfjs has no '${kernelName}' kernel on the cpu backend`);
  const result = kernel.kernelFunc({ inputs, attrs, backend });
  if (Array.isArray(result)) {
    throw new Error(`cpu kernel '${kernelName}' returned ${result.length} outputs, expected one`);
  }
  return result;
}

/**
 * The Float32Array that backs a float32 tensor on the cpu backend (no copy), or undefined for
 * any other dtype or storage (complex, strings, not yet materialised).
 */
export function float32Values(backend: CpuBackend, info: tf.TensorInfo): Float32Array | undefined {
  if (info.dtype !== "float32") return undefined;
  const values = backend.data.get(info.dataId)?.values;
  return values instanceof Float32Array ? values : undefined;
}
