// The page of `her2dlr serve`: one case -> the model's answer. Plain JavaScript, no external assets.
"use strict";

const state = { models: [], model: null, image: null, imageFile: null, scale: 1, box: null, maskBlob: null,
                maskOutline: null, drag: null };
const $ = (id) => document.getElementById(id);

function headers() {
  const token = sessionStorage.getItem("her2dlr-token");
  return token ? { Authorization: "Bearer " + token } : {};
}

async function failure(response) {
  let body = null;
  try { body = await response.json(); } catch (e) { body = { detail: response.statusText }; }
  if (response.status === 401) { $("token-row").hidden = false; }
  const field = body && body.field ? " [" + body.field + "]" : "";
  const retry = response.headers.get("Retry-After");
  return new Error((body && body.detail ? body.detail : "HTTP " + response.status) + field +
                   (retry ? " (retry in " + retry + " s)" : ""));
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (!response.ok) throw await failure(response);
  return response.json();
}

// The lines of an NDJSON response, each parsed, as they arrive.
async function* ndjson(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    let cut;
    while ((cut = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, cut).trim();
      buffer = buffer.slice(cut + 1);
      if (line) yield JSON.parse(line);
    }
    if (done) return;
  }
}

function status(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function fmt(x, digits = 3) { return typeof x === "number" ? x.toFixed(digits) : "-"; }

function addRow(dl, term, value) {
  if (value === undefined || value === null || value === "") return;
  const dt = document.createElement("dt"); dt.textContent = term;
  const dd = document.createElement("dd"); dd.textContent = value;
  dl.append(dt, dd);
}

function auc(metrics, key) {
  const value = metrics[key + "_auc"];
  if (typeof value !== "number") return null;
  const ci = metrics[key + "_ci"] || [];
  const n = metrics[key + "_n"];
  return fmt(value) + (ci.length === 2 && ci[0] !== null ? " (95% CI " + fmt(ci[0]) + "-" + fmt(ci[1]) + ")" : "") +
         (n ? ", n = " + n : "");
}

function showCard(m) {
  const card = $("card");
  card.replaceChildren();
  const dl = document.createElement("dl");
  const task = m.task || {};
  addRow(dl, "Kind", m.kind);
  const thr = m.threshold || {};
  if (m.classes && m.classes.length) {
    addRow(dl, "Classes", m.classes.join(", "));
    addRow(dl, "Answer", "the most probable class (no threshold)");
  } else {
    addRow(dl, "Positive class", (task.positive || []).join(", "));
    addRow(dl, "Negative class", (task.negative || []).join(", "));
    addRow(dl, "Threshold", fmt(thr.value) + (thr.method ? " (" + thr.method + ", chosen on training predictions: " + (thr.source || "?") + ")" : ""));
  }
  const macro = m.classes && m.classes.length ? "macro " : "";  // mean one-vs-rest AUC of several classes
  addRow(dl, "Hold-out test " + macro + "AUC", auc(m.metrics || {}, "test"));
  addRow(dl, "Cross-validated " + macro + "AUC", auc(m.metrics || {}, "cv"));
  const training = m.training || {};
  addRow(dl, "Training cohort", training.n_cases ? training.n_cases + " cases (" + (training.scheme || "") + ")" : null);
  // negatives / positives of a two-class model, one count per class of a multi-class one
  const counts = training.counts ? Object.entries(training.counts) : [];
  addRow(dl, "Training cases per class", counts.length ? counts.map(([k, v]) => k + " " + v).join(", ") : null);
  addRow(dl, "Lesion input", m.inputs.video ? "a box on one frame of the clip (followed through the clip)" :
    { none: "none (no image)", mask: "a delineated mask", "mask or box": "a mask or a box",
      automatic: "found automatically (a box helps box-prompted networks)" }[m.inputs.lesion]);
  addRow(dl, "Heat map", m.heat_map ? "yes" : "no");
  addRow(dl, "Toolkit version", m.version);
  card.append(dl);
}

function clinicalInput(field) {
  let input;
  if (field.levels && field.levels.length) {
    input = document.createElement("select");
    const empty = document.createElement("option");
    empty.value = ""; empty.textContent = "(unknown)";
    input.append(empty);
    for (const level of field.levels) {
      const opt = document.createElement("option");
      opt.value = level; opt.textContent = level;
      input.append(opt);
    }
  } else {
    input = document.createElement("input");
    input.type = field.type === "numeric" ? "number" : "text";
    if (field.type === "numeric") {
      input.step = "any";
      if (field.range) { input.min = field.range[0]; input.max = field.range[1]; }
      if (field.median !== undefined) input.placeholder = "training median " + field.median;
    }
  }
  input.id = "clin-" + field.name;
  input.dataset.column = field.name;
  input.dataset.type = field.type;
  return input;
}

function showClinical(m) {
  const box = $("clinical");
  box.replaceChildren();
  const fields = m.inputs.clinical || [];
  $("clinical-none").hidden = fields.length > 0;
  for (const field of fields) {
    const label = document.createElement("label");
    label.htmlFor = "clin-" + field.name;
    let text = field.name + (field.unit ? " (" + field.unit + ")" : "");
    if (field.range) text += " [training " + field.range[0] + "-" + field.range[1] + "]";
    label.textContent = text;
    box.append(label, clinicalInput(field));
  }
}

function selectModel() {
  state.model = state.models.find((m) => m.id === $("model").value) || null;
  if (!state.model) return;
  $("result").hidden = true;  // the answer shown was another model's
  showCard(state.model);
  showClinical(state.model);
  const lesion = state.model.inputs.lesion;
  $("auto-mask").hidden = !state.model.segmentation;
  $("case-panel").hidden = !state.model.inputs.image;
  $("video-panel").hidden = !state.model.inputs.video;
  $("method").disabled = !state.model.heat_map;
  $("lesion-hint").textContent = lesion === "mask" ? "This model reads a delineated mask: upload it." :
    lesion === "automatic" ? "This model finds the lesion itself; draw a box to help a box-prompted network." :
    "Draw the lesion box on the image with the mouse (or upload a mask).";
}

// ------------------------------------------------------------------ image and box
function draw() {
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (state.image) ctx.drawImage(state.image, 0, 0, canvas.width, canvas.height);
  if (state.maskOutline) ctx.drawImage(state.maskOutline, 0, 0, canvas.width, canvas.height);
  const b = state.drag || state.box;
  if (b) {
    ctx.strokeStyle = "#ffd400"; ctx.lineWidth = 2;
    ctx.strokeRect(b[0] / state.scale, b[1] / state.scale, b[2] / state.scale, b[3] / state.scale);
  }
}

function showImage(source) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => {
      const canvas = $("canvas");
      const width = Math.min(img.naturalWidth, 640);
      state.scale = img.naturalWidth / width;
      canvas.width = width;
      canvas.height = Math.round(img.naturalHeight / state.scale);
      state.image = img;
      draw();
      resolve();
    };
    img.onerror = () => reject(new Error("The browser cannot show this image."));
    img.src = source;
  });
}

