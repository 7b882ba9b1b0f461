// Small DOM helpers. Text always goes in as text nodes: nothing from the API is parsed as HTML.

import { labelOf, markRequired } from "./schema.js";

let nextId = 0;

/** h("a", {href: "#/", class: "x", onclick: fn}, "text", child) → element */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2), value);
    else if (key === "class") element.className = value;
    else if (key === "text") element.textContent = value;
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

function uid(prefix) {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/** A labelled input (or select/textarea) with an optional hint tied to it by aria-describedby. */
export function field({ label, name, type = "text", hint, options, rows, ...attributes }) {
  const id = uid(name);
  const hintId = hint ? `${id}-hint` : undefined;
  const common = { id, name, "aria-describedby": hintId, ...attributes };
  let control;
  if (options) {
    control = h("select", common, options.map(([value, text]) => h("option", { value }, text)));
    if (attributes.value !== undefined) control.value = attributes.value;
  } else if (type === "textarea") {
    control = h("textarea", { ...common, rows: rows ?? 3, value: undefined }, attributes.value ?? "");
  } else {
    control = h("input", { type, ...common });
  }
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hint && h("span", { class: "hint", id: hintId }, hint));
}

export function checkbox({ label, name, required }) {
  const id = uid(name);
  return h("div", { class: "field" }, h("label", { class: "check", for: id }, h("input", { type: "checkbox", id, name, required }), label));
}

/** The box a form shows its problems in; role=alert so screen readers hear it at once. */
export function errorBox() {
  return h("div", { class: "form-error", role: "alert", hidden: true });
}

export function clearError(box) {
  box.hidden = true;
  box.replaceChildren();
  box.closest("form")?.querySelectorAll("[aria-invalid]").forEach((input) => input.removeAttribute("aria-invalid"));
}

/** Show an ApiError (the API's envelope) or a local check's error, next to its form. */
export function showError(box, error) {
  box.replaceChildren(h("strong", {}, error.message || "Something went wrong."));
  if (error.reason) box.append(" ", h("span", { class: "reason" }, `(${error.reason})`));
  if (error.details?.length) box.append(h("ul", {}, error.details.map((detail) => h("li", {}, detail))));
  if (error.requestId) box.append(h("span", { class: "request-id" }, `Request id: ${error.requestId}`));
  box.hidden = false;
  const input = error.field && box.closest("form")?.elements.namedItem(error.field);
  if (input) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }
}

/** A problem found before asking the API, shaped like an ApiError. */
export class FormProblem extends Error {
  constructor(message, field) {
    super(message);
    this.field = field;
  }
}

/** The first required control left empty, as a FormProblem naming it; null when none is. */
function missingField(form) {
  const empty = [...form.elements].find((control) => control.required && !control.disabled
    && (control.type === "checkbox" ? !control.checked : !control.value.trim()));
  if (!empty) return null;
  const label = labelOf(form, empty)?.textContent.trim() ?? empty.name;
  return new FormProblem(empty.type === "checkbox" ? `Check "${label}" to continue.` : `${label} is required.`, empty.name);
}

/**
 * Wire a form: no reload, a busy state, and any thrown error shown in `box`. A form with
 * `data-api="METHOD /path"` gets its required fields from the API's schema, checked before sending.
 */
export function onSubmit(form, box, handler) {
  form.noValidate = true; // our messages, next to the form, instead of the browser's bubbles
  if (form.dataset.api) markRequired(form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(box);
    const buttons = form.querySelectorAll("button[type=submit]");
    buttons.forEach((button) => (button.disabled = true));
    form.setAttribute("aria-busy", "true");
    try {
      const missing = missingField(form);
      if (missing) throw missing;
      await handler(new FormData(form), event.submitter);
    } catch (error) {
      showError(box, error);
    } finally {
      buttons.forEach((button) => (button.disabled = false));
      form.removeAttribute("aria-busy");
    }
  });
}

/** Announce a short status in the page's live region. */
export function announce(text, kind = "ok") {
  const status = document.getElementById("status");
  status.dataset.kind = kind;
  status.textContent = text;
  clearTimeout(announce.timer);
  announce.timer = setTimeout(() => (status.textContent = ""), 8000);
}

/** "2026-02-21T10:00:00.000000Z" → the reader's local date and time; "" stays "". */
export function when(timestamp) {
  if (!timestamp) return "";
  const date = new Date(timestamp.replace(/(\.\d{3})\d+/, "$1"));
  return Number.isNaN(date.getTime()) ? timestamp : date.toLocaleString();
}

export function table(headers, rows, caption) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      caption && h("caption", { class: "muted" }, caption),
      h("thead", {}, h("tr", {}, headers.map((text) => h("th", { scope: "col" }, text)))),
      h("tbody", {}, rows),
    ),
  );
}

const STATUS_TONES = {
  registered: "ok", delivered: "ok", progressing: "ok", active: "ok",
  ringing: "warn", dialing: "warn", pending: "warn", terminating: "warn", canceling: "warn",
  failed: "bad", hangup: "idle", deleted: "idle",
};

export function badge(text, tone = STATUS_TONES[text] ?? "idle") {
  return h("span", { class: `badge ${tone}` }, text);
}

/** Copy to the clipboard; outside secure contexts (no clipboard) select `reveal()`'s element instead. */
function copyButton(text, label, reveal) {
  const button = h("button", { type: "button", class: "secondary small", "aria-label": `Copy ${label}` }, "Copy");
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      announce(`${label[0].toUpperCase()}${label.slice(1)} copied.`);
    } catch {
      getSelection().selectAllChildren(reveal());
      announce(`Press Ctrl+C to copy the ${label}.`);
    }
  });
  return button;
}

/** A value the reader may want to copy: selectable text plus a Copy button. */
export function copyable(text, label) {
  const code = h("code", {}, text);
  return h("span", { class: "inline" }, code, copyButton(text, label, () => code));
}

/** A secret shown masked until asked for (Show/Hide), with a Copy button. */
export function masked(text, label) {
  const MASK = "••••••••";
  const value = h("code", {}, MASK);
  const toggle = h("button", { type: "button", class: "secondary small" });
  let shown = false;
  const show = (showing) => {
    shown = showing;
    toggle.textContent = showing ? "Hide" : "Show";
    toggle.setAttribute("aria-label", `${toggle.textContent} ${label}`);
    value.textContent = showing ? text : MASK;
  };
  show(false);
  toggle.addEventListener("click", () => show(!shown));
  return h("span", { class: "inline" }, value, toggle, copyButton(text, label, () => (show(true), value)));
}

/** Plain text with its http(s) links made clickable (as anchors, never as HTML). */
export function linkify(text) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(/https?:\/\/[^\s<>"']+/g)) {
    const url = match[0].replace(/[.,;:!?)]+$/, "");
    parts.push(text.slice(last, match.index), h("a", { href: url }, url));
    last = match.index + url.length;
  }
  parts.push(text.slice(last));
  return parts;
}
