import assert from "node:assert/strict";
import type { GPTConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import {
  applyPrecision,
  parseQuantization,
  roundTrip,
  storageType,
} from "../../../llm/model/precision.ts";
import { useCpuBackend } from "./tf_setup.ts";

await useCpuBackend();

// emb_dim 64: rows of the attention and feed-forward matrices are whole Q8_0 blocks; the
// 4·64-wide hidden layer too. Vocabulary 50 (not a multiple of 32) only changes the row count.
const CONFIG: GPTConfig = {
  vocab_size: 50,
  context_length: 16,
  emb_dim: 64,
  n_heads: 4,
  n_layers: 2,
  drop_rate: 0,
  qkv_bias: true,
};

Deno.test("storage types follow the GGUF export's Q8_0 rule", () => {
  assert.equal(storageType([768], "int8"), "F32");
  assert.equal(storageType([768, 64], "int8"), "Q8_0");
  assert.equal(storageType([64, 50], "int8"), "F16");
  assert.equal(storageType([64, 50], "bf16"), "BF16");
  assert.equal(storageType([64, 64], "none"), "F32");
});

for (const quantize of ["int8", "bf16"] as const) {
  Deno.test(`applyPrecision ${quantize}: matrices rounded through the codec, vectors untouched`, () => {
    const model = new GPTModel(CONFIG, { seed: 3 });
    const before = new Map(
      model.uniqueParameters().map(([name, v]) => [name, (v.dataSync() as Float32Array).slice()]),
    );
    applyPrecision(model, quantize);
    let matrices = 0;
    for (const [name, variable] of model.uniqueParameters()) {
      const old = before.get(name)!;
      const now = variable.dataSync() as Float32Array;
      if (variable.shape.length < 2) {
        assert.deepEqual(now, old, name);
        continue;
      }
      matrices++;
      const type = storageType(variable.shape, quantize);
      assert.deepEqual(now, roundTrip(type, old), name);
      // Rounding moved values, but by less than a block's step (int8) or 2^-8 relative (bf16).
      let changed = 0;
      for (let i = 0; i < old.length; i++) {
        if (now[i] !== old[i]) changed++;
        const bound = quantize === "bf16" ? Math.abs(old[i]) / 256 : 0.5; // uniform init ≪ 0.5·127
        assert.ok(Math.abs(now[i] - old[i]) <= bound, `${name}[${i}] ${old[i]} → ${now[i]}`);
      }
      assert.ok(changed > old.length / 2, `${name}: most values change (${changed}/${old.length})`);
    }
    assert.ok(matrices >= 2 * 4 + 3, `saw ${matrices} matrices`);
    model.dispose();
  });
}

Deno.test("applyPrecision int8: a Q8_0 block's values are multiples of its scale", () => {
  const values = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i) * (i < 32 ? 1 : 0.01));
  const rounded = roundTrip("Q8_0", values);
  for (const block of [0, 1]) {
    const slice = rounded.slice(block * 32, block * 32 + 32);
    const max = Math.max(...slice.map(Math.abs));
    const steps = new Set(slice.map((v) => Math.round((v / max) * 127)));
    assert.ok(steps.size > 20, "many distinct levels per block");
    for (const v of slice) {
      assert.ok(Math.abs((v / max) * 127 - Math.round((v / max) * 127)) < 1e-3, `${v} on the grid`);
    }
  }
});

Deno.test("parseQuantization names the place and the choices", () => {
  assert.equal(parseQuantization("int8", "x"), "int8");
  assert.throws(
    () => parseQuantization("q4", "pipeline.yaml: stages.gen.quantize"),
    /pipeline\.yaml: stages\.gen\.quantize: quantize must be one of none, bf16, int8 \(got "q4"\)/,
  );
});
