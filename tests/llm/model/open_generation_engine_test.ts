/**
 * Open-family generation checks on the engine the pipelines use: cpu with BLAS matmuls and the
 * fused causal softmax (see open_generation_suite.ts).
 */
import { initEngine } from "../../../llm/engine/backend.ts";
import { fusedOpsActive } from "../../../llm/engine/fused_ops.ts";
import { registerOpenGenerationTests } from "./open_generation_suite.ts";

await initEngine({ backend: "cpu", log: () => {} });
registerOpenGenerationTests("cpu engine", () => {
  if (!fusedOpsActive()) throw new Error("the cpu engine did not register its fused ops");
});
