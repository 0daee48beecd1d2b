// The draw-a-digit page: pointer strokes on a canvas, a debounced prediction of the drawing, one bar per class,
// and the 28x28 input the model saw. No framework, no build step. It answers in one of two ways:
// - served by `digitlab serve`: it POSTs the drawing as PNG to /api/predict;
// - exported by `digitlab export --format web` (index.html's <meta name="digitlab-model"> names model.json): it
//   answers itself, with prepare.js (the Python preparation, ported) and the ONNX model in ONNX Runtime Web.
// Both give the same answer object, and `window.digitlab.predict(image)` gives it to scripts and tests.
"use strict";

const DEBOUNCE_MS = 120;   // while drawing, ask at most about 8 times a second
const PEN = 18;            // stroke width on the 280x280 canvas: MNIST strokes are ~1/10 of the digit's height
const MAX_PIXELS = 40e6;   // larger pictures are refused, as by `digitlab predict` (images.MAX_PIXELS)

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d", { willReadFrequently: true }); // the page's own model reads it back
const seen = document.getElementById("seen").getContext("2d");
const label = document.getElementById("label");
const confidence = document.getElementById("confidence");
const message = document.getElementById("message");
const bars = document.getElementById("bars");
const result = document.querySelector(".result");

let classes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
let digits = true;         // a model of digits (its classes are 0..9), or of named classes
let drawing = null;        // the pointer id of the stroke in progress
let last = null;           // the last point of that stroke
let dirty = false;         // anything on the canvas?
let timer = null;
let sent = 0, shown = 0;   // request sequence numbers: an older answer never replaces a newer one
let local = null;          // the page's own model (an exported page), or null: the server answers
let ownModelError = null;  // why an exported page's own model could not be loaded (it has no server to ask)
let strokeEnd = 0;         // when the last stroke ended (performance.now()), for the answer's latency

function blank() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = "#000";
  ctx.fillStyle = "#000";
  ctx.lineWidth = PEN;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
}

function buildBars() {
  bars.replaceChildren(...classes.map((c) => {
    const li = document.createElement("li");
    li.dataset.digit = c;
    li.innerHTML = `<span class="name"></span><span class="track"><span class="fill"></span></span><span class="pct"></span>`;
    li.querySelector(".name").textContent = String(c);  // a class name ("T-shirt/top") as text, never as markup
    return li;
  }));
  // digits fit 1.2em; named classes ("Ankle boot") get a column as wide as the longest name
  const longest = Math.max(...classes.map((c) => String(c).length));
  bars.style.setProperty("--name-width", longest > 2 ? `${longest * 0.62}em` : "1.2em");
}

function reset(text) {
  label.textContent = "?";
  label.dataset.state = "empty";
  confidence.textContent = "";
  say(text || "Draw a digit with your mouse, pen or finger.");
  for (const li of bars.children) {
    li.classList.remove("top");
    li.querySelector(".fill").style.width = "0";
    li.querySelector(".pct").textContent = "";
  }
  seen.clearRect(0, 0, 28, 28);
}

function say(text, isError) {
  message.textContent = text;
  message.classList.toggle("error", !!isError);
}

// ---- drawing: pointer events cover mouse, pen and touch ----
function point(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
}

function dot([x, y]) {
  ctx.beginPath();
  ctx.arc(x, y, PEN / 2, 0, 2 * Math.PI);
  ctx.fill();
}

function line(a, b) {
  ctx.beginPath();
  ctx.moveTo(a[0], a[1]);
  ctx.lineTo(b[0], b[1]);
  ctx.stroke();
}

pad.addEventListener("pointerdown", (e) => {
  if (drawing !== null || e.button > 0) return;
  e.preventDefault();
  drawing = e.pointerId;
  pad.setPointerCapture(e.pointerId);
  last = point(e);
  dot(last);
  dirty = true;
  schedule();
});

pad.addEventListener("pointermove", (e) => {
  if (e.pointerId !== drawing) return;
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const ev of (events.length ? events : [e])) {
    const p = point(ev);
    line(last, p);
    last = p;
  }
  schedule();
});

function endStroke(e) {
  if (e.pointerId !== drawing) return;
  drawing = null;
  strokeEnd = performance.now();
  window.digitlab.strokeSeq = sent + 1; // the answer to this stroke is the next one asked for
  clearTimeout(timer);
  predictDrawing();        // the stroke is done: ask now
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(predictDrawing, DEBOUNCE_MS);
}

document.getElementById("clear").addEventListener("click", () => {
  clearTimeout(timer);
  sent += 1;               // drop any answer still on its way
  shown = sent;
  blank();
  dirty = false;
  reset();
});

