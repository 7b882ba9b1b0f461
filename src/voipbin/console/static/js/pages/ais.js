// AI agents: create one, let it answer a number or take a test call, and watch its conversations
// live (each turn, each tool call), with a way to end one.

import { api } from "../api.js";
import { announce, badge, errorBox, field, FormProblem, h, onSubmit, showError, table, when } from "../dom.js";
import { customerTopic } from "../events.js";
import { navigate } from "../router.js";

const TOOLS = [
  ["connect_call", "Put the caller through (connect_call)"],
  ["stop_service", "Hand back to the call flow (stop_service)"],
  ["stop_flow", "End the call (stop_flow)"],
  ["set_variables", "Remember facts (set_variables)"],
  ["get_variables", "Read the call's variables (get_variables)"],
  ["get_aicall_messages", "Read the conversation (get_aicall_messages)"],
  ["stop_media", "Stop audio (stop_media)"],
];
const DEFAULT_MODEL = "local.smollm2";
const ROLE_NAMES = { user: "Caller", assistant: "AI", tool: "Tool", system: "System", notification: "Notice" };

function aiTalk(aiId) {
  return [{ type: "ai_talk", option: { assistance_type: "ai", assistance_id: aiId, duration: 600 } }];
}

function toolChoices() {
  return h("fieldset", { class: "field" }, h("legend", {}, "Tools the AI may call"),
    TOOLS.map(([name, label]) => h("label", { class: "check" },
      h("input", { type: "checkbox", name: "tool_names", value: name, checked: name === "stop_service" }), label)));
}

export function list(ctx) {
  const box = errorBox();
  const form = h(
    "form",
    { class: "panel", "aria-labelledby": "create-ai", "data-api": "POST /v1.0/ais" },
    h("h2", { id: "create-ai" }, "Create an AI agent"),
    box,
    field({ label: "Name", name: "name", placeholder: "Bakery line" }),
    field({ label: "Engine model", name: "engine_model", value: DEFAULT_MODEL,
            hint: "<target>.<model>: local.smollm2 ships with the install; ollama.llama3.2, openai.gpt-5-mini…" }),
    field({ label: "Engine key", name: "engine_key", type: "password", autocomplete: "off",
            hint: "Only for a cloud model without an operator key. Never shown again." }),
    field({ label: "Instructions", name: "init_prompt", type: "textarea", rows: 4,
            placeholder: "You answer the phone for Rosa's Bakery. We open at 7 am." }),
    toolChoices(),
    h("button", { type: "submit" }, "Create"),
  );
  const listing = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  ctx.main.append(h("h1", {}, "AI agents"),
    h("section", { class: "panel", "aria-labelledby": "your-ais" }, h("h2", { id: "your-ais" }, "Your AI agents"), listing), form);

  async function load() {
    try {
      const { result } = await api.get("/v1.0/ais", { page_size: 100 });
      listing.replaceChildren(result.length
        ? table(["Name", "Model", "Tools", "Created", ""], result.map(row))
        : h("p", {}, "No AI agents yet."));
    } catch (error) {
      listing.replaceChildren(h("p", { role: "alert", class: "form-error" }, error.message));
    }
  }

  function row(ai) {
    const remove = h("button", { type: "button", class: "danger small", "aria-label": `Delete ${ai.name || ai.id}` }, "Delete");
    remove.addEventListener("click", async () => {
      if (!confirm(`Delete ${ai.name || "this AI agent"}? Flows that name it stop reaching it.`)) return;
      try {
        await api.del(`/v1.0/ais/${ai.id}`);
        announce(`${ai.name || "The AI agent"} deleted.`);
        load();
      } catch (error) {
        announce(error.message, "error");
      }
    });
    return h("tr", {}, h("td", {}, h("a", { href: `#/ais/${ai.id}` }, ai.name || ai.id)), h("td", { class: "mono" }, ai.engine_model),
      h("td", {}, ai.tool_names.join(", ")), h("td", {}, when(ai.tm_create)), h("td", { class: "actions" }, remove));
  }

  onSubmit(form, box, async (data) => {
    const body = {
      name: data.get("name").trim(),
      engine_model: data.get("engine_model").trim(),
      init_prompt: data.get("init_prompt").trim(),
      tool_names: data.getAll("tool_names"),
    };
    if (data.get("engine_key")) body.engine_key = data.get("engine_key");
    const ai = await api.post("/v1.0/ais", body);
    announce(`${ai.name || "The AI agent"} created.`);
    navigate(`#/ais/${ai.id}`);
  });
  load();
  ctx.listen(customerTopic("ai"), load);
}

