// Hash routes ("#/calls/<id>?x=1"): the console is one page, so links work without server routes.

import { h } from "./dom.js";
import { live } from "./events.js";
import { session } from "./session.js";

const routes = [];
let leaving = [];

/**
 * path like "/calls/:id"; render(ctx) fills ctx.main.
 * access: "public" (no login), "staff" (admin or manager), "admin".
 */
export function route(path, render, { title, access = "staff" } = {}) {
  const names = [];
  const pattern = new RegExp(
    "^" + path.replace(/:(\w+)/g, (_, name) => (names.push(name), "([^/]+)")) + "$",
  );
  routes.push({ pattern, names, render, title, access });
}

export function navigate(hash) {
  if (location.hash === hash) show();
  else location.hash = hash;
}

function current() {
  const hash = location.hash.startsWith("#/") ? location.hash.slice(1) : "/";
  const [path, query = ""] = hash.split("?");
  return { path: path || "/", query: new URLSearchParams(query) };
}

function decoded(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment; // a malformed %-escape: the page's lookup will say it does not exist
  }
}

function allowed(access) {
  if (access === "public") return true;
  return access === "admin" ? session.isAdmin : session.isStaff;
}

/** Render the page the hash names; the previous page's timers and listeners stop first. */
export function show() {
  const { path, query } = current();
  const found = routes.find((candidate) => candidate.pattern.test(path));
  leaving.forEach((stop) => stop());
  leaving = [];
  const main = document.getElementById("main");
  const page = h("div", { class: "page" });
  main.replaceChildren(page);
  if (!found) {
    document.title = "Not found · VoIPBIN console";
    page.append(h("h1", { tabindex: -1 }, "Page not found"), h("p", {}, h("a", { href: "#/" }, "Go to the dashboard")));
    return focusHeading(page);
  }
  if (found.access !== "public" && !session.token) {
    const target = query.size ? `${path}?${query}` : path;
    navigate(`#/login?next=${encodeURIComponent(target)}`);
    return;
  }
  document.title = `${found.title} · VoIPBIN console`;
  document.dispatchEvent(new CustomEvent("console:route", { detail: path }));
  if (!allowed(found.access)) {
    page.append(h("h1", { tabindex: -1 }, found.title), h("p", {}, "Your permission level does not allow this page."));
    return focusHeading(page);
  }
  const values = path.match(found.pattern).slice(1);
  const params = Object.fromEntries(found.names.map((name, index) => [name, decoded(values[index])]));
  const ctx = {
    main: page,
    params,
    query,
    /** Run fn every ms while this page is shown. */
    every(ms, fn) {
      const timer = setInterval(fn, ms);
      leaving.push(() => clearInterval(timer));
    },
    /** Live events matching pattern while this page is shown. */
    listen(pattern, handler) {
      leaving.push(live.on(pattern, handler));
    },
    onLeave(fn) {
      leaving.push(fn);
    },
  };
  found.render(ctx);
  focusHeading(page);
}

function focusHeading(page) {
  // Start keyboard and screen reader users at the new page's heading (pages add it first).
  const heading = page.querySelector("h1");
  heading?.setAttribute("tabindex", "-1");
  heading?.focus();
}

export function start() {
  window.addEventListener("hashchange", show);
  show();
}
