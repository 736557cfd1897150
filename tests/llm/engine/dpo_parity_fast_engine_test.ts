/** The DPO parity suite on the pipelines' engine: cpu with BLAS matmuls and the fused ops. */
import { initEngine } from "../../../llm/engine/backend.ts";
import { fusedOpsActive } from "../../../llm/engine/fused_ops.ts";
import { registerDpoParityTests } from "../train/dpo_parity_suite.ts";

await initEngine({ backend: "cpu", log: () => {} });
if (!fusedOpsActive()) throw new Error("the cpu engine did not register its fused ops");
registerDpoParityTests({ label: "cpu + BLAS + fused kernels" });
