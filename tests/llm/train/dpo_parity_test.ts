/** DPO against the book's notebook functions on plain tfjs `cpu` (see dpo_parity_suite.ts). */
import { useCpuBackend } from "../model/tf_setup.ts";
import { registerDpoParityTests } from "./dpo_parity_suite.ts";

await useCpuBackend();
registerDpoParityTests({ label: "cpu" });
