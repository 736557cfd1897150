/**
 * Hugging Face Hub downloads against a local fake Hub (tests/datasets/fake_hub.ts): commit
 * resolution, LFS sha256 and git blob checks, sharded weights, gated repositories and HF_TOKEN,
 * an interrupted download that resumes, and a mirror folder read without any network.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { downloadHfModel, type HfDownloadOptions, HubAccessError } from "../../datasets/hf_hub.ts";
import { DownloadError } from "../../datasets/download.ts";
import { withTempDir } from "../fixtures.ts";
import { FAKE_COMMIT, fakeModelFiles, startFakeHub, withEnv } from "./fake_hub.ts";

const sha256 = (data: Uint8Array | string) =>
  createHash("sha256").update(typeof data === "string" ? new TextEncoder().encode(data) : data)
    .digest("hex");

const fast = (cacheDir: string): HfDownloadOptions => ({ cacheDir, retryDelayMs: 5 });

/** Every file under `dir`, recursively. */
async function allFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) out.push(...await allFiles(path));
    else if (entry.isFile) out.push(path);
  }
  return out;
}

Deno.test("hub: resolves main to its commit, checks every file, then needs no network", async () => {
  const files = fakeModelFiles();
  const hub = startFakeHub({ "acme/tiny": { files } });
  try {
    await withTempDir(async (dir) => {
      await withEnv({ HF_ENDPOINT: hub.url, HF_TOKEN: undefined }, async () => {
        const got = await downloadHfModel("acme/tiny", "main", fast(dir));
        assert.equal(got.commit, FAKE_COMMIT);
        assert.equal(got.source, "hub");
        assert.deepEqual(got.files.map((f) => f.name), [
          "config.json",
          "tokenizer.json",
          "tokenizer_config.json",
          "generation_config.json",
          "model.safetensors",
        ]);
        for (const file of got.files) {
          const content = files[file.name];
          assert.equal(file.sha256, sha256(content), file.name);
          assert.deepEqual(
            await Deno.readFile(file.path),
            typeof content === "string" ? new TextEncoder().encode(content) : content,
          );
          assert.equal(file.lfs, file.name === "model.safetensors");
          // Kept per commit, so another revision's config.json never collides with this one.
          assert.ok(file.path.includes(join("hf", "acme", "tiny", FAKE_COMMIT)), file.path);
        }
        assert.equal(got.size.dtype, "bfloat16");
        assert.equal(got.size.storedBytes, 200_000);
        assert.equal(got.size.fp32Bytes, 400_000);
        assert.ok(!hub.requests.some((r) => r.includes("README.md")), "README.md is not fetched");

        // The pinned commit's listing and files are cached: no request at all the second time.
        const before = hub.requests.length;
        const again = await downloadHfModel("acme/tiny", FAKE_COMMIT, fast(dir));
        assert.equal(hub.requests.length, before);
        assert.deepEqual(again.files.map((f) => f.sha256), got.files.map((f) => f.sha256));
      });
    });
  } finally {
    await hub.close();
  }
});

Deno.test("hub: sharded weights; the fp32 size is checked before any shard is fetched", async () => {
  const hub = startFakeHub({ "acme/sharded": { files: fakeModelFiles({ sharded: true }) } });
  try {
    await withTempDir(async (dir) => {
      await withEnv({ HF_ENDPOINT: hub.url, HF_TOKEN: undefined }, async () => {
        // The index's total_size (239,000 bytes of bf16) is 478,000 bytes at fp32: refused.
        await assert.rejects(
          downloadHfModel("acme/sharded", "main", {
            ...fast(dir),
            checkSize: (size) => {
              assert.deepEqual(size, {
                storedBytes: 239_000,
                dtype: "bfloat16",
                fp32Bytes: 478_000,
              });
              throw new Error("too large");
            },
          }),
          /too large/,
        );
        assert.ok(!hub.requests.some((r) => r.includes("/lfs/")), "no shard was downloaded");
        const got = await downloadHfModel("acme/sharded", "main", fast(dir));
        assert.deepEqual(got.files.slice(-3).map((f) => f.name), [
          "model.safetensors.index.json",
          "model-00001-of-00002.safetensors",
          "model-00002-of-00002.safetensors",
        ]);
      });
    });
  } finally {
    await hub.close();
  }
});

