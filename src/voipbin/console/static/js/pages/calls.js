// Calls: the list (live), one call with its timeline and transcript, and hanging up.

import { api } from "../api.js";
import { announce, badge, errorBox, h, showError, table, when } from "../dom.js";
import { customerTopic } from "../events.js";

// Events carry every change; the poll only covers a reconnect gap of the live connection.
const POLL_MS = 5000;

export function address(value) {
  if (!value?.type) return "";
  return `${value.type}:${value.target_name || value.target}`;
}

export function list(ctx) {
  const rows = new Map();
  const body = h("tbody", {});
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load older calls");
  const problem = errorBox();
  ctx.main.append(
    h("h1", {}, "Calls"),
    h("div", { class: "actions-bar" }, h("a", { class: "button", href: "#/calls/new" }, "Place a test call")),
    problem,
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Created", "Status", "Direction", "From", "To", "Hangup reason"].map((text) => h("th", { scope: "col" }, text)))),
      body)),
    h("p", {}, more),
  );

  function row(call) {
    return h("tr", { "data-call-id": call.id },
      h("td", {}, h("a", { href: `#/calls/${call.id}` }, when(call.tm_create))),
      h("td", {}, badge(call.status)),
      h("td", {}, call.direction),
      h("td", {}, address(call.source)),
      h("td", {}, address(call.destination)),
      h("td", {}, call.hangup_reason));
  }

  function put(call, { atTop }) {
    const fresh = row(call);
    const old = rows.get(call.id);
    if (old) old.replaceWith(fresh);
    else if (atTop) body.prepend(fresh);
    else body.append(fresh);
    rows.set(call.id, fresh);
  }

  let pageToken = "";
  async function load() {
    try {
      const page = await api.get("/v1.0/calls", { page_size: 50, page_token: pageToken });
      page.result.forEach((call) => put(call, { atTop: false }));
      pageToken = page.next_page_token;
      more.hidden = !pageToken;
      if (!rows.size) body.replaceChildren(h("tr", {}, h("td", { colspan: 6 }, "No calls yet.")));
    } catch (error) {
      showError(problem, error);
    }
  }
  more.addEventListener("click", load);
  ctx.listen(customerTopic("call"), (frame) => {
    if (!rows.size) body.replaceChildren();
    put(frame.data, { atTop: true });
  });
  load();
}

const STEPS = [
  ["tm_create", "created"],
  ["tm_ringing", "ringing"],
  ["tm_progressing", "progressing"],
  ["tm_hangup", "hangup"],
];

export async function detail(ctx) {
  const id = ctx.params.id;
  ctx.main.append(h("p", {}, h("a", { href: "#/calls" }, "← Calls")), h("h1", {}, "Call"));
  const status = h("p", { id: "call-status-line", "aria-live": "polite" });
  const facts = h("dl", { class: "kv" });
  const timeline = h("ol", { class: "timeline", "aria-label": "Timeline" });
  const hangup = h("button", { type: "button", class: "danger" }, "Hang up");
  const problem = errorBox();
  const transcript = h("ol", { class: "transcript" });
  ctx.main.append(
    h("section", { class: "panel", "aria-labelledby": "call-state" },
      h("h2", { id: "call-state" }, "State"),
      status, problem, h("div", { class: "actions-bar" }, hangup), facts),
    h("div", { class: "grid" },
      h("section", { class: "panel", "aria-labelledby": "call-timeline" }, h("h2", { id: "call-timeline" }, "Timeline"), timeline),
      h("section", { class: "panel", "aria-labelledby": "call-transcript" }, h("h2", { id: "call-transcript" }, "Transcript"), transcript)),
  );

  let call;
  function show(next) {
    if (call && call.status === next.status && call.tm_update === next.tm_update) return;
    call = next;
    status.replaceChildren("Status: ", h("span", { id: "call-status", "data-status": call.status }, badge(call.status)),
      call.hangup_reason ? ` (${call.hangup_reason}${call.hangup_by ? `, by ${call.hangup_by}` : ""})` : "");
    facts.replaceChildren(
      h("dt", {}, "Id"), h("dd", { class: "mono" }, call.id),
      h("dt", {}, "Direction"), h("dd", {}, call.direction),
      h("dt", {}, "From"), h("dd", {}, address(call.source)),
      h("dt", {}, "To"), h("dd", {}, address(call.destination)),
      h("dt", {}, "Type"), h("dd", {}, call.type));
    timeline.replaceChildren(...STEPS.filter(([key]) => call[key]).map(([key, name]) =>
      h("li", { "data-step": name }, h("strong", {}, name), " ", h("span", { class: "muted" }, when(call[key])))));
    hangup.disabled = call.status === "hangup";
  }

  hangup.addEventListener("click", async () => {
    try {
      show(await api.post(`/v1.0/calls/${call.id}/hangup`));
      announce("Call hung up.");
    } catch (error) {
      showError(problem, error);
    }
  });

  try {
    show(await api.get(`/v1.0/calls/${encodeURIComponent(id)}`));
  } catch (error) {
    showError(problem, error);
    hangup.hidden = true;
    return;
  }
  ctx.listen(customerTopic("call", call.id), (frame) => show(frame.data));
  ctx.every(POLL_MS, async () => {
    if (call.status !== "hangup") show(await api.get(`/v1.0/calls/${call.id}`).catch(() => call));
  });
  followTranscript(ctx, call.id, transcript);
}

/** The call's transcribe sessions and their transcripts, growing as transcript_created arrives. */
function followTranscript(ctx, callId, list) {
  const sessions = new Set();
  const lines = new Map();
  function render() {
    const sorted = [...lines.values()].sort((a, b) => (a.tm_transcript || a.tm_create).localeCompare(b.tm_transcript || b.tm_create));
    list.replaceChildren(...(sorted.length
      ? sorted.map((line) => h("li", {}, h("span", { class: "direction" }, line.direction === "in" ? "Heard:" : "Said:"), line.message))
      : [h("li", { class: "muted" }, sessions.size ? "Listening… nothing said yet." : "No transcription on this call (add a transcribe_start action).")]));
  }
  async function load() {
    try {
      const { result } = await api.get("/v1.0/transcribes", { reference_id: callId });
      for (const session of result) {
        sessions.add(session.id);
        const { result: found } = await api.get("/v1.0/transcripts", { transcribe_id: session.id });
        found.forEach((line) => lines.set(line.id, line));
      }
    } catch {
      // the transcript is an extra: the call page stays useful without it
    }
    render();
  }
  ctx.listen(customerTopic("transcribe"), (frame) => {
    if (frame.data.reference_id === callId && !sessions.has(frame.data.id)) load();
  });
  ctx.listen(customerTopic("transcript"), (frame) => {
    if (!sessions.has(frame.data.transcribe_id)) return;
    lines.set(frame.data.id, frame.data);
    render();
  });
  load();
}
