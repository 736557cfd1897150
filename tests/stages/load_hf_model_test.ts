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
import { startFakeHub, withEnv } from "../datasets/fake_hub.ts";
import { tinyHfModelFiles } from "./tiny_hf_model.ts";

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
  const files: Record<string, Uint8Array | string> = {
    ...await tinyHfModelFiles({ sharded: true }),
  };
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
  const files: Record<string, Uint8Array | string> = {
    ...await tinyHfModelFiles({ sharded: true }),
  };
  // An index claiming 1 PB of fp32 weights: no machine has that much memory.
  const index = JSON.parse(
    new TextDecoder().decode(files["model.safetensors.index.json"] as Uint8Array),
  );
  index.metadata.total_size = 1e15;
  files["model.safetensors.index.json"] = JSON.stringify(index);
  const hub = startFakeHub({ "acme/huge": { files } });
  try {
    await withTempDir(async (dir) => {
      const yaml = "name: t\nstages:\n  load-hf-model:\n    repo: acme/huge\n";
      const report = await runYaml(dir, yaml, { HF_ENDPOINT: hub.url });
      assert.equal(report.ok, false);
      assert.match(
        report.error!.message,
        /not enough memory for acme\/huge even at int8 \(1000\.0 TB at fp32/,
      );
      assert.match(report.error!.message, /needs about 265\.6 TB, .* available/);
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
    const files: Record<string, Uint8Array | string> = {
      ...await tinyHfModelFiles({ family: "llama" }),
      "README.md": "not read",
    };
    await writeFolder(join(dir, "my-model"), files);
    const yaml = "name: t\nstages:\n  load-hf-model:\n    source: local\n    path: my-model\n";
    const first = await runYaml(dir, yaml);
    assert.ok(first.ok, first.error?.message);
    const artifact = first.artifacts["load-hf-model"];
    assert.equal(artifact.manifest.metrics.model_type, "llama");
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
    weights[weights.length - 1] ^= 1; // a value, not the header
    await Deno.writeFile(join(dir, "my-model", "model.safetensors"), weights);
    assert.equal((await runYaml(dir, yaml)).steps[0].outcome, "ran");
  });
});

