/**
 * The web UI end to end in a real browser: headless Chromium (Debian's `chromium`) driven by
 * puppeteer-core. The runner trains the smoke pipeline with MMLU, the judge (tests/ui/ui_cache.ts)
 * and the report into a temporary cache twice, with two learning rates; the page must show the
 * runs, their stages, a loss curve drawn with every evaluation of the history, the samples, the
 * MMLU table, the judge's scores and pairwise result, the judged responses filtered by score,
 * the link to report.html, two curves overlaid, a chat reply streamed from the tiny
 * model (the same text the training's greedy sample holds), and a run in progress updating
 * without a reload.
 *
 * GROUNDUP_UI_SCREENSHOTS=docs saves the screenshots docs/ui-*.png.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT, withTempDir } from "../fixtures.ts";
import { UiApi } from "../../server/ui_api.ts";
import { ChatService } from "../../server/ui_chat.ts";
import { expectedScore, Gate, runUiPipeline, uiResponses } from "./ui_cache.ts";

// Callbacks below run in the page. The DOM's types stay out of this program (a lib "dom"
// reference would change the types of every test checked with it), so they are loose here.
// deno-lint-ignore no-explicit-any
type InPage = any;
declare const document: InPage;

type Page = InPage;

const CHROMIUM = Deno.env.get("GROUNDUP_CHROMIUM") ?? "/usr/bin/chromium";
const hasChromium = existsSync(CHROMIUM);
// puppeteer-core's types bring their own @types/node, which would change node:assert's types
// for every test type-checked together with this one; so it is imported without types.
const PUPPETEER = "puppeteer-core";
const puppeteer: InPage = hasChromium ? (await import(PUPPETEER)).default : undefined;
const screenshots = Deno.env.get("GROUNDUP_UI_SCREENSHOTS");
if (!hasChromium) {
  console.warn(`ui e2e ignored: no Chromium at ${CHROMIUM} (apt-get install chromium)`);
}

async function shot(page: Page, name: string) {
  if (!screenshots) return;
  const dir = join(REPO_ROOT, screenshots);
  await Deno.mkdir(dir, { recursive: true });
  await page.screenshot({ path: join(dir, name) as `${string}.png`, fullPage: false });
}

const text = (page: Page, selector: string) => page.$eval(selector, (el: InPage) => el.innerText);

Deno.test({
  name: hasChromium
    ? "ui e2e: runs, stages, loss curves, responses, chat and a live run in Chromium"
    : `ui e2e (ignored: no Chromium at ${CHROMIUM})`,
  ignore: !hasChromium,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withTempDir(async (dir) => {
      const cache = join(dir, "cache");
      const first = await runUiPipeline(dir, cache);
      const second = await runUiPipeline(dir, cache, {
        sets: ["pretrain.lr=0.003", "pretrain.epochs=1"],
      });
      const pretrainRef = (r: typeof first) => {
        const step = r.steps.find((s) => s.stage === "pretrain")!;
        return `pretrain/${step.key.slice(0, 16)}`;
      };
      const [ref1, ref2] = [pretrainRef(first), pretrainRef(second)];
      const history = JSON.parse(await Deno.readTextFile(join(cache, ref1, "history.json")));
      const chat = new ChatService("cpu");
      const server = Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen() {} },
        new UiApi({ cacheDir: cache, chat }).handler,
      );
      const base = `http://127.0.0.1:${server.addr.port}`;
      const browser = await puppeteer.launch({
        executablePath: CHROMIUM,
        args: ["--no-sandbox", "--headless=new", "--disable-gpu"],
        defaultViewport: { width: 1280, height: 800 },
      });
      try {
        const page = await browser.newPage();
        const errors: string[] = [];
        page.on("pageerror", (e: InPage) => errors.push(String(e)));

        // 1. The runs list: both runs, newest first, the second reusing the cached stages.
        await page.goto(`${base}/#/`);
        await page.waitForFunction(() => document.querySelectorAll("tr.run-row").length === 2);
        const rows = await page.$$eval("tr.run-row", (trs: InPage) =>
          trs.map((tr: InPage) => ({
            text: tr.innerText,
            chips: [...tr.querySelectorAll(".stage-chip")].map((c: InPage) => c.className),
          })));
        assert.match(rows[0].text, /smoke/);
        const outcomes = (r: typeof first) => r.steps.map((s) => `stage-chip ${s.outcome}`);
        assert.deepEqual(rows[0].chips, outcomes(second));
        assert.deepEqual(rows[0].chips.slice(0, 3), [
          "stage-chip cached",
          "stage-chip cached",
          "stage-chip ran",
        ]);
        assert.deepEqual(rows[1].chips, outcomes(first));
        assert.ok(rows[1].chips.every((c: string) => c === "stage-chip ran"));
        // The headline numbers come from what the run wrote, not from whichever stage ran last:
        // the final losses, MMLU accuracy, the judge's mean per field and the win rate.
        assert.match(rows[1].text, /pretrain train_loss \d+\.\d+ · val_loss \d+\.\d+/);
        assert.match(rows[1].text, /evaluate task mmlu_philosophy · acc [\d.]+/);
        assert.match(rows[1].text, /judge mean response_before \d+\.\d+ · mean response_after \d/);
        assert.match(rows[1].text, /judge win_rate response_before 0\.\d+/);

        // 2. A run in progress appears and updates without a reload.
        await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));
        const gate = new Gate();
        const waiting = runUiPipeline(dir, cache, { gate, name: "live" });
        await gate.running;
        await page.waitForFunction(
          () => document.querySelector("tr.run-row .progress")?.textContent?.includes("3/10"),
          { timeout: 15_000 },
        );
        assert.match(await text(page, "tr.run-row"), /running[\s\S]*ETA[\s\S]*loss 4\.250/);
        await shot(page, "ui-runs.png");
        // The run's own page follows it too: the running stage's progress, then the end.
        const liveId = await page.$eval("tr.run-row", (tr: InPage) => tr.dataset.run!);
        const runPage = await browser.newPage();
        await runPage.goto(`${base}/#/run/${encodeURIComponent(liveId)}`);
        await runPage.waitForFunction(
          () => document.querySelector(".live-progress")?.textContent?.includes("3/10"),
          { timeout: 15_000 },
        );
        assert.match(
          await runPage.$eval(
            'svg.graph .node[data-stage="wait"]',
            (g: InPage) => g.getAttribute("class")!,
          ),
          /running/,
        );
        gate.release();
        await waiting;
        await runPage.waitForFunction(
          () => document.querySelector("h1 .badge")?.textContent === "ok",
          { timeout: 15_000 },
        );
        await runPage.close();
        // (waitForFunction polls on animation frames, which a tab in the background never gets)
        await page.bringToFront();
        await page.waitForFunction(
          () => document.querySelector("tr.run-row .badge")?.textContent === "ok",
          { timeout: 15_000 },
        );
        assert.equal(
          await page.evaluate(() => (window as unknown as { marker: number }).marker),
          42,
        );

        // 3. The first run's page: the stage graph, pretrain's curve and samples.
        const firstId = await page.$$eval(
          "tr.run-row",
          (trs: InPage) => trs[2].dataset.run!,
        );
        await page.goto(`${base}/#/run/${encodeURIComponent(firstId)}`);
        await page.waitForSelector("svg.graph .node");
        const nodes = await page.$$eval(
          "svg.graph .node",
          (gs: InPage) =>
            gs.map((g: InPage) => [g.getAttribute("data-stage"), g.getAttribute("class")]),
        );
        assert.deepEqual(nodes.map((n: string[]) => n[0]), [
          "tokenize",
          "dataloader",
          "pretrain",
          "evaluate",
          "responses",
          "judge",
          "report",
        ]);
        assert.equal(await page.$$eval("svg.graph path.edge", (p: InPage) => p.length), 8);
        // The report stage's report.html, linked from the run's page, served sandboxed.
        const reportHref = await page.$eval(".report-link a", (a: InPage) => a.href);
        const reportPage = await fetch(reportHref);
        assert.equal(reportPage.headers.get("content-type"), "text/html; charset=utf-8");
        assert.match(reportPage.headers.get("content-security-policy")!, /sandbox/);
        assert.match(await reportPage.text(), /<html[\s\S]*response_after/);
        await page.click('svg.graph .node[data-stage="pretrain"]');
        await page.waitForSelector(".loss-chart canvas");
        const drawn = await page.$eval(".loss-chart", (el: InPage) => {
          const chart = (el as unknown as { _uplot: { data: (number | null)[][] } })._uplot;
          return {
            x: chart.data[0],
            train: chart.data[1].filter((v: InPage) => v !== null).length,
          };
        });
        assert.equal(drawn.x.length, history.evaluations.length);
        assert.deepEqual(drawn.x, history.evaluations.map((e: { step: number }) => e.step));
        assert.equal(drawn.train, history.evaluations.length);
        const samples = await page.$$eval(
          ".samples li",
          (lis: InPage) => lis.map((li: InPage) => li.innerText),
        );
        assert.equal(samples.length, 2);
        assert.ok(samples[1].includes(history.samples[1].text));
        const details = await text(page, ".stage-details");
        assert.match(details, /cache key/);
        assert.match(details, /backend\s+cpu/);
        assert.match(details, /model\.safetensors/);
        await shot(page, "ui-run.png");

        // 4. MMLU from the real evaluate stage, as its results.json says.
        await page.click('svg.graph .node[data-stage="evaluate"]');
        await page.waitForSelector("table.mmlu");
        const evaluateRef = `evaluate/${
          first.steps.find((s) => s.stage === "evaluate")!.key.slice(0, 16)
        }`;
        const results = JSON.parse(
          await Deno.readTextFile(join(cache, evaluateRef, "results.json")),
        ).results.mmlu_philosophy;
        assert.match(
          await text(page, "table.mmlu"),
          new RegExp(`mmlu_philosophy\\s+${results["acc,none"].toFixed(4)}\\s`),
        );

        // 5. The judge stage: scores per field, pairwise, the judged responses by score.
        await page.click('svg.graph .node[data-stage="judge"]');
        await page.waitForSelector("tr.response-row");
        const entries = await uiResponses();
        assert.equal(await page.$$eval("tr.response-row", (r: InPage) => r.length), 20);
        assert.match(
          await text(page, "table.judge"),
          new RegExp(
            `response_before\\s+[\\d.]+\\s+[\\d.]+\\s+${entries.length - 1} / ${entries.length}`,
          ),
        );
        assert.match(
          await text(page, ".view-pairwise"),
          /response_before\s+response_after\s+[\d.]+ %/,
        );
        await page.waitForSelector(".view-judge .histogram canvas");
        await page.$eval(".view-judge", (el: InPage) => el.scrollIntoView());
        await shot(page, "ui-judge.png");
        const high = entries.filter((e, i) =>
          (expectedScore(e, i, "response_before") ?? -1) >= 80
        ).length;
        await page.type(".filters input[name=min]", "80");
        await page.click(".filters button");
        await page.waitForFunction(
          (n: InPage) =>
            document.querySelector(".view-responses")?.textContent?.includes(`${n} of`),
          {},
          high,
        );
        assert.equal(
          await page.$$eval("tr.response-row", (r: InPage) => r.length),
          Math.min(20, high),
        );
        const scores = await page.$$eval(
          "tr.response-row td:nth-child(4) .score",
          (s: InPage) => s.map((x: InPage) => Number(x.textContent)),
        );
        assert.equal(scores.length, Math.min(20, high));
        assert.ok(scores.every((s: number) => s >= 80));
        await page.$eval(".view-responses", (el: InPage) => el.scrollIntoView());
        await shot(page, "ui-responses.png");

        // 6. Two learning rates overlaid.
        await page.goto(`${base}/#/compare?ref=${ref1}&ref=${ref2}`);
        await page.waitForSelector(".loss-chart canvas");
        const series = await page.$eval(
          ".loss-chart",
          (el: InPage) =>
            (el as unknown as { _uplot: { series: { label: string }[] } })._uplot.series.map((
              s: InPage,
            ) => s.label),
        );
        assert.equal(series.length, 5);
        assert.match(series.join(), /lr=0\.003 train/);

        // 7. The chat: greedy decoding streams the same text as the training's greedy sample.
        await page.goto(`${base}/#/chat?model=${encodeURIComponent(ref1)}`);
        await page.waitForSelector("#chat-input");
        const setNumber = async (name: string, value: string) => {
          await page.$eval(
            `.chat-settings input[name=${name}]`,
            (el: InPage, v: string) => (el.value = v),
            value,
          );
        };
        await setNumber("temperature", "0");
        await setNumber("max_tokens", "10");
        await page.type("#chat-input", "Every effort moves you");
        await page.click("#chat-send");
        await page.waitForSelector(".msg.assistant.done", { timeout: 60_000 });
        const reply = await text(page, ".msg.assistant");
        assert.equal("Every effort moves you" + reply, history.samples[1].text);
        const pieces = await page.$eval(
          ".msg.assistant",
          (el: InPage) => Number(el.dataset.pieces),
        );
        assert.ok(pieces >= 2, `the reply arrived as a stream of token events (${pieces})`);
        assert.match(await text(page, "pre.template"), /^Every effort moves you$/);
        assert.match(await text(page, "#chat-status"), /10 tokens/);
        await shot(page, "ui-chat.png");
        assert.deepEqual(errors, []);
      } finally {
        await browser.close();
        chat.dispose();
        await server.shutdown();
      }
    });
  },
});
