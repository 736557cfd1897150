/**
 * The HF parity fixtures (parity_test.ts: logits within 1e-4 of the references, their greedy
 * tokens with and without the KV cache) on the cpu engine the pipelines use: BLAS products, the
 * fused kernels (RoPE, RMSNorm, SiLU·up among them) and the in-place KV cache, whose sliding
 * layers (gemma3) are rings of window slots. parity_test.ts's `useCpuBackend` selects the same
 * cpu backend, keeping what `initEngine` registered on it.
 */
import { initEngine } from "../../../llm/engine/backend.ts";
import { fusedOpsActive } from "../../../llm/engine/fused_ops.ts";

await initEngine({ backend: "cpu", log: () => {} });
await import("./parity_test.ts");
if (!fusedOpsActive()) {
  throw new Error("parity_engine_test: the cpu engine's kernels are not active");
}
