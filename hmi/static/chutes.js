/* Chutes: tiles follow the chutes topic; a click opens the dialog to take a chute out of
   service (with a reason) or put it back. */
"use strict";

(() => {
  const { $, setText, fmt } = HMI;
  let current = null;

  function update(data) {
    if (!data.store || !data.store.ok) return;
    $("chutes-nolive").classList.toggle("hidden", !!data.live);
    for (const row of data.rows) {
      for (const c of row.chutes) {
        const t = $("chute-" + c.id);
        if (!t) continue;
        t.classList.toggle("st-fault", c.fault);
        t.classList.toggle("st-full", c.full);
        t.classList.toggle("st-disabled", c.disabled);
        t.classList.toggle("st-out", c.out);
        t.classList.toggle("st-unknown", !c.known);
        t.dataset.out = c.out ? "1" : "0";
        t.dataset.outBy = c.out_by; t.dataset.outReason = c.out_reason;
        const flags = [c.fault && "FAULT", c.full && "FULL", c.disabled && "DISABLED", c.out && "OUT OF SERVICE"].filter(Boolean);
        setText(`chute-${c.id}-status`, flags.join(" "));
        setText(`chute-${c.id}-fill`, `${c.fill === null ? "-" : fmt.num(c.fill)}/${c.capacity}`);
        setText(`chute-${c.id}-count`, fmt.num(c.count_shift));
        const d = c.destinations.length ? c.destinations.slice(0, 3).join(", ") + (c.destinations.length > 3 ? ` +${c.destinations.length - 3}` : "") : (c.kind !== "normal" ? c.kind : "-");
        setText(`chute-${c.id}-dest`, d);
        $(`chute-${c.id}-fillbar`).setAttribute("width", String(Math.min(c.fill_pct || 0, 100)));
        t.title = `chute ${c.id} ${c.name} (${c.kind})` + (c.out ? `, out of service by ${c.out_by}: ${c.out_reason}` : "");
      }
    }
  }

  function open(tile) {
    current = Number(tile.dataset.chute);
    const out = tile.dataset.out === "1";
    setText("chute-dialog-title", `Chute ${current} ${tile.dataset.name}`);
    setText("chute-dialog-state", out ? `Out of service (${tile.dataset.outBy || "?"}: ${tile.dataset.outReason || ""})` : "In service");
    $("chute-reason").value = "";
    $("chute-dialog").showModal();
    (out ? $("chute-in") : $("chute-reason")).focus();
  }

  document.querySelectorAll(".tile").forEach((t) => t.addEventListener("click", () => open(t)));
  $("chute-out").addEventListener("click", () => {
    const reason = $("chute-reason").value.trim();
    if (!reason) { $("chute-reason").focus(); $("chute-reason").placeholder = "a reason is required"; return; }
    $("chute-dialog").close();
    HMI.send("CHUTE_OUT", { chute: current, reason });
  });
  $("chute-in").addEventListener("click", () => {
    $("chute-dialog").close();
    HMI.send("CHUTE_IN", { chute: current });
  });
  HMI.on("chutes", update);
})();
