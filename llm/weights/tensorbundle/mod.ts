/** TensorFlow TensorBundle (checkpoint V2) reading and writing, without TensorFlow. */
export {
  numElements,
  openTensorBundle,
  parseIndex,
  readIndexOnly,
  shardFileName,
  TensorBundle,
  type TensorBundleEntry,
  type TensorBundleIndex,
} from "./reader.ts";
export {
  TensorBundleWriter,
  type TensorBundleWriterOptions,
  type WritableTensor,
  writeTensorBundle,
} from "./writer.ts";
export { type TensorValues, TF_DTYPE_NAMES, TF_DTYPE_NUMBERS } from "./dtypes.ts";
export type { BundleHeader } from "./bundle_proto.ts";
