/** Batched generation on tfjs's stock cpu backend (plain ops, the explicit causal mask). */
import { fusedOpsActive } from "../../../llm/engine/fused_ops.ts";
import { useCpuBackend } from "../model/tf_setup.ts";
import { registerBatchTests } from "./batch_suite.ts";

await useCpuBackend();
registerBatchTests("stock cpu", () => {
  if (fusedOpsActive()) throw new Error("expected the stock cpu ops");
});
