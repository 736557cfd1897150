/**
 * Stage load-hf-model against a local fake Hub: a catalog id resolves to its repository and
 * pinned commit, the artifact keeps Hugging Face's file names plus our source.json and verifies
 * as any artifact does; the memory check before the weights; local folders keyed by content;
 * parameter mistakes and a config without model_type.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { verifyArtifact } from "../../runner/cache.ts";
import { StageRegistry } from "../../runner/stage.ts";
import { PipelineError } from "../../runner/errors.ts";
import { checkHfModelFolder, loadHfModelStage } from "../../stages/load_hf_model.ts";
import { findHfModel } from "../../datasets/hf_models.ts";
import { withTempDir } from "../fixtures.ts";
import { quietOutput, writePipeline } from "../runner/helpers.ts";
import { fakeModelFiles, startFakeHub, withEnv } from "../datasets/fake_hub.ts";

const registry = () => new StageRegistry().register(loadHfModelStage);
const sha256 = (data: Uint8Array | string) =>
  createHash("sha256").update(typeof data === "string" ? new TextEncoder().encode(data) : data)
    .digest("hex");

/** Runs a pipeline with its own download cache and no mirror. */
async function runYaml(dir: string, yaml: string, env: Record<string, string | undefined> = {}) {
  return await withEnv(
    { GROUNDUP_DATA_DIR: join(dir, "downloads"), GROUNDUP_MIRROR: undefined, ...env },
    async () => {
      const file = await writePipeline(dir, yaml);
      const pipeline = await loadPipeline(file, registry(), { baseDir: dir });
      return await runPipeline(pipeline, { cacheDir: join(dir, "cache"), out: quietOutput });
    },
  );
}

async function writeFolder(folder: string, files: Record<string, Uint8Array | string>) {
  await Deno.mkdir(folder, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    if (typeof content === "string") await Deno.writeTextFile(join(folder, name), content);
    else await Deno.writeFile(join(folder, name), content);
  }
}

Deno.test("load-hf-model: a catalog id downloads its repository at the pinned commit", async () => {
  const qwen = findHfModel("qwen3-0.6b")!;
  const files = fakeModelFiles({ modelType: "qwen3", sharded: true });
  files["chat_template.jinja"] = "{% for m in messages %}{{ m.content }}{% endfor %}";
  const hub = startFakeHub({ [qwen.repo]: { files, commit: qwen.revision } });
  try {
    await withTempDir(async (dir) => {
      const yaml = "name: t\nstages:\n  load-hf-model:\n    model: qwen3-0.6b\n";
      const report = await runYaml(dir, yaml, { HF_ENDPOINT: hub.url, HF_TOKEN: undefined });
      assert.ok(report.ok, report.error?.message);
      const artifact = report.artifacts["load-hf-model"];
      assert.equal(artifact.manifest.metrics.model_type, "qwen3");
      assert.equal(artifact.manifest.metrics.commit, qwen.revision);
      assert.deepEqual(artifact.manifest.params, {
        source: "hub",
        repo: "Qwen/Qwen3-0.6B",
        revision: qwen.revision,
        allow_large: false,
      });
      // Hugging Face's files under their own names, each byte for byte, plus our source.json.
      const names = [...Deno.readDirSync(artifact.dir)].map((e) => e.name).sort();
      assert.deepEqual(
        names,
        [
          "chat_template.jinja",
          "config.json",
          "generation_config.json",
          "manifest.json",
          "model-00001-of-00002.safetensors",
          "model-00002-of-00002.safetensors",
          "model.safetensors.index.json",
          "source.json",
          "tokenizer.json",
          "tokenizer_config.json",
        ],
      );
      for (const [name, content] of Object.entries(files)) {
        if (name === "README.md") continue;
        assert.equal(sha256(await Deno.readFile(join(artifact.dir, name))), sha256(content), name);
      }
      const source = JSON.parse(await Deno.readTextFile(join(artifact.dir, "source.json")));
      assert.equal(source.repo, "Qwen/Qwen3-0.6B");
      assert.equal(source.commit, qwen.revision);
      assert.equal(source.files.length, 8);
      for (const file of source.files) assert.equal(file.sha256, sha256(files[file.name]));
      await verifyArtifact(artifact.dir);
      assert.equal((await checkHfModelFolder(artifact.dir)).modelType, "qwen3");

      // The same repository named by `repo:` is the same key: cached, no request at all.
      const before = hub.requests.length;
      const again = await runYaml(
        dir,
        "name: t\nstages:\n  load-hf-model:\n    repo: Qwen/Qwen3-0.6B\n",
        { HF_ENDPOINT: hub.url },
      );
      assert.equal(again.steps[0].outcome, "cached");
      assert.equal(hub.requests.length, before);
    });
  } finally {
    await hub.close();
  }
});

