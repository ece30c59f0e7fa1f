// The Train panel: knobs, a run followed as server-sent events, its curves and weight tiles,
// the last five runs on the same curves, and switching the pad to a run's model.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = document.getElementById("chart-loss").namespaceURI;  // the page's own SVG
  const MAX_RUNS = 5;
  const COLOURS = ["#2166ac", "#d6604d", "#1a7f37", "#8e44ad", "#b8860b"];
  const CHART = { width: 320, height: 190, left: 46, right: 16, top: 10, bottom: 28 };
  const CLOSING = ["done", "stopped", "error"];

  // Each knob with its one-line explanation (shown on hover, focus or a tap on "?").
  const KNOBS = [
    { name: "preset", label: "preset", kind: "select",
      hint: "Where the settings start: seed = the original notebook (full-batch gradient " +
            "descent, 500 steps), default = a few seconds with Adam, best = 40 epochs with " +
            "deformed digits." },
    { name: "hidden", label: "hidden units", kind: "int", min: 1,
      hint: "Units in each hidden layer: more can learn more strokes, and take longer." },
    { name: "layers", label: "hidden layers", kind: "int", min: 1,
      hint: "Layers between the pixels and the answer; the classic network has one." },
    { name: "optimizer", label: "optimizer", kind: "select",
      hint: "How a step moves the weights: gd follows the gradient, momentum keeps a running " +
            "direction, adam adapts a step size for every weight." },
    { name: "lr", label: "learning rate", kind: "real", min: 0,
      hint: "How big a step is: too big and the loss blows up, too small and it crawls." },
    { name: "schedule", label: "schedule", kind: "select",
      hint: "How the rate changes over the run: constant, cosine (down to 0) or onecycle " +
            "(warm up, then down)." },
    { name: "batch_size", label: "batch size", kind: "int", min: 0,
      hint: "Images per step; 0 = all of them in one step (full batch, as in the notebook)." },
    { name: "epochs", label: "epochs", kind: "int", min: 1,
      hint: "Passes over the training images." },
    { name: "iterations", label: "iterations", kind: "int", min: 1, optional: true,
      hint: "Gradient steps in all; when set it replaces epochs (empty: use epochs)." },
    { name: "l2", label: "L2", kind: "real", min: 0,
      hint: "Weight decay: pulls every weight toward zero, against learning the noise." },
    { name: "augment", label: "augmentation", kind: "real", min: 0, max: 3,
      hint: "Slant, rotate, shift and warp the training digits afresh each epoch " +
            "(0 = off; best uses 0.5)." },
    { name: "seed", label: "seed", kind: "int", min: 0,
      hint: "One number behind every random draw: the same seed trains the same network." },
  ];

  const train = {
    info: null,      // GET /api/train
    runs: [],        // the last MAX_RUNS runs, oldest first
    current: null,   // the run being trained or last trained
    source: null,    // its EventSource while it runs
  };

  // -- knobs ----------------------------------------------------------------------------

  function buildKnobs(info) {
    const form = $("train-form");
    form.replaceChildren();
    for (const knob of KNOBS) {
      const box = document.createElement("div");
      box.className = "knob";
      box.dataset.name = knob.name;
      const id = `knob-${knob.name}`;
      const label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = knob.label;
      const why = document.createElement("button");
      why.type = "button";
      why.className = "why";
      why.textContent = "?";
      why.setAttribute("aria-label", `what is ${knob.label}?`);
      why.addEventListener("click", () => box.classList.toggle("show-hint"));
      let input;
      if (knob.kind === "select") {
        input = document.createElement("select");
        for (const choice of info.choices[knob.name]) {
          const option = document.createElement("option");
          option.value = option.textContent = choice;
          input.append(option);
        }
      } else {
        input = document.createElement("input");
        input.type = "number";
        input.inputMode = knob.kind === "int" ? "numeric" : "decimal";
        input.step = knob.kind === "int" ? "1" : "any";
        if (knob.min !== undefined) input.min = String(knob.min);
        const high = knob.max !== undefined ? knob.max : info.limits[knob.name];
        if (high !== undefined) input.max = String(high);
        if (knob.optional) input.placeholder = "–";
      }
      input.id = id;
      input.name = knob.name;
      input.title = knob.hint;
      const hint = document.createElement("p");
      hint.className = "hint";
      hint.textContent = knob.hint;
      box.append(label, why, input, hint);
      form.append(box);
    }
    $("knob-preset").addEventListener("change", () => {
      setKnobs(presetValues($("knob-preset").value));
      saveHash();
    });
    form.addEventListener("input", (event) => {
      if (event.target.name !== "preset") saveHash();
      event.target.closest(".knob").classList.remove("bad");
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      startRun();
    });
  }

  function presetValues(preset) {
    const values = { ...train.info.defaults, ...(train.info.presets[preset] || {}) };
    values.preset = preset;
    return values;
  }

  function setKnobs(values) {
    for (const knob of KNOBS) {
      const value = values[knob.name];
      $(`knob-${knob.name}`).value = value === null || value === undefined ? "" : String(value);
    }
  }

  function readKnobs() {
    const values = {};
    for (const knob of KNOBS) {
      const text = $(`knob-${knob.name}`).value.trim();
      if (knob.kind === "select") values[knob.name] = text;
      else if (text === "") values[knob.name] = knob.optional ? null : text;
      else values[knob.name] = Number.isFinite(Number(text)) ? Number(text) : text;
    }
    return values;
  }

  // The options a run sends: its preset and what differs from it (also the URL's hash).
  function options(values) {
    const base = presetValues(values.preset);
    const chosen = { preset: values.preset };
    for (const knob of KNOBS) {
      if (knob.name !== "preset" && values[knob.name] !== base[knob.name]) {
        chosen[knob.name] = values[knob.name];
      }
    }
    // An emptied iterations box means: count epochs, which asking for epochs says.
    if (chosen.iterations === null) {
      delete chosen.iterations;
      chosen.epochs = values.epochs;
    }
    return chosen;
  }

  function saveHash() {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(options(readKnobs()))) {
      params.set(name, value === null ? "" : String(value));
    }
    history.replaceState(null, "", `#${params}`);
  }

  function loadHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const preset = params.get("preset");
    const values = presetValues(preset && train.info.presets[preset] ? preset : "default");
    for (const knob of KNOBS) {
      if (knob.name !== "preset" && params.has(knob.name)) values[knob.name] = params.get(knob.name);
    }
    setKnobs(values);
  }

  function label(chosen) {
    const parts = [chosen.preset];
    for (const [name, value] of Object.entries(chosen)) {
      if (name === "preset") continue;
      const knob = KNOBS.find((k) => k.name === name);
      parts.push(`${knob ? knob.label : name} ${value}`);
    }
    return parts.join(" · ");
  }

  // -- a run --------------------------------------------------------------------------------

  async function startRun() {
    if (train.current && train.current.state === "running") return;
    document.querySelectorAll("#train-form .knob.bad").forEach((k) => k.classList.remove("bad"));
    const chosen = options(readKnobs());
    setButtons(true);
    setStatus("starting…");
    let answer;
    try {
      const response = await fetch("/api/train", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(chosen) });
      answer = await response.json();
      if (response.status !== 202) {
        if (answer.field) {
          const knob = document.querySelector(`#train-form .knob[data-name="${answer.field}"]`);
          if (knob) knob.classList.add("bad");
        }
        throw new Error(answer.error || `the server answered ${response.status}`);
      }
    } catch (error) {
      setStatus(error.message, true);
      setButtons(false);
      return;
    }
    const run = { id: answer.run, label: label(chosen), state: "running", points: [],
                  schedule: [], totalSteps: 0, epochs: 0, stepsPerEpoch: 1, metrics: null,
                  message: "", colour: nextColour() };
    train.runs.push(run);
    if (train.runs.length > MAX_RUNS) train.runs.shift();
    train.current = run;
    $("train-bar").style.width = "0";
    $("train-units").replaceChildren();
    $("train-tiles-note").textContent = "";
    setStatus("loading the training images…");
    follow(run);
    render();
  }

  function nextColour() {
    const used = new Set(train.runs.slice(-(MAX_RUNS - 1)).map((r) => r.colour));
    return COLOURS.find((c) => !used.has(c)) || COLOURS[0];
  }

  function follow(run) {
    const source = new EventSource(`/api/train/${encodeURIComponent(run.id)}/events`);
    train.source = source;
    const on = (kind, handle) => source.addEventListener(kind, (event) => {
      handle(JSON.parse(event.data));
      render();
    });
    on("start", (data) => {
      run.schedule = data.schedule;
      run.totalSteps = data.total_steps;
      run.epochs = data.epochs;
      run.stepsPerEpoch = data.steps_per_epoch;
      run.hidden = data.hidden;
      setStatus("training…");
    });
    on("epoch", (data) => {
      run.points.push(data);
      showProgress(run, data);
    });
    on("units", (data) => drawTiles(data));
    for (const kind of CLOSING) {
      on(kind, (data) => {
        source.close();
        run.state = kind;
        run.metrics = data.metrics || null;
        run.message = data.message || "";
        run.sizes = data.sizes || null;
        finished(run);
      });
    }
    source.onerror = () => {
      if (run.state !== "running") return;
      if (source.readyState === EventSource.CLOSED) {
        run.state = "error";
        run.message = "lost the connection to the server";
        finished(run);
        render();
      } else {
        setStatus("lost the connection to the server; trying again…", true);
      }
    };
  }

  function showProgress(run, point) {
    const share = run.totalSteps ? point.step / run.totalSteps : 0;
    $("train-bar").style.width = `${(100 * share).toFixed(1)}%`;
    const full = run.stepsPerEpoch === 1;
    const where = full ? `step ${point.step} of ${run.totalSteps}`
                       : `epoch ${point.epoch} of ${run.epochs}`;
    const left = point.step ? point.seconds / point.step * (run.totalSteps - point.step) : NaN;
    const accuracy = percent(point.val_accuracy);
    setStatus(`${where} · loss ${point.loss.toFixed(3)}` +
              (accuracy ? ` · validation ${accuracy}` : "") + ` · ${timeLeft(left)}`);
  }

  function timeLeft(seconds) {
    if (!Number.isFinite(seconds)) return "";
    if (seconds < 1) return "under a second left";
    if (seconds < 90) return `about ${Math.round(seconds)} s left`;
    return `about ${Math.round(seconds / 60)} min left`;
  }

  function finished(run) {
    train.source = null;
    const m = run.metrics || {};
    const test = percent(m.test_accuracy);
    if (run.state === "done") {
      $("train-bar").style.width = "100%";
      setStatus(`done: test accuracy ${test} (validation ${percent(m.dev_accuracy) || "–"}) ` +
                `in ${(m.train_seconds || 0).toFixed(1)} s`);
    } else if (run.state === "stopped") {
      const last = run.points[run.points.length - 1];
      const where = last ? (run.stepsPerEpoch === 1 ? `step ${last.step}` : `epoch ${last.epoch}`)
                         : "the start";
      setStatus(`stopped at ${where}` + (test ? `: test accuracy ${test}` : ""));
    } else {
      setStatus(`error: ${run.message}`, true);
    }
    setButtons(false);
  }

  async function stopRun() {
    const run = train.current;
    if (!run || run.state !== "running") return;
    $("train-stop").disabled = true;
    setStatus("stopping…");
    try {
      await answerOf(await fetch(`/api/train/${encodeURIComponent(run.id)}/stop`,
                                 { method: "POST" }));
    } catch (error) {
      setStatus(error.message, true);
    }
  }

  async function useRun() {
    const run = train.current;
    if (!run || !run.metrics) return;
    try {
      const answer = await answerOf(await fetch(`/api/train/${encodeURIComponent(run.id)}/use`,
                                                { method: "POST" }));
      await window.digitnetPage.loadModel();
      setStatus(`the pad now reads with this run's ${answer.sizes.join("-")} network`);
    } catch (error) {
      setStatus(error.message, true);
    }
  }

  async function answerOf(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      throw new Error(`the server answered ${response.status} without JSON`);
    }
    if (!response.ok) throw new Error(body.error || `error ${response.status}`);
    return body;
  }

  function setButtons(running) {
    const allowed = train.info && train.info.allowed && !train.info.missing_data;
    $("train-start").disabled = running || !allowed;
    $("train-stop").disabled = !running;
    const run = train.current;
    const model = !running && run && run.metrics !== null;
    $("train-use").disabled = !model;
    const link = $("train-download");
    if (model) {
      link.href = `/api/train/${encodeURIComponent(run.id)}/model`;
      link.setAttribute("download", "");
      link.removeAttribute("aria-disabled");
    } else {
      link.removeAttribute("href");
      link.setAttribute("aria-disabled", "true");
    }
    document.body.dataset.training = running ? "1" : "0";
  }

  function setStatus(text, isError = false) {
    const status = $("train-status");
    status.textContent = text || "\u00a0";
    status.classList.toggle("error", isError);
  }

  function percent(value) {
    return typeof value === "number" ? `${(100 * value).toFixed(2)}%` : null;
  }

  // -- weight tiles -------------------------------------------------------------------------

  function drawTiles(data) {
    const box = $("train-units");
    while (box.children.length < data.units.length) {
      const tile = document.createElement("canvas");
      tile.width = tile.height = 28;
      tile.className = "tile";
      tile.title = `hidden unit ${box.children.length}`;
      box.append(tile);
    }
    data.units.forEach((weights, j) => {
      const c = box.children[j].getContext("2d");
      const image = c.createImageData(28, 28);
      // Each unit on its own symmetric scale, as in the hidden-units card below.
      const limit = Math.max(...weights.map(Math.abs), 1e-9);
      weights.forEach((w, i) => {
        image.data.set([...window.digitnetPage.rdbu(0.5 + w / (2 * limit)), 255], 4 * i);
      });
      c.putImageData(image, 0, 0);
    });
    box.dataset.epoch = String(data.epoch);
    const which = data.total > data.units.length
      ? `the first ${data.units.length} of ${data.total} units` : `all ${data.total} units`;
    $("train-tiles-note").textContent = `· ${which}, weights after ${
      train.current && train.current.stepsPerEpoch === 1 ? "step " + data.step
                                                         : "epoch " + data.epoch}`;
  }

  // -- curves -------------------------------------------------------------------------------

  function xOf(run, point, mode) {
    if (mode === "epoch") return point.step / run.stepsPerEpoch;
    if (mode === "seconds") return point.seconds;
    return run.totalSteps ? point.step / run.totalSteps : 0;
  }

  function render() {
    const mode = $("train-x").value;
    const runs = train.runs;
    const series = (key, dashed) => runs.map((run) => ({
      run, dashed, points: run.points.filter((p) => typeof p[key] === "number")
        .map((p) => [xOf(run, p, mode), p[key]]) }));
    const loss = [...series("loss", false), ...series("val_loss", true)];
    const accuracy = [...series("train_accuracy", false), ...series("val_accuracy", true)];
    const lr = runs.map((run) => ({ run, dashed: false, points: scheduleOf(run, mode) }));
    const values = (all) => all.flatMap((s) => s.points.map((p) => p[1]));
    // Before any run the axes still read sensibly: the whole run (or 1 epoch, 1 s) and 0.01.
    const xs = [...loss, ...lr].flatMap((s) => s.points.map((p) => p[0]));
    const xMax = xs.length ? Math.max(1e-9, ...xs) : 1;
    const lossMax = Math.max(0.1, ...values(loss));
    const accMin = Math.min(0.9, ...values(accuracy));
    drawChart($("chart-loss"), loss, { yMin: 0, yMax: niceCeil(lossMax), xMax, mode,
                                       format: (v) => v.toFixed(2) });
    drawChart($("chart-accuracy"), accuracy, { yMin: Math.max(0, Math.floor(accMin * 10) / 10),
                                               yMax: 1, xMax, mode,
                                               format: (v) => `${Math.round(100 * v)}%` });
    const rates = values(lr);
    const lrMax = rates.length ? Math.max(1e-9, ...rates) : 0.01;
    drawChart($("chart-lr"), lr, { yMin: 0, yMax: lrMax * 1.05, xMax, mode,
                                   format: (v) => v.toPrecision(2), marker: true });
    renderRuns();
  }

  function scheduleOf(run, mode) {
    if (mode === "seconds") {
      const last = run.points[run.points.length - 1];
      if (!last || !last.step) return [];
      const rate = last.seconds / last.step;
      return run.schedule.map(([t, lr]) => [t * rate, lr]);
    }
    const per = mode === "epoch" ? run.stepsPerEpoch : run.totalSteps || 1;
    return run.schedule.map(([t, lr]) => [t / per, lr]);
  }

  function niceCeil(value) {
    const step = 10 ** Math.floor(Math.log10(value)) / 2;
    return Math.ceil(value / step) * step;
  }

  function svgNode(name, attributes, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function drawChart(svg, series, { yMin, yMax, xMax, mode, format, marker }) {
    const { width, height, left, right, top, bottom } = CHART;
    const x = (v) => left + (width - left - right) * v / xMax;
    const y = (v) => top + (height - top - bottom) * (1 - (v - yMin) / (yMax - yMin || 1));
    svg.replaceChildren();
    for (let k = 0; k <= 4; k++) {
      const v = yMin + (yMax - yMin) * k / 4;
      svg.append(svgNode("line", { x1: left, x2: width - right, y1: y(v), y2: y(v),
                                   class: "grid" }));
      svg.append(svgNode("text", { x: left - 5, y: y(v) + 3.5, class: "tick y" }, format(v)));
      const xv = xMax * k / 4;
      const shown = mode === "progress" ? `${Math.round(100 * xv)}%`
                                        : xv >= 10 ? xv.toFixed(0) : xv.toPrecision(2);
      svg.append(svgNode("text", { x: x(xv), y: height - bottom + 14, class: "tick x" }, shown));
    }
    const current = train.current;
    for (const { run, dashed, points } of series) {
      if (!points.length) continue;
      const latest = run === current;
      const line = svgNode("polyline", {
        points: points.map(([a, b]) => `${x(a).toFixed(1)},${y(b).toFixed(1)}`).join(" "),
        stroke: run.colour, class: `curve${dashed ? " dashed" : ""}${latest ? "" : " old"}`,
        "data-run": run.id });
      svg.append(line);
      if (latest && !marker) {
        for (const [a, b] of points) {
          svg.append(svgNode("circle", { cx: x(a).toFixed(1), cy: y(b).toFixed(1), r: 2.2,
                                         fill: run.colour, class: "point", "data-run": run.id }));
        }
      }
    }
    if (marker && current && current.points.length) {
      const last = current.points[current.points.length - 1];
      const at = x(xOf(current, last, mode));
      svg.append(svgNode("line", { x1: at, x2: at, y1: top, y2: height - bottom,
                                   class: "now", stroke: current.colour }));
    }
  }

  function renderRuns() {
    const list = $("train-runs");
    list.replaceChildren();
    for (const run of [...train.runs].reverse()) {
      const item = document.createElement("li");
      item.className = `run ${run.state}${run === train.current ? " latest" : ""}`;
      item.dataset.run = run.id;
      item.dataset.state = run.state;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = run.colour;
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = run.label;
      const state = document.createElement("span");
      state.className = "state";
      const test = percent((run.metrics || {}).test_accuracy);
      state.textContent = run.state === "running" ? "training…"
        : run.state === "error" ? "error" : `${run.state}${test ? `, test ${test}` : ""}`;
      item.append(swatch, name, state);
      list.append(item);
    }
  }

  // -- start --------------------------------------------------------------------------------

  async function start() {
    try {
      train.info = await answerOf(await fetch("/api/train"));
    } catch (error) {
      setStatus(`the Train panel is unavailable: ${error.message}`, true);
      return;
    }
    buildKnobs(train.info);
    loadHash();
    window.addEventListener("hashchange", loadHash);
    const off = $("train-off");
    if (!train.info.allowed || train.info.missing_data) {
      off.hidden = false;
      off.textContent = train.info.allowed ? train.info.missing_data
        : `Training is off: ${train.info.reason}.`;
      $("train-form").querySelectorAll("input, select").forEach((i) => { i.disabled = true; });
    }
    $("train-start").addEventListener("click", startRun);
    $("train-stop").addEventListener("click", stopRun);
    $("train-use").addEventListener("click", useRun);
    $("train-x").addEventListener("change", render);
    setButtons(false);
    render();
    document.body.dataset.trainReady = "1";
  }

  window.addEventListener("load", start);
})();
