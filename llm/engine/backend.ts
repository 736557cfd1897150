/**
 * Choosing and starting the TensorFlow.js backend the model runs on.
 *
 * - `webgpu`: tfjs-backend-webgpu on whatever adapter `navigator.gpu` gives, software ones too
 *   (CI runs parity tests on Mesa's lavapipe).
 * - `cpu`: tfjs's `cpu` backend with native kernels registered over the slow pure-JS ones:
 *   the matmul family through BLAS (see cpu_kernels.ts). Without a BLAS library or without
 *   `--allow-ffi`, plain tfjs with a one-line notice.
 * - `wasm`: tfjs-backend-wasm, its .wasm binaries loaded from node_modules.
 * - `auto`: `webgpu` on a hardware adapter, else `cpu`: on a software adapter WebGPU is far slower
 *   than the CPU path (lavapipe ≈ 6.5 GFLOP/s vs OpenBLAS ≈ 200).
 *
 * The wasm and webgpu packages are imported lazily, on purpose: importing them registers
 * backends with a higher priority than `cpu`, and tfjs would then silently pick them for anyone
 * who calls `tf.ready()` without naming a backend.
 */
import * as tf from "@tensorflow/tfjs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { type BlasLoadResult, loadBlas } from "./blas.ts";
import { blasInUse, registerBlasKernels, unregisterBlasKernels } from "./cpu_kernels.ts";
import { startFewRowsHelper, stopFewRowsHelper } from "./few_rows_gemm.ts";
import { registerFastKernels, unregisterFastKernels } from "./cpu_fast_kernels.ts";
import { registerLoraKernels, unregisterLoraKernels } from "./lora_kernels.ts";
import { setGemvThreads } from "./gemv_pool.ts";
import {
  FUSED_OPS,
  fusedOpsUseSimd,
  registerFusedKernels,
  unregisterFusedKernels,
} from "./fused_ops.ts";

/**
 * Bytes of the largest buffer a kernel of the current backend can bind: the WebGPU device's
 * `maxStorageBufferBindingSize`, or Infinity for backends without such a limit (the model
 * splits a larger vocabulary matrix into row shards that fit, see model/sharded.ts).
 */
export function backendBindingLimit(): number {
  if (tf.getBackend() !== "webgpu") return Infinity;
  // WebGPUBackend keeps its GPUDevice in a public field; tfjs's typings do not expose it.
  const device = (tf.backend() as unknown as { device?: GPUDevice }).device;
  return device?.limits.maxStorageBufferBindingSize ?? Infinity;
}

/** The backends `initEngine` accepts. */
export type BackendChoice = "auto" | "webgpu" | "cpu" | "wasm";
export const BACKEND_CHOICES: readonly BackendChoice[] = ["auto", "webgpu", "cpu", "wasm"];

/** What `initEngine` started. */
export interface EngineInfo {
  /** The tfjs backend in use. */
  backend: "webgpu" | "cpu" | "wasm";
  /** The WebGPU adapter, when backend is webgpu, e.g. "NVIDIA GeForce RTX 4090 (nvidia)". */
  adapter?: string;
  /** The BLAS library behind the cpu matmul kernels, when there is one. */
  blas?: string;
  /** Why this backend, and anything degraded (no BLAS, software adapter, ...). */
  notes: string[];
}

/** What `initEngine` should start and how. */
export interface EngineOptions {
  /** Which backend (default "auto": hardware WebGPU, else cpu). */
  backend?: BackendChoice;
  /** BLAS library to use (else GROUNDUP_BLAS, else the platform's usual names). */
  blasPath?: string;
  /**
   * Threads for OpenBLAS (default: its own choice, the core count), and for the packed (Q8_0,
   * bf16) GEMV of decoding (default: as many as BLAS uses; 1 without BLAS).
   */
  blasThreads?: number;
  /** false: plain tfjs cpu kernels even where BLAS exists (benchmarks' baseline). */
  nativeKernels?: boolean;
  /**
   * false: keep tfjs's stock elementwise cpu kernels and the model's plain-tfjs layer norm, GELU,
   * dropout, softmax and loss (default: our tight loops and fused ops).
   */
  fastKernels?: boolean;
  /**
   * false: the fused ops' forward loops in plain JS instead of WebAssembly SIMD (default: SIMD
   * where the runtime has it).
   */
  simd?: boolean;
  /**
   * false: no helper thread; products with a few rows (batched decoding) run on BLAS's own
   * threads like any other (default: split with a helper thread, see few_rows_gemm.ts).
   */
  helperThread?: boolean;
  /** Where the one-line summary goes (default: stderr, so stdout stays clean for data). */
  log?: (line: string) => void;
}

