// @ts-check
/**
 * The chat playground (#/chat?model=..): a client of the server's chat (POST /api/ui/chat,
 * server-sent events), with the model, the sampling settings and the prompt template beside.
 */
import { api } from "./api.js";
import {
  applyChatEvent,
  chatRequest,
  modelLabel,
  SAMPLING_INPUTS,
  templateDescription,
  WAITING,
} from "./chat_logic.js";
import { h, messageOf } from "./dom.js";
import { isCurrent, view } from "./page.js";
import { readEvents } from "./sse.js";

/** @typedef {import("./types.js").ModelsAnswer} ModelsAnswer */
/** @typedef {import("./types.js").ChatModel} ChatModel */
/** @typedef {import("./types.js").ChatMessage} ChatMessage */
/** @typedef {import("./chat_logic.js").Sampling} Sampling */
/** @typedef {ReturnType<typeof chatSettings>} ChatSettings */

/** @param {number} token @param {URLSearchParams} params */
export async function showChat(token, params) {
  /** @type {ModelsAnswer} */
  const { models, templates } = await api("/api/ui/models");
  if (!isCurrent(token)) return;
  if (models.length === 0) {
    view.replaceChildren(
      h("h1", {}, "Chat"),
      h(
        "p",
        { class: "muted" },
        "no model in the cache (an artifact with model.safetensors + gpt_config.json)",
      ),
    );
    return;
  }
  const settings = chatSettings(models, templates, params.get("model"));
  const conversation = chatConversation(settings);
  // Another model starts another conversation.
  settings.model.addEventListener("change", () => {
    conversation.clear();
    settings.showTemplate();
  });
  settings.template.addEventListener("change", settings.showTemplate);
  settings.showTemplate();
  view.replaceChildren(
    h("h1", {}, "Chat playground"),
    settings.element,
    h(
      "div",
      { class: "chat" },
      conversation.element,
      h(
        "div",
        {},
        h("h3", {}, "Prompt template"),
        h("p", { class: "muted" }, "the text the model continues"),
        settings.templateNote,
      ),
    ),
  );
}

/**
 * The settings row (model, sampling, template) and the template panel, which shows what the
 * template does until a reply brings the prompt the server built.
 * @param {ChatModel[]} models
 * @param {string[]} templates
 * @param {string | null} wanted the model to select
 */
function chatSettings(models, templates, wanted) {
  const model = h(
    "select",
    { name: "model", id: "chat-model" },
    models.map((m) => h("option", { value: m.ref, selected: m.ref === wanted }, modelLabel(m))),
  );
  const template = h(
    "select",
    { name: "template" },
    templates.map((t) => h("option", { value: t }, t)),
  );
  const templateNote = h("pre", { class: "template" });
  const inputs = SAMPLING_INPUTS.map(({ name, value, attrs }) =>
    h("input", { name, type: "number", value, ...attrs })
  );
  const element = h(
    "div",
    { class: "chat-settings" },
    h("label", {}, "model ", model),
    inputs.map((input) => h("label", {}, `${input.name} `, input)),
    h("label", {}, "template ", template),
  );
  return {
    element,
    model,
    template,
    templateNote,
    showTemplate: () => {
      const chosen = models.find((x) => x.ref === model.value);
      templateNote.textContent = templateDescription(template.value, chosen);
    },
    /** @returns {Sampling} */
    sampling: () => /** @type {Sampling} */ (Object.fromEntries(
      inputs.map((i) => [i.name, Number(i.value)]),
    )),
  };
}

/**
 * Sends the conversation with the settings' model, template and sampling; the reply's events
 * go to `onEvent` as they arrive. An error answer throws the server's message.
 * @param {ChatSettings} settings
 * @param {ChatMessage[]} messages
 * @param {(event: import("./sse.js").ServerEvent) => void} onEvent
 */
async function requestReply(settings, messages, onEvent) {
  const body = chatRequest(
    settings.model.value,
    messages,
    settings.template.value,
    settings.sampling(),
  );
  const response = await fetch("/api/ui/chat", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok || !response.body) {
    throw new Error((await response.json().catch(() => ({}))).error ?? response.statusText);
  }
  await readEvents(response.body, onEvent);
}

/**
 * The conversation: the messages so far, the box to write in, Send and Reset. A reply streams
 * in as the model writes it; a failed one is marked and left out of the conversation.
 * @param {ChatSettings} settings
 */
function chatConversation(settings) {
  /** @type {ChatMessage[]} */
  let messages = [];
  const log = h("div", { class: "chat-log", id: "chat-log" });
  const input = h("textarea", {
    id: "chat-input",
    rows: 3,
    placeholder: "Type a message; Ctrl+Enter sends",
  });
  const status = h("span", { class: "muted", id: "chat-status" });
  const send = h("button", { id: "chat-send" }, "Send");
  const clear = () => {
    messages = [];
    log.replaceChildren();
  };
  const reset = h("button", { type: "button", onclick: clear }, "Reset");

  const submit = async () => {
    const text = input.value.trim();
    if (!text || send.disabled) return;
    input.value = "";
    messages.push({ role: "user", content: text });
    log.append(h("div", { class: "msg user" }, text));
    const shown = h("div", { class: "msg assistant streaming" });
    log.append(shown);
    send.disabled = true;
    let reply = WAITING;
    status.textContent = reply.status;
    try {
      await requestReply(settings, messages, (event) => {
        reply = applyChatEvent(reply, event);
        if (event.event === "meta") {
          settings.templateNote.textContent = reply.prompt ?? "";
        }
        if (event.event === "token") {
          shown.textContent = reply.answer;
          shown.dataset.pieces = String(reply.pieces);
          log.scrollTop = log.scrollHeight;
        }
        status.textContent = reply.status;
      });
      messages.push({ role: "assistant", content: reply.answer });
      shown.classList.remove("streaming");
      shown.classList.add("done");
    } catch (e) {
      shown.classList.add("error");
      shown.textContent = reply.answer + ` [error: ${messageOf(e)}]`;
      status.textContent = "";
      messages.pop();
    } finally {
      send.disabled = false;
    }
  };

  send.addEventListener("click", (e) => {
    e.preventDefault();
    submit();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) submit();
  });
  const form = h(
    "form",
    {
      class: "chat-form",
      /** @param {SubmitEvent} e */
      onsubmit: (e) => {
        e.preventDefault();
        submit();
      },
    },
    input,
    h("div", {}, send, " ", reset, " ", status),
  );
  return { element: h("div", {}, log, form), clear };
}