Deno.test("load-hf-model: weights too large for memory are refused before they download", async () => {
  const files = fakeModelFiles({ sharded: true, dtype: "float32" });
  // An index claiming 1 PB of fp32 weights: no machine has that much memory.
  const index = JSON.parse(files["model.safetensors.index.json"] as string);
  index.metadata.total_size = 1e15;
  files["model.safetensors.index.json"] = JSON.stringify(index);
  const hub = startFakeHub({ "acme/huge": { files } });
  try {
    await withTempDir(async (dir) => {
      const yaml = "name: t\nstages:\n  load-hf-model:\n    repo: acme/huge\n";
      const report = await runYaml(dir, yaml, { HF_ENDPOINT: hub.url });
      assert.equal(report.ok, false);
      assert.match(report.error!.message, /not enough memory for acme\/huge at fp32/);
      assert.match(report.error!.message, /needs about 1000\.0 TB, .* available/);
      assert.match(report.error!.message, /allow_large: true/);
      assert.ok(!hub.requests.some((r) => r.startsWith("GET /lfs/")), "no shard downloaded");
      const allowed = await runYaml(dir, yaml + "    allow_large: true\n", {
        HF_ENDPOINT: hub.url,
      });
      assert.ok(allowed.ok, allowed.error?.message);
    });
  } finally {
    await hub.close();
  }
});

Deno.test("load-hf-model: a local folder is copied, keyed by the content of its files", async () => {
  await withTempDir(async (dir) => {
    const files = fakeModelFiles({ modelType: "gemma3_text" });
    await writeFolder(join(dir, "my-model"), files);
    const yaml = "name: t\nstages:\n  load-hf-model:\n    source: local\n    path: my-model\n";
    const first = await runYaml(dir, yaml);
    assert.ok(first.ok, first.error?.message);
    const artifact = first.artifacts["load-hf-model"];
    assert.equal(artifact.manifest.metrics.model_type, "gemma3_text");
    const source = JSON.parse(await Deno.readTextFile(join(artifact.dir, "source.json")));
    assert.equal(source.source, "local");
    assert.equal(source.path, join(dir, "my-model"));
    assert.deepEqual(
      await Deno.readFile(join(artifact.dir, "model.safetensors")),
      files["model.safetensors"],
    );
    assert.equal((await runYaml(dir, yaml)).steps[0].outcome, "cached");
    // README.md is not read: changing it keeps the key; changing the weights does not.
    await Deno.writeTextFile(join(dir, "my-model", "README.md"), "changed");
    assert.equal((await runYaml(dir, yaml)).steps[0].outcome, "cached");
    const weights = (files["model.safetensors"] as Uint8Array).slice();
    weights[0] ^= 1;
    await Deno.writeFile(join(dir, "my-model", "model.safetensors"), weights);
    assert.equal((await runYaml(dir, yaml)).steps[0].outcome, "ran");
  });
});

Deno.test("load-hf-model: a config.json without model_type lands nothing in the cache", async () => {
  await withTempDir(async (dir) => {
    const files = fakeModelFiles();
    files["config.json"] = JSON.stringify({ emb_dim: 768, n_layers: 12 });
    await writeFolder(join(dir, "ours"), files);
    const report = await runYaml(
      dir,
      "name: t\nstages:\n  load-hf-model:\n    source: local\n    path: ours\n",
    );
    assert.equal(report.ok, false);
    assert.match(report.error!.message, /ours.config\.json: no "model_type"/);
    const stageDir = join(dir, "cache", "load-hf-model");
    const kept = [...Deno.readDirSync(stageDir)].filter((e) => !e.name.startsWith("."));
    assert.deepEqual(kept.map((e) => e.name).filter((n) => /^[0-9a-f]{16,}$/.test(n)), []);
  });
});

Deno.test("load-hf-model: parameter mistakes are reported before anything runs", async () => {
  await withTempDir(async (dir) => {
    const cases: [string, RegExp][] = [
      ["model: qwen3-0.6", /"qwen3-0\.6" is not in the catalog \(did you mean "qwen3-0\.6b"\?\)/],
      ["repo: not-a-repo", /expected <org>\/<name>/],
      ["model: phi-2\n    repo: Qwen/Qwen3-0.6B", /repo Qwen\/Qwen3-0\.6B contradicts model phi-2/],
      ["source: local", /source: local needs `path:`/],
      ["source: hub", /needs `repo:`/],
      [
        "source: local\n    path: x\n    revision: main",
        /`revision` is only read with source: hub/,
      ],
    ];
    for (const [params, expected] of cases) {
      const file = await writePipeline(dir, `name: t\nstages:\n  load-hf-model:\n    ${params}\n`);
      await assert.rejects(loadPipeline(file, registry(), { baseDir: dir }), (error) => {
        assert.ok(error instanceof PipelineError, String(error));
        assert.match(error.message, expected);
        return true;
      });
    }
  });
});
