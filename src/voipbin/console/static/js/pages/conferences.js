// Conferences: create one, ring phones into it, and run it live: who is in, who is talking,
// mute, hold and kick buttons, recording.

import { api } from "../api.js";
import { announce, badge, errorBox, field, h, onSubmit, showError, table, when } from "../dom.js";
import { customerTopic } from "../events.js";
import { navigate } from "../router.js";

export function list(ctx) {
  const box = errorBox();
  const form = h(
    "form",
    { class: "panel", "aria-labelledby": "create-conference", "data-api": "POST /v1.0/conferences" },
    h("h2", { id: "create-conference" }, "Create a conference"),
    box,
    field({ label: "Name", name: "name", placeholder: "Daily standup" }),
    field({ label: "Type", name: "type", options: [["conference", "Conference (stays up until deleted)"], ["connect", "Connect (two calls; ends when one leaves)"]] }),
    field({ label: "Timeout (seconds)", name: "timeout", type: "number", value: "0", hint: "0: no time limit." }),
    h("button", { type: "submit" }, "Create"),
  );
  const listing = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  ctx.main.append(h("h1", {}, "Conferences"),
    h("section", { class: "panel", "aria-labelledby": "your-conferences" }, h("h2", { id: "your-conferences" }, "Your conferences"), listing),
    form);

  async function load() {
    try {
      const { result } = await api.get("/v1.0/conferences", { page_size: 100 });
      listing.replaceChildren(result.length
        ? table(["Name", "Type", "Status", "In it", "Created"], result.map((c) => h("tr", {},
          h("td", {}, h("a", { href: `#/conferences/${c.id}` }, c.name || c.id)), h("td", {}, c.type),
          h("td", {}, badge(c.status)), h("td", {}, String(c.conferencecall_ids.length)), h("td", {}, when(c.tm_create)))))
        : h("p", {}, "No conferences yet."));
    } catch (error) {
      listing.replaceChildren(h("p", { role: "alert", class: "form-error" }, error.message));
    }
  }

  onSubmit(form, box, async (data) => {
    const conference = await api.post("/v1.0/conferences", {
      name: data.get("name").trim(), type: data.get("type"), timeout: Number(data.get("timeout") || 0),
    });
    announce(`${conference.name || "The conference"} created.`);
    navigate(`#/conferences/${conference.id}`);
  });
  load();
  ctx.listen(customerTopic("conference"), load);
}

