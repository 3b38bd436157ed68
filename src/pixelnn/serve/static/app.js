// PixelNN web app: choose, upload or draw an input; show the candidates; hover a pixel to see its source.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  model: null,      // /api/model
  result: null,     // the last /api/synthesize answer
  corr: new Map(),  // correspondence-map URL -> Promise of its JSON
  selected: null,   // index of the candidate shown in the detail panel
  example: null,    // index of the chosen example
  strokes: [],      // the drawing: [{width, points: [[x, y], ...]}]
  busy: false,
  pending: null,    // [fields, blob, filename] of a request made while another was running
  hoverToken: 0,
};

// ---------- talking to the server ----------

async function api(url, options) {
  const response = await fetch(url, options);
  let body;
  try {
    body = await response.json();
  } catch (err) {
    body = { error: `${response.status} ${response.statusText}` };
  }
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function corrMap(cand) {
  if (!state.corr.has(cand.corr)) state.corr.set(cand.corr, api(cand.corr));
  return state.corr.get(cand.corr);
}

function setStatus(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.className = kind || "";
}

// ---------- start-up ----------

async function init() {
  bindTabs();
  bindSketch();
  bindControls();
  try {
    state.model = await api("/api/model");
  } catch (err) {
    setStatus(`cannot load the model: ${err.message}`, "error");
    return;
  }
  describeModel(state.model);
  loadExamples();
}

function describeModel(m) {
  const [h, w, c] = m.input_shape;
  $("model-info").textContent =
    `${m.signal} input ${h}×${w}×${c} → ${m.size}×${m.size} output · bank of ${m.bank_size} exemplars` +
    (m.labels.length ? ` · ${m.labels.length} labels` : "");
  $("grid").value = m.default_grid;
  $("copy").replaceChildren(...m.copy_modes.map((mode) => new Option(mode, mode)));
  $("copy").value = m.default_copy;
  const select = $("label");
  for (const label of m.labels) select.append(new Option(label, label));
  select.disabled = !m.labels.length;
  if (!m.labels.length) select.options[0].textContent = "(the bank has no labels)";
  const hints = {
    "edge map": `Draw dark strokes on white, like the edge maps it was trained on; the drawing is resized to ${h}×${w}.`,
    photo: `The drawing is taken as a photo: the model sees it at ${h}×${w}.`,
    input: `The drawing is used as the input image, resized to ${h}×${w}.`,
  };
  $("draw-hint").textContent = hints[m.drawing];
  // strokes about as thick as the training edge maps: ~3 input pixels
  $("pen").value = String(Math.min(16, Math.max(4, Math.round((3 * $("sketch").width) / h))));
  const photo = document.querySelector('input[name="kind"][value="photo"]');
  photo.disabled = !m.photo_inputs;
  document.querySelector(`input[name="kind"][value="${m.photo_inputs ? "photo" : "input"}"]`).checked = true;
  $("upload-hint").textContent =
    (m.photo_inputs ? "A photo is turned into the model's input; an input image is used as it is. " :
      "This model was trained on paired files: upload an input image. ") +
    `At most ${m.max_upload_mb} MB and ${m.max_megapixels} megapixels; PNG, JPEG, WebP, BMP or GIF.`;
}

async function loadExamples() {
  let list;
  try {
    list = (await api("/api/examples")).examples;
  } catch (err) {
    $("examples-hint").textContent = `cannot list examples: ${err.message}`;
    return;
  }
  if (list.length && list[0].kind === "bank") {
    $("examples-hint").textContent = "Inputs from the bank itself (start the server with --val for held-out " +
      "photos): each one's nearest exemplar is itself. Click one to synthesize from it.";
  }
  const box = $("examples");
  for (const ex of list) {
    const img = document.createElement("img");
    img.src = ex.thumb;
    img.alt = ex.name;
    img.title = ex.name;
    img.dataset.index = ex.index;
    img.addEventListener("click", () => {
      state.example = ex.index;
      for (const other of box.children) other.classList.toggle("chosen", other === img);
      synthesize({ source: "example", example: String(ex.index) });
    });
    box.append(img);
  }
}

// ---------- tabs ----------

function bindTabs() {
  for (const button of document.querySelectorAll(".tabs button")) {
    button.addEventListener("click", () => showTab(button.dataset.tab));
  }
}

function showTab(name) {
  for (const button of document.querySelectorAll(".tabs button")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  for (const tab of document.querySelectorAll(".tab")) tab.hidden = tab.id !== `tab-${name}`;
}

function activeTab() {
  return document.querySelector(".tabs button.active").dataset.tab;
}

// ---------- the drawing canvas ----------

function bindSketch() {
  const canvas = $("sketch");
  let stroke = null;
  const point = (e) => {
    const rect = canvas.getBoundingClientRect();
    return [(e.clientX - rect.left) * canvas.width / rect.width, (e.clientY - rect.top) * canvas.height / rect.height];
  };
  canvas.addEventListener("pointerdown", (e) => {
    canvas.setPointerCapture(e.pointerId);
    stroke = { width: Number($("pen").value), points: [point(e)] };
    state.strokes.push(stroke);
    redraw();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!stroke) return;
    stroke.points.push(point(e));
    redraw();
  });
  const end = () => { stroke = null; };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  $("sketch-clear").addEventListener("click", () => { state.strokes = []; redraw(); });
  $("sketch-undo").addEventListener("click", () => { state.strokes.pop(); redraw(); });
  redraw();
}

function redraw() {
  const canvas = $("sketch");
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = "#000";
  ctx.fillStyle = "#000";
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  for (const s of state.strokes) {
    ctx.lineWidth = s.width;
    if (s.points.length === 1) {
      const [x, y] = s.points[0];
      ctx.beginPath();
      ctx.arc(x, y, s.width / 2, 0, 2 * Math.PI);
      ctx.fill();
      continue;
    }
    ctx.beginPath();
    ctx.moveTo(...s.points[0]);
    for (const p of s.points.slice(1)) ctx.lineTo(...p);
    ctx.stroke();
  }
}

function sketchBlob() {
  return new Promise((resolve) => $("sketch").toBlob(resolve, "image/png"));
}

// ---------- controls and synthesis ----------

function bindControls() {
  $("grid").addEventListener("change", () => { $("grid-custom").hidden = $("grid").value !== "custom"; });
  $("go").addEventListener("click", synthesizeActive);
  $("again").addEventListener("click", resynthesize);
  $("label").addEventListener("change", () => { if (state.result) resynthesize(); });
  $("copy").addEventListener("change", () => { if (state.result) resynthesize(); });
  $("like-file").addEventListener("change", () => {
    $("like-clear").hidden = !$("like-file").files.length;
    if (state.result) resynthesize();
  });
  $("like-clear").addEventListener("click", () => {
    $("like-file").value = "";
    $("like-clear").hidden = true;
    if (state.result) resynthesize();
  });
  $("upload-file").addEventListener("change", () => {
    const file = $("upload-file").files[0];
    if (!file) return;
    const preview = $("upload-preview");
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    synthesizeActive();
  });
}

async function synthesizeActive() {
  const tab = activeTab();
  if (tab === "draw") {
    if (!state.strokes.length) return setStatus("draw something first", "error");
    return synthesize({ source: "sketch" }, await sketchBlob(), "drawing.png");
  }
  if (tab === "examples") {
    if (state.example === null) return setStatus("click an example first", "error");
    return synthesize({ source: "example", example: String(state.example) });
  }
  const file = $("upload-file").files[0];
  if (!file) return setStatus("choose a file first", "error");
  const kind = document.querySelector('input[name="kind"]:checked').value;
  return synthesize({ source: "upload", kind }, file, file.name);
}

function resynthesize() {
  // the result to reuse is read when the request starts: after a synthesis still running, its own result
  if (state.result || state.busy) synthesize(() => (state.result ? { source: "result", result: state.result.id } : null));
}

function gridValue() {
  return $("grid").value === "custom" ? $("grid-custom").value.trim() : $("grid").value;
}

// fields: the form fields naming the input, or a function that returns them when the request starts
async function synthesize(fields, blob, filename) {
  if (state.busy) {
    state.pending = [fields, blob, filename]; // the latest request waits for the running one
    return setStatus("queued: starts when the running synthesis ends", "busy");
  }
  if (typeof fields === "function") fields = fields();
  if (!fields) return;
  const form = new FormData();
  for (const [key, value] of Object.entries(fields)) form.append(key, value);
  if (blob) form.append("image", blob, filename);
  form.append("grid", gridValue());
  form.append("copy", $("copy").value);
  if ($("label").value) form.append("labels", $("label").value);
  const like = $("like-file").files[0];
  if (like) {
    form.append("like", like, like.name);
    form.append("like_k", $("like-k").value);
  }
  state.busy = true;
  const started = performance.now();
  const tick = setInterval(() => {
    const seconds = ((performance.now() - started) / 1000).toFixed(0);
    setStatus(`synthesizing… ${seconds} s${state.pending ? " (another request queued)" : ""}`, "busy");
  }, 500);
  setStatus("synthesizing…", "busy");
  try {
    const result = await api("/api/synthesize", { method: "POST", body: form });
    showResult(result);
    const notes = (result.notes || []).map((n) => `; ${n}`).join("");
    setStatus(`${result.candidates.length} candidates in ${result.seconds} s${notes}`, "ok");
  } catch (err) {
    setStatus(err.message, "error");
  } finally {
    clearInterval(tick);
    state.busy = false;
    $("again").disabled = !state.result;
  }
  if (state.pending) {
    const next = state.pending;
    state.pending = null;
    synthesize(...next);
  }
}

// ---------- results ----------

function showResult(result) {
  state.result = result;
  state.corr.clear();
  $("empty").hidden = true;
  $("head").hidden = false;
  $("input-img").src = result.input;
  $("mask-fig").hidden = !result.mask;
  if (result.mask) $("mask-img").src = result.mask;
  $("input-caption").textContent = result.mask ? "input: surface normals" : "input";
  $("stage1-img").src = result.stage1;
  $("original-fig").hidden = !result.original;
  if (result.original) $("original-img").src = result.original;
  const r = result.request;
  const limits = [r.labels ? `label ${r.labels.join(", ")}` : null, r.ids ? `${r.ids.length} chosen ids` : null,
    r.like_k ? `the ${r.like_k} nearest the example image` : null].filter(Boolean);
  $("summary").textContent = `${result.title} · grid ${r.grid} · copy ${r.copy} · exemplars: ${limits.length ? limits.join(" and ") : "all"} · ` +
    `global neighbours ${result.neighbours.map(([i, s]) => `#${i} (${s.toFixed(2)})`).join(", ")}`;
  const box = $("candidates");
  box.replaceChildren(...result.candidates.map(candidateFigure));
  clearSource();
  select(0);
}

function displaySize(size) {
  return size >= 128 ? size : size * Math.ceil(128 / size);
}

function candidateFigure(cand) {
  const fig = document.createElement("figure");
  fig.className = "cand";
  fig.dataset.index = cand.index;
  const wrap = document.createElement("div");
  wrap.className = "cand-wrap";
  const img = document.createElement("img");
  img.src = cand.image;
  img.width = img.height = displaySize(cand.shape[1]);
  img.alt = `candidate ${cand.spec}`;
  img.draggable = false;
  const marker = document.createElement("div");
  marker.className = "pixel-marker";
  marker.hidden = true;
  wrap.append(img, marker);
  const caption = document.createElement("figcaption");
  caption.textContent = `#${cand.rank} ${cand.spec} · score ${cand.score === null ? "n/a" : cand.score.toFixed(2)}`;
  fig.append(wrap, caption);
  img.addEventListener("mouseenter", () => corrMap(cand));
  img.addEventListener("mousemove", (e) => hover(cand, img, marker, e));
  img.addEventListener("mouseleave", () => { marker.hidden = true; });
  img.addEventListener("click", () => select(cand.index));
  return fig;
}

async function hover(cand, img, marker, e) {
  const token = ++state.hoverToken;
  const rect = img.getBoundingClientRect();
  const [H, W] = cand.shape;
  const px = Math.min(W - 1, Math.max(0, Math.floor((e.clientX - rect.left) / rect.width * W)));
  const py = Math.min(H - 1, Math.max(0, Math.floor((e.clientY - rect.top) / rect.height * H)));
  placeMarker(marker, px, py, W, H);
  marker.hidden = false;
  let corr;
  try {
    corr = await corrMap(cand);
  } catch (err) {
    return setStatus(`cannot load the correspondences: ${err.message}`, "error");
  }
  if (token !== state.hoverToken) return; // the mouse has moved on
  showSource(cand, px, py, corr);
}

function placeMarker(marker, x, y, W, H) {
  marker.style.left = `${(100 * (x + 0.5)) / W}%`;
  marker.style.top = `${(100 * (y + 0.5)) / H}%`;
}

function showSource(cand, px, py, corr) {
  const ex = corr.exemplar[py][px];
  const sy = corr.sy[py][px];
  const sx = corr.sx[py][px];
  const info = state.result.exemplars[String(ex)] || { id: ex, label: null, name: "", photo: `/api/exemplars/${ex}/photo.png` };
  const photo = $("source-photo");
  if (photo.getAttribute("src") !== info.photo) photo.src = info.photo;
  const marker = $("source-marker");
  placeMarker(marker, sx, sy, corr.shape[1], corr.shape[0]);
  $("source-empty").hidden = true;
  $("source").hidden = false;
  const inspector = $("inspector");
  Object.assign(inspector.dataset, { exemplar: ex, sy, sx, py, px, candidate: cand.index });
  const share = cand.shares.find(([id]) => id === ex);
  $("source-info").replaceChildren(
    line(["b", `exemplar #${ex}`], info.label ? ` · ${info.label}` : " · (no label)"),
    line(`${info.name}`),
    line(`output pixel (row ${py}, col ${px}) ← exemplar pixel (row ${sy}, col ${sx})`),
    line(`similarity ${corr.sim[py][px].toFixed(3)} · this exemplar gives ${share ? (100 * share[1]).toFixed(1) : "?"}% of candidate ${cand.spec}`),
  );
  for (const row of $("shares").children) row.classList.toggle("hot", row.dataset.exemplar === String(ex));
}

function line(...parts) {
  const div = document.createElement("div");
  for (const part of parts) {
    if (Array.isArray(part)) {
      const el = document.createElement(part[0]);
      el.textContent = part[1];
      div.append(el);
    } else {
      div.append(document.createTextNode(part));
    }
  }
  return div;
}

function clearSource() {
  $("source").hidden = true;
  $("source-empty").hidden = false;
  for (const key of ["exemplar", "sy", "sx", "py", "px", "candidate"]) delete $("inspector").dataset[key];
}

// ---------- the selected candidate: provenance and downloads ----------

function select(index) {
  const cand = state.result.candidates[index];
  if (!cand) return;
  state.selected = index;
  for (const fig of $("candidates").children) fig.classList.toggle("selected", fig.dataset.index === String(index));
  $("detail-empty").hidden = true;
  $("detail").hidden = false;
  $("detail-title").textContent = `candidate #${cand.rank}: ${cand.spec} · score ${cand.score === null ? "n/a" : cand.score.toFixed(3)} · mean similarity ${cand.sim.toFixed(3)}` +
    (cand.voted === null ? "" : ` · voting ${Math.round(cand.voted * 100)}%`);
  const stem = `pixelnn-${state.result.id.slice(0, 8)}-cand-${index}`;
  $("downloads").replaceChildren(
    download(cand.image, `${stem}.png`, "output PNG"),
    download(cand.npz, `${stem}.corr.npz`, "correspondences .npz"),
    download(cand.corr, `${stem}.corr.json`, ".json"),
    download(cand.figure, `${stem}.sources.png`, "sources PNG"),
  );
  const colours = palette(8);
  const rows = cand.shares.slice(0, 8).map(([id, share], k) => shareRow(id, share, colours[k]));
  const rest = cand.shares.slice(8);
  if (rest.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = `${rest.length} other exemplars: ${(100 * rest.reduce((a, [, s]) => a + s, 0)).toFixed(1)}%`;
    rows.push(li);
  }
  $("shares").replaceChildren(...rows);
  $("figure").src = cand.figure;
}

function download(url, name, text) {
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.textContent = text;
  return a;
}

function shareRow(id, share, colour) {
  const info = state.result.exemplars[String(id)];
  const li = document.createElement("li");
  li.dataset.exemplar = id;
  const swatch = document.createElement("span");
  swatch.className = "swatch";
  swatch.style.background = colour;
  const img = document.createElement("img");
  img.src = info.photo;
  img.alt = "";
  const text = document.createElement("span");
  text.textContent = `#${id} ${info.label || ""} `;
  const bar = document.createElement("span");
  bar.className = "bar";
  bar.style.width = `${Math.max(1, 60 * share)}px`;
  bar.style.background = colour;
  const pct = document.createElement("span");
  pct.textContent = ` ${(100 * share).toFixed(1)}%`;
  li.append(swatch, img, text, bar, pct);
  return li;
}

// the colours of report/correspondence.py's palette(): hue steps of the golden ratio
function palette(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const [r, g, b] = hsv((i * 0.61803) % 1, 0.85, 0.95);
    out.push(`rgb(${Math.round(255 * r)}, ${Math.round(255 * g)}, ${Math.round(255 * b)})`);
  }
  return out;
}

function hsv(h, s, v) {
  const i = Math.floor(h * 6);
  const f = h * 6 - i;
  const p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  return [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][i % 6];
}

document.addEventListener("DOMContentLoaded", init);
