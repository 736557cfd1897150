/** `deno task ui`: flags, loopback by default, the cache folder it serves. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { withTempDir } from "../fixtures.ts";
import { main } from "../../cli/ui.ts";

Deno.test("ui cli: serves the cache it is given on loopback; bad flags exit 2", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(join(dir, "runs"));
    await Deno.writeTextFile(
      join(dir, "runs", "2026-01-01T00-00-00-000Z-demo.json"),
      JSON.stringify({ pipeline: "demo", status: "ok", steps: [] }),
    );
    const server = main(["--port", "0", "--cache-dir", dir, "--backend", "cpu"]);
    assert.ok(typeof server !== "number");
    try {
      const addr = server.addr as Deno.NetAddr;
      assert.equal(addr.hostname, "127.0.0.1");
      const runs = await (await fetch(`http://127.0.0.1:${addr.port}/api/ui/runs`)).json();
      assert.deepEqual(runs.runs.map((r: { pipeline: string }) => r.pipeline), ["demo"]);
    } finally {
      await server.shutdown();
    }
    assert.equal(main(["--port", "http"]), 2);
    assert.equal(main(["--backend", "tpu"]), 2);
    assert.equal(main(["--bogus"]), 2);
  });
});
