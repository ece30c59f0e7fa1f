// The "forward pass, with numbers" panel: for the current drawing, what /api/explain computes:
// Z1 = X·W1 + b1 per hidden unit, A1 = max(0, Z1), the contributions A1[j]·W2[j,k], b2, the
// logits Z2 and softmax. The page's script announces each answer with a "digitnet:prediction"
// event (detail null when the drawing is cleared); this panel asks only while it is open.
"use strict";

(() => {
  const CSS = `
#explain-card details > summary { cursor: pointer; font-weight: 600; color: var(--muted); }
#explain-card .steps { font-size: .85rem; color: var(--muted); margin: .6rem 0; }
#explain-card table { border-collapse: collapse; font-size: .8rem; margin: .4rem 0 1rem;
  font-variant-numeric: tabular-nums; }
#explain-card th, #explain-card td { padding: .12rem .45rem; text-align: right;
  border-bottom: 1px solid var(--line); }
#explain-card tr.silent td { color: #aab1bf; }
#explain-card tr.sum td { font-weight: 700; border-top: 2px solid var(--ink); }
#explain-card td.pos { color: var(--accent); }
#explain-card td.neg { color: var(--neg); }
#explain-card td.top { background: var(--accent-soft); }
#explain-card .scroll { overflow-x: auto; }`;

  const card = document.createElement("section");
  card.className = "card wide";
  card.id = "explain-card";
  card.innerHTML = `<details id="explain-panel"><summary>5 · The forward pass, with numbers
    </summary><p class="steps">Open while drawing: each number the network computes for
    your drawing, from the 784 input values x to the ten probabilities.</p>
    <div id="explain-body" class="scroll"><p class="note">draw a digit</p></div></details>`;
  const style = document.createElement("style");
  style.textContent = CSS;

  const state = { open: false, inFlight: false, again: false, latest: null };

  function fmt(v, digits = 2) {
    const s = Math.abs(v).toFixed(digits);
    return (v < 0 ? "−" : v > 0 ? "+" : "") + s;
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.append(td);
    return td;
  }

  function table(headers) {
    const t = document.createElement("table");
    const head = t.createTHead().insertRow();
    for (const h of headers) {
      const th = document.createElement("th");
      th.textContent = h;
      head.append(th);
    }
    return t;
  }

  function note(text) {
    const p = document.createElement("p");
    p.className = "steps";
    p.textContent = text;
    return p;
  }

  function hiddenTable(e) {
    const t = table(["unit j", "x·W1[:,j]", "b1[j]", "Z1[j]", "A1[j] = max(0, Z1)"]);
    e.z1.forEach((z, j) => {
      const row = t.insertRow();
      if (e.a1[j] === 0) row.className = "silent";
      cell(row, String(j));
      cell(row, fmt(z - e.b1[j], 3));
      cell(row, fmt(e.b1[j], 3));
      cell(row, fmt(z, 3));
      cell(row, e.a1[j] > 0 ? e.a1[j].toFixed(3) : "0 (silent)");
    });
    return t;
  }

  function contributionTable(e, last) {
    const t = table(["from unit j", ...e.class_names]);
    const into = e.contributions;
    const inputs = e[`a${last - 1}`];
    into.forEach((row, j) => {
      if (inputs[j] === 0) return;   // a silent unit adds 0 to every class
      const r = t.insertRow();
      cell(r, `unit ${j}`);
      row.forEach((c) => cell(r, fmt(c), c > 0.005 ? "pos" : c < -0.005 ? "neg" : ""));
    });
    const bias = t.insertRow();
    cell(bias, `b${last}`);
    e[`b${last}`].forEach((b) => cell(bias, fmt(b)));
    const sum = t.insertRow();
    sum.className = "sum";
    cell(sum, `Z${last} (sum)`);
    e[`z${last}`].forEach((z, k) => cell(sum, fmt(z), k === e.label ? "top" : ""));
    return t;
  }

  function softmaxTable(e, last) {
    const z = e[`z${last}`];
    const max = Math.max(...z);
    const total = e.exponentials.reduce((a, b) => a + b, 0);
    const t = table(["class", `Z${last}`, `exp(Z${last} − ${max.toFixed(2)})`, "÷ sum",
                     "probability"]);
    z.forEach((v, k) => {
      const r = t.insertRow();
      cell(r, e.class_names[k], k === e.label ? "top" : "");
      cell(r, fmt(v, 3));
      cell(r, e.exponentials[k].toFixed(4));
      cell(r, total.toFixed(4));
      cell(r, `${(100 * e.probabilities[k]).toFixed(2)}%`, k === e.label ? "top" : "");
    });
    return t;
  }

  function show(e) {
    const body = document.getElementById("explain-body");
    const last = e.sizes.length - 1;
    const parts = [];
    const xmin = Math.min(...e.x), xmax = Math.max(...e.x);
    parts.push(note(`x: the 784 input values, (pixel/255 − mean)/std, from ${xmin.toFixed(2)} ` +
                    `to ${xmax.toFixed(2)}.`));
    if (last === 2) {
      const silent = e.silent.length;
      parts.push(note(`Layer 1: Z1 = x·W1 + b1, one number per hidden unit; A1 = max(0, Z1). ` +
                      `${e.z1.length - silent} of ${e.z1.length} units fire, ${silent} ` +
                      "are silent."));
      parts.push(hiddenTable(e));
    } else {
      parts.push(note(`A network of ${last - 1} hidden layers (${e.sizes.join("-")}): ` +
                      "the last one's contributions are shown."));
    }
    parts.push(note(`Layer ${last}: each firing unit j adds A${last - 1}[j]·W${last}[j,k] to ` +
                    `class k's logit; with the bias b${last} they sum to Z${last}.`));
    parts.push(contributionTable(e, last));
    parts.push(note("Softmax: each logit's exponential divided by the sum of all ten " +
                    "(subtracting the largest first changes nothing and keeps exp small)."));
    parts.push(softmaxTable(e, last));
    body.replaceChildren(...parts);
  }

  function padPng() {
    return new Promise((resolve, reject) => {
      document.getElementById("pad").toBlob(
        (blob) => blob ? resolve(blob) : reject(new Error("cannot read the drawing")),
        "image/png");
    });
  }

  async function ask() {
    if (state.inFlight) { state.again = true; return; }
    state.inFlight = true;
    state.again = false;
    const asked = state.latest;
    try {
      const response = await fetch("/api/explain", {
        method: "POST", headers: { "Content-Type": "image/png" }, body: await padPng() });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || `error ${response.status}`);
      if (asked === state.latest && state.latest !== null) show(answer);
    } catch (error) {
      document.getElementById("explain-body").replaceChildren(note(error.message));
    } finally {
      state.inFlight = false;
      if (state.again && state.open && state.latest !== null) ask();
    }
  }

  document.addEventListener("digitnet:prediction", (event) => {
    state.latest = event.detail;
    if (event.detail === null) {
      document.getElementById("explain-body").replaceChildren(note("draw a digit"));
    } else if (state.open) {
      ask();
    }
  });

  window.addEventListener("DOMContentLoaded", () => {
    document.head.append(style);
    // after the hidden units (4), before the Train panel (6)
    const train = document.getElementById("train-card");
    document.querySelector("main").insertBefore(card, train);
    const panel = document.getElementById("explain-panel");
    panel.addEventListener("toggle", () => {
      state.open = panel.open;
      if (state.open && state.latest !== null) ask();
    });
  });
})();
