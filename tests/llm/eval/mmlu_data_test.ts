/**
 * MMLU data: the original CSVs of the five fixture subjects (checksums, row and answer counts,
 * fields spanning lines, doubled quotes), parse errors that name the place, a ustar archive
 * built here, and Parquet files in the cais/mmlu layout written here with hyparquet-writer.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ByteWriter, parquetWrite } from "hyparquet-writer";
import { sha256File } from "../../../util/hash.ts";
import { CsvError, parseCsv } from "../../../llm/eval/mmlu/csv.ts";
import {
  type MmluQuestion,
  parseMmluCsv,
  parseMmluParquet,
  readMmluCsvFile,
  readMmluFromTar,
  readTar,
} from "../../../llm/eval/mmlu/data.ts";
import { sharedFixture, withTempDir } from "../../fixtures.ts";
import { buildTar } from "./tar_helpers.ts";

const MMLU_DIR = sharedFixture("mmlu");

/** SOURCE.md's table: bytes, sha256, rows, answer counts A–D, rows with a line break / a quote. */
const FIXTURES = [
  [
    "dev",
    "abstract_algebra",
    719,
    "bd8c73f3c75bea9db82d281d9da6949cea687b987dba24a142c638e758046624",
    5,
    [2, 2, 1, 0],
    0,
    0,
  ],
  [
    "dev",
    "formal_logic",
    1628,
    "e4b579358ed4878f6c91bfea0ccc51efdd15a28401f86da9ee8f6c0af37cf36d",
    5,
    [0, 1, 3, 1],
    3,
    0,
  ],
  [
    "dev",
    "high_school_european_history",
    11445,
    "a3677065cf51abc32901cdcf88ed64121f5595e3a5a67f86ae2570f866fe87c5",
    5,
    [2, 1, 1, 1],
    5,
    1,
  ],
  [
    "dev",
    "philosophy",
    859,
    "587be220837bbe089702aa27cda03fbf72a7b959a9a4425e70d598026614cf11",
    5,
    [1, 0, 3, 1],
    0,
    0,
  ],
  [
    "dev",
    "us_foreign_policy",
    1480,
    "3a9677a89fd67c3a891671a2a6a14ff69ab37bdd54fb687c2f8334c8a3fa1543",
    5,
    [1, 0, 2, 2],
    0,
    0,
  ],
  [
    "test",
    "abstract_algebra",
    17358,
    "4be89c0fb1d2419722e88880f6da3da95750367185ecd36f6492a6f74785cf64",
    100,
    [22, 26, 31, 21],
    0,
    1,
  ],
  [
    "test",
    "formal_logic",
    46929,
    "bc2dc7373a664ae72e166dcbe3f7aaf1bb65b99f106f1831f335c53467f35248",
    126,
    [36, 25, 19, 46],
    67,
    0,
  ],
  [
    "test",
    "high_school_european_history",
    266888,
    "09983655452c3c40ba466050ec82252f02a235e5946734f4d73b73688fc9509b",
    165,
    [36, 40, 47, 42],
    165,
    75,
  ],
  [
    "test",
    "philosophy",
    72820,
    "a0f0c6fc9e4f08c04ff3a339996c4ed688a9fbe75d205fff4b9d3549fb49fa1e",
    311,
    [58, 85, 93, 75],
    0,
    11,
  ],
  [
    "test",
    "us_foreign_policy",
    26047,
    "2821ee009a2b1b7d4adc5a212a0bad7fe05d377455de0fe0841beab8f00142e1",
    100,
    [28, 21, 25, 26],
    1,
    4,
  ],
] as const;

const fields = (q: MmluQuestion) => [q.question, ...q.choices];

