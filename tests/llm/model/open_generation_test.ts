/** Open-family generation checks on the stock tfjs cpu backend (see open_generation_suite.ts). */
import { fusedOpsActive } from "../../../llm/engine/fused_ops.ts";
import { registerOpenGenerationTests } from "./open_generation_suite.ts";
import { useCpuBackend } from "./tf_setup.ts";

await useCpuBackend();
registerOpenGenerationTests("stock cpu", () => {
  if (fusedOpsActive()) throw new Error("expected the stock ops");
});
