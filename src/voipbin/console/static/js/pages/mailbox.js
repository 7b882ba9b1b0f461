// The sandbox's mailbox: mail the platform "sent" without SMTP, so signup works out of the box.

import { api } from "../api.js";
import { h, linkify, table, when } from "../dom.js";
import { pendingSignup, session } from "../session.js";

const REFRESH_MS = 3000;

/** Whose mail to show: the logged-in user's (the bearer token), else this tab's signup's. */
function credential() {
  if (session.token) return {};
  const { accesskey, temp_token } = pendingSignup.get();
  return accesskey ? { accesskey } : temp_token ? { temp_token } : null;
}

const NO_READER = "The mailbox shows your own mail: sign up in this tab, or log in, to see it. The operator reads all of it with `./voipbin mail`.";

function off(error) {
  return error.reason === "MAILBOX_OFF"
    ? h("p", { class: "notice" }, "The mailbox is off: this platform delivers its mail through SMTP.")
    : h("p", { class: "form-error", role: "alert" }, error.message);
}

export function list(ctx) {
  const body = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  ctx.main.append(
    h("h1", {}, "Mailbox"),
    h("p", { class: "muted" }, "Mail this sandbox would have sent, newest first. New mail appears by itself."),
    body,
  );
  let shown = "";
  async function load() {
    const reader = credential();
    if (!reader) {
      shown = "";
      body.replaceChildren(h("p", { class: "notice" }, NO_READER, " ", h("a", { href: "#/signup" }, "Sign up"), " · ", h("a", { href: "#/login" }, "Log in")));
      return;
    }
    try {
      const { result } = await api.get("/sandbox/mailbox", reader);
      const ids = result.map((mail) => mail.id).join();
      if (ids === shown) return; // unchanged: keep the reader's focus and scroll
      shown = ids;
      body.replaceChildren(
        result.length
          ? table(["Date", "To", "Subject"], result.map((mail) => h("tr", {},
              h("td", {}, when(mail.date) || mail.date),
              h("td", {}, mail.to),
              h("td", {}, h("a", { href: `#/mailbox/${encodeURIComponent(mail.id)}` }, mail.subject || "(no subject)")))))
          : h("p", {}, "No mail yet."),
      );
    } catch (error) {
      shown = "";
      body.replaceChildren(off(error));
    }
  }
  load();
  ctx.every(REFRESH_MS, load);
}

export async function message(ctx) {
  const heading = h("h1", { id: "mail-title" }, "Mail");
  ctx.main.append(h("p", {}, h("a", { href: "#/mailbox" }, "← Mailbox")), heading);
  try {
    const mail = await api.get(`/sandbox/mailbox/${encodeURIComponent(ctx.params.id)}`, credential() ?? {});
    heading.textContent = mail.subject || "(no subject)";
    ctx.main.append(
      h("article", { class: "panel", "aria-labelledby": "mail-title" },
        h("dl", { class: "kv" },
          h("dt", {}, "From"), h("dd", {}, mail.from),
          h("dt", {}, "To"), h("dd", {}, mail.to),
          h("dt", {}, "Date"), h("dd", {}, when(mail.date) || mail.date),
          h("dt", {}, "Subject"), h("dd", {}, mail.subject)),
        h("pre", { class: "mail-body" }, linkify(mail.body ?? ""))),
    );
  } catch (error) {
    ctx.main.append(off(error));
  }
}
