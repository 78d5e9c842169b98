// The API page: endpoints and their fields, read from the server's OpenAPI schema (no external assets).
"use strict";

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

window.addEventListener("DOMContentLoaded", async () => {
  const box = document.getElementById("endpoints");
  let schema;
  try { schema = await (await fetch("/openapi.json")).json(); } catch (e) { box.textContent = "Cannot read /openapi.json"; return; }
  for (const [path, ops] of Object.entries(schema.paths || {})) {
    for (const [method, op] of Object.entries(ops)) {
      box.append(el("h2", method.toUpperCase() + " " + path));
      if (op.summary) box.append(el("p", op.summary));
      const form = (((op.requestBody || {}).content || {})["multipart/form-data"] || {}).schema;
      if (form) {
        const dl = el("dl", undefined, "card");
        for (const [name, prop] of Object.entries(form.properties || {})) {
          dl.append(el("dt", name + ((form.required || []).includes(name) ? " (required)" : "")));
          dl.append(el("dd", (prop.format === "binary" ? "file: " : "") + (prop.description || "") +
                                (prop.enum ? " One of: " + prop.enum.join(", ") + "." : "")));
        }
        box.append(dl);
      }
      const codes = Object.entries(op.responses || {}).map(([code, r]) => code + " " + (r.description || ""));
      box.append(el("p", "Responses: " + codes.join("; "), "hint"));
    }
  }
});
