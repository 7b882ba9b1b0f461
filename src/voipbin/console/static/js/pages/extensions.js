// Extensions: the SIP accounts phones register to, with their live registration state.

import { api } from "../api.js";
import { config, registrarDomain } from "../config.js";
import { announce, badge, copyable, errorBox, field, FormProblem, h, masked, onSubmit, table, when } from "../dom.js";
import { customerTopic } from "../events.js";
import { navigate } from "../router.js";
import { session } from "../session.js";

// Registrations raise no event of their own, so pages showing them poll.
const POLL_MS = 3000;
const SIP_USER = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function randomPassword() {
  const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
  return Array.from(crypto.getRandomValues(new Uint32Array(16)), (n) => alphabet[n % alphabet.length]).join("");
}

function registration(ext) {
  const phones = ext.contacts?.length ?? 0;
  return h("span", { "data-registered": String(Boolean(ext.registered)) },
    ext.registered ? badge("Registered", "ok") : badge("Not registered", "idle"),
    phones > 1 ? ` (${phones} phones)` : "");
}

/** Reload `load` on extension events and every few seconds, while the page is shown. */
function keepFresh(ctx, load) {
  ctx.listen(customerTopic("extension"), load);
  ctx.every(POLL_MS, load);
}

export function list(ctx) {
  const box = errorBox();
  const password = field({ label: "SIP password", name: "password", autocomplete: "new-password",
                           hint: "4 or more printable characters, no spaces." });
  const generate = h("button", { type: "button", class: "secondary small" }, "Generate a password");
  generate.addEventListener("click", () => {
    password.querySelector("input").value = randomPassword();
  });
  const form = h(
    "form",
    { class: "panel", "aria-labelledby": "add-extension", "data-api": "POST /v1.0/extensions" },
    h("h2", { id: "add-extension" }, "Add an extension"),
    box,
    field({ label: "Extension", name: "extension", placeholder: "1001",
            hint: "The SIP username: letters, digits, dot, dash, underscore." }),
    field({ label: "Name", name: "name", placeholder: "Front desk" }),
    password,
    h("p", {}, generate),
    field({ label: "Detail", name: "detail", placeholder: "Softphone on the front desk PC" }),
    h("button", { type: "submit" }, "Create extension"),
  );
  const listing = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  const listBox = errorBox();
  ctx.main.append(h("h1", {}, "Extensions"), form,
    h("section", { class: "panel", "aria-labelledby": "your-extensions" }, h("h2", { id: "your-extensions" }, "Your extensions"), listBox, listing));

  let shown = "";
  async function load() {
    try {
      const { result } = await api.get("/v1.0/extensions");
      const signature = JSON.stringify(result.map((e) => [e.id, e.name, e.registered, e.contacts.length]));
      if (signature === shown) return;
      shown = signature;
      listing.replaceChildren(result.length ? table(["Extension", "Name", "Registration", ""], result.map(row)) : h("p", {}, "No extensions yet."));
    } catch (error) {
      listing.replaceChildren(h("p", { role: "alert", class: "form-error" }, error.message));
    }
  }

  function row(ext) {
    const remove = h("button", { type: "button", class: "danger small", "aria-label": `Delete extension ${ext.extension}` }, "Delete");
    remove.addEventListener("click", async () => {
      if (!confirm(`Delete extension ${ext.extension}? Phones registered to it stop working.`)) return;
      try {
        await api.del(`/v1.0/extensions/${ext.id}`);
        announce(`Extension ${ext.extension} deleted.`);
        load();
      } catch (error) {
        announce(error.message, "error");
      }
    });
    return h("tr", { "data-extension": ext.extension },
      h("td", {}, h("a", { href: `#/extensions/${ext.id}` }, ext.extension)),
      h("td", {}, ext.name),
      h("td", {}, registration(ext)),
      h("td", { class: "actions" }, h("a", { href: `#/extensions/${ext.id}`, "aria-label": `Edit extension ${ext.extension}` }, "Edit"), remove));
  }

  onSubmit(form, box, async (data) => {
    const extension = data.get("extension").trim();
    if (!SIP_USER.test(extension)) throw new FormProblem("The extension must start with a letter or digit and use only letters, digits, '.', '-' or '_'.", "extension");
    const created = await api.post("/v1.0/extensions", {
      extension, name: data.get("name").trim(), password: data.get("password"), detail: data.get("detail").trim(),
    });
    form.reset();
    announce(`Extension ${created.extension} created.`);
    await load();
  });
  load();
  keepFresh(ctx, load);
}