async function chooseImage() {
  const file = $("image-file").files[0];
  state.imageFile = file || null;
  state.box = null; state.maskBlob = null; state.maskOutline = null;
  $("box").value = "";
  $("result").hidden = true;
  if (!file) { state.image = null; draw(); return; }
  const head = new Uint8Array(await file.slice(0, 132).arrayBuffer());
  const isDicom = head.length >= 132 && String.fromCharCode(...head.slice(128, 132)) === "DICM";
  try {
    if (isDicom) {
      status("DICOM: the server de-identifies it and sends back a preview ...");
      const form = new FormData();
      form.append("image", file);
      const answer = await api("/api/preview", { method: "POST", body: form });
      await showImage("data:image/png;base64," + answer.png_base64);
    } else {
      await showImage(URL.createObjectURL(file));
    }
    status("Image loaded (" + Math.round(state.image.naturalWidth) + " x " + Math.round(state.image.naturalHeight) + " pixels).");
  } catch (e) { status(e.message, true); }
}

function canvasPoint(event) {
  const rect = $("canvas").getBoundingClientRect();
  const sx = $("canvas").width / rect.width, sy = $("canvas").height / rect.height;
  const x = Math.max(0, Math.min($("canvas").width, (event.clientX - rect.left) * sx));
  const y = Math.max(0, Math.min($("canvas").height, (event.clientY - rect.top) * sy));
  return [x * state.scale, y * state.scale];
}

function boxFrom(a, b) {
  const x = Math.round(Math.min(a[0], b[0])), y = Math.round(Math.min(a[1], b[1]));
  return [x, y, Math.round(Math.max(a[0], b[0])) - x, Math.round(Math.max(a[1], b[1])) - y];
}

function startDrag(event) {
  if (!state.image) return;
  state.dragStart = canvasPoint(event);
  state.drag = [...state.dragStart, 0, 0];
  event.preventDefault();
}