export async function detail(ctx) {
  const id = ctx.params.id;
  const problem = errorBox();
  ctx.main.append(h("p", {}, h("a", { href: "#/ais" }, "← AI agents")), h("h1", {}, "AI agent"), problem);
  let ai;
  try {
    ai = await api.get(`/v1.0/ais/${encodeURIComponent(id)}`);
  } catch (error) {
    showError(problem, error);
    return;
  }
  const [numbers, extensions] = await Promise.all([
    api.get("/v1.0/numbers", { page_size: 100 }).then((page) => page.result).catch(() => []),
    api.get("/v1.0/extensions", { page_size: 100 }).then((page) => page.result).catch(() => []),
  ]);
  const sessions = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  ctx.main.append(
    h("section", { class: "panel", "aria-labelledby": "ai-facts" }, h("h2", { id: "ai-facts" }, ai.name || "Unnamed"),
      h("dl", { class: "kv" },
        h("dt", {}, "Id"), h("dd", { class: "mono" }, ai.id),
        h("dt", {}, "Engine model"), h("dd", { class: "mono" }, ai.engine_model),
        h("dt", {}, "Tools"), h("dd", {}, ai.tool_names.join(", ") || "none"),
        h("dt", {}, "Instructions"), h("dd", { class: "prewrap" }, ai.init_prompt || "none"))),
    h("div", { class: "grid" }, answerNumber(ai, numbers), testCall(ai, numbers, extensions)),
    h("section", { class: "panel", "aria-labelledby": "ai-sessions" }, h("h2", { id: "ai-sessions" }, "Conversations"), sessions),
  );

  async function loadSessions() {
    try {
      const { result } = await api.get("/v1.0/aicalls", { assistance_id: ai.id, page_size: 50 });
      sessions.replaceChildren(result.length
        ? table(["Started", "Status", "Call"], result.map((aicall) => h("tr", {},
          h("td", {}, h("a", { href: `#/aicalls/${aicall.id}` }, when(aicall.tm_create))),
          h("td", {}, badge(aicall.status)),
          h("td", {}, h("a", { href: `#/calls/${aicall.reference_id}`, class: "mono" }, aicall.reference_id.slice(0, 8))))))
        : h("p", {}, "No conversations yet: call a number it answers, or place a test call."));
    } catch (error) {
      sessions.replaceChildren(h("p", { role: "alert", class: "form-error" }, error.message));
    }
  }
  ctx.listen(customerTopic("aicall"), (frame) => {
    if (frame.data.assistance_id === ai.id) loadSessions();
  });
  loadSessions();
}

/** A flow whose one action is this AI, set as the chosen number's call flow. */
function answerNumber(ai, numbers) {
  const box = errorBox();
  const form = h("form", { class: "panel", "aria-labelledby": "answer-number" },
    h("h2", { id: "answer-number" }, "Answer a number"), box,
    field({ label: "Number", name: "number", options: numbers.map((n) => [n.id, `${n.number}${n.name ? ` (${n.name})` : ""}`]) }),
    h("button", { type: "submit", disabled: !numbers.length }, "Answer calls to it"),
    numbers.length ? null : h("p", { class: "hint" }, h("a", { href: "#/numbers" }, "Acquire a number"), " first."));
  onSubmit(form, box, async (data) => {
    const number = numbers.find((n) => n.id === data.get("number"));
    if (!number) throw new FormProblem("Choose a number.", "number");
    const flow = await api.post("/v1.0/flows", { name: `AI: ${ai.name || ai.id}`, detail: "made by the console", actions: aiTalk(ai.id) });
    await api.put(`/v1.0/numbers/${number.id}`, { call_flow_id: flow.id });
    announce(`Calls to ${number.number} are now answered by ${ai.name || "this AI agent"}.`);
  });
  return form;
}

