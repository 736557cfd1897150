/** LoRA against the book's PyTorch LinearWithLoRA on plain tfjs `cpu` (see lora_parity_suite.ts). */
import { registerLoraParityTests } from "./lora_parity_suite.ts";
import { useCpuBackend } from "./tf_setup.ts";

await useCpuBackend();
registerLoraParityTests({ label: "cpu" });
