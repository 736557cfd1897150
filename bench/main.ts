/**
 * One entry point for the benchmarks: `deno task bench NAME [flags]` runs one of them in its own
 * process (each needs its own Deno flags, and a fresh process keeps its peak memory its own);
 * the flags after NAME go to that script. Without a name it lists them. Results and the machine
 * they ran on: bench/RESULTS.md.
 *
 *   deno task bench train --steps 3
 *   deno task bench gemm --backends cpu+blas,webgpu
 */
import { fileURLToPath } from "node:url";

interface Bench {
  /** What it measures, in one line. */
  about: string;
  /** The program and its arguments before the user's flags; "deno" is this Deno. */
  command: string[];
  env?: Record<string, string>;
}

const BENCHES: Record<string, Bench> = {
  train: {
    about: "one 124M training step, ours and PyTorch's (bench/train_step.ts)",
    command: ["deno", "run", "-A", "bench/train_step.ts"],
  },
  generate: {
    about: "124M generation with and without the KV cache, ours and PyTorch's (bench/generate.ts)",
    command: ["deno", "run", "-A", "bench/generate.ts"],
  },
  batch: {
    about:
      "responses on the instruction test split, one at a time vs batched (bench/batch_generate.ts)",
    command: ["deno", "run", "-A", "bench/batch_generate.ts"],
  },
  "llama-cpp": {
    about:
      "decode and prefill tokens/s, ours vs llama.cpp (node-llama-cpp) and, for Qwen3/Llama shapes, the book's PyTorch KV-cache code, on the same weights (bench/llama_cpp.ts)",
    command: ["deno", "run", "-A", "bench/llama_cpp.ts"],
  },
  "quantized-decode": {
    about:
      "decode and prefill tokens/s of one model held fp32, bf16 and int8 (Q8_0) packed, in one process (bench/quantized_decode.ts)",
    command: ["deno", "run", "-A", "bench/quantized_decode.ts"],
  },
  "gemv-threads": {
    about:
      "packed (Q8_0, bf16) GEMV on 1 thread vs --threads: the hand-off, per-shape µs, and with --decode a model's decode/prefill (bench/gemv_threads.ts)",
    command: ["deno", "run", "-A", "bench/gemv_threads.ts"],
  },
  "load-8b": {
    about:
      "a Llama-3-8B-shaped bf16 folder (~16 GB in /tmp) loaded with quantize int8: peak RSS, load time, decode (bench/load_8b.ts)",
    command: ["deno", "run", "-A", "bench/load_8b.ts"],
  },
  "load-model": {
    about: "load time of a saved 124M folder, fp32 / int8 / bf16 (bench/load_model.ts)",
    command: ["deno", "run", "-A", "bench/load_model.ts"],
  },
  "responses-torch": {
    about:
      "greedy responses, one at a time and batched, ours vs the book's PyTorch KV-cache code (bench/responses_vs_torch.ts)",
    command: ["deno", "run", "-A", "bench/responses_vs_torch.ts"],
  },
  gemm: {
    about: "GEMM GFLOP/s per tfjs backend on GPT-2 shapes (bench/gemm.ts)",
    command: ["deno", "run", "-A", "--unstable-webgpu", "bench/gemm.ts"],
    // Deno's WebGPU refuses to start without a runtime folder (lavapipe on a bare machine).
    env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" },
  },
  kernels: {
    about: "stock tfjs cpu kernels vs our tight-loop kernels (bench/kernels.ts)",
    command: ["deno", "run", "-A", "bench/kernels.ts"],
  },
  simd: {
    about: "fused-op loops and AdamW: plain JS vs WebAssembly SIMD (bench/simd.ts)",
    command: ["deno", "run", "-A", "bench/simd.ts"],
  },
  finetune: {
    about:
      "one instruction fine-tuning step, full and LoRA, ours and the book's PyTorch code (bench/finetune_step.ts)",
    command: ["deno", "run", "-A", "--v8-flags=--expose-gc", "bench/finetune_step.ts"],
  },
  "lora-open": {
    about:
      "one LoRA step on a Qwen3-0.6B- or Llama-3.2-1B-shaped model, ours and the book's PyTorch code (bench/lora_open.ts --family qwen3|llama --mode lora|full)",
    command: ["deno", "run", "-A", "bench/lora_open.ts"],
  },
  dpo: {
    about:
      "one DPO step (reference + policy forward, policy backward), ours and the book's notebook code (bench/dpo_step.ts)",
    command: ["deno", "run", "-A", "--v8-flags=--expose-gc", "bench/dpo_step.ts"],
  },
  mmlu: {
    about: "MMLU questions per second on a fixture subject (bench/mmlu.ts)",
    command: ["deno", "run", "-A", "bench/mmlu.ts"],
  },
  "mmlu-torch": {
    about:
      "MMLU scoring, ours vs the book's PyTorch model on the same weights (bench/mmlu_vs_torch.ts)",
    command: ["deno", "run", "-A", "bench/mmlu_vs_torch.ts"],
  },
  "quantize-quality": {
    about:
      "bf16 and int8 vs fp32 at 124M (the workshop's pretrained model, a random GPT-2): val loss, greedy agreement, MMLU philosophy (bench/quantize_quality.ts)",
    command: ["deno", "run", "-A", "bench/quantize_quality.ts"],
  },
  serve: {
    about: "serve's streamed tokens/s vs complete(), and 4 concurrent clients (bench/serve.ts)",
    command: ["deno", "run", "-A", "bench/serve.ts"],
  },
  load: {
    about: "time and peak memory of converting and loading GPT-2 weights (bench/load_weights.ts)",
    command: ["deno", "run", "-A", "bench/load_weights.ts"],
  },
  profile: {
    about: "one training step, kernel by kernel (bench/train_step.ts --profile)",
    command: [
      "deno",
      "run",
      "-A",
      "bench/train_step.ts",
      "--steps",
      "1",
      "--torch",
      "off",
      "--profile",
    ],
  },
  torch: {
    about: "the book's GPTModel in PyTorch alone (tools/torch_bench.py, Debian's python3-torch)",
    command: ["nice", "-n", "10", "/usr/bin/python3", "tools/torch_bench.py"],
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(BENCHES).map((name) => name.length));
  const lines = Object.entries(BENCHES).map(([name, bench]) =>
    `  ${name.padEnd(width)}  ${bench.about}`
  );
  return ["usage: deno task bench NAME [flags for that benchmark]", "", ...lines].join("\n");
}

if (import.meta.main) {
  const [name, ...flags] = Deno.args;
  if (name === undefined || name === "--help" || name === "-h") {
    console.log(usage());
    Deno.exit(0);
  }
  const bench = BENCHES[name];
  if (!bench) {
    console.error(`unknown benchmark "${name}"\n\n${usage()}`);
    Deno.exit(2);
  }
  const [program, ...args] = bench.command;
  const child = new Deno.Command(program === "deno" ? Deno.execPath() : program, {
    args: [...args, ...flags],
    cwd: fileURLToPath(new URL("..", import.meta.url)),
    env: bench.env,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const { code } = await child.status;
  Deno.exit(code);
}
