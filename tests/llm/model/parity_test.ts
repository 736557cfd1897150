/**
 * Our GPT against the book's PyTorch GPTModel on the same weights and inputs (fixtures from
 * tools/torch_reference.py), on plain tfjs `cpu`: logits, loss, every gradient, two AdamW steps,
 * one training step and greedy generation. The checks live in parity_suite.ts, shared with the
 * fast-engine and webgpu runs.
 */
import { registerParityTests } from "./parity_suite.ts";
import { useCpuBackend } from "./tf_setup.ts";

await useCpuBackend();
registerParityTests({ label: "cpu", expectShards: 1 });
