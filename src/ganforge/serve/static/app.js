// The page: its controls come from what each model can do (/api/models), never from the model's name.
// State lives in the URL (?model=&seed=&truncation=&class=), so any image can be shared as a link.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], model: null, seed: null, truncation: null, cls: "" };
const METRICS = { "eval/fid": "FID (its run's extractor)", "eval/kid": "KID", "eval/precision": "precision",
  "eval/recall": "recall", "eval/is": "Inception score", "eval/l1": "L1 to the targets",
  "health/diversity_ratio": "diversity (to the data's)" };
let playing = null;  // the interpolation animation's timer
let asked = 0;       // the newest request for the main image: an older answer arriving late is dropped
const urls = {};     // the object URL each <img> shows, revoked when replaced

function randomSeed() {
  const a = new Uint32Array(1);
  crypto.getRandomValues(a);
  return String(a[0] >>> 1);  // [0, 2**31): exact in JavaScript numbers
}

function cleanSeed(text) {
  const s = String(text).trim();
  return /^\d{1,19}$/.test(s) ? s.replace(/^0+(?=\d)/, "") : null;  // seeds stay strings: 2**63 is past 2**53
}

function status(text) { $("status").textContent = text || ""; }

async function fetchImage(url, img, options, current = () => true) {
  // a PNG into an <img>; an error's `detail` into the status line (never a broken image). `current()` says,
  // once the answer is in, whether it is still wanted (false: a newer request replaced it; nothing is shown)
  const res = await fetch(url, options);
  if (!current()) return null;
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  const blob = await res.blob();
  if (!current()) return null;
  if (urls[img.id]) URL.revokeObjectURL(urls[img.id]);
  urls[img.id] = URL.createObjectURL(blob);
  await new Promise((resolve, reject) => {
    img.onload = resolve; img.onerror = () => reject(new Error("the image did not decode"));
    img.src = urls[img.id];
  });
  img.hidden = false;
  return res;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  return q.toString();
}

function truncationParam(m) {
  const t = m.truncation;
  if (!t || state.truncation === null) return null;
  if (t.kind === "psi" && Number(state.truncation) === 1) return null;  // psi 1: no truncation
  return state.truncation;
}

function pageParams() {
  const m = state.model;
  return { model: m.name, seed: state.seed, truncation: truncationParam(m), class: state.cls };
}

function syncUrl() {
  history.replaceState(null, "", "?" + query(pageParams()));
  $("share").href = location.href;
}

async function show() {
  const m = state.model;
  if (m.capabilities.translates) { syncUrl(); return; }
  $("seed").value = state.seed;
  syncUrl();
  const img = $("main");
  const q = query(pageParams()), seed = state.seed, mine = ++asked;
  try {
    if (!await fetchImage("/api/generate?" + q, img, undefined, () => mine === asked)) return;
    img.dataset.seed = seed;
    img.dataset.query = q;  // what the image shows, for tests and tools
    img.alt = `a generated ${m.thing}, seed ${seed}`;
    status("");
  } catch (e) { if (mine === asked) status(e.message); }
}

function setupTruncation(m) {
  const box = $("truncation-box"), slider = $("truncation"), out = $("truncation-value");
  const t = m.truncation;
  box.hidden = !t;
  if (!t) { state.truncation = null; return; }
  slider.min = t.slider[0]; slider.max = t.slider[1]; slider.step = 0.05;
  box.title = t.help;
  // a value from a shared link stays as it is, even where the slider cannot show it (psi 1.5, T 3.5): the link
  // must give the same image; the slider shows the nearest it can
  if (state.truncation !== null && !Number.isFinite(Number(state.truncation))) state.truncation = null;
  const start = state.truncation !== null ? Number(state.truncation) : (t.default ?? t.slider[1]);
  slider.value = Math.min(t.slider[1], Math.max(t.slider[0], start));
  const label = (v) => {
    out.textContent = t.kind === "threshold" && v >= t.slider[1] && state.truncation === null ? "off"
      : `${t.kind === "psi" ? "ψ" : "T"} = ${v.toFixed(2)}`;
  };
  label(start);
  slider.oninput = () => label(Number(slider.value));
  slider.onchange = () => {
    const v = Number(slider.value);
    state.truncation = t.kind === "threshold" && v >= t.slider[1] ? null : slider.value;  // the right end: off
    label(v); show();
  };
}

