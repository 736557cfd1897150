import assert from "node:assert/strict";
import { PipelineError } from "../../runner/errors.ts";
import { loadPipeline } from "../../runner/pipeline.ts";
import { orderStages } from "../../runner/plan.ts";
import { builtinStages } from "../../stages/mod.ts";
import { withTempDir } from "../fixtures.ts";
import { CHAIN, countingRegistry, writePipeline } from "./helpers.ts";

async function problemsOf(promise: Promise<unknown>): Promise<string[]> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof PipelineError) return error.message.split("\n");
    throw error;
  }
  assert.fail("expected a PipelineError");
}

Deno.test("every problem is reported with file:line:column, stage, key and a hint", async () => {
  await withTempDir(async (dir) => {
    const file = await writePipeline(
      dir,
      `name: bad
seed: 1
backnd: cpu
stages:
  tokenize:
    corpus: the-verdict
    tokeniser: gpt2
  dataloader:
    needs: tokenise
    batch_size: 0
    max_length: "long"
  extra:
    uses: tokenze
`,
    );
    const lines = await problemsOf(loadPipeline(file, builtinStages()));
    const text = lines.join("\n");
    assert.match(text, /6 problems/);
    assert.match(
      text,
      new RegExp(`${file}:3:1: key "backnd": unknown key "backnd" \\(did you mean "backend"\\?\\)`),
    );
    assert.match(
      text,
      new RegExp(
        `${file}:7:5: stage "tokenize", key "tokeniser": unknown key "tokeniser" \\(did you mean "tokenizer"\\?\\)`,
      ),
    );
    assert.match(
      text,
      new RegExp(
        `${file}:9:5: stage "dataloader", key "needs": "tokenise" is not a stage of this pipeline \\(did you mean "tokenize"\\?\\)`,
      ),
    );
    assert.match(text, new RegExp(`${file}:10:5: stage "dataloader", key "batch_size": .*>=1`));
    assert.match(
      text,
      new RegExp(`${file}:11:5: stage "dataloader", key "max_length": .*expected number`),
    );
    assert.match(
      text,
      new RegExp(
        `${file}:13:5: stage "extra": unknown stage type "tokenze" \\(did you mean "tokenize"\\?\\)`,
      ),
    );
  });
});

Deno.test("invalid YAML and missing required keys are located", async () => {
  await withTempDir(async (dir) => {
    const broken = await writePipeline(dir, "name: x\nstages:\n  a: [1, 2\n", "broken.yaml");
    const [first] = await problemsOf(loadPipeline(broken, builtinStages()));
    assert.match(first, new RegExp(`${broken}:\\d+:\\d+: invalid YAML`));
    const missing = await writePipeline(dir, "name: x\nstages:\n  tokenize: {}\n", "missing.yaml");
    const text = (await problemsOf(loadPipeline(missing, builtinStages()))).join("\n");
    assert.match(text, /stage "tokenize", key "corpus": required key is missing/);
    const unknownCorpus = await writePipeline(
      dir,
      "name: x\nstages:\n  tokenize:\n    corpus: no-such-thing\n",
      "c.yaml",
    );
    assert.match(
      (await problemsOf(loadPipeline(unknownCorpus, builtinStages()))).join("\n"),
      /c\.yaml:4:5: stage "tokenize", key "corpus": "no-such-thing" is neither a named dataset \(the-verdict, instruction-data, instruction-data-with-preference\) nor an existing file/,
    );
  });
});

Deno.test("a dependency cycle is an error naming the cycle", async () => {
  const { registry } = countingRegistry();
  await withTempDir(async (dir) => {
    const file = await writePipeline(
      dir,
      `name: cyc
stages:
  a: {uses: source}
  x: {uses: double, needs: [a, y]}
  y: {uses: double, needs: [a, x]}
`,
    );
    const pipeline = await loadPipeline(file, registry);
    assert.throws(() => orderStages(pipeline), /cycle: x → y → x/);
  });
});

Deno.test("a stage missing a required upstream type is rejected before running", async () => {
  const { registry } = countingRegistry();
  await withTempDir(async (dir) => {
    const file = await writePipeline(dir, "name: n\nstages:\n  b:\n    uses: double\n");
    const text = (await problemsOf(loadPipeline(file, registry))).join("\n");
    assert.match(text, /stage "b", key "needs": a double stage needs a stage of type "source"/);
  });
});

