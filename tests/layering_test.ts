/**
 * The layer rule (README, "Layout"): imports point down, never up.
 *
 *   cli/, main.ts       may use everything below, but of stages/ only stages/mod.ts
 *   stages/             thin glue: schema + calls into llm/ + artifact files
 *   runner/, datasets/  the pipeline machinery and the public data; never stages/
 *   llm/                the library; never stages/, runner/ or datasets/
 *   llm/weights/        file formats only; never the model, the loop or inference
 *   util/               small generic helpers (files, disk, timers, hashes, progress) every layer
 *                       may import; they import nothing of the repository outside util/
 *
 * And no import cycles, type-only imports included: a cycle is two modules that can only be
 * understood together.
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
  {
    from: under("util/"),
    forbidden: (t) => !t.startsWith("util/"),
    why: "util/ is the lowest layer",
  },
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

/**
 * Every import cycle among `files`, each as its modules sorted (Tarjan's strongly connected
 * components over the import graph; a component of two or more modules is a cycle).
 */
export function importCycles(files: Iterable<[string, string]>): string[][] {
  const graph = new Map<string, string[]>();
  for (const [file, text] of files) graph.set(file, importsOf(file, text));
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string) => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) cycles.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return cycles;
}

Deno.test("layering: no import cycles", () => {
  const files = [...tsFiles(ROOT)].map((f): [string, string] => [
    f,
    Deno.readTextFileSync(join(ROOT, f)),
  ]);
  assert.deepEqual(importCycles(files).map((c) => c.join(" → ")), []);
});

Deno.test("layering: the cycle check finds type-only and long cycles", () => {
  const cyclic: [string, string][] = [
    ["runner/run.ts", 'import { RunRecord } from "./run_record.ts";'],
    ["runner/run_record.ts", 'import type { StepReport } from "./run.ts";'],
    ["datasets/a.ts", 'import { b } from "./b.ts";'],
    ["datasets/b.ts", 'import { c } from "./c.ts";'],
    ["datasets/c.ts", 'import type { A } from "./a.ts";'],
    ["datasets/d.ts", 'import { a } from "./a.ts";'],
  ];
  assert.deepEqual(importCycles(cyclic), [
    ["runner/run.ts", "runner/run_record.ts"],
    ["datasets/a.ts", "datasets/b.ts", "datasets/c.ts"],
  ]);
});

Deno.test("layering: the check sees static, type-only, re-export and dynamic imports", () => {
  const bad: [string, string][] = [
    ["llm/model/gpt.ts", 'import { x } from "../../stages/pretrain.ts";'],
    ["llm/train/loop.ts", 'import type { Logger } from "../../runner/progress.ts";'],
    ["llm/weights/safetensors.ts", 'export { GPTModel } from "../model/gpt.ts";'],
    ["cli/chat.ts", 'const m = await import("../stages/generate.ts");'],
    ["util/files.ts", 'import { GPTModel } from "../llm/model/gpt.ts";'],
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
