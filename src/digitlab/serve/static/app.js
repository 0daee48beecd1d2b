// The draw-a-digit page: pointer strokes on a canvas, a debounced POST /api/predict of the drawing as PNG,
// one bar per class, and the 28x28 input the model saw. No framework, no build step.
"use strict";

const DEBOUNCE_MS = 120;   // while drawing, ask at most about 8 times a second
const PEN = 18;            // stroke width on the 280x280 canvas: MNIST strokes are ~1/10 of the digit's height

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
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

// ---- uploading an image file: shown on the canvas, the original file sent as is ----
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
    // the browser cannot show it; the server will say what is wrong with it
  }
  dirty = true;
  send(file, file.name);
});

// ---- asking the server ----
function predictDrawing() {
  if (!dirty) return;
  pad.toBlob((blob) => send(blob, "drawing.png"), "image/png");
}

async function send(blob, name) {
  const seq = ++sent;
  const form = new FormData();
  form.append("file", blob, name);
  label.dataset.state = label.dataset.state === "ok" ? "ok" : "pending";
  let status = 0, body = null;
  try {
    const res = await fetch("/api/predict", { method: "POST", body: form });
    status = res.status;
    body = await res.json();
  } catch (err) {
    body = { error: "network", detail: `the server did not answer (${err.message}).` };
  }
  if (seq < shown) return; // a newer answer is already on screen
  shown = seq;
  if (status === 200) show(body);
  else if (body && body.error === "no_digit") noDigit(body.detail);
  else failed(body && body.detail ? body.detail : `the server answered ${status}.`);
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

async function loadModelCard() {
  const info = document.getElementById("model-info");
  try {
    const m = await (await fetch("/api/model")).json();
    classes = m.classes;
    digits = classes.every((c) => Number.isInteger(c));
    const acc = m.test_accuracy == null ? "test accuracy unknown" : `test accuracy ${(100 * m.test_accuracy).toFixed(2)}%`;
    const when = m.trained ? `, trained ${m.trained.replace("T", " ")}` : "";
    info.textContent = `Model: ${m.architecture} (${m.parameters.toLocaleString()} parameters), ${acc}${when}. ` +
      `Data: ${m.training_data}.`;
  } catch (err) {
    info.textContent = "The model card could not be loaded.";
  }
  buildBars();
  reset();
}

blank();
buildBars();
loadModelCard();
