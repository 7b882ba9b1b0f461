// Entry point: configuration, navigation, session handling and the route table.

import { api, whenUnauthorized } from "./api.js";
import { config, loadConfig } from "./config.js";
import { announce, h } from "./dom.js";
import { live } from "./events.js";
import { route, navigate, start } from "./router.js";
import { loadSchema } from "./schema.js";
import { session } from "./session.js";
import * as accesskeys from "./pages/accesskeys.js";
import * as ais from "./pages/ais.js";
import * as account from "./pages/account.js";
import * as calls from "./pages/calls.js";
import * as conferences from "./pages/conferences.js";
import * as dashboard from "./pages/dashboard.js";
import * as extensions from "./pages/extensions.js";
import * as mailbox from "./pages/mailbox.js";
import * as newCall from "./pages/new-call.js";
import * as numbers from "./pages/numbers.js";
import * as settings from "./pages/settings.js";
import * as stream from "./pages/stream.js";

const PUBLIC = { access: "public" };
route("/login", account.login, { title: "Log in", ...PUBLIC });
route("/signup", account.signup, { title: "Sign up", ...PUBLIC });
route("/verify", account.verify, { title: "Verify your email", ...PUBLIC });
route("/password-reset", account.passwordReset, { title: "Set your password", ...PUBLIC });
route("/email-change", account.emailChange, { title: "Confirm your new email", ...PUBLIC });
route("/forgot", account.forgot, { title: "Forgot password", ...PUBLIC });
route("/mailbox", mailbox.list, { title: "Mailbox", ...PUBLIC });
route("/mailbox/:id", mailbox.message, { title: "Mail", ...PUBLIC });
route("/", dashboard.render, { title: "Dashboard" });
route("/extensions", extensions.list, { title: "Extensions" });
route("/extensions/:id", extensions.detail, { title: "Extension" });
route("/numbers", numbers.render, { title: "Numbers" });
route("/calls", calls.list, { title: "Calls" });
route("/calls/new", newCall.render, { title: "Place a test call" });
route("/calls/:id", calls.detail, { title: "Call" });
route("/ais", ais.list, { title: "AI agents" });
route("/ais/:id", ais.detail, { title: "AI agent" });
route("/aicalls/:id", ais.conversation, { title: "AI conversation" });
route("/conferences", conferences.list, { title: "Conferences" });
route("/conferences/:id", conferences.detail, { title: "Conference" });
route("/events", stream.render, { title: "Live events" });
route("/accesskeys", accesskeys.render, { title: "Access keys", access: "admin" });
route("/settings", settings.render, { title: "Settings" });

function navItems() {
  const mail = config.mailbox ? [["#/mailbox", "Mailbox"]] : [];
  if (!session.token) return [["#/login", "Log in"], ["#/signup", "Sign up"], ...mail];
  const items = [["#/", "Dashboard"], ["#/extensions", "Extensions"], ["#/numbers", "Numbers"], ["#/calls", "Calls"], ["#/ais", "AI agents"], ["#/conferences", "Conferences"], ["#/events", "Events"]];
  if (session.isAdmin) items.push(["#/accesskeys", "Access keys"]);
  return [...items, ["#/settings", "Settings"], ...mail];
}

const liveState = h("span", { class: "live-state" });
live.onState((state) => {
  liveState.dataset.state = state;
  liveState.textContent = state === "open" ? "Live" : "Offline";
  liveState.title = state === "open" ? "Receiving live events" : "Live events disconnected; retrying";
});

function renderNav() {
  const links = navItems().map(([href, text]) => h("li", {}, h("a", { href }, text)));
  document.getElementById("nav-links").replaceChildren(...links);
  const box = document.getElementById("session-box");
  box.replaceChildren();
  if (session.token) {
    box.append(
      h("span", { class: "who", title: session.username }, session.username),
      liveState,
      h("button", { type: "button", class: "small", onclick: logout }, "Log out"),
    );
  }
  markCurrent(location.hash.slice(1).split("?")[0] || "/");
}

function markCurrent(path) {
  for (const link of document.querySelectorAll("#nav-links a")) {
    const target = link.getAttribute("href").slice(1);
    const current = target === "/" ? path === "/" : path === target || path.startsWith(`${target}/`);
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.getElementById("nav").classList.remove("open");
  document.getElementById("nav-toggle").setAttribute("aria-expanded", "false");
}

/** Log in or out happened (here or in a page): follow with the live connection and the menu. */
function sessionChanged() {
  if (session.token) live.start();
  else live.stop();
  renderNav();
}

function logout() {
  // The login also set an httponly cookie; only the server can drop it.
  api.post("/auth/logout", {}).catch(() => {});
  session.clear();
  navigate("#/login");
  announce("You are logged out.");
}

function setupSkipLink() {
  // A plain #main would change the hash the router owns: move focus without it.
  document.querySelector(".skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    document.getElementById("main").focus();
  });
}

function setupNavToggle() {
  const toggle = document.getElementById("nav-toggle");
  toggle.addEventListener("click", () => {
    const open = document.getElementById("nav").classList.toggle("open");
    toggle.setAttribute("aria-expanded", String(open));
  });
}

async function boot() {
  try {
    await loadConfig();
    await loadSchema(); // after the config: it says where the API is
  } catch (error) {
    document.getElementById("main").replaceChildren(h("h1", {}, "The console cannot start"), h("p", { role: "alert" }, error.message));
    return;
  }
  whenUnauthorized(() => {
    session.clear();
    navigate("#/login?expired=1");
  });
  setupSkipLink();
  setupNavToggle();
  document.addEventListener("console:route", (event) => markCurrent(event.detail));
  document.addEventListener("console:session", sessionChanged);
  sessionChanged();
  start();
}

boot();
