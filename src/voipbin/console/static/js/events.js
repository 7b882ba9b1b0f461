// Events over the API's WebSocket (/v1.0/ws): one shared, self-reconnecting connection for the
// pages' live updates, and openSocket() for the event stream page's own subscriptions.

import { session } from "./session.js";

/** VoIPBIN's topic rule (events/topics.py): each segment equal or "*", shorter patterns by prefix. */
export function matches(pattern, topic) {
  const want = pattern.split(":");
  const have = topic.split(":");
  return want.length <= have.length && want.every((part, index) => part === "*" || part === have[index]);
}

export function openSocket(token) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return new WebSocket(`${scheme}//${location.host}/v1.0/ws?token=${encodeURIComponent(token)}`);
}

const MAX_RETRY_MS = 15000;
const KEEP_RECENT = 50;

class LiveEvents {
  handlers = new Set();
  stateListeners = new Set();
  socket = null;
  retryMs = 1000;
  state = "closed";
  wanted = false;
  retryTimer = 0;
  /** The latest events of this login, newest last, for pages opened after they arrived. */
  recent = [];

  /** Receive every event of the logged-in customer (needs admin or manager permission). */
  start() {
    this.stop();
    if (!session.isStaff) return;
    this.wanted = true;
    this.connect();
  }

  stop() {
    this.wanted = false;
    this.recent = [];
    clearTimeout(this.retryTimer);
    this.socket?.close();
    this.socket = null;
    this.setState("closed");
  }

  connect() {
    const socket = openSocket(session.token);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.retryMs = 1000;
      socket.send(JSON.stringify({ type: "subscribe", topics: [`customer_id:${session.customerId}:*`] }));
      this.setState("open");
    });
    socket.addEventListener("message", (message) => this.dispatch(message.data));
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      this.setState("closed");
      if (this.wanted && session.token) {
        this.retryTimer = setTimeout(() => this.connect(), this.retryMs);
        this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
      }
    });
  }

  dispatch(raw) {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    if (!frame.topic || !frame.event_type) return; // replies: subscribed, pong, error
    this.recent.push(frame);
    if (this.recent.length > KEEP_RECENT) this.recent.shift();
    for (const { pattern, handler } of this.handlers) {
      if (matches(pattern, frame.topic)) handler(frame);
    }
  }

  /** Call handler(frame) for events whose topic matches pattern; returns the way to stop. */
  on(pattern, handler) {
    const entry = { pattern, handler };
    this.handlers.add(entry);
    return () => this.handlers.delete(entry);
  }

  onState(listener) {
    this.stateListeners.add(listener);
    listener(this.state);
  }

  setState(state) {
    this.state = state;
    this.stateListeners.forEach((listener) => listener(state));
  }
}

export const live = new LiveEvents();

/** The topic pattern of one resource kind of the logged-in customer, e.g. "call" → ...:call:* */
export function customerTopic(resource, id = "*") {
  return `customer_id:${session.customerId}:${resource}:${id}`;
}
