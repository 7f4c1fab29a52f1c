/* Sort plan: validate and preview an uploaded plan, then activate it; roll back; view any
   stored version; add manifest rows. The current version and history follow the plans topic. */
"use strict";

(() => {
  const { $, el, fmt, setText } = HMI;
  let validated = null;  // the FormData that passed validation (activate sends exactly it)
  let manifestChecked = null;

  function show(id, on) { const e = $(id); if (e) e.classList.toggle("hidden", !on); }

  function errorText(e) { return typeof e === "object" && e ? (e.text || e.message) : String(e || "refused"); }

  async function validate(ev) {
    ev.preventDefault();
    const data = new FormData($("plan-form"));
    $("plan-activate").disabled = true;
    validated = null;
    setText("plan-summary", "validating and replaying the manifest ...");
    show("plan-result", true); show("plan-error", false);
    const r = await HMI.postForm("/api/plan/validate", data);
    const b = r.body;
    if (!b.ok) {
      $("plan-error").textContent = errorText(b.error);
      show("plan-error", true);
      setText("plan-summary", "");
      $("plan-preview-chutes").replaceChildren(); $("plan-preview-reasons").replaceChildren();
      HMIChart.draw($("plan-preview-chart").querySelector(".plot"), { x: [], series: [], empty: "no preview: the plan has errors" });
      return;
    }
    validated = data;
    $("plan-activate").disabled = false;
    const p = b.preview;
    if (!p) {
      setText("plan-summary", `${b.source}: ${b.rules} rules, valid. No preview: ${b.preview_error || "no manifest"}`);
      return;
    }
    setText("plan-summary", `${b.source}: ${b.rules} rules, valid${b.settings_given ? " (with new routing settings)" : ""}. ` +
      `What-if over ${fmt.num(p.parcels)} manifest parcels: ${fmt.num(p.overflow_events)} overflow events, ` +
      `${p.full_chutes.length} chutes reach capacity, ${p.groups.split} of ${p.groups.total} consolidation groups split.` +
      (b.current ? ` The plan in force, same manifest: ${fmt.num(b.current.overflow_events)} overflow events, ` +
        `${b.current.full_chutes.length} chutes reach capacity, ${b.current.groups.split} groups split.` : ""));
    const now = b.current ? b.current.peak_fill : {};
    HMIChart.draw($("plan-preview-chart").querySelector(".plot"), {
      x: p.series.hours, xKind: "hours", yMin: 0, limit: 100,
      series: p.series.lines.map((l) => ({ name: `${l.id} ${l.name}`, values: l.values })),
    });
    $("plan-preview-chutes").replaceChildren(...p.chutes.map((c) => el("tr", { class: c.peak_fill >= c.capacity ? "pl-refused" : "" },
      el("td", { text: `${c.id} ${c.name}` }), el("td", { text: c.kind }), el("td", { class: "num", text: fmt.num(c.parcels) }),
      el("td", { class: "num", text: `${fmt.num(c.peak_fill)} (${c.peak_pct} %)` }),
      el("td", { class: "num", text: now[c.id] === undefined ? "-" : fmt.num(now[c.id]) }), el("td", { class: "num", text: c.capacity }))));
    $("plan-preview-reasons").replaceChildren(...Object.entries(p.reasons).map(([k, v]) => el("tr", {},
      el("td", { text: k.toLowerCase() }), el("td", { class: "num", text: fmt.num(v) }))));
  }

  function activate() {
    if (!validated) return;
    const name = validated.get("plan") && validated.get("plan").name;
    HMI.confirmThen("Activate sort plan", `Send ${name || "this plan"} to the service? It takes effect for the next routing decisions.`, async () => {
      const sent = validated;
      validated = null;  // one plan, one activation: the button waits for the next validation
      $("plan-activate").disabled = true;
      const r = await HMI.postForm("/api/plan/activate", sent);
      HMI.afterSend(r, `PLAN_ACTIVATE ${name || ""}`);
    });
  }

  function plans(data) {
    if (!data.store || !data.store.ok) return;
    const a = data.active;
    setText("plan-active-version", a.version + (a.from_file ? " (file loaded at start)" : ""));
    setText("plan-active-source", a.source);
    setText("plan-active-rules", a.rules === null ? "-" : a.rules);
    $("plans-body").replaceChildren(...data.history.map((p) => el("tr", { id: `plan-row-${p.version}`, "data-testid": `plan-row-${p.version}`, class: `pl-${p.state}` },
      el("td", { class: "num", text: p.version }), el("td", { text: fmt.clock(p.t, true) }), el("td", { text: p.user }),
      el("td", { text: p.source }), el("td", { text: p.state }), el("td", { text: p.detail }),
      el("td", {}, el("button", { type: "button", class: "small", id: `plan-view-${p.version}`, "data-testid": `plan-view-${p.version}`, "data-version": p.version, text: "View" })))));
  }

  $("plans-body").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button[data-version]");
    if (!b) return;
    const r = await HMI.request(`/api/plans/${b.dataset.version}`);
    const pre = $("plan-text");
    pre.textContent = r.ok ? `# version ${r.body.version} (${r.body.source})\n${r.body.plan_csv}` + (r.body.settings_yaml ? `\n# routing settings\n${r.body.settings_yaml}` : "") : errorText(r.body.error);
    pre.classList.remove("hidden");
  });

  async function checkManifest(ev) {
    ev.preventDefault();
    const data = new FormData($("manifest-form"));
    $("manifest-send").disabled = true;
    manifestChecked = null;
    const r = await HMI.postForm("/api/manifest/validate", data);
    const out = $("manifest-result");
    out.classList.remove("hidden");
    if (!r.body.ok) { out.className = "error"; out.textContent = errorText(r.body.error); return; }
    out.className = "";
    out.textContent = `${r.body.source}: ${fmt.num(r.body.rows)} good rows, ${fmt.num(r.body.bad_rows)} bad rows left out` +
      (r.body.issues.length ? ` (first: ${r.body.issues.slice(0, 3).join("; ")})` : "");
    if (r.body.rows > 0) { manifestChecked = data; $("manifest-send").disabled = false; }
  }

  if ($("plan-form")) {
    $("plan-form").addEventListener("submit", validate);
    $("plan-file").addEventListener("change", () => { $("plan-activate").disabled = true; validated = null; });
    $("settings-file").addEventListener("change", () => { $("plan-activate").disabled = true; validated = null; });
    $("plan-activate").addEventListener("click", activate);
    $("manifest-form").addEventListener("submit", checkManifest);
    $("manifest-file").addEventListener("change", () => { $("manifest-send").disabled = true; manifestChecked = null; });
    $("manifest-send").addEventListener("click", () => {
      if (!manifestChecked) return;
      HMI.confirmThen("Add manifest rows", "Send these manifest rows to the service?", async () => {
        const r = await HMI.postForm("/api/manifest", manifestChecked);
        HMI.afterSend(r, "MANIFEST_ADD");
      });
    });
  }
  const rb = $("plan-rollback");
  if (rb) rb.addEventListener("click", () => HMI.confirmThen("Roll back sort plan", "Go back to the previous sort plan version?", async () => {
    const r = await HMI.postJSON("/api/plan/rollback", {});
    HMI.afterSend(r, "PLAN_ROLLBACK");
  }));
  HMI.on("plans", plans);
})();