Deno.test("hub: a gated repository needs HF_TOKEN, which is sent but never written", async () => {
  const token = "hf_secret_for_the_test_9f3a";
  const hub = startFakeHub({ "meta/gated": { files: fakeModelFiles(), gated: true } }, token);
  try {
    await withTempDir(async (dir) => {
      await withEnv({ HF_ENDPOINT: hub.url, HF_TOKEN: undefined }, async () => {
        await assert.rejects(downloadHfModel("meta/gated", "main", fast(dir)), (error) => {
          assert.ok(error instanceof HubAccessError);
          assert.match(error.message, /HTTP 401/);
          assert.match(error.message, /set HF_TOKEN/);
          assert.ok(error.message.includes(`${hub.url}/meta/gated`), "names the licence page");
          return true;
        });
      });
      await withEnv({ HF_ENDPOINT: hub.url, HF_TOKEN: "hf_wrong" }, async () => {
        await assert.rejects(downloadHfModel("meta/gated", "main", fast(dir)), (error) => {
          assert.ok(error instanceof HubAccessError);
          assert.match(error.message, /HTTP 403/);
          assert.match(error.message, /HF_TOKEN is set/);
          return true;
        });
      });
      await withEnv({ HF_ENDPOINT: hub.url, HF_TOKEN: token }, async () => {
        const logged: string[] = [];
        const log = {
          info: (m: string) => logged.push(m),
          warn: (m: string) => logged.push(m),
          error: (m: string) => logged.push(m),
        };
        const got = await downloadHfModel("meta/gated", "main", { ...fast(dir), log });
        assert.equal(got.files.length, 5);
        assert.ok(hub.authorizations.includes(`Bearer ${token}`));
        // The CDN (another origin) gets no token: fetch drops it on the redirect.
        assert.deepEqual(hub.cdnAuthorizations, []);
        assert.ok(hub.requests.some((r) => r.startsWith("GET /lfs/")));
        for (const path of await allFiles(dir)) {
          const text = new TextDecoder().decode(await Deno.readFile(path));
          assert.ok(!text.includes(token), `${path} holds the token`);
        }
        assert.ok(!logged.join("\n").includes(token));
      });
    });
  } finally {
    await hub.close();
  }
});

Deno.test("hub: content that does not match its LFS sha256 is refused, naming both hashes", async () => {
  const files = fakeModelFiles();
  const hub = startFakeHub({ "acme/bad": { files, corrupt: ["model.safetensors"] } });
  try {
    await withTempDir(async (dir) => {
      await withEnv({ HF_ENDPOINT: hub.url, HF_TOKEN: undefined }, async () => {
        const expected = sha256(files["model.safetensors"]);
        await assert.rejects(downloadHfModel("acme/bad", "main", fast(dir)), (error) => {
          assert.ok(error instanceof DownloadError);
          assert.match(error.message, /model\.safetensors(\.part)?: sha256 mismatch/);
          assert.ok(error.message.includes(`expected ${expected}`), error.message);
          assert.match(error.message, /got [0-9a-f]{64}/);
          assert.ok(!error.message.includes(`got ${expected}`));
          return true;
        });
        const left = (await allFiles(dir)).filter((p) => p.includes("model.safetensors"));
        assert.deepEqual(left, [], "no copy, whole or partial, stays in the cache");
      });
    });
  } finally {
    await hub.close();
  }
});

