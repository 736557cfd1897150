/**
 * The layer rule (README, "Layout"): imports point down, never up.
 *
 *   cli/, main.ts       may use everything below, but of stages/ only stages/mod.ts
 *   stages/             thin glue: schema + calls into llm/ + artifact files
 *   runner/, datasets/  the pipeline machinery and the public data; never stages/
 *   llm/                the library; never stages/, runner/ or datasets/
 *   llm/weights/        file formats only; never the model, the loop or inference
 *
 * Every .ts file's static and dynamic imports are read from its text, resolved to a path in
 * the repository, and checked against these rules.
 */
import assert from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");
const SKIP = new Set(["node_modules", ".groundup", ".git", "fixtures"]);

/** Every .ts file under `dir`, relative to the repository root. */
function* tsFiles(dir: string): Generator<string> {
  for (const entry of Deno.readDirSync(dir)) {
    if (SKIP.has(entry.name) || entry.name.startsWith(".")) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory) yield* tsFiles(path);
    else if (entry.name.endsWith(".ts")) yield relative(ROOT, path);
  }
}

const IMPORT = /(?:\bfrom\s*|\bimport\s*\(?\s*)["'](\.{1,2}\/[^"']+)["']/g;

/** The repository paths `file` imports (relative specifiers only: packages are not layers). */
export function importsOf(file: string, text: string): string[] {
  // Comments may mention imports (like this file's header); they are not code.
  const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  return [...code.matchAll(IMPORT)].map((m) => relative(ROOT, resolve(ROOT, dirname(file), m[1])));
}

/** A rule: files under `from` must not import paths `forbidden` matches. */
interface Rule {
  from: (file: string) => boolean;
  forbidden: (target: string) => boolean;
  why: string;
}

const under = (prefix: string) => (path: string) => path.startsWith(prefix);

const RULES: Rule[] = [
  { from: under("llm/"), forbidden: under("stages/"), why: "llm/ is the library under the stages" },
  { from: under("llm/"), forbidden: under("runner/"), why: "llm/ does not know the runner" },
  { from: under("llm/"), forbidden: under("datasets/"), why: "llm/ does not download" },
  {
    from: under("llm/weights/"),
    forbidden: (t) => ["llm/model/", "llm/train/", "llm/infer/"].some((p) => t.startsWith(p)),
    why: "file formats know nothing of the model",
  },
  { from: under("runner/"), forbidden: under("stages/"), why: "the runner takes stages as data" },
  { from: under("datasets/"), forbidden: under("stages/"), why: "datasets/ sits under the stages" },
  {
    from: under("cli/"),
    forbidden: (t) => t.startsWith("stages/") && t !== "stages/mod.ts",
    why: "cli/ uses the library, and stages only as definitions (stages/mod.ts)",
  },
];

/** Every import that breaks a rule, as "file → target (why)". */
export function violations(files: Iterable<[string, string]>): string[] {
  const found: string[] = [];
  for (const [file, text] of files) {
    for (const target of importsOf(file, text)) {
      for (const rule of RULES) {
        if (rule.from(file) && rule.forbidden(target)) {
          found.push(`${file} → ${target} (${rule.why})`);
        }
      }
    }
  }
  return found;
}

Deno.test("layering: no import points up a layer", () => {
  const files = [...tsFiles(ROOT)].map((f): [string, string] => [
    f,
    Deno.readTextFileSync(join(ROOT, f)),
  ]);
  assert.ok(files.some(([f]) => f.startsWith("llm/model/")), "found the library's files");
  assert.deepEqual(violations(files), []);
});

Deno.test("layering: the check sees static, type-only, re-export and dynamic imports", () => {
  const bad: [string, string][] = [
    ["llm/model/gpt.ts", 'import { x } from "../../stages/pretrain.ts";'],
    ["llm/train/loop.ts", 'import type { Logger } from "../../runner/progress.ts";'],
    ["llm/weights/safetensors.ts", 'export { GPTModel } from "../model/gpt.ts";'],
    ["cli/chat.ts", 'const m = await import("../stages/generate.ts");'],
    ["runner/run.ts", 'import {\n  a,\n} from "../stages/mod.ts";'],
  ];
  assert.equal(violations(bad).length, bad.length, violations(bad).join("\n"));
  const fine: [string, string][] = [
    ["cli/chat.ts", 'import { builtinStages } from "../stages/mod.ts";'],
    ["stages/pretrain.ts", 'import { trainModel } from "../llm/train/loop.ts";'],
    [
      "llm/model/gpt.ts",
      '// see "../../stages/pretrain.ts"\nimport * as tf from "@tensorflow/tfjs";',
    ],
  ];
  assert.deepEqual(violations(fine), []);
});
