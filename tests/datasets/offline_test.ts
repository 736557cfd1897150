/**
 * Offline: a download that cannot reach its server names the URL and the way out — the
 * mirror flag and variable, and every file (with its folder layout) the mirror must hold —
 * and leaves no empty download folder behind.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DATASETS } from "../../datasets/catalog.ts";
import { DownloadError, fetchFile, type RemoteFile } from "../../datasets/download.ts";
import { openaiGpt2Files } from "../../datasets/gpt2.ts";
import { withTempDir } from "../fixtures.ts";

/** A URL on a loopback port nothing listens on: fails at once, as offline does. */
function deadUrl(name: string): string {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return `http://127.0.0.1:${port}/${name}`;
}

const cases: [string, RemoteFile, string[]][] = [
  ["the story", DATASETS["the-verdict"], ["workshop/the-verdict.txt"]],
  ["the instruction data", DATASETS["instruction-data"], ["workshop/instruction-data.json"]],
  [
    "a GPT-2 release (all seven files)",
    openaiGpt2Files("355M")["model.ckpt.index"],
    Object.values(openaiGpt2Files("355M")).map((f) => f.path),
  ],
];

for (const [what, file, layout] of cases) {
  Deno.test(`offline, ${what}: the error names the URL, --mirror/GROUNDUP_MIRROR and the layout`, async () => {
    await withTempDir(async (dir) => {
      const url = deadUrl(file.path);
      const error = await fetchFile({ ...file, url }, {
        cacheDir: join(dir, "downloads"),
        attempts: 1,
      }).then(() => undefined, (e) => e as Error);
      assert.ok(error instanceof DownloadError, String(error));
      const lines = error.message.split("\n");
      assert.match(lines[0], new RegExp(`^download of ${url.replaceAll(".", "\\.")} failed`));
      assert.match(error.message, /pass --mirror <mirror> \(or set GROUNDUP_MIRROR=<mirror>\)/);
      for (const path of layout) assert.ok(lines.includes(`  <mirror>/${path}`), path);
      assert.equal(layout.length, lines.filter((l) => l.startsWith("  <mirror>/")).length);
      // No empty folders left where the download would have gone.
      await assert.rejects(Deno.stat(join(dir, "downloads")), Deno.errors.NotFound);
    });
  });
}

Deno.test("offline with a mirror that lacks the file: the message says which file it lacks", async () => {
  await withTempDir(async (dir) => {
    const file = { ...DATASETS["the-verdict"], url: deadUrl("x") };
    const error = await fetchFile(file, {
      cacheDir: join(dir, "downloads"),
      mirror: join(dir, "mirror"),
      attempts: 1,
    }).then(() => undefined, (e) => e as Error);
    assert.match(
      error!.message,
      new RegExp(
        `GROUNDUP_MIRROR=${dir}/mirror\\); ${dir}/mirror does not have workshop/the-verdict\\.txt`,
      ),
    );
  });
});