Deno.test("hub: an interrupted download resumes with a Range request", async () => {
  const files = fakeModelFiles();
  const hub = startFakeHub({
    "acme/flaky": { files, breakOnce: { "model.safetensors": 70_000 } },
  });
  try {
    await withTempDir(async (dir) => {
      await withEnv({ HF_ENDPOINT: hub.url, HF_TOKEN: undefined }, async () => {
        const got = await downloadHfModel("acme/flaky", "main", fast(dir));
        const weights = got.files.find((f) => f.name === "model.safetensors")!;
        assert.deepEqual(await Deno.readFile(weights.path), files["model.safetensors"]);
        const resumed = hub.requests.filter((r) =>
          r.startsWith("GET /lfs/") && r.includes("bytes=")
        );
        assert.equal(resumed.length, 1, hub.requests.join("\n"));
        assert.ok(Number(/bytes=(\d+)-/.exec(resumed[0])![1]) > 0, "resumed mid-file");
      });
    });
  } finally {
    await hub.close();
  }
});

Deno.test("hub: a small file that does not match its git blob id is refused", async () => {
  const files = fakeModelFiles();
  const hub = startFakeHub({ "acme/tampered": { files } });
  try {
    await withTempDir(async (dir) => {
      await withEnv({ HF_ENDPOINT: hub.url, HF_TOKEN: undefined }, async () => {
        // Fetch once, then change the cached config.json as a broken disk or a bad proxy would.
        const got = await downloadHfModel("acme/tampered", "main", fast(dir));
        const config = got.files.find((f) => f.name === "config.json")!;
        await Deno.writeTextFile(
          config.path,
          JSON.stringify({ model_type: "evil" }).padEnd(
            (await Deno.stat(config.path)).size,
          ),
        );
        await assert.rejects(
          downloadHfModel("acme/tampered", "main", fast(dir)),
          /config\.json: git blob id mismatch: expected [0-9a-f]{40}, got [0-9a-f]{40}/,
        );
      });
    });
  } finally {
    await hub.close();
  }
});

Deno.test("hub: a repository in the mirror folder is read without any network", async () => {
  const files = fakeModelFiles({ sharded: true });
  await withTempDir(async (dir) => {
    const folder = join(dir, "mirror", "hf", "acme", "offline");
    await Deno.mkdir(folder, { recursive: true });
    for (const [name, content] of Object.entries(files)) {
      if (typeof content === "string") await Deno.writeTextFile(join(folder, name), content);
      else await Deno.writeFile(join(folder, name), content);
    }
    // A port nothing listens on: any request would fail.
    await withEnv({ HF_ENDPOINT: "http://127.0.0.1:9", HF_TOKEN: undefined }, async () => {
      const got = await downloadHfModel("acme/offline", "main", {
        ...fast(join(dir, "cache")),
        mirror: join(dir, "mirror"),
        attempts: 1,
      });
      assert.equal(got.source, "mirror");
      assert.equal(got.commit, null);
      assert.equal(got.files.length, 7);
      for (const file of got.files) {
        assert.equal(file.path, join(folder, file.name));
        assert.equal(file.sha256, sha256(files[file.name]));
      }
      assert.equal(got.size.fp32Bytes, 478_000);
      // A mirror without the shard an index names says which one is missing.
      await Deno.remove(join(folder, "model-00002-of-00002.safetensors"));
      await assert.rejects(
        downloadHfModel("acme/offline", "main", { ...fast(dir), mirror: join(dir, "mirror") }),
        /model\.safetensors\.index\.json names model-00002-of-00002\.safetensors, missing from/,
      );
    });
  });
});

Deno.test("hub: without network or mirror, the error says how to provide the files", async () => {
  await withTempDir(async (dir) => {
    await withEnv({ HF_ENDPOINT: "http://127.0.0.1:9", HF_TOKEN: undefined }, async () => {
      await assert.rejects(
        downloadHfModel("acme/none", "main", { ...fast(dir), attempts: 1 }),
        (error) => {
          assert.ok(error instanceof DownloadError);
          assert.match(error.message, /failed after 1 attempts/);
          assert.match(error.message, /<mirror>\/hf\/acme\/none\//);
          return true;
        },
      );
    });
  });
});
