// Place a test call: a source number, an extension to ring, and actions edited as rows or JSON.

import { api } from "../api.js";
import { clearError, errorBox, field, FormProblem, h, onSubmit, showError } from "../dom.js";
import { navigate } from "../router.js";

// The actions the row editor has fields for; any other type is edited as its option's JSON.
const ACTION_FIELDS = {
  answer: [],
  talk: [
    { name: "text", label: "Text to say", type: "textarea" },
    { name: "language", label: "Language", placeholder: "en-US" },
  ],
  sleep: [{ name: "duration", label: "Duration (milliseconds)", type: "number", min: 0, step: 100 }],
  transcribe_start: [{ name: "language", label: "Language", placeholder: "en-US" }],
  transcribe_stop: [],
  digits_send: [{ name: "digits", label: "Digits", placeholder: "123#" }],
  hangup: [{ name: "reason", label: "Reason (optional)" }],
};
const NEW_OPTION = {
  talk: { text: "", language: "en-US" },
  sleep: { duration: 1000 },
  transcribe_start: { language: "en-US" },
  digits_send: { digits: "" },
};
const FIRST_ACTIONS = [{ type: "talk", option: { text: "Hello from the VoIPBIN console. This is a test call.", language: "en-US" } }];

function parseActions(text) {
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new FormProblem(`The JSON does not parse: ${error.message}`);
  }
  if (!Array.isArray(parsed) || !parsed.every((item) => item && typeof item === "object" && typeof item.type === "string")) {
    throw new FormProblem('Actions are a JSON list of objects, each with a "type", e.g. [{"type": "hangup"}].');
  }
  return parsed.map((item) => ({ ...item, option: item.option ?? {} }));
}

/** The rows editor and the raw JSON view of one list of actions, kept in step. */
function actionEditor(initial) {
  let actions = structuredClone(initial);
  const rows = h("ol", { class: "action-rows", "aria-label": "Actions" });
  const jsonBox = errorBox();
  const json = field({ label: "Actions as JSON", name: "actions_json", type: "textarea", rows: 12, class: "json", spellcheck: "false" });
  const jsonInput = json.querySelector("textarea");
  const raw = h("details", { class: "panel" }, h("summary", {}, "Raw JSON"), jsonBox, json,
    h("button", { type: "button", class: "secondary", onclick: applyJson }, "Apply JSON"));
  const add = h("button", { type: "button", class: "secondary", onclick: () => {
    actions.push({ type: "talk", option: { ...NEW_OPTION.talk } });
    renderRows(actions.length - 1);
  } }, "Add action");

  function syncJson() {
    jsonInput.value = JSON.stringify(actions, null, 2);
  }

  function applyJson() {
    clearError(jsonBox);
    try {
      actions = parseActions(jsonInput.value);
      renderRows();
    } catch (error) {
      showError(jsonBox, error);
    }
  }

  function renderRows(focusIndex) {
    rows.replaceChildren(...actions.map(row));
    syncJson();
    rows.children[focusIndex]?.querySelector("select")?.focus();
  }

  function move(index, by) {
    const target = index + by;
    if (target < 0 || target >= actions.length) return;
    [actions[index], actions[target]] = [actions[target], actions[index]];
    renderRows(target);
  }

  function row(action, index) {
    const known = Object.keys(ACTION_FIELDS);
    const types = known.includes(action.type) ? known : [action.type, ...known];
    const typeField = field({ label: "Type", name: `action-${index}-type`, options: types.map((type) => [type, type]), value: action.type });
    typeField.querySelector("select").addEventListener("change", (event) => {
      const type = event.target.value;
      actions[index] = { type, option: { ...(NEW_OPTION[type] ?? {}) } };
      renderRows(index);
    });
    const number = index + 1;
    return h("li", { class: "action-row" }, h("fieldset", {}, h("legend", {}, `Action ${number}`),
      typeField,
      optionFields(action, index),
      h("div", { class: "row-tools" },
        h("button", { type: "button", class: "secondary small", "aria-label": `Move action ${number} up`, disabled: index === 0, onclick: () => move(index, -1) }, "Up"),
        h("button", { type: "button", class: "secondary small", "aria-label": `Move action ${number} down`, disabled: index === actions.length - 1, onclick: () => move(index, 1) }, "Down"),
        h("button", { type: "button", class: "danger small", "aria-label": `Remove action ${number}`, onclick: () => {
          actions.splice(index, 1);
          renderRows(Math.min(index, actions.length - 1));
        } }, "Remove"))));
  }

  function optionFields(action, index) {
    const specs = ACTION_FIELDS[action.type];
    if (!specs) {
      const other = field({ label: "Option (JSON)", name: `action-${index}-option`, type: "textarea", class: "json",
                            value: JSON.stringify(action.option, null, 2) });
      const input = other.querySelector("textarea");
      input.addEventListener("input", () => {
        try {
          action.option = JSON.parse(input.value);
          input.removeAttribute("aria-invalid");
          syncJson();
        } catch {
          input.setAttribute("aria-invalid", "true");
        }
      });
      return other;
    }
    return specs.map(({ name, ...spec }) => {
      const wrapper = field({ ...spec, name: `action-${index}-${name}`, value: action.option[name] ?? "" });
      const input = wrapper.querySelector("input, textarea");
      input.addEventListener("input", () => {
        if (spec.type === "number") action.option[name] = input.value === "" ? undefined : Number(input.value);
        else action.option[name] = input.value;
        syncJson();
      });
      return wrapper;
    });
  }

  renderRows();
  return {
    element: h("div", {}, rows, h("p", {}, add), raw),
    /** The actions to send; JSON typed but not applied counts too. */
    get actions() {
      if (jsonInput.value.trim() !== JSON.stringify(actions, null, 2)) actions = parseActions(jsonInput.value);
      return actions;
    },
  };
}

