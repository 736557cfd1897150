/** Running `cli/*.ts` in a fresh process, as `deno task generate` / `deno task chat` do. */
import { join } from "node:path";
import { REPO_ROOT } from "../fixtures.ts";

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runCli(
  script: "generate" | "chat",
  args: string[],
  options: { stdin?: string; env?: Record<string, string> } = {},
): Promise<CommandResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join("cli", `${script}.ts`), ...args],
    cwd: REPO_ROOT,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: options.env,
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  const text = new TextDecoder();
  return { code, stdout: text.decode(stdout), stderr: text.decode(stderr) };
}
