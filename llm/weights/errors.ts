/**
 * Errors of the weight-file readers: what is wrong (the message names the file and the place)
 * and, as a field, the file, so a caller can tell a broken file from a bug and point at it.
 */

/** A weights file (TensorFlow checkpoint, its index, a compressed block) that cannot be read. */
export class WeightsFileError extends Error {
  /** The class name, for error reports. */
  override name = "WeightsFileError";
  /** `message` names the file and the place; `file` is the path alone. */
  constructor(message: string, public file?: string) {
    super(message);
  }
}

/** A TensorFlow checkpoint (TensorBundle index or data shard) that is not what it should be. */
export class TensorBundleError extends WeightsFileError {
  /** The class name, for error reports. */
  override name = "TensorBundleError";
}

/** A Snappy-compressed block that does not decompress. */
export class SnappyError extends WeightsFileError {
  /** The class name, for error reports. */
  override name = "SnappyError";
}

/** A protobuf message that does not parse. */
export class ProtobufError extends WeightsFileError {
  /** The class name, for error reports. */
  override name = "ProtobufError";
}

/** Runs `fn`; a weights-file error that does not name its file yet gets `file`. */
export async function naming<T>(file: string, fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof WeightsFileError) error.file ??= file;
    throw error;
  }
}

/** Synchronous {@link naming}. */
export function namingSync<T>(file: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof WeightsFileError) error.file ??= file;
    throw error;
  }
}