function setupClasses(m) {
  const box = $("class-box"), select = $("class");
  box.hidden = !m.capabilities.conditional;
  select.length = 1;
  m.classes.forEach((name, i) => select.add(new Option(`${i}: ${name}`, name)));
  if (/^\d+$/.test(state.cls) && !m.classes.includes(state.cls) && Number(state.cls) < m.classes.length) {
    state.cls = m.classes[Number(state.cls)];  // a class by index in a link
  }
  if (!m.classes.includes(state.cls)) state.cls = "";
  select.value = state.cls;
  select.onchange = () => { state.cls = select.value; show(); };
}

function fillCard(m) {
  const list = $("card-list");
  list.replaceChildren();
  const row = (term, value) => {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = term;
    if (value instanceof Node) dd.append(value); else dd.textContent = value;
    list.append(dt, dd);
  };
  const paper = document.createElement(m.paper.url ? "a" : "span");
  paper.textContent = m.paper.text;
  if (m.paper.url) { paper.href = m.paper.url; paper.rel = "noopener"; }
  row("Architecture", m.model);
  row("Paper", paper);
  row("Trained on", m.data);
  row("Image size", `${m.resolution}×${m.resolution}, ${m.channels === 1 ? "grey" : "colour"}`);
  row("Parameters (G)", m.parameters.toLocaleString("en"));
  row("Training steps", m.step ?? "unknown");
  row("Checkpoint", m.checkpoint);
  const caps = [];
  if (m.capabilities.has_mapping) caps.push("mapping network (truncation ψ, style mixing)");
  if (m.capabilities.conditional) caps.push(`${m.classes.length} classes`);
  if (m.capabilities.translates) caps.push("image-to-image translation");
  if (m.capabilities.noise) caps.push("per-pixel noise");
  row("Can do", caps.join("; ") || "sample from a latent");
  for (const [k, v] of Object.entries(m.metrics)) row(METRICS[k] || k, Number(v).toPrecision(4));
}

function selectModel(name) {
  const m = state.models.find((x) => x.name === name) || state.models[0];
  state.model = m;
  $("model").value = m.name;
  document.title = `This ${m.thing} does not exist · ganforge`;
  $("title").textContent = m.capabilities.translates ? `Translate an image into a ${m.thing}` : `This ${m.thing} does not exist`;
  const latent = !m.capabilities.translates;
  for (const id of ["frame", "main", "new", "seed-form", "share", "interp-box"]) $(id).hidden = !latent;
  $("translate-box").hidden = latent;
  $("mix-box").hidden = !m.mixing;
  $("mix-img").hidden = true;
  if (playing) { clearInterval(playing); playing = null; }  // the last model's walk stops with it
  $("interp-strip").hidden = true;
  $("interp-canvas").getContext("2d").clearRect(0, 0, $("interp-canvas").width, $("interp-canvas").height);
  setupTruncation(m);
  setupClasses(m);
  fillCard(m);
  interpSeeds();
}

function interpSeeds() {  // the walk starts at the seed shown and goes to the next one (BigInt: seeds pass 2**53)
  $("interp-a").value = state.seed;
  $("interp-b").value = String((BigInt(state.seed) + 1n) % (2n ** 63n));
}