Deno.test("mmlu csv: the five fixture subjects parse to SOURCE.md's counts", async () => {
  for (const [split, subject, bytes, sha, rows, answers, multiline, quoted] of FIXTURES) {
    const path = join(MMLU_DIR, split, `${subject}_${split}.csv`);
    assert.equal((await Deno.stat(path)).size, bytes, path);
    assert.equal(await sha256File(path), sha, path);
    const questions = await readMmluCsvFile(MMLU_DIR, subject, split);
    assert.equal(questions.length, rows, path);
    const counts = [0, 0, 0, 0];
    for (const q of questions) counts[q.answer]++;
    assert.deepEqual(counts, answers, `${path}: answers A–D`);
    assert.equal(
      questions.filter((q) => fields(q).some((f) => f.includes("\n"))).length,
      multiline,
    );
    assert.equal(questions.filter((q) => fields(q).some((f) => f.includes('"'))).length, quoted);
    assert.ok(questions.every((q) => q.subject === subject));
  }
});

Deno.test("mmlu csv: first rows, a field spanning lines, a doubled quote", async () => {
  const [first] = await readMmluCsvFile(MMLU_DIR, "philosophy", "dev");
  assert.deepEqual(first, {
    subject: "philosophy",
    question: "Psychological egoism is:",
    choices: [
      "an ethical theory about how we ought to behave.",
      "a generalization concerning the way people tend to behave.",
      "a claim about human nature and the ways people are capable of behaving.",
      "none of the above.",
    ],
    answer: 2,
  });
  const [algebra] = await readMmluCsvFile(MMLU_DIR, "abstract_algebra", "test");
  assert.equal(
    algebra.question,
    "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.",
  );
  assert.deepEqual(algebra.choices, ["0", "4", "2", "6"]);
  assert.equal(algebra.answer, 1);

  const policy = await readMmluCsvFile(MMLU_DIR, "us_foreign_policy", "test");
  assert.equal(
    policy[24].question,
    'Who said "Globalization is not something we can hold off or turn off. It is the economic ' +
      'equivalent of a force of nature-like wind or water"?',
  );
  assert.equal(policy[24].answer, 2);
  // Every history question holds a passage over several lines; the record after it starts on
  // the line the parser says.
  const text = await Deno.readTextFile(join(MMLU_DIR, "test", "formal_logic_test.csv"));
  const records = parseCsv(text, "formal_logic_test.csv");
  const physicalLines = text.split("\n").length - 1;
  assert.ok(records.length < physicalLines);
  const spanning = records.findIndex((r) => r.fields[0].includes("\n"));
  const next = records[spanning + 1];
  assert.equal(
    next.line,
    records[spanning].line + records[spanning].fields.join(",").split("\n").length,
  );
});

Deno.test("mmlu csv: errors name the file, the line and what was expected", () => {
  assert.throws(
    () => parseCsv('a,b\n"open,c\nd\n', "x.csv"),
    (e: unknown) =>
      e instanceof CsvError && /x\.csv:2: a quoted field is never closed/.test(e.message),
  );
  assert.throws(
    () => parseCsv('a,"b"c\n', "y.csv"),
    /y\.csv:1: expected ',' or the end of the line after a closing quote, found "c"/,
  );
  assert.throws(
    () => parseMmluCsv("q,a,b,c,d,A\nq2,a,b,c,E\n", "s", "z.csv"),
    /z\.csv:2: expected 6 fields \(question,A,B,C,D,answer\), found 5/,
  );
  assert.throws(
    () => parseMmluCsv('"multi\nline",a,b,c,d,A\nq,a,b,c,d,F\n', "s", "w.csv"),
    /w\.csv:3: expected the answer A, B, C or D in the 6th field, found "F"/,
  );
  // CRLF line ends and a final record without a line break.
  assert.deepEqual(parseCsv('a,"b\r\nc"\r\nd,e').map((r) => r.fields), [["a", "b\r\nc"], [
    "d",
    "e",
  ]]);
});

// ---------------------------------------------------------------------------------------------
// tar

