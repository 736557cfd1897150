import assert from "node:assert/strict";
import { knownKeysAt } from "../../runner/schema_paths.ts";
import { builtinStages } from "../../stages/mod.ts";
import { renderPipelinesDoc } from "../../tools/gen_docs.ts";

/** The rows of the parameter table under a stage's heading, keyed by parameter name. */
function stageRows(page: string, type: string): Map<string, string[]> {
  const start = page.indexOf(`### \`${type}\``);
  assert.ok(start >= 0, `no section for stage ${type}`);
  const next = page.indexOf("\n### ", start + 1);
  const section = page.slice(start, next < 0 ? undefined : next);
  const rows = new Map<string, string[]>();
  for (const line of section.split("\n")) {
    const match = line.match(/^\| `([\w.]+)` +\|(.*)\|$/);
    if (match) rows.set(match[1], match[2].split(/(?<!\\)\|/).map((cell) => cell.trim()));
  }
  return rows;
}

Deno.test("docs/pipelines.md: every parameter of every built-in stage has a row", async () => {
  const page = await renderPipelinesDoc();
  const registry = builtinStages();
  for (const type of registry.types()) {
    const rows = stageRows(page, type);
    const keys = knownKeysAt(registry.get(type)!.params, []);
    assert.ok(keys.length > 0, `stage ${type}: no keys found in its schema`);
    for (const key of keys) assert.ok(rows.has(key), `stage ${type}: no row for ${key}`);
  }
});

Deno.test("docs/pipelines.md: generate's stream key, defaults, bounds and inheritance", async () => {
  const page = await renderPipelinesDoc();
  const generate = stageRows(page, "generate");
  assert.deepEqual(generate.get("stream")?.slice(0, 2), ["boolean", "`true`"]);
  assert.deepEqual(generate.get("top_p")?.[0], "number in (0, 1]");
  assert.deepEqual(generate.get("seed")?.[1], "pipeline's `seed`, else `123`");
  const dataloader = stageRows(page, "dataloader");
  assert.deepEqual(dataloader.get("train_ratio")?.slice(0, 2), ["number in (0, 1)", "`0.9`"]);
  assert.deepEqual(dataloader.get("stride")?.[1], "—");
  const pretrain = stageRows(page, "pretrain");
  assert.deepEqual(pretrain.get("model.drop_rate")?.slice(0, 2), ["number in [0, 1)", "required"]);
  assert.deepEqual(pretrain.get("schedule")?.[0], "`constant`, `warmup_cosine`");
  assert.match(stageRows(page, "tokenize").get("tokenizer")?.[2] ?? "", /<\\\|endoftext\\\|>/);
});
