import assert from "node:assert/strict";
import { renderReport } from "../../../llm/report/html.ts";
import { histogramSvg } from "../../../llm/eval/histogram_svg.ts";
import { escapeXml } from "../../../util/markup.ts";

Deno.test("report: every section appears, with the numbers it was given", () => {
  const html = renderReport({
    title: "workshop <run>",
    createdAt: "2026-11-30T12:00:00Z",
    lossCurves: [{
      name: "lora-finetune",
      curve: {
        epochs: [0.1, 1, 2],
        tokensSeen: [10, 100, 200],
        train: [2.6, 0.9, 0.31],
        val: [2.7, 0.8, 0.65],
      },
    }],
    mmlu: [{
      model: "gpt2-medium",
      task: "mmlu_philosophy",
      acc: 0.5691,
      stderr: 0.0281,
      samples: 311,
    }],
    judge: [{
      field: "model_response",
      judge: "llama3",
      scored: 109,
      total: 110,
      mean: 50.23,
      stderr: 2.5,
      histogram: [1, 2, 3, 4, 5, 6, 7, 8, 9, 64],
    }],
    pairwise: [{
      a: "response_after",
      b: "response_before",
      judge: "llama3",
      winRate: 0.75,
      wins: 70,
      losses: 20,
      ties: 20,
      inconsistency: 0.1,
    }],
    responses: {
      fields: ["response_before", "response_after"],
      entries: [{
        instruction: "Name a <b>colour</b>.",
        input: "",
        output: "Red.",
        responses: { response_before: "uh", response_after: "Blue." },
      }],
      scores: { response_after: [90] },
    },
  });
  for (const id of ["loss", "mmlu", "judge", "pairwise", "responses"]) {
    assert.ok(html.includes(`<section id="${id}">`));
  }
  assert.ok(html.includes("0.5691"));
  assert.ok(html.includes("0.0281"));
  assert.ok(html.includes("50.23"));
  assert.ok(html.includes("75.0%"));
  assert.ok(html.includes("Name a &lt;b&gt;colour&lt;/b&gt;."));
  assert.ok(html.includes("workshop &lt;run&gt;"));
  assert.ok(html.includes('<span class="score">90</span> Blue.'));
  // Self-contained: no scripts and nothing fetched from elsewhere.
  assert.ok(!/<script|src=|href=/.test(html));
  // Ten bars in the histogram, one per 10-point bin.
  assert.equal(html.match(/class="bar"/g)?.length, 10);
});

Deno.test("report: with nothing measured yet it says so instead of drawing empty sections", () => {
  const html = renderReport({
    title: "t",
    createdAt: "now",
    lossCurves: [],
    mmlu: [],
    judge: [],
    pairwise: [],
  });
  assert.ok(html.includes("Nothing to report yet."));
  assert.ok(!html.includes("<section"));
});

Deno.test("report: histogram bar heights are proportional to the counts", () => {
  const svg = histogramSvg([0, 5, 10, 0, 0, 0, 0, 0, 0, 0], "h");
  const heights = [...svg.matchAll(/class="bar"[^>]*height="([\d.]+)"/g)].map((m) => Number(m[1]));
  assert.equal(heights.length, 10);
  assert.equal(heights[0], 0);
  assert.ok(Math.abs(heights[2] - 2 * heights[1]) < 0.2);
  assert.equal(escapeXml(`"&"`), "&quot;&amp;&quot;");
});
