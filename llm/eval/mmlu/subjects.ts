/**
 * MMLU's 57 subjects, their four categories and the task names, as EleutherAI's
 * lm-evaluation-harness names them (lm_eval/tasks/mmlu: `_generate_configs.py` SUBJECTS maps
 * each subject to stem / humanities / social_sciences / other; `default/_mmlu_<category>.yaml`
 * are the groups `mmlu_<category>`, weighted by size; `default/_mmlu.yaml` is `mmlu`, the group
 * of the four groups). Our own table of the same facts.
 */

export const MMLU_CATEGORIES = ["stem", "other", "social_sciences", "humanities"] as const;
export type MmluCategory = typeof MMLU_CATEGORIES[number];

const STEM: readonly string[] = [
  "abstract_algebra",
  "anatomy",
  "astronomy",
  "college_biology",
  "college_chemistry",
  "college_computer_science",
  "college_mathematics",
  "college_physics",
  "computer_security",
  "conceptual_physics",
  "electrical_engineering",
  "elementary_mathematics",
  "high_school_biology",
  "high_school_chemistry",
  "high_school_computer_science",
  "high_school_mathematics",
  "high_school_physics",
  "high_school_statistics",
  "machine_learning",
];
const OTHER: readonly string[] = [
  "business_ethics",
  "clinical_knowledge",
  "college_medicine",
  "global_facts",
  "human_aging",
  "management",
  "marketing",
  "medical_genetics",
  "miscellaneous",
  "nutrition",
  "professional_accounting",
  "professional_medicine",
  "virology",
];
const SOCIAL_SCIENCES: readonly string[] = [
  "econometrics",
  "high_school_geography",
  "high_school_government_and_politics",
  "high_school_macroeconomics",
  "high_school_microeconomics",
  "high_school_psychology",
  "human_sexuality",
  "professional_psychology",
  "public_relations",
  "security_studies",
  "sociology",
  "us_foreign_policy",
];
const HUMANITIES: readonly string[] = [
  "formal_logic",
  "high_school_european_history",
  "high_school_us_history",
  "high_school_world_history",
  "international_law",
  "jurisprudence",
  "logical_fallacies",
  "moral_disputes",
  "moral_scenarios",
  "philosophy",
  "prehistory",
  "professional_law",
  "world_religions",
];

/** Subject → category (the harness's table). */
export const MMLU_SUBJECT_CATEGORY: Readonly<Record<string, MmluCategory>> = Object.fromEntries([
  ...STEM.map((s) => [s, "stem"]),
  ...OTHER.map((s) => [s, "other"]),
  ...SOCIAL_SCIENCES.map((s) => [s, "social_sciences"]),
  ...HUMANITIES.map((s) => [s, "humanities"]),
]);

/** The 57 subjects in alphabetical order (the harness's and the dataset's order). */
export const MMLU_SUBJECTS: readonly string[] = Object.keys(MMLU_SUBJECT_CATEGORY).sort();

export function isMmluSubject(name: string): boolean {
  return Object.hasOwn(MMLU_SUBJECT_CATEGORY, name);
}

/** "high_school_european_history" → "high school european history" (the harness's words). */
export function subjectWords(subject: string): string {
  return subject.split("_").join(" ");
}

/**
 * A task as the harness defines it: a subject (a leaf with questions) or a group whose
 * results aggregate its children's (weighted by size).
 */
export type MmluTask =
  | { kind: "subject"; name: string; subject: string; alias: string }
  | { kind: "group"; name: string; alias: string; children: string[] };

export function subjectTaskName(subject: string): string {
  return `mmlu_${subject}`;
}

/** Every task name: `mmlu`, `mmlu_<category>` and `mmlu_<subject>`. */
export function mmluTaskNames(): string[] {
  return [
    "mmlu",
    ...MMLU_CATEGORIES.map((c) => `mmlu_${c}`),
    ...MMLU_SUBJECTS.map(subjectTaskName),
  ];
}

/** The definition of one task name; throws listing the valid names. */
export function mmluTask(name: string): MmluTask {
  if (name === "mmlu") {
    return {
      kind: "group",
      name,
      alias: "mmlu",
      children: MMLU_CATEGORIES.map((c) => `mmlu_${c}`),
    };
  }
  const rest = name.startsWith("mmlu_") ? name.slice(5) : undefined;
  if (rest !== undefined && (MMLU_CATEGORIES as readonly string[]).includes(rest)) {
    const children = MMLU_SUBJECTS.filter((s) => MMLU_SUBJECT_CATEGORY[s] === rest).map(
      subjectTaskName,
    );
    return { kind: "group", name, alias: subjectWords(rest), children };
  }
  if (rest !== undefined && isMmluSubject(rest)) {
    return { kind: "subject", name, subject: rest, alias: subjectWords(rest) };
  }
  throw new Error(
    `unknown MMLU task "${name}": expected "mmlu", one of ${
      MMLU_CATEGORIES.map((c) => `"mmlu_${c}"`).join(", ")
    } or "mmlu_<subject>" with one of the 57 subjects (e.g. "mmlu_philosophy")`,
  );
}

/**
 * The requested tasks expanded into the tree the harness evaluates: every task that is
 * reported (requested ones and the groups and subjects under them), children before parents,
 * each once, and the subjects whose questions must be scored.
 */
export function expandMmluTasks(
  names: readonly string[],
): { tasks: MmluTask[]; subjects: string[] } {
  const tasks = new Map<string, MmluTask>();
  const visit = (name: string) => {
    if (tasks.has(name)) return;
    const task = mmluTask(name);
    if (task.kind === "group") task.children.forEach(visit);
    tasks.set(name, task);
  };
  names.forEach(visit);
  const subjects = [...tasks.values()].flatMap((t) => (t.kind === "subject" ? [t.subject] : []));
  return { tasks: [...tasks.values()], subjects };
}
