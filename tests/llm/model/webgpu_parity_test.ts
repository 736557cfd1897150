/**
 * The PyTorch parity suite on tfjs's `webgpu` backend: on whatever adapter `navigator.gpu` gives,
 * Mesa's software lavapipe in CI (`mesa-vulkan-drivers`; deno needs `--unstable-webgpu` and
 * `XDG_RUNTIME_DIR`). Once as the model is built on this device, once with the vocabulary
 * matrices forced into row shards (an injected binding limit), as they are for GPT-2's real
 * 50,257-row tables on lavapipe.
 *
 * Without an adapter the tests are ignored, and the reason is printed. deno test runs each test
 * file in its own isolate, so this file's webgpu backend does not leak into the cpu tests.
 */
import { initEngine, probeWebGpu } from "../../../llm/engine/backend.ts";
import { registerParityTests } from "./parity_suite.ts";

const probe = await probeWebGpu();
if (probe.adapter) {
  await initEngine({ backend: "webgpu", log: () => {} });
} else {
  console.warn(`webgpu parity tests ignored: ${probe.unavailable}`);
}

registerParityTests({ label: "webgpu", ignore: !probe.adapter, expectShards: 1 });

// The fixture's 97 × 32 vocabulary matrices take 12,416 bytes; a 10,000-byte limit splits them
// into 49 + 48 rows while its logits ([24, 97], 9,312 bytes) still fit. Sharding touches only
// the embedding and the head, so one variant suffices (lavapipe is slow).
registerParityTests({
  variants: ["no_qkv_bias"],
  label: "webgpu, vocabulary in 2 shards",
  ignore: !probe.adapter,
  maxTensorBytes: 10_000,
  expectShards: 2,
});