export async function detail(ctx) {
  const id = ctx.params.id;
  const problem = errorBox();
  ctx.main.append(h("p", {}, h("a", { href: "#/conferences" }, "← Conferences")), h("h1", {}, "Conference"), problem);
  let conference;
  try {
    conference = await api.get(`/v1.0/conferences/${encodeURIComponent(id)}`);
  } catch (error) {
    showError(problem, error);
    return;
  }
  const [numbers, extensions] = await Promise.all([
    api.get("/v1.0/numbers", { page_size: 100 }).then((page) => page.result).catch(() => []),
    api.get("/v1.0/extensions", { page_size: 100 }).then((page) => page.result).catch(() => []),
  ]);
  const facts = h("dl", { class: "kv" });
  const recording = h("button", { type: "button" });
  const end = h("button", { type: "button", class: "danger" }, "End and delete");
  const people = h("div", { "aria-live": "polite" }, h("p", { class: "loading" }, "Loading…"));
  ctx.main.append(
    h("section", { class: "panel", "aria-labelledby": "conference-facts" }, h("h2", { id: "conference-facts" }, conference.name || "Unnamed"),
      facts, h("div", { class: "actions-bar" }, recording, end)),
    h("section", { class: "panel", "aria-labelledby": "participants" }, h("h2", { id: "participants" }, "Participants"), people),
    ringInto(conference, numbers, extensions),
  );

  function show(next) {
    conference = next;
    facts.replaceChildren(
      h("dt", {}, "Id"), h("dd", { class: "mono" }, conference.id),
      h("dt", {}, "Status"), h("dd", { id: "conference-status", "data-status": conference.status }, badge(conference.status)),
      h("dt", {}, "Type"), h("dd", {}, conference.type),
      h("dt", {}, "A phone joins by dialling"), h("dd", { class: "mono" }, `conference:${conference.id}`),
      h("dt", {}, "Recording"), h("dd", {}, conference.recording_id ? "recording now" : `${conference.recording_ids.length} made`));
    recording.textContent = conference.recording_id ? "Stop recording" : "Record";
    const over = conference.status !== "progressing";
    recording.disabled = over;
    end.disabled = over;
  }
  show(conference);

  recording.addEventListener("click", async () => {
    try {
      show(await (conference.recording_id
        ? api.post(`/v1.0/conferences/${conference.id}/recording_stop`)
        : api.post(`/v1.0/conferences/${conference.id}/recording_start`)));
    } catch (error) {
      showError(problem, error);
    }
  });
  end.addEventListener("click", async () => {
    if (!confirm("End the conference? Everyone in it leaves.")) return;
    try {
      show(await api.del(`/v1.0/conferences/${conference.id}`));
      announce("The conference ended.");
    } catch (error) {
      showError(problem, error);
    }
  });

  async function loadPeople() {
    try {
      const { result } = await api.get("/v1.0/conferencecalls", { conference_id: conference.id, status: "joined", page_size: 100 });
      people.replaceChildren(result.length
        ? table(["Call", "Talking", "State", ""], result.map(participant))
        : h("p", {}, "Nobody is in the conference."));
    } catch (error) {
      people.replaceChildren(h("p", { role: "alert", class: "form-error" }, error.message));
    }
  }

  function participant(p) {
    const name = p.reference_id.slice(0, 8);
    const button = (text, label, change) => {
      const b = h("button", { type: "button", class: change ? "small" : "danger small", "aria-label": `${label} ${name}` }, text);
      b.addEventListener("click", async () => {
        try {
          await (change ? api.put(`/v1.0/conferencecalls/${p.id}`, change) : api.del(`/v1.0/conferencecalls/${p.id}`));
          loadPeople();
        } catch (error) {
          announce(error.message, "error");
        }
      });
      return b;
    };
    const state = [p.muted && "muted", p.deaf && "deaf", p.hold && "on hold"].filter(Boolean).join(", ") || "in the mix";
    return h("tr", { "data-conferencecall": p.id },
      h("td", {}, h("a", { href: `#/calls/${p.reference_id}`, class: "mono" }, name)),
      h("td", { "data-talking": String(p.talking) }, p.talking ? "talking" : "—"),
      h("td", { class: "participant-state" }, state),
      h("td", { class: "actions" },
        p.muted ? button("Unmute", "Unmute", { muted: false }) : button("Mute", "Mute", { muted: true }),
        p.hold ? button("Resume", "Take off hold", { hold: false }) : button("Hold", "Hold", { hold: true }),
        button("Kick", "Kick", null)));
  }

  ctx.listen(customerTopic("conference", conference.id), (frame) => show(frame.data));
  ctx.listen(customerTopic("conferencecall"), (frame) => {
    if (frame.data.conference_id === conference.id) loadPeople();
  });
  loadPeople();
}

/** Ring one of the customer's extensions; whoever answers is in the conference. */
function ringInto(conference, numbers, extensions) {
  const box = errorBox();
  const form = h("form", { class: "panel", "aria-labelledby": "ring-into" },
    h("h2", { id: "ring-into" }, "Ring a phone into it"), box,
    field({ label: "Ring extension", name: "extension", options: extensions.map((e) => [e.extension, `${e.extension}${e.name ? ` (${e.name})` : ""}`]) }),
    h("button", { type: "submit", disabled: !extensions.length || !numbers.length }, "Ring it"),
    extensions.length ? null : h("p", { class: "hint" }, h("a", { href: "#/extensions" }, "Add an extension"), " and register a phone to it first."));
  onSubmit(form, box, async (data) => {
    await api.post("/v1.0/calls", {
      source: { type: "tel", target: numbers[0].number },
      destinations: [{ type: "extension", target: data.get("extension") }],
      actions: [{ type: "conference_join", option: { conference_id: conference.id } }],
    });
    announce(`Ringing ${data.get("extension")}: answer it to join.`);
  });
  return form;
}
