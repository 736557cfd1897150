/**
 * The PyTorch parity tests of tests/llm/model/parity_test.ts again, on the engine the pipelines
 * use: cpu with BLAS matmuls, tight-loop kernels and the fused ops (layer norm, GELU, causal
 * softmax, cross-entropy). The imported module registers its tests in this file's isolate.
 */
import { initEngine } from "../../../llm/engine/backend.ts";
import { fusedOpsActive } from "../../../llm/engine/fused_ops.ts";

await initEngine({ backend: "cpu", log: () => {} });
if (!fusedOpsActive()) throw new Error("the cpu engine did not register its fused ops");
await import("../model/parity_test.ts");
