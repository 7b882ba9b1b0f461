// Numbers: the customer's E.164 numbers (calls' sources; a call to one runs its call flow).

import { api } from "../api.js";
import { config } from "../config.js";
import { announce, badge, errorBox, field, FormProblem, h, onSubmit, table, when } from "../dom.js";
import { customerTopic } from "../events.js";

const E164 = /^\+[1-9]\d{1,14}$/;

export function render(ctx) {
  const box = errorBox();
  const form = h(
    "form",
    { class: "panel", "aria-labelledby": "acquire-number", "data-api": "POST /v1.0/numbers" },
    h("h2", { id: "acquire-number" }, "Acquire a number"),
    box,
    field({ label: "Number", name: "number", placeholder: "+15551234567", inputmode: "tel",
            hint: config.sandbox ? "E.164, starting with +. Virtual numbers start with +899." : "E.164, starting with +." }),
    field({ label: "Type", name: "type", options: [["normal", "Normal"], ["virtual", "Virtual (+899…)"]] }),
    field({ label: "Name", name: "name" }),
    h("button", { type: "submit" }, "Acquire"),
  );
  const listing = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  ctx.main.append(h("h1", {}, "Numbers"),
    h("section", { class: "panel", "aria-labelledby": "your-numbers" }, h("h2", { id: "your-numbers" }, "Your numbers"), listing), form);

  async function load() {
    try {
      const { result } = await api.get("/v1.0/numbers");
      listing.replaceChildren(result.length
        ? table(["Number", "Type", "Status", "Name", "Acquired", ""], result.map(row))
        : h("p", {}, "No numbers yet."));
    } catch (error) {
      listing.replaceChildren(h("p", { role: "alert", class: "form-error" }, error.message));
    }
  }

  function row(number) {
    const release = h("button", { type: "button", class: "danger small", "aria-label": `Release ${number.number}` }, "Release");
    release.addEventListener("click", async () => {
      if (!confirm(`Release ${number.number}? Calls to it stop reaching you.`)) return;
      try {
        await api.del(`/v1.0/numbers/${number.id}`);
        announce(`${number.number} released.`);
        load();
      } catch (error) {
        announce(error.message, "error");
      }
    });
    return h("tr", {}, h("td", { class: "mono nowrap" }, number.number), h("td", {}, number.type), h("td", {}, badge(number.status)),
      h("td", {}, number.name), h("td", {}, when(number.tm_purchase || number.tm_create)), h("td", { class: "actions" }, release));
  }

  onSubmit(form, box, async (data) => {
    const number = data.get("number").trim().replace(/[\s()-]/g, "");
    if (!E164.test(number)) throw new FormProblem("Enter the number in E.164 form: + then country code and number, e.g. +15551234567.", "number");
    await api.post("/v1.0/numbers", { number, type: data.get("type"), name: data.get("name").trim() });
    form.reset();
    announce(`${number} acquired.`);
    await load();
  });
  load();
  ctx.listen(customerTopic("number"), load);
}
