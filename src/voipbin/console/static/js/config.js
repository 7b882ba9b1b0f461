// What the pages need to know about this platform beyond the API (GET /console/config.json).

import { api, setBase } from "./api.js";

export const config = {
  domain: "",
  registrar_suffix: "",
  sip_port: 5060,
  public_address: "",
  sandbox: false,
  mailbox: false,
  api_base: "",
};

export async function loadConfig() {
  Object.assign(config, await api.get("/console/config.json"));
  setBase(config.api_base);
}

/** The SIP domain a customer's phones register to. */
export function registrarDomain(customerId) {
  return `${customerId}.${config.registrar_suffix}`;
}
