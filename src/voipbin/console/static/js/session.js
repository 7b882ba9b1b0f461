// The login session: the API's JWT in sessionStorage (gone when the tab closes).

import { ADMIN, ADMIN_OR_MANAGER, SUPERADMIN } from "./permissions.js";

const KEY = "voipbin.console.session";

function decode(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload));
  } catch {
    return null;
  }
}

function load() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(KEY) ?? "null");
    const claims = saved && decode(saved.token);
    if (claims?.agent && claims.exp * 1000 > Date.now()) return { ...saved, claims };
  } catch {
    // fall through: a damaged entry is no session
  }
  sessionStorage.removeItem(KEY);
  return null;
}

export const session = {
  get token() {
    return load()?.token ?? "";
  },
  get customerId() {
    return load()?.claims.agent.customer_id ?? "";
  },
  get username() {
    return load()?.username ?? "";
  },
  /** Whether the logged-in agent holds any of these permission bits (superadmins hold all). */
  can(bits) {
    const permission = load()?.claims.agent.permission ?? 0;
    return Boolean(permission & bits || permission & SUPERADMIN);
  },
  get isAdmin() {
    return this.can(ADMIN);
  },
  get isStaff() {
    return this.can(ADMIN_OR_MANAGER);
  },
  save(username, token) {
    sessionStorage.setItem(KEY, JSON.stringify({ username, token }));
    document.dispatchEvent(new Event("console:session"));
  },
  clear() {
    sessionStorage.removeItem(KEY);
    document.dispatchEvent(new Event("console:session"));
  },
};

const SIGNUP_KEY = "voipbin.console.signup";

/**
 * A signup in progress in this tab. Before its owner can log in, the sandbox mailbox shows them
 * their mail by the signup's temp_token, then (once verified) by the access key signup returned.
 */
export const pendingSignup = {
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(SIGNUP_KEY) ?? "{}") ?? {};
    } catch {
      return {};
    }
  },
  update(changes) {
    sessionStorage.setItem(SIGNUP_KEY, JSON.stringify({ ...this.get(), ...changes }));
  },
  clear() {
    sessionStorage.removeItem(SIGNUP_KEY);
  },
};
