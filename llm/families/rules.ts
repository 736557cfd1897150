/**
 * The rule-table converter shared by the HF families: each of our tensors is looked up in the
 * family's table (`model.layers.{i}.self_attn.q_proj.weight` → `trf_blocks.{i}.att.W_query.weight`),
 * which says which checkpoint tensor holds it. Fused checkpoint tensors (Phi-3's `qkv_proj`,
 * `gate_up_proj`) list several of ours: their rows are ours stacked in that order, and are split
 * on load. All names and shapes are checked before any value is read.
 */
import type { NamedTensor } from "../weights/safetensors.ts";
import type {
  ConverterContext,
  HfCheckpoint,
  WeightConverter,
  WeightPlan,
  WeightRule,
} from "./family.ts";

/** One checkpoint tensor and the tensors of ours it fills (row blocks, in order). */
export interface Step {
  source: string;
  /** The shape the checkpoint must have: our shapes stacked along the first axis. */
  shape: number[];
  targets: { name: string; shape: number[] }[];
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** A template with `{i}` as a regex capturing the index. */
function templateRegex(template: string): RegExp {
  return new RegExp(`^${template.split("{i}").map(escape).join("(\\d+)")}$`);
}

const fill = (template: string, index: string | undefined) =>
  index === undefined ? template : template.replaceAll("{i}", index);

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/** The names and shapes of our tensors a rule turns into; `[rows; rows; ...]` stacked. */
function stackedShape(targets: { name: string; shape: number[] }[]): number[] {
  const [first] = targets;
  const rest = first.shape.slice(1);
  for (const t of targets) {
    if (!sameShape(t.shape.slice(1), rest)) {
      throw new Error(
        `internal: fused tensors ${targets.map((x) => `"${x.name}" [${x.shape}]`).join(", ")} ` +
          `do not stack along their rows`,
      );
    }
  }
  return [targets.reduce((n, t) => n + t.shape[0], 0), ...rest];
}

/** Works out, from our expected tensors, which checkpoint tensor fills each of them. */
export function buildSteps(rules: readonly WeightRule[], context: ConverterContext): Step[] {
  const compiled = rules.map((rule) => {
    const ours = typeof rule.ours === "string" ? [rule.ours] : [...rule.ours];
    return { rule, ours, patterns: ours.map(templateRegex) };
  });
  const steps = new Map<string, { step: Step; slots: ({ name: string; shape: number[] })[] }>();
  for (const [name, shape] of context.expected) {
    // A tied head is the embedding: nothing to read for it.
    if (context.tiedHead && name === "out_head.weight") continue;
    let found = false;
    for (const { rule, ours, patterns } of compiled) {
      const part = patterns.findIndex((p) => p.test(name));
      if (part < 0) continue;
      const index = patterns[part].exec(name)![1];
      const source = fill(rule.hf, index);
      let entry = steps.get(source);
      if (!entry) {
        entry = { step: { source, shape: [], targets: [] }, slots: new Array(ours.length) };
        steps.set(source, entry);
      }
      entry.slots[part] = { name, shape: [...shape] };
      found = true;
      break;
    }
    if (!found) {
      throw new Error(`internal: no weight rule gives our tensor "${name}" [${shape}]`);
    }
  }
  return [...steps.values()].map(({ step, slots }) => {
    const targets = [...slots];
    const hole = targets.findIndex((t) => t === undefined);
    if (hole >= 0) {
      throw new Error(`internal: the model has no tensor for part ${hole} of "${step.source}"`);
    }
    return { ...step, targets, shape: stackedShape(targets) };
  });
}

/**
 * Checks a checkpoint against the steps: every source present with its shape, nothing else
 * except ignorable buffers and a tied head's redundant `lm_head.weight`. Lists every problem.
 */
function checkCheckpoint(
  steps: Step[],
  checkpoint: HfCheckpoint,
  ignored: readonly RegExp[],
  tiedHead: boolean,
): void {
  const problems: string[] = [];
  const used = new Set<string>();
  for (const step of steps) {
    used.add(step.source);
    const actual = checkpoint.shapes.get(step.source);
    const ours = step.targets.map((t) => t.name).join(" + ");
    if (!actual) {
      problems.push(
        `${checkpoint.fileOf(step.source)}: missing tensor "${step.source}" ` +
          `(expected shape [${step.shape}], for ${ours})`,
      );
    } else if (!sameShape(actual, step.shape)) {
      problems.push(
        `${checkpoint.fileOf(step.source)}: tensor "${step.source}" has shape [${actual}] but ` +
          `config.json implies [${step.shape}] (for ${ours})`,
      );
    }
  }
  // A tied model's file may still hold the head (some exports write it): it must at least have
  // the embedding's shape; its values are not read, the embedding's are used.
  const head = checkpoint.shapes.get("lm_head.weight");
  const embedding = steps.find((s) => s.targets[0].name === "tok_emb.weight")?.shape;
  if (tiedHead && head && embedding && !sameShape(head, embedding)) {
    problems.push(
      `${checkpoint.fileOf("lm_head.weight")}: tensor "lm_head.weight" has shape [${head}] but ` +
        `the head is tied to the embedding [${embedding}]`,
    );
  }
  const unknown = [...checkpoint.shapes.keys()].filter((name) =>
    !used.has(name) && !ignored.some((pattern) => pattern.test(name)) &&
    !(tiedHead && name === "lm_head.weight")
  );
  for (const name of unknown) {
    problems.push(
      `${checkpoint.fileOf(name)}: unknown tensor "${name}" [${
        checkpoint.shapes.get(name)
      }] (no weight of this model; does config.json match the weights?)`,
    );
  }
  if (problems.length > 0) {
    const shown = problems.slice(0, 8);
    if (problems.length > shown.length) shown.push(`... and ${problems.length - 8} more`);
    throw new Error(
      `${checkpoint.description}: the weights do not fit the model:\n  ${shown.join("\n  ")}`,
    );
  }
}

/** The converter of a rule-table family. */
export function ruleTableConverter(
  rules: readonly WeightRule[],
  ignored: readonly RegExp[],
  context: ConverterContext,
): WeightConverter {
  const steps = buildSteps(rules, context);
  const plan = (checkpoint: HfCheckpoint): WeightPlan => {
    checkCheckpoint(steps, checkpoint, ignored, context.tiedHead);
    const outputs = new Map<string, number[]>();
    for (const step of steps) for (const t of step.targets) outputs.set(t.name, t.shape);
    return { outputs };
  };
  return {
    plan,
    async *convert(checkpoint: HfCheckpoint): AsyncIterable<[string, NamedTensor]> {
      plan(checkpoint);
      for (const step of steps) {
        const data = await checkpoint.read(step.source);
        if (data.length !== sizeOf(step.shape)) {
          throw new Error(
            `${checkpoint.fileOf(step.source)}: tensor "${step.source}" has ${data.length} ` +
              `values, expected ${sizeOf(step.shape)} for shape [${step.shape}]`,
          );
        }
        if (step.targets.length === 1) {
          yield [step.targets[0].name, { shape: step.targets[0].shape, data }];
          continue;
        }
        // A fused tensor: our tensors are consecutive row blocks of it.
        let offset = 0;
        for (const target of step.targets) {
          const size = sizeOf(target.shape);
          yield [target.name, { shape: target.shape, data: data.slice(offset, offset + size) }];
          offset += size;
        }
      }
    },
  };
}
