/**
 * The page's ES modules reach the browser: every module the page imports (followed from
 * ui/app.js) is served as JavaScript, byte for byte, and no module path reaches another file.
 */
import assert from "node:assert/strict";
import { dirname, join, posix } from "node:path";
import { REPO_ROOT, withTempDir } from "../fixtures.ts";
import { UiApi } from "../../server/ui_api.ts";

const UI = join(REPO_ROOT, "ui");

/** The relative imports of a module's text ("./js/dom.js"). */
function importsOf(text: string): string[] {
  return [...text.matchAll(/^import\s[^;]*?from\s+"(\.{1,2}\/[^"]+)";/gms)].map((m) => m[1]);
}

/** Every module the page loads, as URL paths from the entry /app.js, in import order. */
async function pageModules(): Promise<string[]> {
  const seen = new Set<string>();
  const visit = async (urlPath: string) => {
    if (seen.has(urlPath)) return;
    seen.add(urlPath);
    const text = await Deno.readTextFile(join(UI, urlPath));
    for (const spec of importsOf(text)) await visit(posix.join(dirname(urlPath), spec));
  };
  await visit("/app.js");
  return [...seen];
}

const SECRET = "the content of a file outside ui/js/";

const get = (api: UiApi, path: string) => api.handler(new Request(`http://127.0.0.1${path}`));

Deno.test("ui modules: every module the page imports is served as JavaScript, as it is", async () => {
  const api = new UiApi({ cacheDir: "/nonexistent" });
  const modules = await pageModules();
  const onDisk = [...Deno.readDirSync(join(UI, "js"))].map((e) => `/js/${e.name}`).sort();
  // All of ui/js/ is reached from the entry but types.js, which only the type checker reads.
  assert.deepEqual(onDisk.filter((m) => !modules.includes(m)), ["/js/types.js"]);
  for (const path of modules) {
    const response = await get(api, path);
    assert.equal(response.status, 200, path);
    assert.equal(response.headers.get("content-type"), "text/javascript; charset=utf-8", path);
    assert.deepEqual(
      new Uint8Array(await response.arrayBuffer()),
      await Deno.readFile(join(UI, path)),
      path,
    );
  }
});

Deno.test("ui modules: no module path leaves ui/js/", async () => {
  await withTempDir(async (dir) => {
    const ui = join(dir, "ui");
    await Deno.mkdir(join(ui, "js"), { recursive: true });
    await Deno.writeTextFile(join(ui, "js", "ok.js"), "export const ok = 1;\n");
    await Deno.writeTextFile(join(ui, "secret.js"), SECRET);
    await Deno.writeTextFile(join(dir, "outside.js"), SECRET);
    await Deno.symlink(join(dir, "outside.js"), join(ui, "js", "link.js"));
    await Deno.mkdir(join(ui, "js", "sub"));
    await Deno.writeTextFile(join(ui, "js", "sub", "x.js"), SECRET);
    const api = new UiApi({ cacheDir: join(dir, "cache"), uiDir: ui });
    assert.equal((await get(api, "/js/ok.js")).status, 200);
    for (
      const path of [
        "/js/../secret.js", // the URL parser makes this /secret.js: no such page
        "/js/%2e%2e/secret.js",
        "/js/..%2fsecret.js",
        "/js/%2E%2E%2Fsecret.js",
        "/js/..%5csecret.js",
        "/js/link.js", // a symlink to a file outside
        "/js/sub/x.js",
        "/js/missing.js",
        "/js/ok.js/",
        "/js/OK.js",
        "/js/ok.ts",
        "/js/",
      ]
    ) {
      const response = await get(api, path);
      const body = await response.text();
      assert.equal(response.status, 404, `${path}: ${body}`);
      assert.ok(!body.includes(SECRET), path);
    }
  });
});
