/**
 * The PyTorch parity suite again, on the engine the pipelines use: cpu with BLAS matmuls,
 * tight-loop kernels and the fused ops (layer norm, GELU, causal softmax, cross-entropy).
 */
import { initEngine } from "../../../llm/engine/backend.ts";
import { fusedOpsActive } from "../../../llm/engine/fused_ops.ts";
import { registerParityTests } from "../model/parity_suite.ts";

await initEngine({ backend: "cpu", log: () => {} });
if (!fusedOpsActive()) throw new Error("the cpu engine did not register its fused ops");
registerParityTests({ label: "cpu + BLAS + fused kernels", expectShards: 1 });