Deno.test("mmlu tar: the release layout read from an archive built here equals the CSVs", async () => {
  const entries: [string, Uint8Array][] = [];
  for (const split of ["dev", "test"]) {
    for (const subject of ["philosophy", "high_school_european_history"]) {
      entries.push([
        `data/${split}/${subject}_${split}.csv`,
        await Deno.readFile(join(MMLU_DIR, split, `${subject}_${split}.csv`)),
      ]);
    }
  }
  // A path over 100 characters goes through the ustar prefix field.
  const longPath = `data/${"x".repeat(90)}/test/${"y".repeat(20)}.csv`;
  entries.push([longPath, new TextEncoder().encode("q,a,b,c,d,A\n")]);
  const files = readTar(buildTar(entries), "built.tar");
  assert.equal(files.size, 5);
  assert.equal(new TextDecoder().decode(files.get(longPath)), "q,a,b,c,d,A\n");
  for (const subject of ["philosophy", "high_school_european_history"]) {
    for (const split of ["dev", "test"] as const) {
      assert.deepEqual(
        readMmluFromTar(files, subject, split, "built.tar"),
        await readMmluCsvFile(MMLU_DIR, subject, split),
      );
    }
  }
  assert.throws(
    () => readMmluFromTar(files, "virology", "test", "built.tar"),
    /built\.tar: no test\/virology_test\.csv in the archive/,
  );
  const damaged = buildTar(entries.slice(0, 1));
  damaged[0] ^= 1;
  assert.throws(
    () => readTar(damaged, "bad.tar"),
    /bad\.tar: the tar header at byte 0 has checksum/,
  );
});

// ---------------------------------------------------------------------------------------------
// Parquet

/** A Parquet file with cais/mmlu's schema: question, subject, choices (list<string>), answer (int64). */
function writeMmluParquet(questions: MmluQuestion[], codec: "SNAPPY" | "UNCOMPRESSED"): Uint8Array {
  const writer = new ByteWriter();
  parquetWrite({
    writer,
    codec,
    columnData: [
      { name: "question", data: questions.map((q) => q.question) },
      { name: "subject", data: questions.map((q) => q.subject) },
      { name: "choices", data: questions.map((q) => q.choices) },
      { name: "answer", data: questions.map((q) => BigInt(q.answer)) },
    ],
    schema: [
      { name: "root", num_children: 4 },
      { name: "question", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
      { name: "subject", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
      { name: "choices", repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 },
      { name: "list", repetition_type: "REPEATED", num_children: 1 },
      { name: "element", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
      { name: "answer", type: "INT64", repetition_type: "OPTIONAL" },
    ],
  });
  return new Uint8Array(writer.getBuffer());
}

Deno.test("mmlu parquet: cais/mmlu-layout files written here read back as the CSV questions", async () => {
  for (const subject of ["formal_logic", "us_foreign_policy"]) {
    const questions = await readMmluCsvFile(MMLU_DIR, subject, "test");
    for (const codec of ["SNAPPY", "UNCOMPRESSED"] as const) {
      const bytes = writeMmluParquet(questions, codec);
      assert.deepEqual(await parseMmluParquet(bytes, `${subject}.parquet`, subject), questions);
    }
  }
  const philosophy = await readMmluCsvFile(MMLU_DIR, "philosophy", "dev");
  await withTempDir(async (dir) => {
    const path = join(dir, "test-00000-of-00001.parquet");
    await Deno.writeFile(path, writeMmluParquet(philosophy, "SNAPPY"));
    await assert.rejects(
      parseMmluParquet(await Deno.readFile(path), path, "virology"),
      new RegExp(`${path}: row 0: expected subject "virology", found "philosophy"`),
    );
  });
  await assert.rejects(
    parseMmluParquet(new TextEncoder().encode("not parquet at all"), "junk.parquet"),
    /junk\.parquet: not a readable Parquet file/,
  );
  const threeChoices = writeMmluParquet(
    [{ ...philosophy[0], choices: ["a", "b", "c"] as unknown as MmluQuestion["choices"] }],
    "SNAPPY",
  );
  await assert.rejects(
    parseMmluParquet(threeChoices, "three.parquet"),
    /three\.parquet: row 0: expected choices to be a list of 4 strings/,
  );
});
