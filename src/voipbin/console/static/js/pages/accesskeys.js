// Access keys: long-lived API credentials (?accesskey=); the token is shown once, at creation.

import { api } from "../api.js";
import { announce, copyable, errorBox, field, FormProblem, h, onSubmit, table, when } from "../dom.js";

const DAY_S = 24 * 3600;

export function render(ctx) {
  const box = errorBox();
  const created = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    { class: "panel", "aria-labelledby": "new-key", "data-api": "POST /v1.0/accesskeys" },
    h("h2", { id: "new-key" }, "Create an access key"),
    box,
    field({ label: "Name", name: "name", placeholder: "CI deploys" }),
    field({ label: "Detail", name: "detail" }),
    field({ label: "Lifetime in days", name: "days", type: "number", min: 1, max: 3650, value: 365 }),
    h("button", { type: "submit" }, "Create key"),
  );
  const listing = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  ctx.main.append(h("h1", {}, "Access keys"),
    h("p", { class: "muted" }, "Scripts authenticate with ?accesskey=<token> and act as this account's administrator."),
    created, form,
    h("section", { class: "panel", "aria-labelledby": "your-keys" }, h("h2", { id: "your-keys" }, "Your keys"), listing));

  async function load() {
    try {
      const { result } = await api.get("/v1.0/accesskeys");
      listing.replaceChildren(result.length
        ? table(["Name", "Token starts", "Created", "Expires", ""], result.map(row))
        : h("p", {}, "No access keys."));
    } catch (error) {
      listing.replaceChildren(h("p", { role: "alert", class: "form-error" }, error.message));
    }
  }

  function row(key) {
    const remove = h("button", { type: "button", class: "danger small", "aria-label": `Delete access key ${key.name}` }, "Delete");
    remove.addEventListener("click", async () => {
      if (!confirm(`Delete the access key "${key.name}"? Scripts using it stop working.`)) return;
      try {
        await api.del(`/v1.0/accesskeys/${key.id}`);
        announce(`Access key ${key.name} deleted.`);
        load();
      } catch (error) {
        announce(error.message, "error");
      }
    });
    return h("tr", {}, h("td", {}, key.name), h("td", { class: "mono" }, `${key.token_prefix}…`),
      h("td", {}, when(key.tm_create)), h("td", {}, when(key.tm_expire)), h("td", { class: "actions" }, remove));
  }

  onSubmit(form, box, async (data) => {
    const name = data.get("name").trim();
    const days = Number(data.get("days") || 365);
    if (!Number.isInteger(days) || days < 1 || days > 3650) throw new FormProblem("The lifetime is 1 to 3650 whole days.", "days");
    const key = await api.post("/v1.0/accesskeys", { name, detail: data.get("detail").trim(), expire: days * DAY_S });
    form.reset();
    created.replaceChildren(h("div", { class: "secret" },
      h("p", {}, h("strong", {}, `Access key "${key.name}" created.`), " Copy the token now: it is not shown again."),
      copyable(key.token, "access key token")));
    await load();
  });
  load();
}
