/**
 * MMLU prompts exactly as lm-evaluation-harness builds them (tasks/mmlu/default/
 * _default_template_yaml and the per-subject yaml; api/task.py + api/samplers.py):
 *   description  "The following are multiple choice questions (with answers) about {subject
 *                words}.\n\n"
 *   doc_to_text  "{question.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"
 *   few-shot     the first n dev questions, each doc_to_text + target_delimiter " " + its letter,
 *                joined by fewshot_delimiter "\n\n", followed by one more "\n\n"
 *   request      context = description + few-shot + doc_to_text, continuation " A" … " D"
 */
import { CHOICE_LETTERS, type MmluQuestion } from "./data.ts";
import { subjectWords } from "./subjects.ts";

export const TARGET_DELIMITER = " ";
export const FEWSHOT_DELIMITER = "\n\n";

/** The continuations scored for each question: " A", " B", " C", " D". */
export const MMLU_CONTINUATIONS: readonly string[] = CHOICE_LETTERS.map(
  (letter) => TARGET_DELIMITER + letter,
);

export function mmluDescription(subject: string): string {
  return `The following are multiple choice questions (with answers) about ${
    subjectWords(subject)
  }.\n\n`;
}

/** The harness's doc_to_text: the question (stripped), the four choices, "Answer:". */
export function formatMmluQuestion(doc: MmluQuestion): string {
  // Python's str.strip() removes whitespace at both ends; JavaScript's trim() agrees on the
  // characters MMLU contains (spaces, tabs, line breaks, no-break spaces).
  const [a, b, c, d] = doc.choices;
  return `${doc.question.trim()}\nA. ${a}\nB. ${b}\nC. ${c}\nD. ${d}\nAnswer:`;
}

/** The context of one question: description, `fewshot` solved examples, the question. */
export function mmluContext(doc: MmluQuestion, fewshot: readonly MmluQuestion[] = []): string {
  const examples = fewshot.map((ex) =>
    formatMmluQuestion(ex) + TARGET_DELIMITER + CHOICE_LETTERS[ex.answer]
  );
  const shots = examples.length > 0 ? examples.join(FEWSHOT_DELIMITER) + FEWSHOT_DELIMITER : "";
  return mmluDescription(doc.subject) + shots + formatMmluQuestion(doc);
}
