/**
 * `deno task models`: the catalog agrees with ../shared/REFERENCE.md's memory list, every entry
 * is pinned, the "fits" verdict follows the free memory, and the command prints the table and
 * its JSON.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { findHfModel, HF_MODELS } from "../../datasets/hf_models.ts";
import { catalogRows, formatParameters, renderCatalog } from "../../cli/models.ts";
import { REPO_ROOT, SHARED_FIXTURES } from "../fixtures.ts";

/** REFERENCE.md's "Memory" list: name → [parameters as written, fp32 GiB]. */
async function referenceMemory(): Promise<Map<string, [string, number]>> {
  const text = await Deno.readTextFile(join(SHARED_FIXTURES, "..", "REFERENCE.md"));
  const section = text.split("### Memory")[1].split("###")[0].replace(/\s+/g, " ");
  const found = new Map<string, [string, number]>();
  for (const m of section.matchAll(/([A-Za-z][\w.-]*) ([\d.]+[MB]) ([\d.]+)\/[\d.]+\/[\d.]+/g)) {
    found.set(m[1].toLowerCase(), [m[2], Number(m[3])]);
  }
  return found;
}

/** The REFERENCE.md name of a catalog entry (instruct variants share their base's size). */
const referenceName = (id: string) =>
  id.replace(/-(instruct|it)$/, "").replace("-mini-4k", "-mini");

Deno.test("models: every catalog entry matches REFERENCE.md's parameters and fp32 memory", async () => {
  const reference = await referenceMemory();
  assert.ok(reference.size >= 12, `parsed ${reference.size} entries of REFERENCE.md`);
  for (const model of HF_MODELS) {
    const entry = reference.get(referenceName(model.id));
    assert.ok(entry, `${model.id} is not in REFERENCE.md's memory list`);
    const [parameters, gib] = entry;
    assert.equal(formatParameters(model.parameters).replace("1.00B", "1.0B"), parameters, model.id);
    assert.equal((model.fp32Bytes / 2 ** 30).toFixed(2), gib.toFixed(2), model.id);
  }
});

Deno.test("models: every entry pins a commit; ids and repositories are unique", () => {
  const ids = new Set(HF_MODELS.map((m) => m.id));
  const repos = new Set(HF_MODELS.map((m) => m.repo.toLowerCase()));
  assert.equal(ids.size, HF_MODELS.length);
  assert.equal(repos.size, HF_MODELS.length);
  for (const model of HF_MODELS) {
    assert.match(model.revision, /^[0-9a-f]{40}$/, model.id);
    assert.equal(model.revisionPinned, true, model.id);
    assert.equal(model.gated, /^(meta-llama|google)\//.test(model.repo), model.id);
  }
  assert.equal(findHfModel("qwen/qwen3-0.6b")?.id, "qwen3-0.6b");
  assert.equal(findHfModel("Phi-2")?.repo, "microsoft/phi-2");
  assert.equal(findHfModel("gpt2"), undefined);
  // The workshop's models are all there.
  for (const id of ["phi-2", "phi-3-mini-4k-instruct", "llama-3-8b-instruct"]) {
    assert.ok(findHfModel(id), id);
  }
});

Deno.test("models: a model fits when its fp32 weights fit in the free memory", () => {
  const rows = catalogRows(3 * 2 ** 30);
  const fitting = rows.filter((r) => r.fits).map((r) => r.id);
  assert.deepEqual(fitting, [
    "smollm2-135m",
    "smollm2-135m-instruct",
    "gemma-3-270m",
    "gemma-3-270m-it",
    "smollm2-360m",
    "smollm2-360m-instruct",
    "qwen3-0.6b",
  ]);
  const table = renderCatalog(rows, 3 * 2 ** 30);
  assert.match(table, /free memory now: 3\.00 GiB/);
  assert.match(
    table,
    /llama-3-8b-instruct +llama +meta-llama\/Meta-Llama-3-8B-Instruct +8afb486c1db2 +8\.03B +29\.92 GiB +yes +Meta Llama 3 Community License +instruct +no/,
  );
});

Deno.test("models: `deno task models` prints the table, and --json every field", async () => {
  const run = async (args: string[]) => {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-env", "--allow-sys", join("cli", "models.ts"), ...args],
      cwd: REPO_ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    return new TextDecoder().decode(output.stdout);
  };
  const table = await run([]);
  assert.match(
    table,
    /^id +family +repo +revision +parameters +fp32 +gated +licence +kind +fits$/m,
  );
  for (const model of HF_MODELS) {
    assert.ok(table.includes(model.repo), model.repo);
    assert.ok(table.includes(model.revision.slice(0, 12)), model.id);
  }
  const json = JSON.parse(await run(["--json"]));
  assert.ok(json.available_bytes > 0);
  assert.equal(json.models.length, HF_MODELS.length);
  for (const row of json.models) {
    assert.equal(row.fits, row.fp32Bytes <= json.available_bytes, row.id);
    for (const key of ["family", "repo", "revision", "parameters", "gated", "licence", "kind"]) {
      assert.ok(key in row, `${row.id} lacks ${key}`);
    }
  }
});