function moveDrag(event) {
  if (!state.dragStart) return;
  state.drag = boxFrom(state.dragStart, canvasPoint(event));
  draw();
}

function endDrag(event) {
  if (!state.dragStart) return;
  const b = boxFrom(state.dragStart, canvasPoint(event));
  state.dragStart = null; state.drag = null;
  if (b[2] >= 2 && b[3] >= 2) {
    state.box = b;
    $("box").value = b.join(",");
  }
  draw();
}

function typedBox() {
  const parts = $("box").value.split(",").map((v) => Number(v.trim()));
  state.box = parts.length === 4 && parts.every(Number.isFinite) ? parts : null;
  draw();
}

// ------------------------------------------------------------------ automatic mask
async function outlineOf(pngBase64) {
  const img = new Image();
  await new Promise((resolve, reject) => { img.onload = resolve; img.onerror = reject; img.src = "data:image/png;base64," + pngBase64; });
  const off = document.createElement("canvas");
  off.width = img.naturalWidth; off.height = img.naturalHeight;
  const ctx = off.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, off.width, off.height);
  const out = ctx.createImageData(off.width, off.height);
  const on = (x, y) => x >= 0 && y >= 0 && x < off.width && y < off.height && data.data[4 * (y * off.width + x)] > 127;
  for (let y = 0; y < off.height; y++) {
    for (let x = 0; x < off.width; x++) {
      if (on(x, y) && !(on(x - 1, y) && on(x + 1, y) && on(x, y - 1) && on(x, y + 1))) {
        const i = 4 * (y * off.width + x);
        out.data[i] = 0; out.data[i + 1] = 230; out.data[i + 2] = 90; out.data[i + 3] = 255;
      }
    }
  }
  ctx.putImageData(out, 0, 0);
  return off;
}

async function autoMask() {
  if (!state.imageFile) { status("Choose an image first.", true); return; }
  const form = new FormData();
  form.append("image", state.imageFile);
  if (state.box) form.append("box", state.box.join(","));
  status("Finding the lesion ...");
  try {
    const answer = await api("/api/models/" + encodeURIComponent(state.model.id) + "/segment", { method: "POST", body: form });
    const bytes = Uint8Array.from(atob(answer.mask_png_base64), (c) => c.charCodeAt(0));
    state.maskBlob = new Blob([bytes], { type: "image/png" });
    state.maskOutline = await outlineOf(answer.mask_png_base64);
    draw();
    status("Lesion found by " + answer.network + " (confidence " + fmt(answer.confidence, 2) + "); it is sent as the mask.");
  } catch (e) { status(e.message, true); }
}

// ------------------------------------------------------------------ predict
function clinicalValues() {
  const out = {};
  for (const input of $("clinical").querySelectorAll("[data-column]")) {
    if (input.value === "") continue;
    out[input.dataset.column] = input.dataset.type === "numeric" ? Number(input.value) : input.value;
  }
  return out;
}

async function predictClip() {
  const m = state.model;
  const clip = $("clip-file").files[0];
  if (!clip) { status("Choose a clip first.", true); return; }
  const form = new FormData();
  form.append("model", m.id);
  form.append("clip", clip);
  form.append("box", $("clip-box").value);
  form.append("key_frame", $("key-frame").value || "0");
  const clinical = clinicalValues();
  if (Object.keys(clinical).length) form.append("clinical", JSON.stringify(clinical));
  $("predict").disabled = true;
  $("result").hidden = true;
  status("Sending the clip ...");
  try {
    const response = await fetch("/api/predict/video", { method: "POST", body: form, headers: headers() });
    if (!response.ok) throw await failure(response);
    let frames = 0, answer = null;
    for await (const line of ndjson(response)) {
      if (line.type === "frame") { frames += 1; status("Frame " + frames + ": " + line.source + (line.qc !== "ok" ? " (" + line.qc + ")" : "")); }
      else answer = line;
    }
    if (!answer) throw new Error("The stream ended without an answer.");
    if (answer.type === "error") throw new Error(answer.error + (answer.field ? " [" + answer.field + "]" : ""));
    showResult(answer);
    const counts = Object.entries(answer.frames || {}).filter(([, n]) => n).map(([k, n]) => k + " " + n).join(", ");
    status(frames + " frames read (" + counts + "). Done.");
  } catch (e) {
    status(e.message, true);
  } finally {
    $("predict").disabled = false;
  }
}