/** What `navigator.gpu` offers, read before any device exists (see `startWebGpu`). */
export interface WebGpuProbe {
  adapter?: GPUAdapter;
  /** Human-readable adapter name. */
  description?: string;
  /** A CPU/software implementation (lavapipe, llvmpipe, SwiftShader, WARP, ...). */
  software?: boolean;
  /** Why there is no adapter, when there is none. */
  unavailable?: string;
}

/** Start the backend `options.backend` asks for and say what was chosen (also logged). */
export async function initEngine(options: EngineOptions = {}): Promise<EngineInfo> {
  const choice = options.backend ?? "auto";
  if (!BACKEND_CHOICES.includes(choice)) {
    throw new Error(`unknown backend '${choice}': expected one of ${BACKEND_CHOICES.join(", ")}`);
  }
  const log = options.log ?? ((line: string) => console.error(line));
  let info: EngineInfo;
  if (choice === "cpu") {
    info = await startCpu(options, []);
  } else if (choice === "wasm") {
    info = await startWasm();
  } else {
    const probe = await probeWebGpu();
    if (choice === "webgpu") {
      if (!probe.adapter) throw new Error(`backend 'webgpu' unavailable: ${probe.unavailable}`);
      info = await startWebGpu(probe);
      if (probe.software) info.notes.push("software adapter: expect CPU-like speed or worse");
    } else if (probe.adapter && !probe.software) {
      info = await startWebGpu(probe);
      info.notes.unshift("auto: hardware WebGPU adapter found");
    } else {
      const why = probe.adapter
        ? `WebGPU adapter '${probe.description}' is a software renderer`
        : `no WebGPU (${probe.unavailable})`;
      info = await startCpu(options, [`auto: ${why}; using the CPU path`]);
    }
  }
  log(describeEngine(info));
  return info;
}

/** One line: backend, adapter or BLAS, and the most important note. */
export function describeEngine(info: EngineInfo): string {
  const parts = [`engine: ${info.backend}`];
  if (info.adapter) parts.push(`adapter ${info.adapter}`);
  if (info.blas) parts.push(`BLAS ${info.blas}`);
  const line = parts.join(", ");
  return info.notes.length ? `${line} (${info.notes.join("; ")})` : line;
}

async function startCpu(options: EngineOptions, notes: string[]): Promise<EngineInfo> {
  await switchTo("cpu");
  // The cpu backend greets its first tensor under Node-like runtimes with advice to install
  // tfjs-node, which does not apply here (Deno; native kernels are ours): skip the greeting.
  const cpu = tf.backend() as { firstUse?: boolean };
  if ("firstUse" in cpu) cpu.firstUse = false;

  if (options.nativeKernels === false) {
    setGemvThreads(options.blasThreads ?? 1);
    unregisterFastKernels();
    unregisterFusedKernels();
    stopFewRowsHelper();
    unregisterBlasKernels();
    unregisterLoraKernels();
    return { backend: "cpu", notes: [...notes, "native kernels off: plain tfjs cpu kernels"] };
  }
  if (options.fastKernels === false) {
    unregisterFastKernels();
    unregisterFusedKernels();
  } else {
    notes.push(`${registerFastKernels().length} tight-loop elementwise kernels`);
    registerFusedKernels({ simd: options.simd });
    notes.push(`${FUSED_OPS.length} fused ops${fusedOpsUseSimd() ? " (WebAssembly SIMD)" : ""}`);
  }

  const loaded = reuseOrLoadBlas(options);
  if (!loaded.ok) {
    stopFewRowsHelper();
    setGemvThreads(options.blasThreads ?? 1);
    unregisterBlasKernels();
    unregisterLoraKernels();
    return { backend: "cpu", notes: [...notes, `plain tfjs matmul (slow): ${loaded.reason}`] };
  }
  registerBlasKernels(loaded.blas);
  registerLoraKernels(loaded.blas);
  if (options.helperThread === false) stopFewRowsHelper();
  else {
    const helper = await startFewRowsHelper(loaded.blas);
    notes.push(
      helper.ok
        ? "few-row products on a helper thread"
        : `few-row products on BLAS's threads (${helper.reason})`,
    );
  }
  const threads = loaded.blas.threads();
  const blas = `${loaded.blas.description}${threads ? `, ${threads} threads` : ""}`;
  // Decoding's packed products split their rows over as many threads as BLAS uses.
  const gemvThreads = options.blasThreads ?? threads ?? 1;
  setGemvThreads(gemvThreads);
  if (gemvThreads > 1) notes.push(`packed GEMV on ${gemvThreads} threads`);
  return { backend: "cpu", blas, notes };
}

