/* Trends: fetch /api/trends for the chosen span and draw the charts; redraw each new minute
   (the minute topic) and when the window is resized. */
"use strict";

(() => {
  const { $ } = HMI;
  let hours = 4;
  let last = null;

  function draw(d) {
    if (!d || !d.parcels) return;
    const p = d.parcels, h = d.health;
    const win = { xMin: d.start, xMax: d.end };
    const plot = (id, opts) => HMIChart.draw($(id).querySelector(".plot"), Object.assign({}, win, opts));
    plot("chart-throughput", { x: p.t, series: [{ name: "parcels/h", values: p.per_hour }] });
    const reads = p.read_rate.map((v) => (v === null ? null : 100 * v));
    const lowest = Math.min(100, ...reads.filter((v) => v !== null));
    plot("chart-read-rate", { x: p.t, yMin: Math.max(0, Math.floor(lowest / 10) * 10 - 10), yMax: 100, series: [{ name: "read rate %", values: reads }] });
    $("chart-decision-source").textContent = d.health_source === "none" ? "(no health records yet)" : `(from ${d.health_source === "table" ? "the store's health table" : "this HMI's samples"})`;
    plot("chart-decision", { x: h.t, limit: 5, series: [{ name: "decision p99", values: h.decision_p99_ms }] });
    plot("chart-lag", { x: h.t, series: [{ name: "cycle lag p99", values: h.lag_p99_ms }, { name: "cycle lag p99 (hist)", values: h.cycle_lag_p99_ms }, { name: "commit p99", values: h.commit_p99_ms }] });
    plot("chart-recirc", { x: p.t, series: [{ name: "inducted", values: p.inducted }, { name: "recirculated", values: p.recirculated }, { name: "rejected", values: p.rejected }] });
    const f = d.chute_fill;
    const peak = (l) => Math.max(0, ...l.values.filter((v) => v !== null));
    const lines = f.lines.slice().sort((a, b) => peak(b) - peak(a)).slice(0, 8);
    plot("chart-fill", { x: f.t, yMin: 0, limit: 100, series: lines.map((l) => ({ name: `${l.id} ${l.name}`, values: l.values })) });
    $("trend-updated").textContent = "updated " + HMI.fmt.clock(d.end);
  }

  async function load() {
    const r = await HMI.request(`/api/trends?hours=${hours}`);
    if (r.ok) { last = r.body; draw(last); }
  }

  document.querySelectorAll(".range-btn").forEach((b) => b.addEventListener("click", () => {
    hours = Number(b.dataset.hours);
    document.querySelectorAll(".range-btn").forEach((x) => x.classList.toggle("active", x === b));
    load();
  }));
  let resize = null;
  window.addEventListener("resize", () => { clearTimeout(resize); resize = setTimeout(() => draw(last), 200); });
  HMI.on("minute", load);
  load();
})();
