/**
 * results.json in the layout of lm-evaluation-harness's output file (`results`, `groups`,
 * `group_subtasks`, `configs`, `n-shot`, `higher_is_better`, `n-samples`, `config`), so a person
 * can put it next to `lm_eval --model hf --tasks mmlu_philosophy --output_path ...`.
 */
import {
  FEWSHOT_DELIMITER,
  MMLU_CONTINUATIONS,
  mmluDescription,
  TARGET_DELIMITER,
} from "./prompt.ts";
import type { MmluEvaluation } from "./evaluate.ts";

export interface HarnessRunConfig {
  /** What was evaluated: e.g. the upstream stage and its folder. */
  model: string;
  model_args: Record<string, unknown>;
  batch_size: number;
  limit: number | null;
  num_fewshot: number;
  /** Where the questions came from (e.g. "cais/mmlu parquet", "original CSV folder ..."). */
  data_source: string;
  [key: string]: unknown;
}

/** The harness's metric value: NaN (fewer than two questions) is reported as "N/A". */
function metric(value: number): number | string {
  return Number.isFinite(value) ? value : "N/A";
}

export function harnessResults(evaluation: MmluEvaluation, config: HarnessRunConfig) {
  const results: Record<string, Record<string, unknown>> = {};
  const groups: Record<string, Record<string, unknown>> = {};
  const groupSubtasks: Record<string, string[]> = {};
  const configs: Record<string, Record<string, unknown>> = {};
  const nShot: Record<string, number> = {};
  const higherIsBetter: Record<string, { acc: boolean }> = {};
  const nSamples: Record<string, { original: number; effective: number }> = {};
  // The harness lists groups first, then their subtasks; we keep the order the tasks expand in.
  for (const task of [...evaluation.tasks].reverse()) {
    const r = evaluation.results[task.name];
    const entry = {
      alias: task.alias,
      "acc,none": metric(r.acc),
      "acc_stderr,none": metric(r.acc_stderr),
    };
    results[task.name] = entry;
    higherIsBetter[task.name] = { acc: true };
    nShot[task.name] = config.num_fewshot;
    if (task.kind === "group") {
      groups[task.name] = entry;
      groupSubtasks[task.name] = task.children;
      continue;
    }
    groupSubtasks[task.name] = [];
    nSamples[task.name] = { original: r.original ?? r.samples, effective: r.samples };
    configs[task.name] = {
      task: task.name,
      task_alias: task.alias,
      dataset_path: "cais/mmlu",
      dataset_name: task.subject,
      test_split: "test",
      fewshot_split: "dev",
      doc_to_text:
        "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:",
      doc_to_target: "answer",
      doc_to_choice: ["A", "B", "C", "D"],
      continuations: MMLU_CONTINUATIONS,
      description: mmluDescription(task.subject),
      target_delimiter: TARGET_DELIMITER,
      fewshot_delimiter: FEWSHOT_DELIMITER,
      fewshot_config: { sampler: "first_n" },
      num_fewshot: config.num_fewshot,
      metric_list: [{ metric: "acc", aggregation: "mean", higher_is_better: true }],
      output_type: "multiple_choice",
    };
  }
  return {
    results,
    groups,
    group_subtasks: groupSubtasks,
    configs,
    "n-shot": nShot,
    higher_is_better: higherIsBetter,
    "n-samples": nSamples,
    config,
    single_token_continuations: evaluation.singleTokenContinuations,
    total_evaluation_time_seconds: evaluation.seconds.toFixed(2),
  };
}
