// Dashboard: live calls (from call_* events), registered phones, and the latest events.

import { api } from "../api.js";
import { badge, h, table, when } from "../dom.js";
import { customerTopic, live } from "../events.js";
import { session } from "../session.js";
import { address } from "./calls.js";

const POLL_MS = 5000;
const RECENT_EVENTS = 15;

function section(id, title, ...content) {
  return h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id }, title), ...content);
}

export function render(ctx) {
  const calls = h("div", { "aria-live": "polite" }, h("p", { class: "loading" }, "Loading…"));
  const phones = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  const events = h("ol", { class: "event-log" }, h("li", { class: "muted" }, "Events appear here as they happen."));
  ctx.main.append(
    h("h1", {}, "Dashboard"),
    h("p", { class: "muted" }, `Customer ${session.customerId}`),
    h("div", { class: "grid" },
      section("live-calls", "Live calls", calls),
      section("registered", "Registered extensions", phones)),
    section("recent-events", "Recent events", events, h("p", {}, h("a", { href: "#/events" }, "All live events →"))),
  );

  const liveCalls = new Map();
  const ended = new Set(); // so a list fetched before a hangup event cannot bring the call back
  function showCalls() {
    calls.replaceChildren(liveCalls.size
      ? table(["Status", "From", "To", "Since"], [...liveCalls.values()].map((call) => h("tr", {},
          h("td", {}, h("a", { href: `#/calls/${call.id}` }, badge(call.status))),
          h("td", {}, address(call.source)), h("td", {}, address(call.destination)), h("td", {}, when(call.tm_create)))))
      : h("p", {}, "No live calls."));
  }
  function track(call) {
    if (ended.has(call.id)) return;
    if (call.status === "hangup" || call.tm_delete) {
      ended.add(call.id);
      liveCalls.delete(call.id);
    } else {
      liveCalls.set(call.id, call);
    }
  }
  api.get("/v1.0/calls", { page_size: 100 })
    .then(({ result }) => result.reverse().forEach(track))
    .catch(() => {}) // the list is refilled from events either way
    .finally(showCalls);
  ctx.listen(customerTopic("call"), (frame) => {
    track(frame.data);
    showCalls();
  });

  async function loadPhones() {
    try {
      const { result } = await api.get("/v1.0/extensions");
      const registered = result.filter((ext) => ext.registered);
      phones.replaceChildren(registered.length
        ? table(["Extension", "Name", "Phones"], registered.map((ext) => h("tr", {},
            h("td", {}, h("a", { href: `#/extensions/${ext.id}` }, ext.extension)), h("td", {}, ext.name), h("td", {}, String(ext.contacts.length)))))
        : h("p", {}, "No phone is registered. ", h("a", { href: "#/extensions" }, "Set up an extension"), "."));
    } catch (error) {
      phones.replaceChildren(h("p", { class: "form-error", role: "alert" }, error.message));
    }
  }
  loadPhones();
  ctx.every(POLL_MS, loadPhones);

  function logEvent(frame) {
    events.prepend(h("li", {}, h("span", { class: "when" }, when(frame.timestamp)), h("strong", {}, frame.event_type), " ",
      h("span", { class: "topic" }, frame.topic)));
    while (events.children.length > RECENT_EVENTS) events.lastChild.remove();
  }
  if (live.recent.length) events.replaceChildren();
  live.recent.slice(-RECENT_EVENTS).forEach(logEvent);
  ctx.listen(customerTopic("*"), (frame) => {
    if (events.firstChild?.classList.contains("muted")) events.replaceChildren();
    logEvent(frame);
  });
}
