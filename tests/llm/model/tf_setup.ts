/**
 * Shared by the model and train tests: the plain tfjs `cpu` backend, without tfjs's
 * "looks like you are running TensorFlow.js in Node.js" banner.
 */
import * as tf from "@tensorflow/tfjs";

export async function useCpuBackend(): Promise<void> {
  // The cpu backend prints the banner on its first tensor when IS_NODE is set (Deno defines
  // `process`); the flag only serves that banner and tfjs-node's file IO, neither used here.
  tf.env().set("IS_NODE", false);
  await tf.setBackend("cpu");
}
