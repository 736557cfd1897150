/**
 * Small command-line mistakes get a precise message and exit code: an empty prompt, a stop
 * token outside the vocabulary, an unknown backend, a prompt longer than the context (a
 * warning with the count), and no stray `XDG_RUNTIME_DIR` error from the WebGPU probe.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT, withTempDir } from "../fixtures.ts";
import { useCpuBackend } from "../llm/model/tf_setup.ts";
import { parityWords, writeParityModelFolder } from "../stages/parity_checkpoints.ts";
import { recordFiles } from "../../runner/cache.ts";
import { runCli } from "./cli_helpers.ts";

await useCpuBackend();

Deno.test("generate: empty prompt, unknown stop token, too long a prompt", async () => {
  await withTempDir(async (dir) => {
    const { cases } = await writeParityModelFolder(dir);
    const cpu = ["--model", dir, "--backend", "cpu", "--max-new-tokens", "1"];
    const empty = await runCli("generate", [...cpu, "--prompt", ""]);
    assert.equal(empty.code, 2);
    assert.match(empty.stderr, /^error: --prompt must not be empty/);

    const stop = await runCli("generate", [...cpu, "--prompt", "x", "--stop-token", "999999"]);
    assert.equal(stop.code, 2);
    assert.match(
      stop.stderr,
      /error: --stop-token 999999: not a token of this model's vocabulary \(ids 0 to \d+\)/,
    );

    const config = JSON.parse(await Deno.readTextFile(join(dir, "gpt_config.json")));
    const words = parityWords(cases[0].prompt).split(" ");
    const long = Array.from(
      { length: config.context_length + 5 },
      (_, i) => words[i % words.length],
    )
      .join(" ");
    const warned = await runCli("generate", [...cpu, "--prompt", long]);
    assert.equal(warned.code, 0, warned.stderr);
    assert.match(
      warned.stderr,
      new RegExp(
        `warning: the prompt has ${
          config.context_length + 5
        } tokens but the model sees at most ${config.context_length}: its first 5 tokens are dropped`,
      ),
    );
  });
});

Deno.test("generate with backend auto and no XDG_RUNTIME_DIR prints no XDG error", async () => {
  await withTempDir(async (dir) => {
    const { cases } = await writeParityModelFolder(dir);
    const env: Record<string, string> = {};
    for (const name of ["PATH", "HOME", "DENO_DIR", "GROUNDUP_MIRROR"]) {
      const value = Deno.env.get(name);
      if (value) env[name] = value;
    }
    const child = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--unstable-webgpu",
        join("cli", "generate.ts"),
        "--model",
        dir,
        "--prompt",
        parityWords(cases[0].prompt),
        "--max-new-tokens",
        "1",
      ],
      cwd: REPO_ROOT,
      clearEnv: true,
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(child.stderr);
    assert.equal(child.code, 0, stderr);
    assert.doesNotMatch(stderr, /XDG_RUNTIME_DIR/);
  });
});

Deno.test("main: an unknown --backend is reported as --backend, exit 2", async () => {
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "pipelines/smoke.yaml", "--plan", "--backend", "tpu"],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(result.code, 2);
  assert.equal(
    new TextDecoder().decode(result.stderr),
    'error: --backend tpu: expected one of auto, webgpu, cpu, wasm (did you mean "cpu"?)\n',
  );
});

Deno.test("generate refuses a cached model whose weights were flipped, naming the file, and sets it aside", async () => {
  await withTempDir(async (root) => {
    const dir = join(root, "cache", "pretrain", "0123456789abcdef");
    await Deno.mkdir(dir, { recursive: true });
    const { cases } = await writeParityModelFolder(dir);
    await Deno.writeTextFile(
      join(dir, "manifest.json"),
      JSON.stringify({ key: "0123456789abcdef", outputs: await recordFiles(dir) }),
    );
    const args = [
      ...["--model", dir, "--cache-dir", join(root, "cache")],
      ...["--backend", "cpu", "--max-new-tokens", "1"],
    ];
    const prompt = ["--prompt", parityWords(cases[0].prompt)];
    assert.equal((await runCli("generate", [...args, ...prompt])).code, 0, "intact: it runs");
    const weights = join(dir, "model.safetensors");
    const bytes = await Deno.readFile(weights);
    bytes[bytes.length - 3] ^= 0x40;
    await Deno.writeFile(weights, bytes);
    const flipped = await runCli("generate", [...args, ...prompt]);
    assert.equal(flipped.code, 1);
    assert.match(
      flipped.stderr,
      /error: .*model\.safetensors is corrupt \(its sha256 differs from the manifest's\); moved the artifact to .*0123456789abcdef\.corrupt-.*: run its pipeline again/,
    );
    assert.equal(flipped.stdout, "", "no garbage printed");
    await assert.rejects(Deno.stat(dir), Deno.errors.NotFound);
  });
});

Deno.test("generate on a damaged copy of an artifact outside the cache reports the damage and touches nothing", async () => {
  await withTempDir(async (root) => {
    // An artifact copied out of the cache into the user's own folder, then truncated.
    const dir = join(root, "my-model");
    await Deno.mkdir(dir);
    const { cases } = await writeParityModelFolder(dir);
    await Deno.writeTextFile(
      join(dir, "manifest.json"),
      JSON.stringify({ key: "0123456789abcdef", outputs: await recordFiles(dir) }),
    );
    const weights = join(dir, "model.safetensors");
    const bytes = await Deno.readFile(weights);
    await Deno.writeFile(weights, bytes.subarray(0, bytes.length - 100));
    const before = [...Deno.readDirSync(root)].map((e) => e.name).sort();
    const result = await runCli("generate", [
      ...["--model", dir, "--cache-dir", join(root, "cache"), "--backend", "cpu"],
      ...["--max-new-tokens", "1", "--prompt", parityWords(cases[0].prompt)],
    ]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /model\.safetensors/);
    assert.match(result.stderr, /is not in the artifact cache .*so it is left as it is/);
    assert.doesNotMatch(result.stderr, /moved the artifact|run its pipeline again/);
    assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name).sort(), before);
    assert.equal((await Deno.stat(weights)).size, bytes.length - 100, "the folder is untouched");
  });
});
