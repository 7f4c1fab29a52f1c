/* Overview: the PackML diagram and the command buttons follow the unit state; KPIs, links and
   rejects follow the overview topic; the recent commands list follows the commands topic. */
"use strict";

(() => {
  const { $, el, setText, fmt } = HMI;
  const WARN = ["HELD", "HOLDING", "SUSPENDED", "SUSPENDING", "STOPPED", "STOPPING"];
  const ALARM = ["ABORTED", "ABORTING"];
  const DANGER = { ABORT: "Abort stops the sorter at once; parcels on the belt will need recovery.", STOP: "Stop brings the sorter to a controlled stop." };

  function overview(ov) {
    if (!ov.store || !ov.store.ok) return;
    const state = ov.unit.state;
    document.querySelectorAll(".pml-state").forEach((g) => {
      const cur = g.dataset.state === state;
      g.classList.toggle("current", cur);
      g.classList.toggle("abnormal-warn", cur && WARN.includes(state));
      g.classList.toggle("abnormal-alarm", cur && ALARM.includes(state));
    });
    setText("ov-state-since", ov.unit.state_t ? "since " + fmt.clock(ov.unit.state_t) : "");
    const allowed = new Set(ov.unit.allowed);
    document.querySelectorAll("#packml-commands .cmd").forEach((b) => {
      b.disabled = !HMI.canOperate() || !allowed.has(b.dataset.command);
    });
    const r = ov.rates;
    setText("kpi-rate-now", fmt.num(r.now_per_hour));
    setText("kpi-rate-shift", fmt.num(r.shift_per_hour));
    setText("kpi-shift-finished", fmt.num(r.shift_finished));
    setText("kpi-shift-rejected", fmt.num(r.shift_rejected));
    setText("kpi-shift-lost", fmt.num(r.shift_lost));
    setText("kpi-read-rate", fmt.pct(r.read_rate));
    setText("kpi-recirc-rate", fmt.pct(r.recirculation_rate));
    setText("kpi-speed", ov.speed_mps === null ? "-" : fmt.num(ov.speed_mps, 2));
    setText("kpi-in-flight", fmt.num(ov.health.in_flight));
    setText("kpi-plan-version", ov.plan_version === null || ov.plan_version === undefined ? "-" : ov.plan_version);
    setText("kpi-shift-start", fmt.clock(r.shift_start, true));
    setText("kpi-mode", ov.unit.mode);
    $("kpi-tally").classList.toggle("hidden", ov.tally.caught_up);
    const svc = $("link-service"); svc.textContent = ov.service.status; svc.className = "lk-" + ov.service.status;
    setText("link-health-age", ov.service.health_age_s === null ? "-" : ov.service.health_age_s);
    for (const name of ["conveyor", "diverter", "camera"]) {
      const td = $("link-" + name); td.textContent = ov.links[name]; td.className = "lk-" + ov.links[name];
    }
    setText("link-lag", ov.health.lag_p99_ms === null || ov.health.lag_p99_ms === undefined ? "-" : ov.health.lag_p99_ms);
    setText("link-faults", (ov.health.faults || []).join(", ") || "-");
    const body = $("rejects-body");
    body.replaceChildren(...ov.rejects.map((x) => el("tr", {}, el("td", { text: x.reason }), el("td", { class: "num", text: fmt.num(x.count) }))));
  }

  function commands(data) {
    if (!data.store || !data.store.ok) return;
    $("commands-body").replaceChildren(...data.commands.slice(0, 8).map((c) => {
      const cls = !c.done ? "pending" : (String(c.result).startsWith("refused") ? "refused" : "accepted");
      return el("tr", { id: "cmdrow-" + c.id, "data-testid": "cmdrow-" + c.id },
        el("td", { class: "num", text: c.id }), el("td", { text: fmt.clock(c.t) }), el("td", { text: c.command }),
        el("td", { text: c.user }), el("td", { class: "args", text: JSON.stringify(c.args) }),
        el("td", { class: cls, text: c.done ? c.result : "waiting for the service" }));
    }));
  }

  document.querySelectorAll("#packml-commands .cmd").forEach((b) => {
    b.addEventListener("click", () => {
      const c = b.dataset.command;
      if (DANGER[c]) HMI.confirmThen(c, DANGER[c], () => HMI.send(c, {}));
      else HMI.send(c, {});
    });
  });
  const setMode = $("mode-set");
  if (setMode) {
    setMode.addEventListener("click", () => {
      const mode = $("mode-select").value;
      HMI.confirmThen("Change unit mode", `Switch the unit to ${mode}?`, () => HMI.send("MODE", { mode }));
    });
  }
  HMI.on("overview", overview);
  HMI.on("commands", commands);
})();
