/**
 * `--quantize` on the commands: `serve` reports the weights' format (/v1/models, Ollama's
 * /api/tags and /api/show) and answers from the rounded weights; `generate` prints the rounded
 * weights' text; a bad value is a usage error naming the flag. The model is built so that int8
 * changes its greedy answer (" A" in fp32 and bf16, " B" in int8; tests/stages/quantize_model.ts).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { applyLora, saveAdapter } from "../../llm/model/lora.ts";
import { loadModel } from "../../llm/model/weights_io.ts";
import { createTokenizer } from "../../llm/tokenizer/mod.ts";
import { withTempDir } from "../fixtures.ts";
import { startServeProcess } from "../server/helpers.ts";
import { writeRoundingSensitiveModel } from "../stages/quantize_model.ts";
import { runCli } from "./cli_helpers.ts";
import { ChatService } from "../../server/ui_chat.ts";
import { useCpuBackend } from "../llm/model/tf_setup.ts";

const gpt2 = createTokenizer({ kind: "gpt2" });
const tokens = { fp32Token: gpt2.encode(" A")[0], int8Token: gpt2.encode(" B")[0] };

async function post(url: string, body: unknown) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 200);
  return await response.json();
}

Deno.test("serve --quantize int8: reports Q8_0 and answers from the rounded weights; bf16 keeps fp32's answer", async () => {
  await withTempDir(async (dir) => {
    await writeRoundingSensitiveModel(dir, tokens);
    const listed: Record<string, { size: number; parameters: string; count: number }> = {};
    for (
      const [quantize, level, answer] of [
        ["int8", "Q8_0", " B B B"],
        ["bf16", "BF16", " A A A"],
        [undefined, "F32", " A A A"],
      ] as const
    ) {
      const served = await startServeProcess(
        dir,
        [...(quantize ? ["--quantize", quantize] : []), "--name", "tiny"],
      );
      try {
        if (quantize) assert.match(served.seen, new RegExp(`, ${quantize} weights\\)`));
        const models = await (await fetch(`${served.url}/v1/models`)).json();
        assert.equal(models.data[0].quantization, level);
        const tags = await (await fetch(`${served.url}/api/tags`)).json();
        assert.equal(tags.models[0].details.quantization_level, level);
        const show = await post(`${served.url}/api/show`, { model: "tiny" });
        assert.equal(show.details.quantization_level, level);
        listed[level] = {
          size: tags.models[0].size,
          parameters: tags.models[0].details.parameter_size,
          count: show.model_info["general.parameter_count"],
        };
        const completion = await post(`${served.url}/v1/completions`, {
          model: "tiny",
          prompt: "Hello",
          max_tokens: 3,
          temperature: 0,
        });
        assert.equal(completion.choices[0].text, answer, `--quantize ${quantize ?? "(none)"}`);
      } finally {
        await served.stop();
      }
    }
    // Packed matrices are still parameters; the size is what the weights take in memory.
    assert.equal(listed.Q8_0.count, listed.F32.count);
    assert.equal(listed.BF16.parameters, listed.F32.parameters);
    assert.ok(listed.F32.size > listed.BF16.size, JSON.stringify(listed));
    assert.ok(listed.BF16.size > listed.Q8_0.size, JSON.stringify(listed));
  });
});

Deno.test("generate --quantize: the text of the rounded weights; a bad value names the flag", async () => {
  await withTempDir(async (dir) => {
    await writeRoundingSensitiveModel(dir, tokens);
    const run = (quantize: string) =>
      runCli("generate", [
        "--model",
        dir,
        "--prompt",
        "Hello",
        "--max-new-tokens",
        "3",
        "--backend",
        "cpu",
        "--quantize",
        quantize,
      ]);
    const int8 = await run("int8");
    assert.equal(int8.code, 0, int8.stderr);
    assert.equal(int8.stdout, "Hello B B B\n");
    const fp32 = await run("none");
    assert.equal(fp32.code, 0, fp32.stderr);
    assert.equal(fp32.stdout, "Hello A A A\n");
    const bad = await run("int4");
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--quantize: quantize must be one of none, bf16, int8 \(got "int4"\)/);
  });
});

Deno.test("generate --adapter --quantize int8: the adapter is merged, then the sum is packed", async () => {
  await useCpuBackend();
  await withTempDir(async (dir) => {
    const modelDir = join(dir, "model");
    await writeRoundingSensitiveModel(modelDir, tokens);
    // A freshly initialised LoRA has B = 0: the merged model is the base, so int8 must still
    // flip the answer — which it does only if the merged weights are packed afterwards.
    const model = await loadModel(modelDir);
    const adapters = applyLora(model, { rank: 2, alpha: 2 });
    await saveAdapter(join(dir, "adapter"), model, adapters, modelDir);
    model.dispose();
    const run = (quantize: string) =>
      runCli("generate", [
        "--model",
        modelDir,
        "--adapter",
        join(dir, "adapter"),
        "--prompt",
        "Hello",
        "--max-new-tokens",
        "3",
        "--backend",
        "cpu",
        "--quantize",
        quantize,
      ]);
    const int8 = await run("int8");
    assert.equal(int8.code, 0, int8.stderr);
    assert.equal(int8.stdout, "Hello B B B\n");
    const fp32 = await run("none");
    assert.equal(fp32.code, 0, fp32.stderr);
    assert.equal(fp32.stdout, "Hello A A A\n");
  });
});

Deno.test("ui --quantize: the page's chat holds its models as told", async () => {
  await useCpuBackend();
  await withTempDir(async (dir) => {
    await writeRoundingSensitiveModel(dir, tokens);
    for (const [quantize, answer] of [["int8", " B B"], ["none", " A A"]] as const) {
      const service = new ChatService("cpu", quantize);
      try {
        const response = service.stream(dir, {
          messages: [{ role: "user", content: "Hello" }],
          template: "none",
          temperature: 0,
          max_tokens: 2,
        });
        const text = [...(await response.text()).matchAll(/event: token\ndata: (.*)\n\n/g)]
          .map(([, data]) => JSON.parse(data).text).join("");
        assert.equal(text, answer, `quantize ${quantize}`);
      } finally {
        service.dispose();
      }
    }
  });
});
