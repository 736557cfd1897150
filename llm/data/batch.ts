/** The unit of training data every loader yields and every training function takes. */

/**
 * A batch of `batchSize` rows of `seqLen` tokens: the inputs and their next-token targets,
 * row-major. A target of -100 is ignored by the loss (padding in instruction data).
 */
export interface Batch {
  /** Row-major [batchSize, seqLen] input ids. */
  inputs: Int32Array;
  /** Row-major [batchSize, seqLen] target ids (-100: not scored). */
  targets: Int32Array;
  /** Rows. */
  batchSize: number;
  /** Tokens per row. */
  seqLen: number;
}

/** A batch from rows of equal length (small examples and tests). */
export function batchFromRows(inputs: number[][], targets: number[][]): Batch {
  const seqLen = inputs[0]?.length ?? 0;
  const rows = [...inputs, ...targets];
  if (inputs.length !== targets.length || rows.some((row) => row.length !== seqLen)) {
    throw new Error(
      `batch: inputs and targets need the same number of rows of one length (got ${
        inputs.map((r) => r.length).join(", ")
      } and ${targets.map((r) => r.length).join(", ")})`,
    );
  }
  return {
    inputs: Int32Array.from(inputs.flat()),
    targets: Int32Array.from(targets.flat()),
    batchSize: inputs.length,
    seqLen,
  };
}
