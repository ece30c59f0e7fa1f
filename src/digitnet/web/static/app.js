// The drawing page: draw on the pad, send it to /api/predict while drawing, show the answer.
"use strict";

const THROTTLE_MS = 100;   // at most one prediction per 100 ms while a stroke is moving
const PAD_SIDE = 280;      // CSS pixels; the backing store is scaled by devicePixelRatio
const STROKE = 18;         // about a tenth of a digit's height, like MNIST's pen
const DRAW_A_DIGIT = "draw a digit";
// matplotlib's RdBu, the report's colour map: red negative, white zero, blue positive
const RDBU = ["#67001f", "#b2182b", "#d6604d", "#f4a582", "#fddbc7", "#f7f7f7",
              "#d1e5f0", "#92c5de", "#4393c3", "#2166ac", "#053061"].map(hexToRgb);

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d");

const state = {
  classNames: [],
  units: [],          // from /api/weights
  hasInk: false,
  drawing: false,
  last: null,         // last point of the stroke being drawn
  timer: null,
  lastSent: -Infinity,
  inFlight: false,
  again: false,
  generation: 0,      // bumped by Clear: answers to older drawings are dropped
  sample: null,       // the MNIST digit loaded into the pad, if any
};

// -- the pad ------------------------------------------------------------------------------

function setUpPad() {
  const ratio = Math.max(1, Math.min(3, window.devicePixelRatio || 1));
  pad.width = Math.round(PAD_SIDE * ratio);
  pad.height = Math.round(PAD_SIDE * ratio);
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  wipePad();
}

function wipePad() {
  ctx.save();
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = "black";
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.restore();
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return { x: (event.clientX - box.left) * PAD_SIDE / box.width,
           y: (event.clientY - box.top) * PAD_SIDE / box.height };
}

function inkTo(p) {
  ctx.strokeStyle = "white";
  ctx.fillStyle = "white";
  ctx.lineWidth = STROKE;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  if (state.last === null) {
    ctx.beginPath();
    ctx.arc(p.x, p.y, STROKE / 2, 0, 2 * Math.PI);
    ctx.fill();
  } else {
    ctx.beginPath();
    ctx.moveTo(state.last.x, state.last.y);
    ctx.lineTo(p.x, p.y);
    ctx.stroke();
  }
  state.last = p;
  state.hasInk = true;
}

pad.addEventListener("pointerdown", (event) => {
  if (event.button !== 0 && event.pointerType === "mouse") return;
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  state.drawing = true;
  state.last = null;
  inkTo(point(event));
  schedulePrediction();
});

pad.addEventListener("pointermove", (event) => {
  if (!state.drawing) return;
  event.preventDefault();
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const e of events.length ? events : [event]) inkTo(point(e));
  schedulePrediction();
});

function endStroke(event) {
  if (!state.drawing) return;
  state.drawing = false;
  state.last = null;
  if (pad.hasPointerCapture(event.pointerId)) pad.releasePointerCapture(event.pointerId);
  predictNow();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

// -- asking the server --------------------------------------------------------------------

function setBusy() {
  const busy = state.inFlight || state.timer !== null || state.again;
  document.body.dataset.busy = busy ? "1" : "0";
}

function schedulePrediction() {
  if (state.timer !== null) return;
  const wait = Math.max(0, THROTTLE_MS - (performance.now() - state.lastSent));
  state.timer = setTimeout(() => { state.timer = null; predictNow(); }, wait);
  setBusy();
}

function predictNow() {
  if (state.timer !== null) {
    clearTimeout(state.timer);
    state.timer = null;
  }
  if (!state.hasInk) {
    setBusy();
    return;
  }
  if (state.inFlight) {
    state.again = true;
    setBusy();
    return;
  }
  state.inFlight = true;
  state.again = false;
  state.lastSent = performance.now();
  setBusy();
  const generation = state.generation;
  padPng()
    .then((png) => fetch("/api/predict", {
      method: "POST", headers: { "Content-Type": "image/png" }, body: png }))
    .then(readAnswer)
    .then((answer) => { if (generation === state.generation) showPrediction(answer); })
    .catch((error) => { if (generation === state.generation) showError(error.message); })
    .finally(() => {
      state.inFlight = false;
      if (state.again) {
        state.again = false;
        predictNow();
      }
      setBusy();
    });
}

function padPng() {
  return new Promise((resolve, reject) => {
    pad.toBlob((blob) => blob ? resolve(blob) : reject(new Error("cannot read the drawing")),
               "image/png");
  });
}

async function readAnswer(response) {
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    throw new Error(`the server answered ${response.status} without JSON`);
  }
  if (!response.ok) throw new Error(body && body.error ? body.error : `error ${response.status}`);
  return body;
}

