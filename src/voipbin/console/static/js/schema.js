// Which fields each request body requires, read from the API's own OpenAPI document (/openapi.json):
// a form marks its fields from it, so the console asks for exactly what the API requires.

import { api } from "./api.js";

let spec = { paths: {}, components: { schemas: {} } };

export async function loadSchema() {
  spec = await api.get("/openapi.json");
}

/** The JSON body schema of an operation such as "POST /v1.0/extensions" ({} when it has none). */
export function bodySchema(operation) {
  const [method, path] = operation.split(" ");
  let schema = spec.paths[path]?.[method.toLowerCase()]?.requestBody?.content?.["application/json"]?.schema ?? {};
  while (schema.$ref) schema = spec.components.schemas[schema.$ref.split("/").pop()] ?? {};
  return schema;
}

/** The label of a form control (the one that names it with `for`, or wraps it). */
export function labelOf(form, control) {
  return form.querySelector(`label[for="${CSS.escape(control.id)}"]`) ?? control.closest("label");
}

/**
 * Marks the controls of a form with `data-api="METHOD /path"` that are named after its body's fields:
 * `required` where the schema requires the field; "(optional)" after the label of a text field the
 * schema leaves optional, in bodies that require some field (where none is, nothing needs saying).
 */
export function markRequired(form) {
  const { properties = {}, required = [] } = bodySchema(form.dataset.api);
  for (const control of form.elements) {
    if (!Object.hasOwn(properties, control.name)) continue;
    control.required = required.includes(control.name);
    const textual = control.tagName !== "SELECT" && control.type !== "checkbox";
    if (!control.required && required.length && textual) labelOf(form, control)?.append(" (optional)");
  }
}
