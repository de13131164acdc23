/* archcalc's report view: the graph, the layer table, and a panel with one layer's arithmetic.
 *
 * ArchcalcView.render(root, payload) draws a payload of archcalc.render.html.payload() into root,
 * replacing what a previous call drew there (the live editor calls it on every valid edit; for the
 * same model the depth, colour, filter, sort and selection carry over when they still apply). Every figure comes
 * from the payload: this script sorts, filters, highlights and draws the geometry it is given.
 */
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "class") node.className = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) {
      if (child !== null && child !== undefined) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  /* Scroll `container` (only it, not the page) to bring `target` to its middle: up and down, and
   * across too unless `verticalOnly` (a table row keeps its first columns in view). */
  function centre(container, target, verticalOnly) {
    if (!container) return;
    var c = container.getBoundingClientRect(), t = target.getBoundingClientRect();
    container.scrollTop += t.top + t.height / 2 - (c.top + c.height / 2);
    if (!verticalOnly) container.scrollLeft += t.left + t.width / 2 - (c.left + c.width / 2);
  }

  function rowsAt(payload, depth) {
    return depth === "full" ? payload.analysis.layers : payload.folded[depth];
  }

  function product(list) {
    return list.reduce(function (a, b) { return a * b; }, 1);
  }

  /* The value a column sorts by: the figure's exact number (a shape by its size), else the text. */
  function sortValue(column, row, cell) {
    if (column.figure) {
      var value = row[column.figure];
      return Array.isArray(value) ? product(value) : Number(value);
    }
    if (column.header === "Receptive field") {
      var field = row.receptive_field;
      return field.global ? Infinity : product(field.size.map(Number));
    }
    return cell.toLowerCase();
  }

  function View(root, payload, previous, options) {
    this.root = root;
    this.payload = payload;
    this.options = options || {};
    var keep = previous || {};
    this.depth = payload.depths.indexOf(keep.depth) >= 0 ? keep.depth : payload.depth;
    this.color = payload.colors.indexOf(keep.color) >= 0 ? keep.color : payload.color;
    this.filter = keep.filter || "";
    this.sort = keep.sort || null; // {column: index, direction: 1 | -1}
    this.selected = keep.selected || null;
    this.stepTimer = null;
    this.build();
  }

  View.prototype.state = function () {
    return {depth: this.depth, color: this.color, filter: this.filter, sort: this.sort, selected: this.selected};
  };

  View.prototype.destroy = function () {
    if (this.stepTimer) clearInterval(this.stepTimer);
    this.stepTimer = null;
  };

  View.prototype.build = function () {
    var self = this, p = this.payload;
    this.root.textContent = "";
    var depthSelect = el("select", {"data-role": "depth", "aria-label": "depth"});
    p.depths.forEach(function (key) {
      depthSelect.appendChild(el("option", {value: key, text: key === "full" ? "every layer" : key + (key === "1" ? " level" : " levels")}));
    });
    depthSelect.value = this.depth;
    depthSelect.addEventListener("change", function () { self.setDepth(depthSelect.value); });
    var colorSelect = el("select", {"data-role": "color", "aria-label": "colour"});
    p.colors.forEach(function (key) { colorSelect.appendChild(el("option", {value: key, text: key})); });
    colorSelect.value = this.color;
    colorSelect.addEventListener("change", function () { self.setColor(colorSelect.value); });
    var filter = el("input", {type: "search", "data-role": "filter", placeholder: "filter by name or type", "aria-label": "filter"});
    filter.value = this.filter;
    filter.addEventListener("input", function () { self.filter = filter.value; self.applyFilter(); });
    this.count = el("span", {"class": "ac-count", "data-role": "count"});
    this.graph = el("div", {"class": "ac-graph", "data-role": "graph"});
    this.panel = el("section", {"class": "ac-panel", "data-role": "panel", hidden: ""});
    this.table = el("table", {"class": "ac-table", "data-role": "table"});
    var footer = el("footer", {"class": "ac-footer", "data-role": "footer"},
      p.footer.map(function (line) { return el("p", {text: line}); }));
    this.root.appendChild(el("div", {"class": "ac-view"}, [
      el("header", {"class": "ac-head"}, [
        el("h1", {text: p.title}),
        p.description ? el("p", {"class": "ac-desc", text: p.description}) : null,
        el("div", {"class": "ac-warnings"}, (p.analysis.warnings || []).map(function (w) { return el("p", {text: "warning: " + w}); })),
        el("div", {"class": "ac-controls"}, [
          el("label", {}, ["Depth ", depthSelect]), el("label", {}, ["Colour by ", colorSelect]),
          el("label", {}, ["Filter ", filter]), this.count,
        ]),
      ]),
      el("div", {"class": "ac-main"}, [
        this.graph,
        el("div", {"class": "ac-side"}, [this.panel, el("div", {"class": "ac-tablewrap"}, [this.table])]),
      ]),
      footer,
    ]));
    this.drawGraph();
    this.drawTable();
    if (this.selected) this.select(this.selected, false);
  };

  /* ---- the graph ---- */

  View.prototype.drawGraph = function () {
    var self = this, p = this.payload, key = this.depth + "/" + this.color;
    this.graph.textContent = "";
    var svg = p.svg[key];
    if (!svg) {
      var ask = !p.hints[key] && !p.graph_note && this.options.onMissingDrawing;
      if (ask) this.options.onMissingDrawing(this.depth, this.color); // the live editor fetches it
      var why = p.hints[key] || p.graph_note || (ask ? "drawing\u2026" : "not drawn in this page");
      this.graph.appendChild(el("p", {"class": "ac-hint", "data-role": "hint", text: why}));
      return;
    }
    if (p.graph_note) this.graph.appendChild(el("p", {"class": "ac-hint", text: p.graph_note}));
    var holder = el("div", {"class": "ac-svg"});
    holder.innerHTML = svg; // Graphviz's output: every name from the spec is escaped by to_dot
    this.graph.appendChild(holder);
    var boxes = p.boxes[this.depth];
    holder.querySelectorAll("g.node").forEach(function (node) {
      var title = node.querySelector("title"), id = title ? title.textContent : "";
      if (!boxes[id]) return;
      node.setAttribute("data-node", id);
      title.textContent = boxes[id].join(" + "); // the tooltip: the layers it draws, not Graphviz's id
      node.classList.add("ac-node");
      node.addEventListener("click", function () { self.select(boxes[id][0], true); });
    });
  };

  View.prototype.setDepth = function (depth) {
    var previous = this.selected;
    this.depth = depth;
    this.drawGraph();
    this.drawTable();
    if (previous) this.select(this.nameAt(previous), false);
  };

  View.prototype.setColor = function (color) {
    this.color = color;
    this.drawGraph();
    if (this.selected) this.highlight(this.selected, false);
  };

  /* The row at the current depth that shows layer or block `name`: itself, the block folding it, or
   * (going deeper) the first layer of the block. */
  View.prototype.nameAt = function (name) {
    var rows = rowsAt(this.payload, this.depth), i;
    for (i = 0; i < rows.length; i++) if (rows[i].name === name) return name;
    for (i = 0; i < rows.length; i++) if (name.indexOf(rows[i].name + ".") === 0) return rows[i].name;
    for (i = 0; i < rows.length; i++) if (rows[i].name.indexOf(name + ".") === 0) return rows[i].name;
    return null;
  };

  /* ---- the table ---- */

  View.prototype.drawTable = function () {
    var self = this, p = this.payload, rows = rowsAt(p, this.depth), cells = p.cells[this.depth];
    this.table.textContent = "";
    var head = el("tr");
    p.columns.forEach(function (column, index) {
      var th = el("th", {"data-col": String(index), "class": column.justify === "left" ? "ac-left" : "", title: column.doc || "sort"},
        [el("button", {type: "button", text: column.header})]);
      th.firstChild.addEventListener("click", function () { self.sortBy(index); });
      head.appendChild(th);
    });
    this.table.appendChild(el("thead", {}, [head]));
    this.body = el("tbody");
    this.rows = rows.map(function (row, index) {
      var tr = el("tr", {"data-name": row.name, "data-index": String(index), tabindex: "0"}, cells[index].map(function (text, c) {
        return el("td", {"class": p.columns[c].justify === "left" ? "ac-left" : "", text: text});
      }));
      tr.addEventListener("click", function () { self.select(row.name, true); });
      tr.addEventListener("keydown", function (event) { if (event.key === "Enter") self.select(row.name, true); });
      return {tr: tr, row: row, cells: cells[index], index: index,
              search: (row.name + " " + cells[index][1]).toLowerCase()};
    });
    this.table.appendChild(this.body);
    this.table.appendChild(el("tfoot", {}, [el("tr", {}, p.totals.map(function (text, c) {
      return el("td", {"class": p.columns[c].justify === "left" ? "ac-left" : "", text: text});
    }))]));
    this.order();
    this.applyFilter();
  };

  /* Clicking a header sorts by it: numbers largest first, text A to Z; clicking again reverses. */
  View.prototype.sortBy = function (index) {
    var numeric = this.payload.columns[index].figure || this.payload.columns[index].header === "Receptive field";
    if (this.sort && this.sort.column === index) this.sort = {column: index, direction: -this.sort.direction};
    else this.sort = {column: index, direction: numeric ? -1 : 1};
    this.order();
  };

  View.prototype.order = function () {
    var self = this, columns = this.payload.columns, sorted = this.rows.slice();
    if (this.sort) {
      var column = columns[this.sort.column], direction = this.sort.direction;
      sorted.sort(function (a, b) {
        var x = sortValue(column, a.row, a.cells[self.sort.column]), y = sortValue(column, b.row, b.cells[self.sort.column]);
        if (x < y) return -direction;
        if (x > y) return direction;
        return a.index - b.index; // ties keep the network's order
      });
    }
    sorted.forEach(function (item) { self.body.appendChild(item.tr); });
    this.table.querySelectorAll("th").forEach(function (th, index) {
      var on = self.sort && self.sort.column === index;
      th.setAttribute("aria-sort", on ? (self.sort.direction > 0 ? "ascending" : "descending") : "none");
    });
  };

  View.prototype.applyFilter = function () {
    var words = this.filter.toLowerCase().trim(), shown = 0;
    this.rows.forEach(function (item) {
      var hit = !words || item.search.indexOf(words) >= 0;
      item.tr.hidden = !hit;
      if (hit) shown += 1;
    });
    this.count.textContent = shown + " of " + this.rows.length + " rows";
  };

  /* ---- selection ---- */

  View.prototype.select = function (name, scroll) {
    this.selected = name;
    if (!name) { this.panel.hidden = true; this.highlight(null, false); return; }
    this.showPanel(name); // first: the panel's height moves the table
    this.highlight(name, scroll);
  };

  View.prototype.highlight = function (name, scroll) {
    var p = this.payload, node = name ? (p.nodes[this.depth] || {})[name] : null;
    this.root.querySelectorAll(".ac-selected").forEach(function (e) { e.classList.remove("ac-selected"); });
    if (!name) return;
    var held = node ? p.boxes[this.depth][node] : [name];
    this.rows.forEach(function (item) {
      if (held.indexOf(item.row.name) >= 0) item.tr.classList.add("ac-selected");
      if (item.row.name === name && scroll) centre(item.tr.closest(".ac-tablewrap"), item.tr, true); // clear of the sticky head and totals
    });
    var g = node ? this.graph.querySelector('g[data-node="' + node + '"]') : null;
    if (g) {
      g.classList.add("ac-selected");
      if (scroll) centre(this.graph, g);
    }
  };

  View.prototype.showPanel = function (name) {
    var self = this, p = this.payload, rows = rowsAt(p, this.depth), index = -1;
    rows.forEach(function (row, i) { if (row.name === name) index = i; });
    if (index < 0) { this.panel.hidden = true; return; }
    var row = rows[index], cells = p.cells[this.depth][index];
    if (this.stepTimer) { clearInterval(this.stepTimer); this.stepTimer = null; }
    this.panel.textContent = "";
    var close = el("button", {type: "button", "class": "ac-close", "aria-label": "close", text: "\u00d7"});
    close.addEventListener("click", function () { self.select(null); });
    this.panel.appendChild(el("h2", {}, [close, el("span", {text: row.name}), " ", el("small", {text: cells[1]})]));
    this.panel.appendChild(el("dl", {"class": "ac-figures"}, [].concat.apply([], p.columns.slice(2).map(function (column, c) {
      return [el("dt", {text: column.header}), el("dd", {text: cells[c + 2]})];
    }))));
    var lines = p.explain[name];
    if (lines) {
      this.panel.appendChild(el("h3", {text: "Arithmetic (archcalc explain)"}));
      this.panel.appendChild(el("table", {"class": "ac-explain", "data-role": "explain"}, lines.map(function (line) {
        return el("tr", {}, [el("th", {text: line[0]}), el("td", {text: line[1]})]);
      })));
    } else if (row.type === "block") {
      var members = p.analysis.layers.filter(function (layer) { return layer.name.indexOf(name + ".") === 0; });
      this.panel.appendChild(el("p", {text: "A block of " + row.layers + " layers, folded into one row; its figures are its layers' (the output's and receptive field are its last layer's). Its layers:"}));
      this.panel.appendChild(el("ul", {"class": "ac-members"}, members.map(function (layer) {
        var b = el("button", {type: "button", text: layer.name});
        b.addEventListener("click", function () { self.depth = "full"; self.root.querySelector('[data-role="depth"]').value = "full"; self.setDepth("full"); self.select(layer.name, true); });
        return el("li", {}, [b]);
      })));
    }
    var fieldOf = p.fields[name] ? name : null;
    if (row.type === "block") { // a block's field is its last layer's
      var inside = p.analysis.layers.filter(function (layer) { return layer.name.indexOf(name + ".") === 0; });
      if (inside.length && p.fields[inside[inside.length - 1].name]) fieldOf = inside[inside.length - 1].name;
    }
    if (fieldOf) this.panel.appendChild(fieldSection(p.fields[fieldOf]));
    if (p.windows[name]) this.panel.appendChild(this.windowSection(p.windows[name]));
    this.panel.hidden = false;
  };

  /* ---- drawings of one layer ---- */

  function canvas(width, height) {
    var c = el("canvas", {width: String(width), height: String(height)});
    return c;
  }

  function numberInput(value, max, label) {
    return el("input", {type: "number", min: "0", max: String(max), value: String(value), "aria-label": label});
  }

  /* The receptive field of output unit (i, j) on the input grid: rows i*jump - padding .. + size - 1. */
  function fieldSection(f) {
    var size = 280, pad = 8;
    var unit = [Math.floor((f.output[0] - 1) / 2), Math.floor((f.output[1] - 1) / 2)];
    var inputs = [numberInput(unit[0], f.output[0] - 1, "output row"), numberInput(unit[1], f.output[1] - 1, "output column")];
    var picture = canvas(size + 2 * pad, size + 2 * pad), text = el("p", {"data-role": "field-text"});
    function region(axis, i) {
      var start = i * f.stride[axis] - f.padding[axis];
      return [start, start + f.size[axis] - 1, f.centre[axis] + i * f.stride[axis]];
    }
    function draw() {
      var i = clamp(Number(inputs[0].value), 0, f.output[0] - 1), j = clamp(Number(inputs[1].value), 0, f.output[1] - 1);
      var rows = region(0, i), cols = region(1, j);
      var low = [Math.min(0, rows[0]), Math.min(0, cols[0])], high = [Math.max(f.input[0], rows[1] + 1), Math.max(f.input[1], cols[1] + 1)];
      var scale = size / Math.max(high[0] - low[0], high[1] - low[1]);
      var ctx = picture.getContext("2d");
      function x(v) { return pad + (v - low[1]) * scale; }
      function y(v) { return pad + (v - low[0]) * scale; }
      ctx.clearRect(0, 0, picture.width, picture.height);
      ctx.fillStyle = "#cfe0f1"; ctx.strokeStyle = "#2b5d8a"; ctx.lineWidth = 1;
      ctx.fillRect(x(0), y(0), f.input[1] * scale, f.input[0] * scale);
      ctx.strokeRect(x(0), y(0), f.input[1] * scale, f.input[0] * scale);
      if (i + 1 < f.output[0] || j + 1 < f.output[1]) { // the next unit's field: the effective stride
        var nr = region(0, Math.min(i + 1, f.output[0] - 1)), nc = region(1, Math.min(j + 1, f.output[1] - 1));
        ctx.setLineDash([3, 3]); ctx.strokeStyle = "#888";
        ctx.strokeRect(x(nc[0]), y(nr[0]), (nc[1] - nc[0] + 1) * scale, (nr[1] - nr[0] + 1) * scale);
      }
      ctx.setLineDash([]);
      ctx.fillStyle = "rgba(239, 101, 72, 0.35)"; ctx.strokeStyle = "#c0392b"; ctx.lineWidth = 2;
      ctx.fillRect(x(cols[0]), y(rows[0]), (cols[1] - cols[0] + 1) * scale, (rows[1] - rows[0] + 1) * scale);
      ctx.strokeRect(x(cols[0]), y(rows[0]), (cols[1] - cols[0] + 1) * scale, (rows[1] - rows[0] + 1) * scale);
      ctx.fillStyle = "#c0392b";
      ctx.beginPath(); ctx.arc(x(cols[2] + 0.5), y(rows[2] + 0.5), 3, 0, 2 * Math.PI); ctx.fill();
      function axisText(label, a) { // where the units along one axis look, from the field's numbers on that axis
        var v = a === 0 ? "i" : "j";
        return label + ": from " + v + "*" + f.stride[a] + plus(-f.padding[a]) + " to " + v + "*" + f.stride[a] +
          plus(f.size[a] - 1 - f.padding[a]) + ", centred on " + v + "*" + f.stride[a] + plus(f.centre[a]) +
          " (field " + f.size[a] + ", padding " + f.padding[a] + ")";
      }
      function sameAxes() {
        return f.size[0] === f.size[1] && f.stride[0] === f.stride[1] && f.padding[0] === f.padding[1] &&
          f.centre[0] === f.centre[1];
      }
      text.textContent = "Output unit (" + i + ", " + j + ") of " + f.output[0] + "x" + f.output[1] + " sees input rows " +
        rows[0] + " to " + rows[1] + " and columns " + cols[0] + " to " + cols[1] + " of " + f.input[0] + "x" + f.input[1] +
        " (field " + f.size[0] + "x" + f.size[1] + "; outside 0.." + (f.input[0] - 1) + " is padding), centred on (" +
        rows[2] + ", " + cols[2] + "); effective stride " + f.stride[0] + "x" + f.stride[1] +
        ": the next unit's field (dashed) starts that much further. " + axisText("Unit i's rows", 0) +
        (sameAxes() ? " (columns alike)." : "; " + axisText("unit j's columns", 1) + ".") +
        (f.exact ? "" : " An upper bound (?).") + (f.aligned ? "" : " Merged branches' centres differ (!): the largest path's field.");
    }
    inputs.forEach(function (input, a) {
      input.addEventListener("input", draw);
      // once typing ends, the box shows the unit drawn (999 -> the last unit, "abc" -> 0)
      input.addEventListener("change", function () { input.value = clamp(Number(input.value), 0, f.output[a] - 1); draw(); });
    });
    draw();
    return el("section", {"class": "ac-field", "data-role": "field"}, [
      el("h3", {text: "Receptive field on the input"}),
      el("div", {"class": "ac-pick"}, ["output unit row ", inputs[0], " column ", inputs[1]]),
      picture, text,
    ]);
  }

  function plus(value) { // " + 3", " - 3" or "" after a term
    return value > 0 ? " + " + value : value < 0 ? " - " + (-value) : "";
  }

  function clamp(v, low, high) {
    return isNaN(v) ? low : Math.max(low, Math.min(high, Math.floor(v)));
  }

  /* The layer's own sliding window, drawn as the conv-arithmetic animations draw it (Dumoulin and
   * Visin 2016): the input (blue) with its padding (dashed) and, for a transposed conv, the zeros
   * inserted between its values (white); the kernel's taps (dark) at one output position; the
   * output (green) with that position marked. Large grids show the part around the window. */
  View.prototype.windowSection = function (w) {
    var self = this, cell = 13, view = 18;
    var axes = [0, 1].map(function (a) {
      var D = w.input_dilation[a], dilated = (w.input[a] - 1) * D + 1;
      var before = w.padding[a][0], after = w.padding[a][1];
      // grid cell g is position g + lo of the padded input, where windows start at 0; a negative
      // padding (a crop) leaves input values outside every window, drawn too (lo < 0)
      var lo = Math.min(0, before), hi = Math.max(dilated + before + after, before + dilated);
      return {D: D, before: before, lo: lo, windows: dilated + before + after, length: hi - lo, k: w.kernel[a],
              s: w.stride[a], d: w.dilation[a], out: w.output[a], span: w.dilation[a] * (w.kernel[a] - 1) + 1,
              dilated: dilated};
    });
    var total = axes[0].out * axes[1].out, position = 0;
    var picture = canvas(2 * (view + 2) * cell + 40, (view + 2) * cell + 10);
    var caption = el("p", {"data-role": "window-text"});
    function shown(axis, from, width) { // the first index of a view of `view` cells holding [from, from + width)
      if (axis.length <= view) return 0;
      return Math.max(0, Math.min(axis.length - view, from - Math.floor((view - width) / 2)));
    }
    function draw() {
      var o = [Math.floor(position / axes[1].out), position % axes[1].out];
      var ctx = picture.getContext("2d");
      ctx.clearRect(0, 0, picture.width, picture.height);
      var origin = axes.map(function (a, i) { return shown(a, o[i] * a.s - a.lo, a.span); });
      var count = axes.map(function (a) { return Math.min(a.length, view); });
      // what is drawn, for tests and tools: the grid's cells and the input position of the window's first tap
      picture.dataset.grid = count.join("x");
      picture.dataset.windowAt = axes.map(function (a, i) { return o[i] * a.s - a.before; }).join(",");
      var left = 5, top = 5;
      for (var r = 0; r < count[0]; r++) for (var c = 0; c < count[1]; c++) {
        var g = [axes[0].lo + origin[0] + r, axes[1].lo + origin[1] + c], kind = axes.map(function (a, i) {
          var x = g[i] - a.before; // position in the (zero-inserted) input
          return x < 0 || x >= a.dilated ? "pad" : x % a.D ? "zero" : g[i] < 0 || g[i] >= a.windows ? "cut" : "in";
        });
        var px = left + c * cell, py = top + r * cell;
        var isPad = kind[0] === "pad" || kind[1] === "pad", isZero = !isPad && (kind[0] === "zero" || kind[1] === "zero");
        var isCut = !isPad && !isZero && (kind[0] === "cut" || kind[1] === "cut"); // no window reaches it (a crop)
        ctx.setLineDash(isPad || isZero ? [2, 2] : []);
        ctx.fillStyle = isPad ? "#ffffff" : isZero ? "#f4f8fc" : isCut ? "#d9e7f4" : "#8fb8de";
        ctx.fillRect(px, py, cell - 1, cell - 1);
        ctx.strokeStyle = isPad ? "#999" : "#2b5d8a";
        ctx.strokeRect(px + 0.5, py + 0.5, cell - 2, cell - 2);
        var tap = axes.every(function (a, i) {
          var t = g[i] - o[i] * a.s;
          return t >= 0 && t < a.span && t % a.d === 0;
        });
        if (tap) { ctx.fillStyle = "rgba(20, 50, 90, 0.75)"; ctx.fillRect(px, py, cell - 1, cell - 1); }
      }
      ctx.setLineDash([]);
      ctx.strokeStyle = "#14325a"; ctx.lineWidth = 2;
      ctx.strokeRect(left + (o[1] * axes[1].s - axes[1].lo - origin[1]) * cell, top + (o[0] * axes[0].s - axes[0].lo - origin[0]) * cell,
        axes[1].span * cell - 1, axes[0].span * cell - 1);
      ctx.lineWidth = 1;
      var outLeft = left + (view + 2) * cell + 20;
      var outOrigin = axes.map(function (a, i) { return a.out <= view ? 0 : Math.max(0, Math.min(a.out - view, o[i] - view / 2)); });
      for (var i = 0; i < Math.min(axes[0].out, view); i++) for (var j = 0; j < Math.min(axes[1].out, view); j++) {
        var current = outOrigin[0] + i === o[0] && outOrigin[1] + j === o[1];
        ctx.fillStyle = current ? "#2e7d32" : "#a5d6a7";
        ctx.fillRect(outLeft + j * cell, top + i * cell, cell - 1, cell - 1);
      }
      var note = axes.some(function (a) { return a.length > view || a.out > view; }) ? " The grids show the part around the window." : "";
      caption.textContent = "Output (" + o[0] + ", " + o[1] + ") of " + w.output[0] + "x" + w.output[1] + ": kernel " +
        w.kernel.join("x") + ", stride " + w.stride.join("x") + ", dilation " + w.dilation.join("x") + ", padding " +
        w.padding.map(function (p) { return p.join("/"); }).join(", ") + " (before/after, rows then columns)" +
        (w.transposed ? "; input dilation " + w.input_dilation.join("x") + ": " + (w.input_dilation[0] - 1) + "x" +
          (w.input_dilation[1] - 1) + " zeros between input values (light, dashed) under a stride-1 window, as a transposed conv slides" : "") +
        (w.uniform ? "" : "; the windows differ in size or spacing (adaptive): the largest is drawn") +
        ". Input " + w.input.join("x") + " (blue), padding (dashed), output (green)." +
        (axes.some(function (a) { return a.lo < 0 || a.length > a.windows - a.lo; }) ?
          " Negative padding crops: the pale input values are outside every window." : "") + note;
    }
    function step(by) { position = (position + by + total) % total; draw(); }
    var back = el("button", {type: "button", text: "\u25c0", "aria-label": "previous position"});
    var play = el("button", {type: "button", text: "play", "data-role": "play"});
    var next = el("button", {type: "button", text: "\u25b6", "aria-label": "next position"});
    back.addEventListener("click", function () { step(-1); });
    next.addEventListener("click", function () { step(1); });
    play.addEventListener("click", function () {
      if (self.stepTimer) { clearInterval(self.stepTimer); self.stepTimer = null; play.textContent = "play"; return; }
      self.stepTimer = setInterval(function () { step(1); }, 400);
      play.textContent = "pause";
    });
    draw();
    return el("section", {"class": "ac-window", "data-role": "window"}, [
      el("h3", {text: "Sliding window (" + w.type + ")"}), el("div", {"class": "ac-steps"}, [back, play, next]), picture, caption,
    ]);
  };

  var api = {
    /* Draw `payload` into `root`, replacing an earlier view there; returns the view (select(name),
     * setDepth(key), setColor(name), sortBy(column index) drive it). options.onMissingDrawing(depth,
     * colour), if given, is called when the user shows a drawing the payload lacks and has no hint
     * for (a payload made with drawings="first"): fetch one with that depth (a key of payload.depths:
     * "1", "2"... or "full" for every layer) and colour, and render it. */
    render: function (root, payload, options) {
      if (!payload || payload.format !== "archcalc-html 1") throw new Error("archcalc: not a report payload");
      var previous = root.archcalcView;
      if (previous) previous.destroy();
      // the same network again (an edit): keep what the user chose; another one starts afresh
      var same = previous && previous.payload.model === payload.model;
      root.archcalcView = new View(root, payload, same ? previous.state() : null, options);
      return root.archcalcView;
    },
  };
  window.ArchcalcView = api;
})();