// -- showing the answer -------------------------------------------------------------------

function buildBars(names) {
  const list = $("bars");
  list.replaceChildren();
  names.forEach((name, k) => {
    const item = document.createElement("li");
    item.className = "bar";
    item.dataset.class = String(k);
    item.innerHTML = '<span class="label"></span><span class="track"><span class="fill">' +
                     '</span></span><span class="value">–</span>';
    item.querySelector(".label").textContent = name;
    item.title = name;
    list.append(item);
  });
}

function showPrediction(answer) {
  const p = answer.probabilities;
  const top = answer.label;
  const predicted = $("predicted");
  predicted.textContent = answer.class_name;
  predicted.classList.remove("empty");
  predicted.dataset.label = String(top);
  $("confidence").textContent = `${(100 * p[top]).toFixed(1)}% sure`;
  document.querySelectorAll("#bars .bar").forEach((bar, k) => {
    bar.classList.toggle("top", k === top);
    bar.querySelector(".fill").style.width = `${(100 * p[k]).toFixed(2)}%`;
    bar.querySelector(".value").textContent = `${(100 * p[k]).toFixed(1)}%`;
  });
  drawInput(answer.input28);
  showUnits(answer.hidden, top);
  setMessage("");
  showSampleVerdict(top);
  document.dispatchEvent(new CustomEvent("digitnet:prediction", { detail: answer }));
}

function showError(message) {
  resetPrediction();
  const blank = message.includes(DRAW_A_DIGIT);
  setMessage(blank ? DRAW_A_DIGIT : message, !blank);
}

function setMessage(text, isError = false) {
  const message = $("message");
  message.textContent = text;
  message.classList.toggle("error", isError);
}

function resetPrediction() {
  const predicted = $("predicted");
  predicted.textContent = "–";
  predicted.classList.add("empty");
  delete predicted.dataset.label;
  $("confidence").innerHTML = "&nbsp;";
  document.querySelectorAll("#bars .bar").forEach((bar) => {
    bar.classList.remove("top");
    bar.querySelector(".fill").style.width = "0";
    bar.querySelector(".value").textContent = "–";
  });
  drawInput(null);
  showUnits(null, null);
  document.dispatchEvent(new CustomEvent("digitnet:prediction", { detail: null }));
}

function drawInput(rows) {
  const canvas = $("input28");
  const c = canvas.getContext("2d");
  const image = c.createImageData(28, 28);
  for (let i = 0; i < 28 * 28; i++) {
    const v = rows ? rows[Math.floor(i / 28)][i % 28] : 0;
    image.data.set([v, v, v, 255], 4 * i);
  }
  c.putImageData(image, 0, 0);
}

// -- hidden units -------------------------------------------------------------------------