export async function render(ctx) {
  ctx.main.append(h("h1", {}, "Place a test call"));
  let numbers, extensions;
  try {
    [numbers, extensions] = await Promise.all([api.get("/v1.0/numbers"), api.get("/v1.0/extensions")]);
  } catch (error) {
    ctx.main.append(h("p", { role: "alert", class: "form-error" }, error.message));
    return;
  }
  if (!numbers.result.length || !extensions.result.length) {
    ctx.main.append(h("p", { class: "notice" }, "A test call needs a number to call from and an extension to ring: ",
      h("a", { href: "#/numbers" }, "numbers"), ", ", h("a", { href: "#/extensions" }, "extensions"), "."));
    return;
  }
  const box = errorBox();
  const editor = actionEditor(FIRST_ACTIONS);
  const form = h(
    "form",
    { "aria-labelledby": "call-setup", "data-api": "POST /v1.0/calls" },
    h("section", { class: "panel" },
      h("h2", { id: "call-setup" }, "Who calls whom"),
      field({ label: "From (your number)", name: "source", options: numbers.result.map((n) => [n.number, n.name ? `${n.number} (${n.name})` : n.number]) }),
      field({ label: "To (extension)", name: "destinations", hint: "Every phone registered to it rings.",
              options: extensions.result.map((e) => [e.extension, `${e.extension} — ${e.name}${e.registered ? " (registered)" : " (no phone registered)"}`]) })),
    h("section", { class: "panel", "aria-labelledby": "call-actions" },
      h("h2", { id: "call-actions" }, "What the call does once answered"), editor.element),
    box,
    h("button", { type: "submit" }, "Place call"),
  );
  ctx.main.append(form);
  onSubmit(form, box, async (data) => {
    const actions = editor.actions;
    if (!actions.length) throw new FormProblem("Add at least one action.");
    const placed = await api.post("/v1.0/calls", {
      source: { type: "tel", target: data.get("source") },
      destinations: [{ type: "extension", target: data.get("destinations") }],
      actions,
    });
    const callId = placed.calls[0]?.id ?? placed.groupcalls[0]?.call_ids[0];
    navigate(callId ? `#/calls/${callId}` : "#/calls");
  });
}
