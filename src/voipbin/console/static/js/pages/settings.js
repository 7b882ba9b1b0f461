// Customer settings: the account, its webhook (URI, method, signing secret) and recent deliveries.

import { api } from "../api.js";
import { announce, badge, copyable, errorBox, field, FormProblem, h, masked, onSubmit, table, when } from "../dom.js";
import { session } from "../session.js";

const POLL_MS = 5000;
const METHODS = [["", "(none)"], ["POST", "POST"], ["PUT", "PUT"], ["GET", "GET"], ["DELETE", "DELETE"]];

export async function render(ctx) {
  ctx.main.append(h("h1", {}, "Settings"));
  let customer;
  try {
    customer = await api.get("/v1.0/customer");
  } catch (error) {
    ctx.main.append(h("p", { role: "alert", class: "form-error" }, error.message));
    return;
  }
  const box = errorBox();
  const fields = h("fieldset", { disabled: !session.isAdmin, class: "plain" },
    h("legend", { class: "muted" }, session.isAdmin ? "Events of this account are sent to this URI." : "Only an administrator can change these."),
    field({ label: "Account name", name: "name", value: customer.name }),
    field({ label: "Webhook URI", name: "webhook_uri", type: "url", value: customer.webhook_uri, placeholder: "https://example.com/voipbin",
            hint: "http:// or https://; leave empty to stop webhooks." }),
    field({ label: "Webhook method", name: "webhook_method", options: METHODS, value: customer.webhook_method }),
    h("button", { type: "submit" }, "Save"));
  const form = h("form", { class: "panel", "aria-labelledby": "webhook", "data-api": "PUT /v1.0/customer" }, h("h2", { id: "webhook" }, "Webhook"), box, fields);
  onSubmit(form, box, async (data) => {
    const uri = data.get("webhook_uri").trim();
    if (uri && !/^https?:\/\/[^\s/]+/.test(uri)) throw new FormProblem("The webhook URI must start with http:// or https://.", "webhook_uri");
    customer = await api.put("/v1.0/customer", { name: data.get("name").trim(), webhook_uri: uri, webhook_method: data.get("webhook_method") });
    form.elements.namedItem("webhook_method").value = customer.webhook_method;
    announce("Settings saved.");
  });

  const deliveries = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  ctx.main.append(
    h("section", { class: "panel", "aria-labelledby": "account" }, h("h2", { id: "account" }, "Account"),
      h("dl", { class: "kv" },
        h("dt", {}, "Customer id"), h("dd", {}, copyable(customer.id, "customer id")),
        h("dt", {}, "Email"), h("dd", {}, customer.email, " ", customer.email_verified ? badge("verified", "ok") : badge("not verified", "warn")),
        customer.webhook_secret ? [h("dt", {}, "Webhook secret"), h("dd", {}, masked(customer.webhook_secret, "webhook secret"),
          h("span", { class: "hint" }, "Each webhook carries X-VoIPBIN-Signature: sha256=HMAC-SHA256 of its body with this secret; check it before trusting one."))] : null)),
    form,
    h("section", { class: "panel", "aria-labelledby": "deliveries" }, h("h2", { id: "deliveries" }, "Recent webhook deliveries"), deliveries),
  );

  async function loadDeliveries() {
    try {
      const { result } = await api.get("/v1.0/webhook_deliveries", { page_size: 20 });
      deliveries.replaceChildren(result.length
        ? table(["When", "Event", "Status", "Attempts", "Answer", "Error"], result.map((d) => h("tr", {},
            h("td", {}, when(d.tm_update || d.tm_create)), h("td", {}, d.event_type), h("td", {}, badge(d.status)),
            h("td", {}, String(d.attempts)), h("td", {}, d.last_status_code ? String(d.last_status_code) : ""), h("td", {}, d.last_error ?? ""))))
        : h("p", {}, "No deliveries yet."));
    } catch (error) {
      deliveries.replaceChildren(h("p", { role: "alert", class: "form-error" }, error.message));
    }
  }
  if (session.isAdmin) {
    loadDeliveries();
    ctx.every(POLL_MS, loadDeliveries);
  } else {
    deliveries.replaceChildren(h("p", {}, "Only an administrator sees the deliveries."));
  }
}
