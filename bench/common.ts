/** Small helpers the benchmark scripts share: flags, medians, peak memory, PyTorch side runs. */
import * as tf from "@tensorflow/tfjs";
import type { GPTModel } from "../llm/model/gpt.ts";

/** `--name value` from the command line, else `fallback`. */
export function flag(name: string, fallback: string): string {
  const at = Deno.args.indexOf(`--${name}`);
  return at >= 0 && at + 1 < Deno.args.length ? Deno.args[at + 1] : fallback;
}

/** True when `--name` is on the command line. */
export function hasFlag(name: string): boolean {
  return Deno.args.includes(`--${name}`);
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Peak resident memory of this process so far, in MiB (Linux `VmHWM`, what getrusage's
 * ru_maxrss reports and what tools/torch_bench.py prints); current RSS where /proc is missing.
 */
export function peakRssMb(): number {
  try {
    const status = Deno.readTextFileSync("/proc/self/status");
    const match = status.match(/^VmHWM:\s+(\d+)\s+kB/m);
    if (match) return +(Number(match[1]) / 1024).toFixed(1);
  } catch {
    // not Linux: fall through
  }
  return +(Deno.memoryUsage().rss / 2 ** 20).toFixed(1);
}

const PYTHON = "/usr/bin/python3";

/**
 * Runs tools/torch_bench.py (or another script under tools/) with `args` and returns its JSON
 * lines, or [] (with a notice on stderr) where Debian's PyTorch is not installed.
 */
export async function runTorchBench(
  args: string[],
  tool = "torch_bench.py",
): Promise<Record<string, unknown>[]> {
  const script = new URL(`../tools/${tool}`, import.meta.url).pathname;
  let output: Deno.CommandOutput;
  try {
    // Through a shell that forks (`; exit` keeps it from exec-ing python in its own place):
    // Linux carries a process's peak RSS across exec, so python started straight from this
    // (large) process would report our peak as its own `peak_rss_mb`.
    output = await new Deno.Command("/bin/sh", {
      args: ["-c", '"$0" "$@"; exit $?', PYTHON, script, ...args],
      stderr: "inherit",
    }).output();
  } catch (error) {
    console.error(`pytorch side run skipped: ${(error as Error).message}`);
    return [];
  }
  if (!output.success) {
    console.error(`pytorch side run skipped: ${PYTHON} ${script} exited ${output.code}`);
    return [];
  }
  return new TextDecoder().decode(output.stdout).split("\n").filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l));
}

/**
 * A long-lived PyTorch side (a script under tools/) that answers one JSON line per command line
 * written to its stdin, so that rounds can alternate between it and us on the same machine load.
 */
export interface TorchWorker {
  /** Writes one command line. */
  send(command: string): Promise<void>;
  /** The next JSON line it prints. */
  nextLine(): Promise<Record<string, unknown>>;
  /** Sends "quit" and waits for it to exit. */
  close(): Promise<void>;
}

/** Starts tools/`tool` with `args` under Debian's python3 (see TorchWorker). */
export function startTorchWorker(tool: string, args: string[]): TorchWorker {
  const child = new Deno.Command(PYTHON, {
    args: [`tools/${tool}`, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const writer = child.stdin.getWriter();
  let buffered = "";
  return {
    send: (command) => writer.write(new TextEncoder().encode(command + "\n")),
    async nextLine() {
      for (;;) {
        const newline = buffered.indexOf("\n");
        if (newline >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          if (line.startsWith("{")) return JSON.parse(line);
          continue;
        }
        const { value, done } = await lines.read();
        if (done) throw new Error(`tools/${tool} exited early`);
        buffered += value;
      }
    },
    async close() {
      await writer.write(new TextEncoder().encode("quit\n"));
      await writer.close();
      await child.status;
    },
  };
}

/** Kernel time of one run of `fn` under tf.profile, by kernel name, heaviest first. */
export async function kernelProfile(
  fn: () => Promise<void>,
): Promise<{ kernel: string; ms: number; calls: number; share: number }[]> {
  const info = await tf.profile(fn);
  const byKernel = new Map<string, { ms: number; calls: number }>();
  for (const k of info.kernels) {
    const entry = byKernel.get(k.name) ?? { ms: 0, calls: 0 };
    entry.ms += Number(k.kernelTimeMs) || 0;
    entry.calls++;
    byKernel.set(k.name, entry);
  }
  const total = [...byKernel.values()].reduce((s, r) => s + r.ms, 0);
  return [...byKernel.entries()].sort((a, b) => b[1].ms - a[1].ms).map(([kernel, r]) => ({
    kernel,
    ms: +r.ms.toFixed(1),
    calls: r.calls,
    share: +(r.ms / total).toFixed(3),
  }));
}

/** Seconds of one prefill: a forward pass over `prompt` into a fresh KV cache (last position's logits). */
export async function timePrefill(model: GPTModel, prompt: number[]): Promise<number> {
  const cache = model.newCache({ rows: 1, capacity: prompt.length });
  const input = tf.tensor2d([prompt], undefined, "int32");
  const start = performance.now();
  const logits = model.forward(input, { cache, lastTokenOnly: true });
  await logits.data();
  const seconds = (performance.now() - start) / 1000;
  tf.dispose([input, logits]);
  cache.dispose();
  return seconds;
}

/** Kernel's dirty + under-writeback page-cache bytes (/proc/meminfo), or undefined off Linux. */
function unwrittenBytes(): number | undefined {
  try {
    const info = Deno.readTextFileSync("/proc/meminfo");
    let kb = 0;
    for (const key of ["Dirty", "Writeback"]) {
      const match = info.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"));
      if (match) kb += Number(match[1]);
    }
    return kb * 1024;
  } catch {
    return undefined;
  }
}

/**
 * After writing gigabytes of model files: flushes them (`sync`) and waits until the kernel has
 * written back its dirty pages, so that the first side timed does not share the cores and the
 * memory bus with the writeback (a 4.7 GB GGUF export left 1.9 GB unwritten for tens of seconds).
 * Returns the seconds it waited.
 */
export async function settleWriteback(maxSeconds = 180): Promise<number> {
  const start = performance.now();
  try {
    await new Deno.Command("sync").output();
  } catch { /* no sync binary: the wait below still watches the counters */ }
  for (;;) {
    const left = unwrittenBytes();
    const waited = (performance.now() - start) / 1000;
    if (left === undefined || left < 32 * 2 ** 20 || waited > maxSeconds) return waited;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
