/** `deno task chat` with piped input: multi-line messages, /reset, /exit, the Alpaca switch. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { withTempDir } from "../fixtures.ts";
import { useCpuBackend } from "../llm/model/tf_setup.ts";
import { parityWords, writeParityModelFolder } from "../stages/parity_checkpoints.ts";
import { runCli } from "./cli_helpers.ts";
import { writeTemplateFile } from "../../llm/data/instruction_files.ts";
import { promptTemplate } from "../../llm/data/instructions.ts";

await useCpuBackend();

const greedy = ["--max-new-tokens", "8", "--temperature", "0", "--backend", "cpu"];

Deno.test("chat: replies stream per message; \\ continues a line; /reset forgets; /exit quits", async () => {
  await withTempDir(async (dir) => {
    const { cases } = await writeParityModelFolder(dir);
    const prompt = parityWords(cases[0].prompt);
    const reply = " " + parityWords(cases[0].expected_new_tokens);
    const [first, second] = [
      prompt.split(" ").slice(0, 2).join(" "),
      prompt.split(" ").slice(2).join(" "),
    ];
    const input = [
      prompt, // a fresh conversation: PyTorch's greedy reply
      prompt, // the same words again, now after the first exchange
      "/reset",
      `${first} \\`, // the same message over two lines, after /reset
      second,
      "/exit",
      prompt, // never read
      "",
    ].join("\n");
    const result = await runCli("chat", ["--model", dir, ...greedy], { stdin: input });
    assert.equal(result.code, 0, result.stderr);
    const replies = result.stdout.split("\n");
    assert.equal(replies.pop(), "", "every reply ends with a newline");
    assert.equal(replies.length, 3, result.stdout);
    assert.equal(replies[0], reply);
    assert.notEqual(replies[1], reply, "the transcript carries over without /reset");
    assert.equal(replies[2], reply, "after /reset a multi-line message starts afresh");
    assert.match(result.stderr, /base model/);
    assert.match(result.stderr, /\(conversation forgotten\)/);
  });
});

Deno.test("chat: an instruction-tuned model (its manifest says so) gets the Alpaca template", async () => {
  await withTempDir(async (dir) => {
    await writeParityModelFolder(dir);
    const manifest = { params: { dataset: "instruction-data" }, metrics: {} };
    await Deno.writeTextFile(join(dir, "manifest.json"), JSON.stringify(manifest));
    const tuned = await runCli("chat", ["--model", dir, ...greedy], { stdin: "t01 t02\n" });
    assert.equal(tuned.code, 0, tuned.stderr);
    assert.match(tuned.stderr, /Alpaca template/);
    assert.equal(tuned.stdout.split("\n").length, 2);

    const forcedOff = await runCli("chat", ["--model", dir, "--template", "none", ...greedy], {
      stdin: "",
    });
    assert.equal(forcedOff.code, 0, forcedOff.stderr);
    assert.match(forcedOff.stderr, /base model/);
  });
});

Deno.test("chat: a fine-tuned model's template.json (phi3) is the template it chats with", async () => {
  await withTempDir(async (dir) => {
    await writeParityModelFolder(dir);
    await writeTemplateFile(dir, promptTemplate("phi3"));
    const tuned = await runCli("chat", ["--model", dir, ...greedy], { stdin: "t01 t02\n" });
    assert.equal(tuned.code, 0, tuned.stderr);
    assert.match(tuned.stderr, /Phi-3 template/);
    const forced = await runCli("chat", ["--model", dir, "--template", "alpaca", ...greedy], {
      stdin: "",
    });
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stderr, /Alpaca template/);
  });
});
