/**
 * `--model` naming an open model: a catalog id or a Hub repository (optionally @revision) runs
 * the load-hf-model stage into the artifact cache on first use, as `--model 124M` does for
 * GPT-2, and a Hugging Face folder on disk is taken as it is. Against a local fake Hub.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { resolveModelFolder } from "../../cli/common.ts";
import { findHfModel } from "../../datasets/hf_models.ts";
import { withTempDir } from "../fixtures.ts";
import { startFakeHub, withEnv } from "../datasets/fake_hub.ts";
import { tinyHfModelFiles } from "../stages/tiny_hf_model.ts";

Deno.test("--model: a catalog id or a repository downloads into the cache once", async () => {
  const smol = findHfModel("smollm2-135m-instruct")!;
  const files = await tinyHfModelFiles({ family: "llama" });
  const hub = startFakeHub({
    [smol.repo]: { files, commit: smol.revision },
    "acme/other": { files: await tinyHfModelFiles() },
  });
  try {
    await withTempDir(async (dir) => {
      await withEnv(
        {
          HF_ENDPOINT: hub.url,
          HF_TOKEN: undefined,
          GROUNDUP_DATA_DIR: join(dir, "downloads"),
          GROUNDUP_MIRROR: undefined,
        },
        async () => {
          const values = { backend: "cpu", "cache-dir": join(dir, "cache") };
          const first = await resolveModelFolder({ ...values, model: "smollm2-135m-instruct" });
          assert.ok(first.startsWith(join(dir, "cache", "load-hf-model")), first);
          const source = JSON.parse(await Deno.readTextFile(join(first, "source.json")));
          assert.equal(source.repo, smol.repo);
          assert.equal(source.commit, smol.revision);
          assert.deepEqual(
            await Deno.readFile(join(first, "model.safetensors")),
            files["model.safetensors"],
          );

          // The repository by name is the same artifact; nothing is asked of the Hub again.
          const before = hub.requests.length;
          assert.equal(await resolveModelFolder({ ...values, model: smol.repo }), first);
          assert.equal(hub.requests.length, before);

          // Any repository, at a revision.
          const other = await resolveModelFolder({ ...values, model: "acme/other@main" });
          const config = JSON.parse(await Deno.readTextFile(join(other, "config.json")));
          assert.equal(config.model_type, "qwen3");

          // A Hugging Face folder on disk is used in place.
          assert.equal(await resolveModelFolder({ ...values, model: other }), other);
        },
      );
    });
  } finally {
    await hub.close();
  }
});