async function playInterpolation(event) {
  if (event) event.preventDefault();
  const m = state.model, a = cleanSeed($("interp-a").value), b = cleanSeed($("interp-b").value);
  if (a === null || b === null) { status("interpolation: seeds are whole numbers ≥ 0"); return; }
  const strip = $("interp-strip");
  try {
    const res = await fetchImage("/api/interpolate?" + query({ model: m.name, a, b, steps: 24, truncation: truncationParam(m), class: state.cls }), strip);
    const frames = Number(res.headers.get("X-Frames")) || 1;
    const canvas = $("interp-canvas"), ctx = canvas.getContext("2d");
    const side = strip.naturalHeight;
    canvas.width = side; canvas.height = side;
    ctx.imageSmoothingEnabled = false;
    if (playing) clearInterval(playing);
    let i = 0, dir = 1;
    playing = setInterval(() => {  // back and forth, so the loop has no jump
      ctx.drawImage(strip, i * side, 0, side, side, 0, 0, side, side);
      if (i + dir < 0 || i + dir >= frames) dir = -dir;
      i += dir;
    }, 80);
    status("");
  } catch (e) { status(e.message); }
}

async function mix(event) {
  event.preventDefault();
  const m = state.model;
  try {
    await fetchImage("/api/mix?" + query({ model: m.name, rows: state.seed, cols: $("mix-cols").value, truncation: truncationParam(m) }), $("mix-img"));
    status("");
  } catch (e) { status(e.message); }
}

function setupDrawing() {
  // a white sheet and a black pen (pix2pix's edges2shoes demo): strokes with mouse, pen or finger
  const canvas = $("draw"), ctx = canvas.getContext("2d");
  const clear = () => { ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  ctx.lineWidth = 6; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.strokeStyle = "#000";
  let down = false;
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  };
  canvas.onpointerdown = (e) => { down = true; canvas.setPointerCapture(e.pointerId); ctx.beginPath(); ctx.moveTo(...at(e)); };
  canvas.onpointermove = (e) => { if (down) { ctx.lineTo(...at(e)); ctx.stroke(); } };
  canvas.onpointerup = () => { down = false; };
  $("draw-clear").onclick = clear;
  $("draw-go").onclick = () => canvas.toBlob((blob) => translateFile(new File([blob], "drawing.png", { type: "image/png" })), "image/png");
}

async function translateUpload() {
  const file = $("upload").files[0];
  if (file) await translateFile(file);
}

async function translateFile(file) {
  const m = state.model, input = $("upload-in");
  if (urls["upload-in"]) URL.revokeObjectURL(urls["upload-in"]);
  urls["upload-in"] = URL.createObjectURL(file);
  input.src = urls["upload-in"]; input.hidden = false;
  if (file.size > m.limits.max_upload_bytes) { status(`the file is over ${m.limits.max_upload_bytes} bytes`); return; }
  try {
    await fetchImage("/api/translate?" + query({ model: m.name }), $("upload-out"),
      { method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" } });
    status("");
  } catch (e) { status(e.message); }
}

async function main() {
  const res = await fetch("/api/models");
  const info = await res.json();
  state.models = info.models;
  $("version").textContent = info.version;
  const picker = $("model");
  info.models.forEach((m) => picker.add(new Option(`${m.name} (${m.model}, ${m.data})`, m.name)));
  $("model-box").hidden = info.models.length < 2;

  const params = new URLSearchParams(location.search);
  state.seed = cleanSeed(params.get("seed") || "") ?? randomSeed();
  state.truncation = params.get("truncation");
  state.cls = params.get("class") || "";
  selectModel(params.get("model") || info.default);

  picker.onchange = () => { state.truncation = null; state.cls = ""; selectModel(picker.value); show(); };
  $("new").onclick = () => { state.seed = randomSeed(); interpSeeds(); show(); };
  $("seed-form").onsubmit = (e) => {
    e.preventDefault();
    const s = cleanSeed($("seed").value);
    if (s === null) { status("a seed is a whole number from 0 to 2^63 − 1"); return; }
    state.seed = s; interpSeeds(); show();
  };
  $("interp-form").onsubmit = playInterpolation;
  $("mix-form").onsubmit = mix;
  $("upload").onchange = translateUpload;
  setupDrawing();
  await show();
}

main().catch((e) => status(`could not start: ${e.message}`));