function hexToRgb(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

function rdbu(t) {  // t in [0, 1]
  const x = Math.min(1, Math.max(0, t)) * (RDBU.length - 1);
  const i = Math.min(RDBU.length - 2, Math.floor(x));
  const f = x - i;
  return RDBU[i].map((a, k) => Math.round(a + f * (RDBU[i + 1][k] - a)));
}

function buildUnits(weights) {
  state.units = weights.units;
  const box = $("units");
  box.replaceChildren();
  for (const unit of weights.units) {
    const tile = document.createElement("div");
    tile.className = "unit";
    tile.innerHTML = '<div class="name"></div><canvas width="28" height="28"></canvas>' +
      '<div class="act-track"><div class="act-fill"></div></div>' +
      '<div class="act">–</div><div class="vote">&nbsp;</div>';
    tile.querySelector(".name").textContent = `unit ${unit.index}`;
    const c = tile.querySelector("canvas").getContext("2d");
    const image = c.createImageData(28, 28);
    // Each unit on its own symmetric scale, so a weak unit's pattern shows as well.
    const limit = Math.max(...unit.weights.flat().map(Math.abs), 1e-9);
    unit.weights.forEach((row, r) => row.forEach((w, col) => {
      image.data.set([...rdbu(0.5 + w / (2 * limit)), 255], 4 * (28 * r + col));
    }));
    c.putImageData(image, 0, 0);
    box.append(tile);
  }
}

function showUnits(hidden, label) {
  const tiles = document.querySelectorAll("#units .unit");
  const peak = hidden ? Math.max(...hidden, 1e-9) : 1;
  tiles.forEach((tile, j) => {
    const a = hidden ? hidden[j] : 0;
    tile.classList.toggle("firing", a > 0);
    tile.querySelector(".act-fill").style.width = `${(100 * a / peak).toFixed(1)}%`;
    tile.querySelector(".act").textContent = !hidden ? "–" : a > 0 ? `fired ${a.toFixed(2)}`
                                                                   : "silent";
    const vote = tile.querySelector(".vote");
    const outgoing = state.units[j] && state.units[j].outgoing;
    vote.classList.remove("plus", "minus");
    if (hidden && a > 0 && outgoing && label !== null) {
      const v = a * outgoing[label];
      vote.textContent = `${v >= 0 ? "+" : "−"}${Math.abs(v).toFixed(2)} for ` +
                         `${state.classNames[label]}`;
      if (Math.abs(v) >= 0.005) vote.classList.add(v > 0 ? "plus" : "minus");
    } else {
      vote.innerHTML = "&nbsp;";
    }
  });
}

// -- buttons ------------------------------------------------------------------------------

function clearAll() {
  state.generation += 1;
  state.hasInk = false;
  state.drawing = false;
  state.last = null;
  state.sample = null;
  if (state.timer !== null) clearTimeout(state.timer);
  state.timer = null;
  state.again = false;
  wipePad();
  resetPrediction();
  setMessage(DRAW_A_DIGIT);
  $("sample-note").hidden = true;
  setBusy();
}

async function loadSample() {
  let sample;
  try {
    sample = await readAnswer(await fetch("/api/sample"));
  } catch (error) {
    if (/no test digits/.test(error.message)) $("sample").hidden = true;
    setMessage(error.message, true);
    return;
  }
  clearAll();
  const small = document.createElement("canvas");
  small.width = small.height = 28;
  const c = small.getContext("2d");
  const image = c.createImageData(28, 28);
  sample.pixels.forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
  c.putImageData(image, 0, 0);
  ctx.save();
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(small, 0, 0, pad.width, pad.height);
  ctx.restore();
  state.hasInk = true;
  state.sample = sample;
  const note = $("sample-note");
  note.hidden = false;
  note.className = "note";
  note.textContent = `MNIST test digit #${sample.index}, labelled ${sample.class_name}`;
  predictNow();
}

function showSampleVerdict(label) {
  const sample = state.sample;
  if (!sample) return;
  const note = $("sample-note");
  const right = label === sample.label;
  note.className = `note ${right ? "ok" : "wrong"}`;
  note.textContent = `MNIST test digit #${sample.index}, labelled ${sample.class_name}: ` +
    (right ? "the network agrees ✓" : `the network says ${state.classNames[label]} ✗`);
}

$("clear").addEventListener("click", clearAll);
$("sample").addEventListener("click", loadSample);

// -- start --------------------------------------------------------------------------------

function percent(value) {
  return typeof value === "number" ? `${(100 * value).toFixed(2)}%` : null;
}

// The served model's line, bars and tiles; again after the Train panel switches the model.
async function loadModel() {
  const info = await readAnswer(await fetch("/api/model"));
  state.classNames = info.class_names;
  buildBars(info.class_names);
  const parts = [`${info.sizes.join("-")} network`];
  if (info.preset) parts.push(`${info.preset} preset`);
  const accuracy = percent((info.metrics || {}).test_accuracy);
  if (accuracy) parts.push(`test accuracy ${accuracy}`);
  $("model-line").textContent = parts.join(" · ");
  $("sample").hidden = !info.samples;
  buildUnits(await readAnswer(await fetch("/api/weights")));
  state.generation += 1;  // an answer from the previous model is dropped
  resetPrediction();
  if (state.hasInk) predictNow();  // the drawing on the pad, read by the new model
}

window.digitnetPage = { loadModel, rdbu };

async function start() {
  setUpPad();
  setBusy();
  try {
    await loadModel();
    document.body.dataset.ready = "1";
  } catch (error) {
    $("model-line").textContent = "the model could not be loaded";
    setMessage(error.message, true);
  }
}

window.addEventListener("load", start);
