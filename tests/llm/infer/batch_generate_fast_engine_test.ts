/**
 * Batched generation on the engine the pipelines use: cpu with BLAS matmuls and the fused causal
 * softmax, which applies the causal part of the mask while the padding mask is added before it.
 */
import { initEngine } from "../../../llm/engine/backend.ts";
import { fusedOpsActive } from "../../../llm/engine/fused_ops.ts";
import { registerBatchTests } from "./batch_suite.ts";

await initEngine({ backend: "cpu", log: () => {} });
registerBatchTests("cpu engine", () => {
  if (!fusedOpsActive()) throw new Error("the cpu engine did not register its fused ops");
}, { realisticDims: true });
