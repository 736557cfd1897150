// @ts-check
// groundup's run browser: a single page over the JSON endpoints of server/ui_api.ts.
// No build step: ES modules under js/ (typed by JSDoc, checked by `deno task check:ui`), uPlot
// (window.uPlot) for the charts, hash routes (js/routes.js):
//   #/  #/run/<id>  #/artifact/<stage>/<key>  #/compare?ref=..&ref=..  #/artifacts  #/chat?model=..
import { showArtifact, showArtifacts } from "./js/artifact_view.js";
import { showChat } from "./js/chat_view.js";
import { errorText, messageOf } from "./js/dom.js";
import { showCompare } from "./js/history_view.js";
import { isCurrent, newRoute, view } from "./js/page.js";
import { parseRoute } from "./js/routes.js";
import { showRun } from "./js/run_view.js";
import { showRuns } from "./js/runs_view.js";

async function route() {
  const token = newRoute();
  const { page, arg, params, nav } = parseRoute(location.hash);
  document.querySelectorAll("[data-nav]").forEach((a) =>
    a.classList.toggle(
      "active",
      /** @type {HTMLElement} */ (a).dataset.nav === nav,
    )
  );
  try {
    if (page === "run") await showRun(token, decodeURIComponent(arg));
    else if (page === "artifact") await showArtifact(token, arg);
    else if (page === "compare") await showCompare(token, params);
    else if (page === "artifacts") await showArtifacts(token, params);
    else if (page === "chat") await showChat(token, params);
    else await showRuns(token, params);
  } catch (e) {
    if (isCurrent(token)) view.replaceChildren(errorText(messageOf(e)));
  }
}

addEventListener("hashchange", route);
route();
