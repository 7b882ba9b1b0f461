// Account pages: sign up, verify the email, set or reset the password, log in.

import { api } from "../api.js";
import { config } from "../config.js";
import { checkbox, copyable, errorBox, field, FormProblem, h, onSubmit } from "../dom.js";
import { navigate } from "../router.js";
import { pendingSignup, session } from "../session.js";

// Deliberately loose: the server decides what is deliverable; this catches typos like "bob@".
const EMAIL = /^[^\s@]+@[^\s@.]+(\.[^\s@.]+)+$/;

function mailboxHint() {
  return config.mailbox
    ? h("p", { class: "notice" }, "This sandbox keeps the mail it sends instead of delivering it: read it in the ",
        h("a", { href: "#/mailbox" }, "Mailbox"), ".")
    : ""; // (append() would print a null)
}

export function login(ctx) {
  const box = errorBox();
  const form = h(
    "form",
    { class: "panel narrow", "aria-labelledby": "login-title", "data-api": "POST /auth/login" },
    box,
    field({ label: "Email (username)", name: "username", autocomplete: "username" }),
    field({ label: "Password", name: "password", type: "password", autocomplete: "current-password" }),
    h("button", { type: "submit" }, "Log in"),
  );
  ctx.main.append(
    h("h1", { id: "login-title" }, "Log in"),
    ctx.query.get("expired") ? h("p", { class: "notice" }, "Your session ended; please log in again.") : "",
    form,
    h("p", {}, h("a", { href: "#/forgot" }, "Forgot your password?"), " · ", h("a", { href: "#/signup" }, "Create an account")),
  );
  onSubmit(form, box, async (data) => {
    const username = data.get("username").trim();
    const result = await api.post("/auth/login", { username, password: data.get("password") });
    pendingSignup.clear(); // logged in: the mailbox now reads by the session
    session.save(result.username, result.token);
    const next = ctx.query.get("next");
    navigate(next?.startsWith("/") ? `#${next}` : "#/");
  });
}

export function signup(ctx) {
  const box = errorBox();
  const form = h(
    "form",
    { class: "panel narrow", "aria-labelledby": "signup-title", "data-api": "POST /auth/signup" },
    box,
    field({ label: "Email", name: "email", type: "email", autocomplete: "email",
            hint: "We send a link to this address to verify it." }),
    field({ label: "Name", name: "name", autocomplete: "name" }),
    checkbox({ label: "I accept the terms of service", name: "accepted_tos" }),
    h("button", { type: "submit" }, "Sign up"),
  );
  ctx.main.append(h("h1", { id: "signup-title" }, "Create an account"), form,
    h("p", {}, "Already have an account? ", h("a", { href: "#/login" }, "Log in")));
  onSubmit(form, box, async (data) => {
    const email = data.get("email").trim();
    if (!EMAIL.test(email)) throw new FormProblem("Enter a valid email address, like name@example.com.", "email");
    const { temp_token } = await api.post("/auth/signup", { email, name: data.get("name").trim(), accepted_tos: true });
    // Empty for an address the server will not sign up (it does not say why, by design).
    pendingSignup.clear();
    if (temp_token) pendingSignup.update({ email, temp_token });
    ctx.main.replaceChildren(h("h1", { tabindex: -1 }, "Check your email"),
      h("p", {}, "We sent a message to ", h("strong", {}, email), " with a link to verify the address."),
      mailboxHint(), codeForm(ctx, temp_token));
    ctx.main.querySelector("h1").focus();
  });
}

/** The mail also carries a 6-digit code: the same verification, typed instead of clicked. */
function codeForm(ctx, tempToken) {
  const box = errorBox();
  const form = h(
    "form",
    { class: "panel narrow", "data-api": "POST /auth/complete-signup", "data-api-given": "temp_token" },
    h("h2", {}, "Or enter the code"),
    box,
    field({ label: "6-digit code", name: "code", inputmode: "numeric", autocomplete: "one-time-code", maxlength: 6 }),
    h("button", { type: "submit" }, "Verify"),
  );
  onSubmit(form, box, async (data) => {
    const code = data.get("code").trim();
    if (!/^\d{6}$/.test(code)) throw new FormProblem("The code is the 6 digits in the email.", "code");
    const done = await api.post("/auth/complete-signup", { temp_token: tempToken, code });
    showVerified(ctx, done.accesskey);
  });
  return form;
}

