/**
 * Accuracy and its standard error as lm-evaluation-harness reports them (lm_eval/api/metrics.py).
 */

/**
 * `mean_stderr`: the sample standard deviation (n - 1) over sqrt(n); for 0/1 outcomes with
 * accuracy p that is sqrt(p (1 - p) / (n - 1)). NaN for fewer than two questions (the harness
 * divides by zero there too and reports "N/A" only when it computes no stderr at all).
 */
export function accStderr(acc: number, n: number): number {
  if (n < 2) return NaN;
  return Math.sqrt((acc * (1 - acc)) / (n - 1));
}

/**
 * A group's stderr from its subtasks' (`pooled_sample_stderr`, used when a group is weighted by
 * size, as all MMLU groups are): the pooled variance
 *   sum((n_i - 1) * se_i^2 * n_i) / (sum(n_i) - k)
 * over sum(n_i). The harness applies it level by level: a category pools its subjects, `mmlu`
 * pools the four categories (each with its own pooled stderr and its question count).
 */
export function pooledStderr(stderrs: readonly number[], sizes: readonly number[]): number {
  if (stderrs.length !== sizes.length) throw new Error("pooledStderr: one size per stderr");
  const total = sizes.reduce((a, b) => a + b, 0);
  let variance = 0;
  for (let i = 0; i < sizes.length; i++) variance += (sizes[i] - 1) * stderrs[i] ** 2 * sizes[i];
  variance /= total - sizes.length;
  return Math.sqrt(variance / total);
}

/** `aggregate_subtask_metrics` with weight_by_size: the question-weighted mean. */
export function weightedMean(values: readonly number[], sizes: readonly number[]): number {
  const total = sizes.reduce((a, b) => a + b, 0);
  return values.reduce((sum, v, i) => sum + v * sizes[i], 0) / total;
}