Deno.test("--set values are typed by the schema and located by the flag", async () => {
  const { registry } = countingRegistry();
  await withTempDir(async (dir) => {
    const file = await writePipeline(dir, CHAIN);
    const pipeline = await loadPipeline(file, registry, {
      sets: ["a.value=42", "b.nested.a=5", "seed=9"],
    });
    const a = pipeline.stages.find((s) => s.name === "a")!;
    assert.deepEqual(a.params, { value: 42, seed: 9 });
    assert.deepEqual(pipeline.stages.find((s) => s.name === "b")!.params, {
      crash: false,
      nested: { a: 5 },
    });
    const text = (await problemsOf(
      loadPipeline(file, registry, { sets: ["a.value=abc", "a.valeu=1", "zz.value=1"] }),
    )).join("\n");
    assert.match(text, /--set a\.value=abc: stage "a", key "value": .*expected number/);
    assert.match(
      text,
      /--set a\.valeu=1: stage "a", key "valeu": unknown key "valeu" \(did you mean "value"\?\)/,
    );
    assert.match(text, /--set zz\.value=1: no stage named "zz"/);
  });
});

Deno.test("--config overlays deep-merge; a model config file replaces the model", async () => {
  const { registry } = countingRegistry();
  await withTempDir(async (dir) => {
    const file = await writePipeline(
      dir,
      CHAIN + "  m:\n    uses: modelled\nmodel:\n  emb_dim: 8\n  n_layers: 1\n",
    );
    const overlay = await writePipeline(
      dir,
      "seed: 11\nstages:\n  a:\n    value: 5\n",
      "overlay.yaml",
    );
    const model = await writePipeline(
      dir,
      "emb_dim: 1280\nn_layers: 36\nn_heads: 20\n",
      "large.yaml",
    );
    const pipeline = await loadPipeline(file, registry, { overlays: [overlay, model] });
    assert.equal(pipeline.settings.seed, 11);
    assert.deepEqual(pipeline.stages.find((s) => s.name === "a")!.params, { value: 5, seed: 11 });
    assert.deepEqual(pipeline.model, { emb_dim: 1280, n_layers: 36, n_heads: 20 });
    assert.deepEqual(pipeline.stages.find((s) => s.name === "m")!.params, {
      model: { emb_dim: 1280, n_layers: 36, n_heads: 20 },
    });
    // Problems in an overlay are reported in the overlay file.
    const badOverlay = await writePipeline(dir, "stages:\n  a:\n    vlaue: 5\n", "bad.yaml");
    const text = (await problemsOf(loadPipeline(file, registry, { overlays: [badOverlay] }))).join(
      "\n",
    );
    assert.match(text, new RegExp(`${badOverlay}:3:5: stage "a", key "vlaue"`));
  });
});

Deno.test("--config: a file with none of the pipeline's keys is the model; a misspelt pipeline key is reported, not taken for one", async () => {
  const { registry } = countingRegistry();
  await withTempDir(async (dir) => {
    const file = await writePipeline(
      dir,
      CHAIN + "  m:\n    uses: modelled\nmodel:\n  emb_dim: 8\n",
    );
    // Any keys at all: the runner does not know what a model configuration holds.
    const config = await writePipeline(dir, "width: 3\ndepth: 2\n", "config.yaml");
    const pipeline = await loadPipeline(file, registry, { overlays: [config] });
    assert.deepEqual(pipeline.model, { width: 3, depth: 2 });
    const misspelt = await writePipeline(dir, "stagse:\n  a:\n    value: 5\n", "typo.yaml");
    const text = (await problemsOf(loadPipeline(file, registry, { overlays: [misspelt] }))).join(
      "\n",
    );
    assert.match(
      text,
      new RegExp(
        `${misspelt}:1:1: key "stagse": unknown key "stagse" \\(did you mean "stages"\\?\\)`,
      ),
    );
  });
});

Deno.test("--config: a model configuration that no stage takes is reported, not dropped", async () => {
  const { registry } = countingRegistry();
  await withTempDir(async (dir) => {
    const file = await writePipeline(dir, CHAIN);
    const config = await writePipeline(dir, "emb_dim: 1280\n", "large.yaml");
    const text = (await problemsOf(loadPipeline(file, registry, { overlays: [config] }))).join(
      "\n",
    );
    assert.match(
      text,
      new RegExp(
        `${config}:1:1: taken as a model configuration \\(it sets none of the pipeline's keys: name, .*\\), but no stage of this pipeline takes \`model\``,
      ),
    );
    // A stage taking the model counts even when its own entry has a problem.
    const withBadStage = await writePipeline(
      dir,
      CHAIN + "  m:\n    uses: modelled\n    colour: red\n",
      "bad.yaml",
    );
    const problems = await problemsOf(loadPipeline(withBadStage, registry, { overlays: [config] }));
    assert.ok(problems.some((p) => /key "colour"/.test(p)), problems.join("\n"));
    assert.ok(!problems.some((p) => /taken as a model configuration/.test(p)), problems.join("\n"));
  });
});

Deno.test("the shipped pipelines are valid", async () => {
  for await (const entry of Deno.readDir("pipelines")) {
    if (!entry.name.endsWith(".yaml")) continue;
    const pipeline = await loadPipeline(`pipelines/${entry.name}`, builtinStages());
    assert.ok(pipeline.stages.length > 0, entry.name);
  }
});