Deno.test("load-hf-model: a config.json without model_type lands nothing in the cache", async () => {
  await withTempDir(async (dir) => {
    const files: Record<string, Uint8Array | string> = { ...await tinyHfModelFiles() };
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

/** The artifact folders of a stage in a cache (temporary folders left out). */
function artifactsIn(cache: string, stage: string): string[] {
  try {
    return [...Deno.readDirSync(join(cache, stage))].map((e) => e.name)
      .filter((name) => /^[0-9a-f]{16}$/.test(name));
  } catch {
    return [];
  }
}

Deno.test("load-hf-model: source random writes a tiny Qwen3 in the Hub's layout, offline", async () => {
  await withTempDir(async (dir) => {
    const yaml = "name: t\nstages:\n  load-hf-model:\n    source: random\n    hidden: 8\n" +
      "    heads: 2\n    kv_heads: 1\n    head_dim: 4\n    intermediate: 16\n    layers: 1\n";
    const first = await runYaml(dir, yaml);
    assert.ok(first.ok, first.error?.message);
    const artifact = first.artifacts["load-hf-model"];
    assert.deepEqual(artifact.manifest.params, {
      source: "random",
      family: "qwen3",
      hidden: 8,
      layers: 1,
      heads: 2,
      kv_heads: 1,
      head_dim: 4,
      intermediate: 16,
      seed: 123,
      allow_large: false,
    });
    const names = [...Deno.readDirSync(artifact.dir)].map((e) => e.name).sort();
    assert.deepEqual(names, [
      "config.json",
      "generation_config.json",
      "manifest.json",
      "model.safetensors",
      "source.json",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    const config = JSON.parse(await Deno.readTextFile(join(artifact.dir, "config.json")));
    assert.equal(config.model_type, "qwen3");
    assert.equal(config.architectures[0], "Qwen3ForCausalLM");
    assert.equal(config.vocab_size, 151_936);
    const info = await checkHfModelFolder(artifact.dir);
    assert.equal(info.family.name, "qwen3");
    assert.equal(info.tokenizerVocab, 151_669); // fewer ids than embedding rows, as Qwen3's
    assert.equal(info.chatTemplate, "jinja");
    assert.equal(artifact.manifest.metrics.parameters, info.parameters);
    const source = JSON.parse(await Deno.readTextFile(join(artifact.dir, "source.json")));
    assert.equal(source.source, "random");
    assert.equal(source.random.family, "qwen3");
    assert.equal(source.files.length, 5);
    await verifyArtifact(artifact.dir);

    // Same parameters: cached. Another seed: other weights, another artifact.
    assert.equal((await runYaml(dir, yaml)).steps[0].outcome, "cached");
    const other = await runYaml(dir, yaml + "    seed: 5\n");
    assert.equal(other.steps[0].outcome, "ran");
    const weightsOf = (d: string) => Deno.readFile(join(d, "model.safetensors"));
    assert.notDeepEqual(
      await weightsOf(other.artifacts["load-hf-model"].dir),
      await weightsOf(artifact.dir),
    );
  });
});

Deno.test("load-hf-model: source random with family llama has Llama 3's tokenizer", async () => {
  await withTempDir(async (dir) => {
    const yaml = "name: t\nstages:\n  load-hf-model:\n    source: random\n    family: llama\n" +
      "    hidden: 8\n    heads: 2\n    kv_heads: 1\n    head_dim: 4\n    layers: 1\n";
    const report = await runYaml(dir, yaml);
    assert.ok(report.ok, report.error?.message);
    const info = await checkHfModelFolder(report.artifacts["load-hf-model"].dir);
    assert.equal(info.modelType, "llama");
    assert.equal(info.config.vocab_size, 128_256);
  });
});

Deno.test("load-hf-model: a folder that cannot load names what is wrong, and lands nothing", async () => {
  const base = await tinyHfModelFiles({ family: "llama" });
  const qwen = await tinyHfModelFiles();
  const withoutTensor = async (name: string) => {
    const { readSafetensors, writeSafetensors } = await import(
      "../../llm/weights/safetensors.ts"
    );
    const { tensors } = readSafetensors(base["model.safetensors"]);
    assert.ok(tensors.delete(name), `the tiny model has ${name}`);
    return writeSafetensors(tensors, { format: "pt" });
  };
  const config = JSON.parse(new TextDecoder().decode(base["config.json"]));
  const cases: [string, Record<string, Uint8Array | string | null>, RegExp][] = [
    [
      "unsupported model_type",
      { "config.json": JSON.stringify({ ...config, model_type: "mamba" }) },
      /bad.config\.json: model_type "mamba" is not supported; supported: .*qwen3 \(qwen3\)/,
    ],
    [
      "missing tensor",
      { "model.safetensors": await withoutTensor("model.layers.0.mlp.down_proj.weight") },
      /bad.model\.safetensors: missing tensor "model\.layers\.0\.mlp\.down_proj\.weight" \(expected shape \[8,16\]/,
    ],
    [
      "wrong shape",
      { "config.json": JSON.stringify({ ...config, intermediate_size: 24 }) },
      /bad.model\.safetensors: tensor "model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[16,8\] but config\.json implies \[24,8\]/,
    ],
    [
      "missing tokenizer.json",
      { "tokenizer.json": null },
      /bad has no tokenizer\.json/,
    ],
    [
      "a foreign tokenizer",
      {
        "tokenizer.json": qwen["tokenizer.json"],
        "tokenizer_config.json": qwen["tokenizer_config.json"],
      },
      /bad.tokenizer\.json: the tokenizer has 151,\d{3} ids but .*config\.json says the model has 128,256 \(vocab_size\): the tokenizer belongs to another model/,
    ],
  ];
  for (const [what, changes, expected] of cases) {
    await withTempDir(async (dir) => {
      const files: Record<string, Uint8Array | string> = { ...base };
      for (const [name, content] of Object.entries(changes)) {
        if (content === null) delete files[name];
        else files[name] = content;
      }
      await writeFolder(join(dir, "bad"), files);
      const yaml = "name: t\nstages:\n  load-hf-model:\n    source: local\n    path: bad\n";
      const report = await runYaml(dir, yaml);
      assert.equal(report.ok, false, what);
      assert.match(report.error!.message, expected, `${what}: ${report.error!.message}`);
      assert.deepEqual(artifactsIn(join(dir, "cache"), "load-hf-model"), [], what);
      if (what === "missing tokenizer.json") {
        // The check itself names the file too (for a folder given to `--model`).
        await assert.rejects(
          checkHfModelFolder(join(dir, "bad")),
          /bad.tokenizer\.json: not found \(a Hugging Face model folder needs its tokenizer\.json\)/,
        );
      }
    });
  }
});

Deno.test("load-hf-model: random-model settings are checked before anything runs", async () => {
  await withTempDir(async (dir) => {
    const cases: [string, RegExp][] = [
      ["source: random\n    repo: a/b", /`repo` is not read with source: random/],
      ["repo: a/b\n    hidden: 8", /`hidden` is not read with source: hub/],
      ["source: random\n    heads: 4\n    kv_heads: 3", /kv_heads 3 must divide heads 4/],
      ["source: random\n    family: gemma3", /family/],
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