function sipSettings(ext) {
  const domain = registrarDomain(session.customerId);
  const server = `${config.public_address}:${config.sip_port}`;
  return h("section", { class: "panel", "aria-labelledby": "sip-settings" },
    h("h2", { id: "sip-settings" }, "Phone settings"),
    h("p", { class: "muted" }, "Type these into Linphone (Use a SIP account), baresip or a desk phone."),
    h("dl", { class: "kv" },
      h("dt", {}, "Username"), h("dd", {}, copyable(ext.extension, "username")),
      h("dt", {}, "Password"), h("dd", {}, masked(ext.password, "SIP password")),
      h("dt", {}, "Domain"), h("dd", {}, copyable(domain, "domain")),
      h("dt", {}, "Proxy / server"), h("dd", {}, copyable(server, "server address")),
      h("dt", {}, "Transport"), h("dd", {}, "UDP or TCP"),
      h("dt", {}, "SIP address"), h("dd", {}, h("code", {}, `sip:${ext.extension}@${domain}`))));
}

export async function detail(ctx) {
  const heading = h("h1", {}, "Extension");
  ctx.main.append(h("p", {}, h("a", { href: "#/extensions" }, "← Extensions")), heading);
  let ext;
  try {
    ext = await api.get(`/v1.0/extensions/${encodeURIComponent(ctx.params.id)}`);
  } catch (error) {
    ctx.main.append(h("p", { role: "alert", class: "form-error" }, error.message));
    return;
  }
  heading.textContent = `Extension ${ext.extension}`;
  const state = h("div", {});
  let shown = "";
  const showState = (current) => {
    const contacts = current.contacts ?? [];
    const signature = JSON.stringify(contacts.map((c) => [c.uri, c.source]));
    if (signature === shown) return; // unchanged: nothing new for the live region to read out
    shown = signature;
    state.replaceChildren(h("p", {}, registration(current)),
      contacts.length
        ? table(["Contact", "From", "Phone"], contacts.map((c) => h("tr", {},
            h("td", { class: "mono" }, c.uri), h("td", { class: "mono" }, c.source), h("td", {}, c.user_agent))))
        : h("p", { class: "muted" }, "No phone is registered to this extension."));
  };
  showState(ext);
  let settings = sipSettings(ext);

  const box = errorBox();
  const form = h("form", { class: "panel", "aria-labelledby": "edit-extension", "data-api": "PUT /v1.0/extensions/{extension_id}" },
    h("h2", { id: "edit-extension" }, "Edit"),
    box,
    field({ label: "Name", name: "name", value: ext.name, hint: "Leave empty to keep the current one." }),
    field({ label: "Detail", name: "detail", value: ext.detail }),
    field({ label: "New SIP password", name: "password", type: "password", autocomplete: "new-password",
            hint: "Leave empty to keep the current one." }),
    h("div", { class: "actions-bar" }, h("button", { type: "submit" }, "Save"),
      h("button", { type: "button", class: "danger", onclick: remove }, "Delete extension")));
  onSubmit(form, box, async (data) => {
    const changes = { detail: data.get("detail") };
    if (data.get("name").trim()) changes.name = data.get("name").trim();
    if (data.get("password")) changes.password = data.get("password");
    ext = await api.put(`/v1.0/extensions/${ext.id}`, changes);
    form.elements.namedItem("password").value = "";
    settings.replaceWith((settings = sipSettings(ext)));
    announce("Extension saved.");
  });

  async function remove() {
    if (!confirm(`Delete extension ${ext.extension}?`)) return;
    try {
      await api.del(`/v1.0/extensions/${ext.id}`);
      announce(`Extension ${ext.extension} deleted.`);
      navigate("#/extensions");
    } catch (error) {
      announce(error.message, "error");
    }
  }

  ctx.main.append(
    h("div", { class: "grid" }, settings,
      h("section", { class: "panel", "aria-labelledby": "registration", "aria-live": "polite" },
        h("h2", { id: "registration" }, "Registration"), state)),
    form,
    h("p", { class: "muted" }, `Created ${when(ext.tm_create)}`),
  );
  keepFresh(ctx, async () => {
    try {
      showState(await api.get(`/v1.0/extensions/${ext.id}`));
    } catch {
      // a failed poll keeps the last known state; the next one tries again
    }
  });
}
