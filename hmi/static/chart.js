/* A small SVG line chart for the trends and the plan preview: axes, grid, lines (a null value
   breaks the line), an optional limit line and a legend. Styling is in hmi.css (classes
   ch-* and s0..s9), so the same chart looks right in the dark theme and passes the CSP. */
"use strict";

const HMIChart = (() => {
  const NS = "http://www.w3.org/2000/svg";

  function node(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function nice(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v - 1e-9) return m * p;
    return 10 * p;
  }

  function timeLabel(t) {
    const d = new Date(t * 1000);
    return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  }

  /* opts: {x: [...], series: [{name, values}], xKind: "time"|"hours", xMin, xMax, yMin, yMax, limit,
     yFormat, empty}. xMin/xMax fix the time window (charts of one page share it). */
  function draw(container, opts) {
    container.textContent = "";
    const W = Math.max(container.clientWidth, 320), H = Math.max(container.clientHeight, 180);
    const series = (opts.series || []).filter((s) => s.values && s.values.some((v) => v !== null && v !== undefined));
    // legend: items side by side, wrapped into rows as their names need
    const items = [];
    let lx = 0, lrow = 0;
    const room = W - 56 - 14;
    for (const s of series) {
      const w = 22 + 6.4 * s.name.length + 14;
      if (lx > 0 && lx + w > room) { lx = 0; lrow += 1; }
      items.push({ x: lx, row: lrow });
      lx += w;
    }
    const legendRows = series.length ? lrow + 1 : 0;
    const m = { l: 56, r: 14, t: 10, b: 24 + legendRows * 16 };
    const svg = node("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
    container.append(svg);
    const x = opts.x || [];
    if (!x.length || !series.length) {
      svg.append(node("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "ch-empty" }, opts.empty || "no data yet"));
      return svg;
    }
    let lo = opts.yMin, hi = opts.yMax;
    const all = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
    if (opts.limit !== undefined && opts.limit !== null) all.push(opts.limit);
    if (lo === undefined) lo = Math.min(0, ...all);
    if (hi === undefined) hi = lo + 4 * nice((Math.max(...all) * 1.05 - lo) / 4);
    if (hi <= lo) hi = lo + 1;
    const x0 = opts.xMin !== undefined ? opts.xMin : x[0];
    let x1 = opts.xMax !== undefined ? opts.xMax : x[x.length - 1];
    if (x1 <= x0) x1 = x0 + 1;
    const px = (v) => m.l + (v - x0) / (x1 - x0) * (W - m.l - m.r);
    const py = (v) => H - m.b - (v - lo) / (hi - lo) * (H - m.t - m.b);
    const fmtY = opts.yFormat || ((v) => (Math.abs(v) >= 1000 ? (v / 1000).toFixed(v % 1000 ? 1 : 0) + "k" : String(+v.toFixed(2))));
    for (let i = 0; i <= 4; i++) {
      const v = lo + (hi - lo) * i / 4;
      svg.append(node("line", { x1: m.l, x2: W - m.r, y1: py(v), y2: py(v), class: "ch-grid" }));
      svg.append(node("text", { x: m.l - 6, y: py(v) + 4, "text-anchor": "end", class: "ch-tick" }, fmtY(v)));
    }
    const ticks = 6;
    for (let i = 0; i <= ticks; i++) {
      const v = x0 + (x1 - x0) * i / ticks;
      const label = opts.xKind === "hours" ? `${v.toFixed(1)} h` : timeLabel(v);
      svg.append(node("text", { x: px(v), y: H - m.b + 16, "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle", class: "ch-tick" }, label));
    }
    svg.append(node("line", { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b, class: "ch-axis" }));
    svg.append(node("line", { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, class: "ch-axis" }));
    if (opts.limit !== undefined && opts.limit !== null) {
      svg.append(node("line", { x1: m.l, x2: W - m.r, y1: py(opts.limit), y2: py(opts.limit), class: "ch-limit" }));
    }
    series.forEach((s, k) => {
      let d = "", pen = false;
      s.values.forEach((v, i) => {
        if (v === null || v === undefined || i >= x.length) { pen = false; return; }
        d += (pen ? "L" : "M") + px(x[i]).toFixed(1) + "," + py(Math.min(Math.max(v, lo), hi)).toFixed(1);
        pen = true;
      });
      const path = node("path", { d, class: `ch-line s${k % 10}` });
      path.append(node("title", {}, s.name));
      svg.append(path);
      // a point with no neighbour draws no line: mark it
      s.values.forEach((v, i) => {
        const alone = v !== null && v !== undefined && (i === 0 || s.values[i - 1] === null || s.values[i - 1] === undefined)
          && (i === s.values.length - 1 || s.values[i + 1] === null || s.values[i + 1] === undefined);
        if (alone && i < x.length) svg.append(node("circle", { cx: px(x[i]), cy: py(Math.min(Math.max(v, lo), hi)), r: 2.5, class: `s${k % 10}` }));
      });
      const it = items[k];
      const ix = m.l + it.x, iy = H - legendRows * 16 + it.row * 16 + 4;
      svg.append(node("rect", { x: ix, y: iy, width: 12, height: 4, class: `s${k % 10}` }));
      svg.append(node("text", { x: ix + 16, y: iy + 6, class: "ch-legend" }, s.name));
    });
    return svg;
  }

  return { draw };
})();