async function predict() {
  const m = state.model;
  if (!m) return;
  if (m.inputs.video) { await predictClip(); return; }
  const form = new FormData();
  if (m.inputs.image) {
    if (!state.imageFile) { status("Choose an image first.", true); return; }
    form.append("image", state.imageFile);
    const maskFile = $("mask-file").files[0];
    if (maskFile) form.append("mask", maskFile);
    else if (state.maskBlob) form.append("mask", state.maskBlob, "mask.png");
    else if (state.box) form.append("box", state.box.join(","));
  }
  const clinical = clinicalValues();
  if (Object.keys(clinical).length) form.append("clinical", JSON.stringify(clinical));
  if (m.heat_map) form.append("method", $("method").value);
  $("predict").disabled = true;
  status("Computing ...");
  try {
    const r = await api("/api/models/" + encodeURIComponent(m.id) + "/predict", { method: "POST", body: form });
    showResult(r);
    status("Done.");
  } catch (e) {
    status(e.message, true);
  } finally {
    $("predict").disabled = false;
  }
}

function showClassProbabilities(r) {
  const table = $("class-probabilities");
  const body = table.querySelector("tbody");
  body.replaceChildren();
  const probs = r.class_probabilities || {};
  for (const [name, p] of Object.entries(probs)) {
    const tr = document.createElement("tr");
    if (name === r.class_name) tr.className = "predicted";
    for (const text of [name, fmt(p)]) {
      const td = document.createElement("td"); td.textContent = text; tr.append(td);
    }
    body.append(tr);
  }
  table.hidden = !Object.keys(probs).length;
}

function showResult(r) {
  $("result").hidden = false;
  const multi = !!r.class_name;
  $("probability-label").textContent = multi ? "Most probable class" : "Probability";
  $("probability").textContent = multi ? r.class_name + " (" + fmt(r.probability) + ")" : fmt(r.probability);
  $("threshold-line").hidden = multi;
  $("threshold").textContent = fmt(r.threshold);
  const task = (state.model && state.model.task) || {};
  const names = r.predicted_class === 1 ? task.positive : task.negative;
  $("class").textContent = r.predicted_class + (names && names.length ? " (" + names.join(", ") + ")" : "");
  showClassProbabilities(r);
  const list = $("warnings");
  list.replaceChildren();
  for (const text of [...(r.warnings || []), ...(r.notes || [])]) {
    const li = document.createElement("li"); li.textContent = text; list.append(li);
  }
  $("provenance").textContent = JSON.stringify({ model: r.name, version: r.version, ...r.provenance }, null, 2);
  const img = $("heatmap");
  if (r.heat_map) {
    img.src = "data:image/png;base64," + r.heat_map.png_base64;
    img.hidden = false;
    $("heatmap-caption").textContent = r.heat_map.method + " for class " + r.heat_map.explained_class + "; " +
      Math.round(100 * r.heat_map.lesion_share) + "% of the heat inside the lesion (yellow: the network's crop).";
  } else {
    img.hidden = true; img.removeAttribute("src");
    $("heatmap-caption").textContent = "";
  }
}

// ------------------------------------------------------------------ start
async function loadModels() {
  try {
    const health = await api("/api/health");
    $("version").textContent = "her2dlr " + health.version;
    state.models = await api("/api/models");
    const select = $("model");
    select.replaceChildren();
    for (const m of state.models) {
      const opt = document.createElement("option");
      opt.value = m.id; opt.textContent = m.name;
      select.append(opt);
    }
    selectModel();
    status(state.models.length + " model(s).");
  } catch (e) { status(e.message, true); }
}

window.addEventListener("DOMContentLoaded", () => {
  $("model").addEventListener("change", selectModel);
  $("image-file").addEventListener("change", chooseImage);
  $("mask-file").addEventListener("change", () => { state.maskBlob = null; state.maskOutline = null; draw(); });
  $("box").addEventListener("change", typedBox);
  $("clear-box").addEventListener("click", () => { state.box = null; $("box").value = ""; draw(); });
  $("auto-mask").addEventListener("click", autoMask);
  $("predict").addEventListener("click", predict);
  $("token-save").addEventListener("click", () => {
    sessionStorage.setItem("her2dlr-token", $("token").value);
    $("token-row").hidden = true;
    loadModels();
  });
  const canvas = $("canvas");
  canvas.addEventListener("mousedown", startDrag);
  window.addEventListener("mousemove", moveDrag);
  window.addEventListener("mouseup", endDrag);
  loadModels();
});
