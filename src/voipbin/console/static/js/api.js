// The only way the console talks to the server: the public API, with the session's JWT.

import { session } from "./session.js";

/** A failed request, from the API's envelope {"error": {status, reason, message, request_id}}. */
export class ApiError extends Error {
  constructor(httpStatus, body) {
    const error = body?.error ?? {};
    super(error.message || `The server answered ${httpStatus}.`);
    this.reason = error.reason ?? "";
    this.requestId = error.request_id ?? "";
    // pydantic-style validation details, when a route returns them
    this.details = Array.isArray(body?.detail)
      ? body.detail.map((item) => `${(item.loc ?? []).filter((part) => part !== "body").join(".")}: ${item.msg}`)
      : [];
  }
}

let unauthorized = () => {};
let base = "";

/** Where the API lives ("" = this origin, the default config.json gives). */
export function setBase(apiBase) {
  base = apiBase ?? "";
}

/** Called when a logged-in request is refused with 401 (expired or revoked session). */
export function whenUnauthorized(handler) {
  unauthorized = handler;
}

async function request(method, path, { query, body } = {}) {
  const url = new URL(base + path, location.origin);
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== "") url.searchParams.set(name, value);
  }
  const token = session.token;
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    // credentials: "omit": the bearer token is the only credential, so logging out is complete.
    response = await fetch(url, { method, headers, credentials: "omit", body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, { error: { reason: "NETWORK_ERROR", message: "The server cannot be reached; check your connection." } });
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401 && token) unauthorized(error);
    throw error;
  }
  return data;
}

export const api = {
  get: (path, query) => request("GET", path, { query }),
  post: (path, body = {}) => request("POST", path, { body }),
  put: (path, body) => request("PUT", path, { body }),
  del: (path) => request("DELETE", path),
};