/** The library already registered, unless another one is asked for: dlopen once per process. */
function reuseOrLoadBlas(options: EngineOptions): BlasLoadResult {
  const current = blasInUse();
  if (current && (!options.blasPath || options.blasPath === current.path)) {
    if (options.blasThreads !== undefined) current.setThreads(options.blasThreads);
    return { ok: true, blas: current };
  }
  return loadBlas({ path: options.blasPath, threads: options.blasThreads });
}

async function startWasm(): Promise<EngineInfo> {
  const wasm = await import("@tensorflow/tfjs-backend-wasm");
  // The package's .wasm binaries sit beside its entry point in node_modules; in Deno its
  // default lookup (relative to the page or the script) finds nothing.
  const entry = createRequire(import.meta.url).resolve("@tensorflow/tfjs-backend-wasm");
  wasm.setWasmPaths(`${dirname(entry)}/`);
  await switchTo("wasm");
  const threads = wasm.getThreadsCount();
  return { backend: "wasm", notes: [`${threads} thread${threads === 1 ? "" : "s"}`] };
}

/** Ask `navigator.gpu` for an adapter without creating a device (which would spend it). */
export async function probeWebGpu(timeoutMs = 10_000): Promise<WebGpuProbe> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) {
    return { unavailable: "navigator.gpu is missing; run deno with --unstable-webgpu" };
  }
  let adapter: GPUAdapter | null;
  try {
    adapter = await withTimeout(
      gpu.requestAdapter({ powerPreference: "high-performance" }),
      timeoutMs,
      "requestAdapter",
    );
  } catch (error) {
    return { unavailable: `requestAdapter failed: ${(error as Error).message}` };
  }
  if (!adapter) return { unavailable: "navigator.gpu.requestAdapter() returned no adapter" };
  const info = adapter.info;
  const description = [info.description || info.device, info.vendor && `(${info.vendor})`]
    .filter(Boolean).join(" ") || "unnamed adapter";
  return { adapter, description, software: isSoftwareAdapter(adapter) };
}

/** lavapipe/llvmpipe, SwiftShader, WARP and friends run WebGPU on the CPU. */
export function isSoftwareAdapter(adapter: GPUAdapter): boolean {
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const legacy = (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter;
  if (info.isFallbackAdapter || legacy) return true;
  const text = [info.vendor, info.architecture, info.device, info.description].join(" ");
  return /llvmpipe|lavapipe|softpipe|swiftshader|software|microsoft basic render|\bwarp\b/i
    .test(text);
}

let webgpuAdapter: string | undefined;

/**
 * Register our own 'webgpu' backend factory instead of the package's, working around tfjs
 * issue 8518: the stock factory reads `adapter.info` after `requestDevice`, which Deno refuses
 * ("the adapter cannot be reused"), and passes one required feature as a nested array. Here the
 * adapter info is copied before the device exists and features are plain strings.
 */
async function startWebGpu(probe: WebGpuProbe): Promise<EngineInfo> {
  const adapter = probe.adapter!;
  const description = probe.description!;
  if (webgpuAdapter !== undefined && tf.findBackend("webgpu")) {
    // Already running on a device from an earlier call: keep it (its tensors live there).
    await switchTo("webgpu");
    return { backend: "webgpu", adapter: webgpuAdapter, notes: [] };
  }
  const { WebGPUBackend } = await import("@tensorflow/tfjs-backend-webgpu");
  const info = adapter.info;
  const adapterInfo = {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
  };
  const requiredFeatures = (["timestamp-query", "bgra8unorm-storage"] as GPUFeatureName[])
    .filter((feature) => adapter.features.has(feature));
  const limits = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
      maxComputeWorkgroupsPerDimension: limits.maxComputeWorkgroupsPerDimension,
      maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
      maxBufferSize: limits.maxBufferSize,
      maxComputeWorkgroupSizeX: limits.maxComputeWorkgroupSizeX,
      maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
    },
  });
  tf.removeBackend("webgpu");
  tf.registerBackend(
    "webgpu",
    // deno-lint-ignore no-explicit-any
    () => new WebGPUBackend(device, adapterInfo as any),
    3,
  );
  await switchTo("webgpu");
  webgpuAdapter = description;
  const maxBinding = limits.maxStorageBufferBindingSize;
  return {
    backend: "webgpu",
    adapter: description,
    notes: [`maxStorageBufferBindingSize ${Math.round(maxBinding / 2 ** 20)} MiB`],
  };
}

async function switchTo(name: "cpu" | "wasm" | "webgpu"): Promise<void> {
  if (!(await tf.setBackend(name))) {
    throw new Error(`tfjs could not start its '${name}' backend (see the warning above)`);
  }
  await tf.ready();
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} gave no answer in ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