/** Ring one of the customer's extensions; whoever answers talks to the AI. */
function testCall(ai, numbers, extensions) {
  const box = errorBox();
  const form = h("form", { class: "panel", "aria-labelledby": "ai-test-call" },
    h("h2", { id: "ai-test-call" }, "Test call"), box,
    field({ label: "Ring extension", name: "extension", options: extensions.map((e) => [e.extension, `${e.extension}${e.name ? ` (${e.name})` : ""}`]) }),
    h("button", { type: "submit", disabled: !extensions.length || !numbers.length }, "Ring it"),
    extensions.length ? null : h("p", { class: "hint" }, h("a", { href: "#/extensions" }, "Add an extension"), " and register a phone to it first."));
  onSubmit(form, box, async (data) => {
    const source = { type: "tel", target: numbers[0].number };
    const destinations = [{ type: "extension", target: data.get("extension") }];
    await api.post("/v1.0/calls", { source, destinations, actions: aiTalk(ai.id) });
    announce(`Ringing ${data.get("extension")}: answer it to talk to ${ai.name || "the AI agent"}.`);
  });
  return form;
}

export async function conversation(ctx) {
  const id = ctx.params.id;
  const problem = errorBox();
  const status = h("p", { "aria-live": "polite" });
  const terminate = h("button", { type: "button", class: "danger" }, "End the conversation");
  const turns = h("ol", { class: "transcript", "aria-label": "Conversation" });
  ctx.main.append(h("p", {}, h("a", { href: "#/ais" }, "← AI agents")), h("h1", {}, "AI conversation"),
    h("section", { class: "panel", "aria-labelledby": "aicall-state" }, h("h2", { id: "aicall-state" }, "State"),
      status, problem, h("div", { class: "actions-bar" }, terminate)),
    h("section", { class: "panel", "aria-labelledby": "aicall-turns" }, h("h2", { id: "aicall-turns" }, "Turns"), turns));

  let aicall;
  const messages = new Map();
  function show(next) {
    aicall = next;
    status.replaceChildren("Status: ", h("span", { id: "aicall-status", "data-status": aicall.status }, badge(aicall.status)),
      " · ", h("a", { href: `#/ais/${aicall.assistance_id}` }, "its AI agent"),
      " · ", h("a", { href: `#/calls/${aicall.reference_id}` }, "its call"));
    terminate.disabled = aicall.status === "terminated";
  }
  function render() {
    const sorted = [...messages.values()].sort((a, b) => a.tm_create.localeCompare(b.tm_create));
    turns.replaceChildren(...(sorted.length ? sorted.map(turn) : [h("li", { class: "muted" }, "Nothing said yet.")]));
  }

  terminate.addEventListener("click", async () => {
    try {
      show(await api.post(`/v1.0/aicalls/${aicall.id}/terminate`));
      announce("The AI's part of the call ended; the call's flow goes on.");
    } catch (error) {
      showError(problem, error);
    }
  });

  try {
    show(await api.get(`/v1.0/aicalls/${encodeURIComponent(id)}`));
  } catch (error) {
    showError(problem, error);
    terminate.hidden = true;
    return;
  }
  ctx.listen(customerTopic("aicall", aicall.id), (frame) => show(frame.data));
  // Sent once, under the first topic that matches: this page's customer-wide subscription gets the message's own.
  ctx.listen(customerTopic("aimessage"), (frame) => {
    if (frame.data.aicall_id !== aicall.id) return;
    messages.set(frame.data.id, frame.data);
    render();
  });
  try {
    const { result } = await api.get("/v1.0/aimessages", { aicall_id: aicall.id, page_size: 100 });
    result.forEach((message) => messages.set(message.id, message));
  } catch (error) {
    showError(problem, error);
  }
  render();
}

function turn(message) {
  const calls = (message.tool_calls || []).map((call) =>
    h("code", { class: "tool-call" }, `→ ${call.function?.name}(${call.function?.arguments ?? ""})`));
  return h("li", { "data-role": message.role },
    h("span", { class: "direction" }, `${ROLE_NAMES[message.role] ?? message.role}:`),
    message.content, ...calls);
}
