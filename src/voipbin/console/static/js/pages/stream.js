// Live events: this page's own WebSocket, subscribed to the topic patterns the reader chooses.

import { clearError, errorBox, field, FormProblem, h, onSubmit, showError, when } from "../dom.js";
import { customerTopic, openSocket } from "../events.js";
import { session } from "../session.js";

const MAX_SHOWN = 200;

export function render(ctx) {
  const state = h("p", { "aria-live": "polite" }, "Connecting…");
  const box = errorBox();
  const form = h(
    "form",
    { class: "panel", "aria-labelledby": "subscribe" },
    h("h2", { id: "subscribe" }, "Subscribe"),
    box,
    field({ label: "Topic pattern", name: "topic", value: customerTopic("*"), class: "mono", spellcheck: "false",
            hint: `Segments are customer_id:<id>:<resource>:<id>; "*" matches any, e.g. ${customerTopic("call")}.` }),
    h("button", { type: "submit" }, "Subscribe"),
  );
  const topics = h("ul", { "aria-label": "Subscribed topics" });
  const pause = h("button", { type: "button", class: "secondary", "aria-pressed": "false" }, "Pause");
  const clear = h("button", { type: "button", class: "secondary" }, "Clear");
  const log = h("ol", { class: "event-log", "aria-label": "Events, newest first" });
  ctx.main.append(
    h("h1", {}, "Live events"),
    state,
    form,
    h("section", { class: "panel", "aria-labelledby": "topics" }, h("h2", { id: "topics" }, "Subscribed topics"), topics),
    h("section", { class: "panel", "aria-labelledby": "log" }, h("h2", { id: "log" }, "Events"),
      h("div", { class: "actions-bar" }, pause, clear), log),
  );

  const subscribed = new Set();
  let socket;
  let paused = false;

  function send(message) {
    if (socket?.readyState !== WebSocket.OPEN) throw new FormProblem("Not connected; wait for the connection to come back.");
    socket.send(JSON.stringify(message));
  }

  function showTopics() {
    topics.replaceChildren(...(subscribed.size
      ? [...subscribed].map((topic) => h("li", {}, h("code", {}, topic), " ",
          h("button", { type: "button", class: "secondary small", "aria-label": `Unsubscribe from ${topic}`,
                        onclick: () => send({ type: "unsubscribe", topics: [topic] }) }, "Unsubscribe")))
      : [h("li", { class: "muted" }, "None: subscribe to a topic to see its events.")]));
  }

  function received(frame) {
    switch (frame.type) {
      case "subscribed":
        frame.topics.forEach((topic) => subscribed.add(topic));
        return showTopics();
      case "unsubscribed":
        frame.topics.forEach((topic) => subscribed.delete(topic));
        return showTopics();
      case "error":
        return showError(box, { message: frame.error.message, reason: frame.error.reason });
      default: // an event: its "type" is the event type
        if (frame.topic && !paused) logEvent(frame);
    }
  }

  function logEvent(frame) {
    log.prepend(h("li", {},
      h("span", { class: "when" }, when(frame.timestamp)), h("strong", {}, frame.event_type), " ",
      h("span", { class: "topic" }, frame.topic),
      h("details", {}, h("summary", {}, "Data"), h("pre", {}, JSON.stringify(frame.data, null, 2)))));
    while (log.children.length > MAX_SHOWN) log.lastChild.remove();
  }

  function connect() {
    const current = openSocket(session.token);
    socket = current;
    current.addEventListener("open", () => {
      state.textContent = "Connected.";
      const wanted = subscribed.size ? [...subscribed] : [customerTopic("*")];
      current.send(JSON.stringify({ type: "subscribe", topics: wanted }));
    });
    current.addEventListener("message", (message) => {
      try {
        received(JSON.parse(message.data));
      } catch {
        // not JSON: nothing the page can show
      }
    });
    current.addEventListener("close", () => {
      if (socket !== current) return;
      state.replaceChildren("Disconnected. ", h("button", { type: "button", class: "small", onclick: connect }, "Reconnect"));
    });
  }

  onSubmit(form, box, async (data) => {
    const topic = data.get("topic").trim();
    if (!topic) throw new FormProblem("Enter a topic pattern.", "topic");
    send({ type: "subscribe", topics: [topic] });
  });
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
  });
  clear.addEventListener("click", () => {
    log.replaceChildren();
    clearError(box);
  });
  showTopics();
  connect();
  ctx.onLeave(() => {
    const closing = socket;
    socket = null;
    closing?.close();
  });
}