function showVerified(ctx, accesskey) {
  pendingSignup.update({ accesskey: accesskey.token });
  ctx.main.replaceChildren(
    h("h1", { tabindex: -1 }, "Your email is verified"),
    h("p", {}, "Your account is ready. We mailed you a welcome message with a link to set your password; then log in."),
    accesskey.token
      ? h("div", { class: "secret" }, h("p", {}, h("strong", {}, "Your access key"), " (shown only now: store it if you use the API from scripts):"),
          copyable(accesskey.token, "access key"))
      : "",
    mailboxHint(),
    h("p", {}, h("a", { href: "#/login" }, "Log in"), " once your password is set."),
  );
  ctx.main.querySelector("h1").focus();
}

export async function verify(ctx) {
  const token = ctx.query.get("token") ?? "";
  const box = errorBox();
  ctx.main.append(h("h1", {}, "Verifying your email…"), box);
  try {
    const done = await api.post("/auth/email-verify", { token });
    showVerified(ctx, done.accesskey);
  } catch (error) {
    ctx.main.querySelector("h1").textContent = "This link did not work";
    ctx.main.append(h("p", {}, "Links work once and expire. ", h("a", { href: "#/signup" }, "Sign up again"), " or ",
      h("a", { href: "#/login" }, "log in"), " if you already verified."));
    box.replaceChildren(h("strong", {}, error.message));
    box.hidden = false;
  }
}

/** The link mailed to a customer's new address: the address is used once this confirms it. */
export async function emailChange(ctx) {
  const token = ctx.query.get("token") ?? "";
  const box = errorBox();
  ctx.main.append(h("h1", {}, "Confirming your new email…"), box);
  try {
    const customer = await api.post("/auth/email-change", { token });
    ctx.main.querySelector("h1").textContent = "Your new email is confirmed";
    ctx.main.append(h("p", {}, "The account now uses ", h("strong", {}, customer.email), "."));
  } catch (error) {
    ctx.main.querySelector("h1").textContent = "This link did not work";
    ctx.main.append(h("p", {}, "Links work once and expire after a day; change the email again to get a new one."));
    box.replaceChildren(h("strong", {}, error.message));
    box.hidden = false;
  }
}

export function passwordReset(ctx) {
  const token = ctx.query.get("token") ?? "";
  const box = errorBox();
  const form = h(
    "form",
    { class: "panel narrow", "aria-labelledby": "password-title", "data-api": "POST /auth/password-reset", "data-api-given": "token" },
    box,
    field({ label: "New password", name: "password", type: "password", autocomplete: "new-password",
            hint: "At least 8 characters; common passwords are refused." }),
    field({ label: "Repeat the password", name: "confirm", type: "password", autocomplete: "new-password", required: true }),
    h("button", { type: "submit" }, "Set password"),
  );
  ctx.main.append(h("h1", { id: "password-title" }, "Set your password"), form);
  onSubmit(form, box, async (data) => {
    const password = data.get("password");
    if (password !== data.get("confirm")) throw new FormProblem("The two passwords differ.", "confirm");
    await api.post("/auth/password-reset", { token, password });
    ctx.main.replaceChildren(h("h1", { tabindex: -1 }, "Your password is set"),
      h("p", {}, h("a", { href: "#/login", class: "button" }, "Log in")));
    ctx.main.querySelector("h1").focus();
  });
}

export function forgot(ctx) {
  const box = errorBox();
  const form = h(
    "form",
    { class: "panel narrow", "aria-labelledby": "forgot-title", "data-api": "POST /auth/password-forgot" },
    box,
    field({ label: "Email (username)", name: "username", type: "email", autocomplete: "username" }),
    h("button", { type: "submit" }, "Send me a link"),
  );
  ctx.main.append(h("h1", { id: "forgot-title" }, "Forgot your password?"),
    h("p", {}, "We mail you a link to set a new one."), form);
  onSubmit(form, box, async (data) => {
    const username = data.get("username").trim();
    if (!EMAIL.test(username)) throw new FormProblem("Enter the email address you signed up with.", "username");
    await api.post("/auth/password-forgot", { username });
    ctx.main.replaceChildren(h("h1", { tabindex: -1 }, "Check your email"),
      h("p", {}, "If ", h("strong", {}, username), " has an account, a link to set a new password is on its way."),
      mailboxHint());
    ctx.main.querySelector("h1").focus();
  });
}
