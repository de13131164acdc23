/*
 * archcalc serve: the live editor. The JSON spec on the left; on every edit (debounced, the
 * request before it cancelled) the server's /api/analyze answers with the report payload, drawn
 * by report.js's ArchcalcView.render into the right pane, or with the spec's error, shown under
 * the text (with its line and column) while the last good view stays.
 */
(function () {
  "use strict";

  var DEBOUNCE_MS = 150;
  var DOCUMENT = "\u0000document";  // the presets' key for the file given on the command line
  var config = JSON.parse(document.getElementById("ae-config").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var spec = $("ae-spec"), status = $("ae-status"), view = $("ae-view"), presetSelect = $("ae-preset");
  var saveButton = $("ae-save"), saveNote = $("ae-save-note");
  var texts = {};          // each preset's (and the document's) text as last edited: switching keeps edits
  var current = null;      // the key of the text in the editor
  var savedText = null;    // the document's text as on disk (opened or last saved)
  var timer = null, inflight = null, sequence = 0, shown = 0;
  var lastGood = null;
  var drawn = null;        // the depth/colour the last answer was asked to draw
  // this page's id: the server skips an analysis this page has already sent a newer one for
  var client = Array.prototype.map.call(crypto.getRandomValues(new Uint8Array(12)),
                                        function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");

  function post(path, body, signal) {
    return fetch(path, {
      method: "POST", signal: signal, cache: "no-store", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-Archcalc-Token": config.token},
      body: JSON.stringify(body)
    });
  }

  function options() {
    var batch = Number($("ae-batch").value);
    return {batch: batch, dtype: $("ae-dtype").value, optimizer: $("ae-optimizer").value,
            memory_model: $("ae-memory-model").value};
  }

  function viewState() {
    var shownView = view.archcalcView;
    return shownView ? shownView.state() : {depth: "full", color: "macs"};
  }

  function request(extra) {
    var body = options(), state = viewState();
    body.depth = state.depth === "full" ? null : Number(state.depth);
    body.color = state.color;
    body.spec = spec.value;
    body.document = current === DOCUMENT;
    for (var key in extra) { body[key] = extra[key]; }
    return body;
  }

  // -- the status line under the text --

  function showStatus(text, kind) {
    status.className = "ae-status" + (kind ? " ae-" + kind : "");
    status.textContent = text;
    document.body.classList.toggle("ae-stale", kind === "error" && lastGood !== null);
  }

  function showError(answer) {
    showStatus(answer.error || "error", "error");
    if (answer.line) {
      var link = document.createElement("a");
      link.href = "#";
      link.textContent = " (line " + answer.line + ", column " + answer.column + ")";
      link.title = "Put the cursor there";
      link.addEventListener("click", function (event) { event.preventDefault(); goTo(answer.line, answer.column); });
      status.appendChild(link);
    }
    var more = (answer.problems ? answer.problems.length - 1 : 0) + (answer.more || 0);
    if (more > 0) {
      var rest = document.createElement("details");
      var summary = document.createElement("summary");
      summary.textContent = more + " more problem" + (more === 1 ? "" : "s");
      rest.appendChild(summary);
      answer.problems.slice(1).forEach(function (problem) {
        var line = document.createElement("div");
        line.textContent = problem;
        rest.appendChild(line);
      });
      status.appendChild(rest);
    }
    if (lastGood !== null) {
      var note = document.createElement("div");
      note.className = "ae-kept";
      note.textContent = "The view shows the last valid spec.";
      status.appendChild(note);
    }
  }

  function goTo(line, column) {
    var lines = spec.value.split("\n"), offset = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) { offset += lines[i].length + 1; }
    offset += Math.max(0, column - 1);
    spec.focus();
    spec.setSelectionRange(offset, offset + 1);
    var lineHeight = parseFloat(getComputedStyle(spec).lineHeight) || 17;
    spec.scrollTop = Math.max(0, (line - 5) * lineHeight);
  }

  // -- analysis --

  // The server draws only what the view shows; the view calls this when the user shows another
  // depth or colour. Asking again for the drawing just asked for would loop: the view then keeps
  // its "drawing..." note until the next edit.
  function missingDrawing(depth, color) {
    if ((depth === "full" ? "null" : String(Number(depth))) + "/" + color !== drawn) { analyzeNow(); }
  }

  function analyzeSoon() {
    clearTimeout(timer);
    timer = setTimeout(analyzeNow, DEBOUNCE_MS);
  }

  function analyzeNow() {
    clearTimeout(timer);
    if (inflight) { inflight.abort(); }
    var batch = Number($("ae-batch").value);
    if (!Number.isInteger(batch) || batch < 1) {
      showError({error: "batch must be a whole number from 1, got " + JSON.stringify($("ae-batch").value)});
      return;
    }
    if (new Blob([spec.value]).size > config.maxBytes) {
      showError({error: "the spec is larger than the editor takes (" + (config.maxBytes / 1048576) + " MiB); use archcalc report"});
      return;
    }
    var controller = new AbortController(), mine = ++sequence;
    inflight = controller;
    var started = performance.now(), body = request({client: client});
    status.classList.add("ae-busy");
    post("/api/analyze", body, controller.signal)
      .then(function (response) { return response.json(); })
      .then(function (answer) {
        if (answer.superseded || mine < shown) { return; }  // an older answer arriving late never replaces a newer one
        shown = mine;
        if (inflight === controller) { inflight = null; }
        if (answer.ok) {
          lastGood = answer.payload;
          drawn = body.depth + "/" + body.color;
          var answered = performance.now();
          window.ArchcalcView.render(view, answer.payload, {onMissingDrawing: missingDrawing});
          var layers = answer.payload.analysis.layers.length;
          showStatus(answer.payload.model + ": " + layers + " layers, analysed in " + Math.round(answered - started) +
                     " ms, drawn in " + Math.round(performance.now() - answered) + " ms", "ok");
        } else {
          showError(answer);
        }
      })
      .catch(function (error) {
        if (error.name === "AbortError") { return; }
        if (inflight === controller) { inflight = null; }
        showError({error: "the server did not answer (" + error.message + "): is archcalc serve still running?"});
      });
  }

  // -- presets and documents --

  function choose(key) {
    if (current !== null) { texts[current] = spec.value; }
    current = key;
    updateSave();
    if (texts[key] !== undefined) {
      spec.value = texts[key];
      spec.scrollTop = 0;
      analyzeNow();
      return;
    }
    showStatus("loading " + key + "...", "busy");
    fetch("/api/preset/" + encodeURIComponent(key), {cache: "no-store", credentials: "same-origin"})
      .then(function (response) { return response.json(); })
      .then(function (answer) {
        if (!answer.ok) { showError(answer); return; }
        texts[key] = answer.spec;
        if (current === key) {
          spec.value = answer.spec;
          spec.scrollTop = 0;
          analyzeNow();
        }
      })
      .catch(function (error) { showError({error: "cannot load " + key + ": " + error.message}); });
  }

  function fillPresets() {
    var groups = {lecture: "Lecture 6", zoo: "Zoo"};
    if (config.document) {
      var own = document.createElement("option");
      own.value = DOCUMENT;
      own.textContent = config.document.name + (config.document.savable ? " (file)" : " (read-only)");
      presetSelect.appendChild(own);
    }
    Object.keys(groups).forEach(function (group) {
      var optgroup = document.createElement("optgroup");
      optgroup.label = groups[group];
      config.presets.forEach(function (preset) {
        if (preset.group !== group) { return; }
        var option = document.createElement("option");
        option.value = option.textContent = preset.name;
        optgroup.appendChild(option);
      });
      presetSelect.appendChild(optgroup);
    });
    presetSelect.addEventListener("change", function () { choose(presetSelect.value); });
  }

  function fillChoices(id, values) {
    var select = $(id);
    values.forEach(function (value) {
      var option = document.createElement("option");
      option.value = option.textContent = value;
      select.appendChild(option);
    });
    select.addEventListener("change", analyzeNow);
  }

  // -- save and downloads --

  function canSave() {
    return current === DOCUMENT && config.document !== null && config.document.savable;
  }

  function updateSave() {
    var dirty = canSave() && spec.value !== savedText;
    saveButton.disabled = !canSave();
    saveButton.textContent = dirty ? "Save*" : "Save";
    if (config.document === null) {
      saveNote.textContent = "";
      saveButton.title = "Save writes back the file given on the command line (archcalc serve FILE.json); none was";
    } else if (!config.document.savable) {
      saveNote.textContent = "";
      saveButton.title = config.document.note;
    } else if (current !== DOCUMENT) {
      saveButton.title = "Save writes " + config.document.path + ": choose it in Preset to edit it";
    } else {
      saveButton.title = "Write the spec to " + config.document.path + " (Ctrl-S)";
    }
  }

  function save() {
    if (!canSave()) { return; }
    var text = spec.value;
    saveNote.textContent = "saving...";
    post("/api/save", {spec: text})
      .then(function (response) { return response.json(); })
      .then(function (answer) {
        if (answer.ok) {
          savedText = text;
          saveNote.textContent = "saved " + new Date().toLocaleTimeString();
        } else {
          saveNote.textContent = "not saved";
          showError(answer);
        }
        updateSave();
      })
      .catch(function (error) { saveNote.textContent = "not saved: " + error.message; });
  }

  function download(blob, filename) {
    var url = URL.createObjectURL(blob), link = document.createElement("a");
    link.href = url;
    link.download = filename;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  }

  function specName() {
    try {
      var name = JSON.parse(spec.value).name;
      if (typeof name === "string" && name) { return name; }
    } catch (error) { /* not JSON yet: name it after the preset */ }
    return current === DOCUMENT ? config.document.name.replace(/\.json$/i, "") : current;
  }

  function safeName(name) {
    return (String(name).replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^[._]+|[._]+$/g, "") || "model").slice(0, 100);
  }

  function downloadReport(format) {
    post("/api/export", request({format: format}))
      .then(function (response) {
        if (!response.ok) { return response.json().then(showError); }
        var disposition = response.headers.get("Content-Disposition") || "";
        var match = /filename="([^"]+)"/.exec(disposition);
        return response.blob().then(function (blob) { download(blob, match ? match[1] : "report." + format); });
      })
      .catch(function (error) { showError({error: "download failed: " + error.message}); });
  }

  function fillDownloads() {
    var labels = {json: "JSON", csv: "CSV", markdown: "Markdown", html: "HTML"};
    config.formats.forEach(function (format) {
      var button = document.createElement("button");
      button.type = "button";
      button.dataset.format = format;
      button.textContent = "report " + (labels[format] || format);
      button.title = "The report as archcalc " + (format === "html" ? "html" : "report --format " + format) + " writes it";
      button.addEventListener("click", function () { downloadReport(format); });
      $("ae-downloads").appendChild(button);
    });
    $("ae-download-spec").addEventListener("click", function () {
      download(new Blob([spec.value], {type: "application/json"}), safeName(specName()) + ".json");
    });
  }

  // -- start --

  fillPresets();
  fillChoices("ae-dtype", config.options.dtype);
  fillChoices("ae-optimizer", config.options.optimizer);
  fillChoices("ae-memory-model", config.options.memory_model);
  fillDownloads();
  $("ae-batch").addEventListener("input", analyzeSoon);
  spec.addEventListener("input", function () { updateSave(); analyzeSoon(); });
  saveButton.addEventListener("click", save);
  document.addEventListener("keydown", function (event) {
    if ((event.ctrlKey || event.metaKey) && event.key === "s") {
      event.preventDefault();
      save();
    }
  });
  window.addEventListener("beforeunload", function (event) {
    if (current === DOCUMENT) { texts[DOCUMENT] = spec.value; }
    if (config.document && config.document.savable && texts[DOCUMENT] !== savedText) {
      event.preventDefault();
      event.returnValue = "";
    }
  });
  if (config.document) {
    texts[DOCUMENT] = savedText = config.document.spec;
    presetSelect.value = DOCUMENT;
    choose(DOCUMENT);
  } else {
    texts[config["default"]] = config.defaultSpec;
    presetSelect.value = config["default"];
    choose(config["default"]);
  }
}());