document.addEventListener("keydown", (e) => {
  if ((e.key === "Escape" || e.key === "Delete") && !e.target.closest("input")) document.getElementById("clear").click();
});

// ---- uploading an image file: shown on the canvas, the original file predicted as it is ----
document.getElementById("upload").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  e.target.value = "";
  if (!file) return;
  blank();
  try {
    const bitmap = await createImageBitmap(file);
    const s = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    const w = bitmap.width * s, h = bitmap.height * s;
    ctx.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  } catch (err) {
    // the browser cannot show it; the answer will say what is wrong with it
  }
  dirty = true;
  send(file, file.name);
});

// ---- asking for an answer: the server's, or the page's own model's ----
function predictDrawing() {
  if (!dirty) return;
  if (local) send(ctx.getImageData(0, 0, pad.width, pad.height), "drawing");
  else send(pngOf(pad), "drawing.png");
}

/** The canvas as a PNG file, encoded at once: toBlob waits for the browser to be idle, which a headless or busy
 * browser may not be for a second (measured: answers 1 s late in headless chromium). */
function pngOf(canvas) {
  const bytes = atob(canvas.toDataURL("image/png").split(",")[1]);
  return new Blob([Uint8Array.from(bytes, (c) => c.charCodeAt(0))], { type: "image/png" });
}

async function send(image, name) {
  const seq = ++sent;
  label.dataset.state = label.dataset.state === "ok" ? "ok" : "pending";
  const { status, body } = local ? await local.answer(image)
    : ownModelError ? { status: 0, body: { error: "model", detail: ownModelError } } : await askServer(image, name);
  if (seq < shown) return; // a newer answer is already on screen
  shown = seq;
  if (status === 200) show(body);
  else if (body && body.error === "no_digit") noDigit(body.detail);
  else failed(body && body.detail ? body.detail : `the server answered ${status}.`);
  if (seq === window.digitlab.strokeSeq) window.digitlab.latencyMs = performance.now() - strokeEnd; // benchmarks/web_page.py
}

async function askServer(blob, name) {
  const form = new FormData();
  form.append("file", blob, name);
  try {
    const res = await fetch("api/predict", { method: "POST", body: form });
    return { status: res.status, body: await res.json() };
  } catch (err) {
    return { status: 0, body: { error: "network", detail: `the server did not answer (${err.message}).` } };
  }
}

function show(r) {
  const probs = classes.map((c) => r.probabilities[String(c)] || 0);
  const top = probs.indexOf(Math.max(...probs));
  if (r.none_of_the_classes) {
    // the model's detector: this is none of its classes; the bars still show what the model would have said.
    // r.verdict is the model's own words: "not a digit", or "not one of these classes" for named classes
    label.textContent = r.verdict;
    label.dataset.state = "not-digit";
    confidence.textContent = "";
    say(`If it were one, the model would say ${r.label} (${(100 * probs[top]).toFixed(1)}%).`);
  } else {
    label.textContent = String(r.label);
    label.dataset.state = "ok";
    confidence.textContent = `${(100 * probs[top]).toFixed(1)}% sure`;
    say(probs[top] < 0.6 ? "Not sure: the bars show what else it might be." : "");
  }
  result.classList.remove("dim");
  [...bars.children].forEach((li, i) => {
    li.classList.toggle("top", i === top);
    li.querySelector(".fill").style.width = `${(100 * probs[i]).toFixed(1)}%`;
    li.querySelector(".pct").textContent = `${(100 * probs[i]).toFixed(1)}%`;
  });
  drawInput(r.input);
}

function noDigit(detail) {
  reset("No digit here yet: draw one, darker or bigger.");
  label.textContent = "–";
  label.dataset.state = "no-digit";
  label.title = detail || "";
}

function failed(detail) {
  label.textContent = "!";
  label.dataset.state = "error";
  confidence.textContent = "";
  result.classList.add("dim");
  say(detail, true);
}

function drawInput(rows) {
  const img = seen.createImageData(28, 28);
  rows.flat().forEach((g, i) => img.data.set([g, g, g, 255], 4 * i));
  seen.putImageData(img, 0, 0);
}

function describe(m) {
  classes = m.classes;
  digits = classes.every((c) => Number.isInteger(c));
  const acc = m.test_accuracy == null ? "test accuracy unknown" : `test accuracy ${(100 * m.test_accuracy).toFixed(2)}%`;
  const when = m.trained ? `, trained ${m.trained.replace("T", " ")}` : "";
  return `Model: ${m.architecture} (${m.parameters.toLocaleString()} parameters), ${acc}${when}. ` +
    `Data: ${m.training_data}.`;
}

