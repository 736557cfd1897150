import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { fileURLToPath } from "node:url";
import { initEngine, isSoftwareAdapter, probeWebGpu } from "../../../llm/engine/backend.ts";
import { loadBlas } from "../../../llm/engine/blas.ts";
import { blasInUse, unregisterBlasKernels } from "../../../llm/engine/cpu_kernels.ts";
import { replacedCpuKernels } from "../../../llm/engine/kernel_registry.ts";
import { randn, relativeError, withStockKernels } from "./compare.ts";

const blasAvailable = loadBlas().ok;
const quiet = { log: () => {} };
const webgpuProbe = await probeWebGpu();

Deno.test("initEngine cpu registers the BLAS matmul kernels and says which library", async () => {
  const lines: string[] = [];
  const info = await initEngine({ backend: "cpu", log: (line) => lines.push(line) });
  assert.equal(info.backend, "cpu");
  assert.equal(tf.getBackend(), "cpu");
  assert.equal(lines.length, 1, "one log line");
  assert.match(lines[0], /^engine: cpu/);
  assert.ok(replacedCpuKernels().includes("Softmax"), "tight-loop kernels registered");
  if (blasAvailable) {
    assert.ok(info.blas, "EngineInfo.blas is set when a library exists");
    assert.ok(blasInUse());
    tf.tidy(() => {
      const a = randn([3, 17, 40], 1);
      const b = randn([24, 40], 2);
      const ours = tf.matMul(a, b, false, true);
      const stock = withStockKernels(
        () => initEngine({ backend: "cpu", ...quiet }),
        () => tf.matMul(a, b, false, true),
      );
      assert.ok(relativeError(ours.dataSync(), stock.dataSync()) <= 1e-5);
    });
  } else {
    assert.equal(info.blas, undefined);
    assert.match(info.notes.join(), /plain tfjs matmul/);
  }
  unregisterBlasKernels();
});

Deno.test("nativeKernels: false gives plain tfjs kernels; fastKernels: false keeps BLAS only", async () => {
  const plain = await initEngine({ backend: "cpu", nativeKernels: false, ...quiet });
  assert.equal(plain.blas, undefined);
  assert.equal(blasInUse(), undefined);
  assert.deepEqual(replacedCpuKernels(), []);
  const blasOnly = await initEngine({ backend: "cpu", fastKernels: false, ...quiet });
  assert.deepEqual(
    replacedCpuKernels().sort(),
    blasAvailable ? ["BatchMatMul", "_FusedMatMul"] : [],
  );
  assert.equal(!!blasOnly.blas, blasAvailable);
  await initEngine({ backend: "cpu", nativeKernels: false, ...quiet });
});

Deno.test({
  name: "auto picks webgpu only for a hardware adapter, otherwise the CPU path",
  // On a machine with a real GPU auto picks webgpu: covered by the webgpu parity runs.
  ignore: !!webgpuProbe.adapter && !webgpuProbe.software,
  fn: autoPicksCpu,
});

async function autoPicksCpu() {
  const info = await initEngine({ backend: "auto", ...quiet });
  assert.equal(info.backend, "cpu");
  assert.equal(tf.getBackend(), "cpu");
  assert.match(info.notes[0], /^auto: /);
  if (blasAvailable) assert.ok(info.blas);
  unregisterBlasKernels();
}

Deno.test("software adapters are recognised by name or by the fallback flag", () => {
  const fake = (info: Record<string, unknown>) => ({ info }) as unknown as GPUAdapter;
  assert.ok(isSoftwareAdapter(fake({ description: "llvmpipe (LLVM 15.0.6, 256 bits)" })));
  assert.ok(isSoftwareAdapter(fake({ vendor: "google", description: "SwiftShader Device" })));
  assert.ok(isSoftwareAdapter(fake({ description: "whatever", isFallbackAdapter: true })));
  assert.ok(!isSoftwareAdapter(fake({ vendor: "nvidia", description: "NVIDIA H100" })));
});

Deno.test("an unknown backend name is an error naming the choices", async () => {
  await assert.rejects(
    // deno-lint-ignore no-explicit-any
    () => initEngine({ backend: "tpu" as any, ...quiet }),
    /unknown backend 'tpu': expected one of auto, webgpu, cpu, wasm/,
  );
});

Deno.test("without --allow-ffi the cpu path falls back to plain tfjs with a one-line notice", async () => {
  const script = `
    import * as tf from "@tensorflow/tfjs";
    import { initEngine } from ${
    JSON.stringify(import.meta.resolve("../../../llm/engine/backend.ts"))
  };
    const info = await initEngine({ backend: "cpu" });
    const product = tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]])).dataSync()[0];
    console.log(JSON.stringify({ info, product }));
  `;
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/no_ffi.ts`;
    await Deno.writeTextFile(file, script);
    const config = fileURLToPath(import.meta.resolve("../../../deno.json"));
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "--config", config, "--allow-read", "--allow-env", file],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, stderr);
    const result = JSON.parse(new TextDecoder().decode(output.stdout).trim().split("\n").at(-1)!);
    assert.equal(result.info.backend, "cpu");
    assert.equal(result.info.blas, undefined);
    assert.equal(result.product, 11);
    const notices = stderr.split("\n").filter((line) => line.startsWith("engine:"));
    assert.equal(notices.length, 1);
    assert.match(notices[0], /--allow-ffi/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "wasm starts with its binaries from node_modules and multiplies correctly",
  async fn() {
    const info = await initEngine({ backend: "wasm", ...quiet });
    assert.equal(info.backend, "wasm");
    assert.equal(tf.getBackend(), "wasm");
    const product = tf.tidy(() =>
      tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[5], [6]])).dataSync()
    );
    assert.deepEqual(Array.from(product), [17, 39]);
    await initEngine({ backend: "cpu", nativeKernels: false, ...quiet });
  },
});

Deno.test({
  name: "webgpu starts on whatever adapter exists (lavapipe too), multiplies, and restarts cheaply",
  ignore: !webgpuProbe.adapter,
  async fn() {
    const info = await initEngine({ backend: "webgpu", ...quiet });
    assert.equal(info.backend, "webgpu");
    assert.equal(tf.getBackend(), "webgpu");
    assert.equal(info.adapter, webgpuProbe.description);
    const inputs = [tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[5], [6]])];
    const product = tf.matMul(inputs[0], inputs[1]);
    assert.deepEqual(Array.from(await product.data()), [17, 39]); // dataSync throws on webgpu
    tf.dispose([...inputs, product]);
    // A second start keeps the device (our factory never re-reads a spent adapter: tfjs #8518).
    const again = await initEngine({ backend: "webgpu", ...quiet });
    assert.equal(again.adapter, info.adapter);
    await initEngine({ backend: "cpu", nativeKernels: false, ...quiet });
  },
});
