import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT, withTempDir } from "../../fixtures.ts";
import type { GPTConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import {
  getStateDict,
  loadModel,
  loadStateDict,
  saveModel,
} from "../../../llm/model/weights_io.ts";
import { readSafetensorsFile, writeSafetensorsFile } from "../../../llm/weights/safetensors.ts";
import { useCpuBackend } from "./tf_setup.ts";

await useCpuBackend();

const CONFIG: GPTConfig = {
  vocab_size: 41,
  context_length: 10,
  emb_dim: 16,
  n_heads: 2,
  n_layers: 2,
  drop_rate: 0.1,
  qkv_bias: true,
};
const IDS = [[1, 5, 9, 13, 17, 21], [40, 0, 2, 4, 6, 8]];

async function logitsOf(model: GPTModel): Promise<Float32Array> {
  const ids = tf.tensor2d(IDS, undefined, "int32");
  const logits = model.forward(ids);
  const values = (await logits.data()).slice() as Float32Array;
  tf.dispose([ids, logits]);
  return values;
}

Deno.test("save then load reproduces the model exactly, tied or not", async () => {
  await withTempDir(async (dir) => {
    for (const tiedHead of [false, true]) {
      const model = new GPTModel(CONFIG, { seed: 99, tiedHead });
      const folder = join(dir, `tied-${tiedHead}`);
      await saveModel(folder, model);
      assert.deepEqual(
        JSON.parse(await Deno.readTextFile(join(folder, "gpt_config.json"))),
        CONFIG,
      );
      const { tensors } = await readSafetensorsFile(join(folder, "model.safetensors"));
      assert.deepEqual([...tensors.keys()].sort(), model.namedParameters().map(([n]) => n).sort());
      assert.ok([...tensors.values()].every((t) => t.dtype === "F32"));

      const loaded = await loadModel(folder);
      assert.equal(loaded.tiedHead, tiedHead);
      assert.deepEqual(await logitsOf(loaded), await logitsOf(model));
      const original = await getStateDict(model);
      for (const [name, tensor] of await getStateDict(loaded)) {
        assert.deepEqual(tensor.data, original.get(name)!.data, name);
      }
      model.dispose();
      loaded.dispose();
    }
  });
});

Deno.test("a truncated weights file is an error naming the file", async () => {
  await withTempDir(async (dir) => {
    const model = new GPTModel(CONFIG);
    await saveModel(dir, model);
    const path = join(dir, "model.safetensors");
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(path, bytes.subarray(0, bytes.length - 100));
    await assert.rejects(loadModel(dir), (e: Error) => e.message.includes(path));
    model.dispose();
  });
});

Deno.test("wrong shapes, missing and unknown tensors are errors naming file and tensor", async () => {
  await withTempDir(async (dir) => {
    const model = new GPTModel(CONFIG);
    await saveModel(dir, model);
    const path = join(dir, "model.safetensors");
    const good = (await readSafetensorsFile(path)).tensors;
    const rewrite = async (
      edit: (t: Map<string, { shape: number[]; data: Float32Array }>) => void,
    ) => {
      const tensors = new Map([...good].map(([k, v]) => [k, { shape: v.shape, data: v.data }]));
      edit(tensors);
      await writeSafetensorsFile(path, tensors, { "groundup.tied_head": "false" });
    };

    await rewrite((t) =>
      t.set("trf_blocks.1.ff.layers.0.bias", { shape: [63], data: new Float32Array(63) })
    );
    await assert.rejects(
      loadModel(dir),
      (e: Error) =>
        e.message.includes(path) && e.message.includes('"trf_blocks.1.ff.layers.0.bias"') &&
        e.message.includes("[63]") && e.message.includes("[64]"),
    );
    await rewrite((t) => t.delete("final_norm.shift"));
    await assert.rejects(loadModel(dir), /missing tensor\(s\) "final_norm\.shift"/);
    await rewrite((t) => t.set("trf_blocks.0.att.mask", { shape: [1], data: new Float32Array(1) }));
    await assert.rejects(loadModel(dir), /unknown tensor\(s\) "trf_blocks\.0\.att\.mask"/);
    model.dispose();
  });
});

Deno.test("a config that does not fit the weights is an error naming the tensor and both shapes", async () => {
  await withTempDir(async (dir) => {
    const model = new GPTModel(CONFIG);
    await saveModel(dir, model);
    const configPath = join(dir, "gpt_config.json");
    await Deno.writeTextFile(configPath, JSON.stringify({ ...CONFIG, context_length: 12 }));
    await assert.rejects(
      loadModel(dir),
      /model\.safetensors: tensor "pos_emb\.weight" has shape \[10,16\] but the model expects \[12,16\]/,
    );
    await Deno.writeTextFile(configPath, JSON.stringify({ ...CONFIG, emb_dim: 15 }));
    await assert.rejects(
      loadModel(dir),
      (e: Error) => e.message.includes(configPath) && /divisible/.test(e.message),
    );
    await Deno.writeTextFile(configPath, JSON.stringify(CONFIG));
    await assert.rejects(
      loadModel(dir, { expectedConfig: { ...CONFIG, qkv_bias: false } }),
      /gpt_config\.json: "qkv_bias" is true but false was expected/,
    );
    await Deno.remove(configPath);
    await assert.rejects(loadModel(dir), /gpt_config\.json: no such file/);
    model.dispose();
  });
});

Deno.test("loadStateDict checks everything before changing any weight", async () => {
  const model = new GPTModel(CONFIG, { seed: 1 });
  const before = await logitsOf(model);
  const other = new GPTModel(CONFIG, { seed: 2 });
  const tensors = await getStateDict(other);
  other.dispose();
  tensors.get("out_head.weight")!.data = new Float32Array(3); // wrong length for its shape
  assert.throws(
    () => loadStateDict(model, tensors, "mine"),
    /mine: tensor "out_head\.weight" has shape \[41,16\] \(656 values\) but 3 values/,
  );
  assert.deepEqual(await logitsOf(model), before, "nothing was assigned");
  model.dispose();
});

const python = "/usr/bin/python3";
const torchAvailable = await new Deno.Command(python, {
  args: ["-c", "import torch"],
  stdout: "null",
  stderr: "null",
})
  .output()
  .then((r) => r.success)
  .catch(() => false);

Deno.test({
  name:
    "a saved model loads into the book's PyTorch GPTModel unchanged (strict) and gives our logits",
  ignore: !torchAvailable,
  fn: async () => {
    await withTempDir(async (dir) => {
      const model = new GPTModel(CONFIG, { seed: 5 });
      await saveModel(dir, model);
      const script = `
import json, sys, torch
sys.path.insert(0, ${JSON.stringify(join(REPO_ROOT, "tools"))})
from torch_gpt import GPTModel
from safetensors_io import load_file
folder = sys.argv[1]
cfg = json.load(open(folder + "/gpt_config.json"))
model = GPTModel(cfg)
tensors, _ = load_file(folder + "/model.safetensors")
model.load_state_dict(tensors, strict=True)
model.eval()
with torch.no_grad():
    logits = model(torch.tensor(json.loads(sys.argv[2])))
print(json.dumps(logits.flatten().tolist()))
`;
      const out = await new Deno.Command(python, { args: ["-c", script, dir, JSON.stringify(IDS)] })
        .output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      const theirs: number[] = JSON.parse(new TextDecoder().decode(out.stdout));
      const ours = await logitsOf(model);
      assert.equal(theirs.length, ours.length);
      const error = Math.max(...theirs.map((x, i) => Math.abs(x - ours[i])));
      assert.ok(error <= 1e-4, `max abs error ${error}`);
      model.dispose();
    });
  },
});