async function loadModelCard() {
  const info = document.getElementById("model-info");
  const own = document.querySelector('meta[name="digitlab-model"]').content;
  try {
    if (own) {
      local = await PageModel.load(new URL(own, document.baseURI));
      info.textContent = describe(local.spec.card);
      document.getElementById("footer").textContent =
        `This page runs the model itself, in your browser (ONNX Runtime Web ${local.spec.runtime.version}): ` +
        "nothing you draw leaves it.";
    } else {
      info.textContent = describe(await (await fetch("api/model")).json());
    }
  } catch (err) {
    if (own) ownModelError = `the model could not be loaded (${err.message}); serve the folder with a static server.`;
    info.textContent = own ? `The ${ownModelError}` : "The model card could not be loaded.";
  }
  buildBars();
  reset();
  window.digitlab.readyMs = performance.now(); // from navigation: benchmarks/web_page.py
}

// ---- the page's own model: an exported page answers without a server ----
const PageModel = {
  async load(specUrl) {
    const spec = await (await fetch(specUrl)).json();
    const ortBase = new URL("static/ort/", document.baseURI);
    const ort = await import(new URL("ort.wasm.min.mjs", ortBase).href);
    ort.env.wasm.numThreads = 1; // threads need cross-origin isolation, which a plain static host does not give
    ort.env.wasm.wasmPaths = ortBase.href;
    const session = await ort.InferenceSession.create(new URL(spec.model, specUrl).href,
      { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    return { spec, answer: (image) => answerLocally(ort, session, spec, image) };
  },
};

async function pixelsOf(image) {
  if (image instanceof ImageData) return image;
  const blob = typeof image === "string" ? await (await fetch(image)).blob() : image;
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  if (bitmap.width * bitmap.height > MAX_PIXELS) {
    throw new Error(`${bitmap.width}x${bitmap.height} pixels is more than the ${MAX_PIXELS} allowed; scale it down first`);
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const c = canvas.getContext("2d", { willReadFrequently: true });
  c.drawImage(bitmap, 0, 0);
  return c.getImageData(0, 0, bitmap.width, bitmap.height);
}

/** What `digitlab predict` says of one picture (ImageData, a Blob or a URL), as /api/predict's answer. */
async function answerLocally(ort, session, spec, image) {
  let x;
  try {
    const px = await pixelsOf(image);
    x = DigitlabPrepare.prepare(spec.preparation, px.data, px.width, px.height);
  } catch (err) {
    if (err instanceof DigitlabPrepare.BlankImage) return { status: 422, body: { error: "no_digit", detail: err.message } };
    return { status: 400, body: { error: "unsupported_image", detail: `not a readable image (${err.message}). Use a PNG, JPEG or WebP file.` } };
  }
  const out = await session.run({ images: new ort.Tensor("float32", x, [1, 1, 28, 28]) });
  const probs = calibrated(Array.from(out.scores.data), spec.temperature);
  const score = out.ood_score ? out.ood_score.data[0] : null;
  const flagged = spec.ood != null && spec.ood.threshold != null && score != null && score > spec.ood.threshold;
  const top = probs.indexOf(Math.max(...probs));
  const label = spec.classes[top];
  const body = {
    label, probabilities: Object.fromEntries(spec.classes.map((c, i) => [String(c), probs[i]])),
    none_of_the_classes: flagged, verdict: flagged ? spec.verdict : String(label),
    ood_score: score, input: Array.from({ length: 28 }, (_, r) => Array.from(x.subarray(r * 28, r * 28 + 28), (v) => Math.round(v * 255))),
    prepared: x,
  };
  if (spec.digits) body.not_a_digit = flagged;
  return { status: 200, body };
}

/** Probabilities from the model's scores at its temperature, as predict.Classifier computes them. */
function calibrated(logits, temperature) {
  const softmax = (z) => { const m = Math.max(...z); const e = z.map((v) => Math.exp(v - m)); const s = e.reduce((a, b) => a + b, 0); return e.map((v) => v / s); };
  const p = softmax(logits);
  return temperature === 1 ? p : softmax(p.map((v) => Math.log(Math.max(v, 1e-30)) / temperature));
}

// for scripts and tests: the answer for any picture, as the page computes it
window.digitlab = {
  readyMs: null, strokeSeq: 0, latencyMs: null, // when the model was ready, and the last stroke's answer time
  async predict(image) {
    return local ? local.answer(image) : askServer(image instanceof Blob ? image : await (await fetch(image)).blob(), "image.png");
  },
};

blank();
buildBars();
loadModelCard();
