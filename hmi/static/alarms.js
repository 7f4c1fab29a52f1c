/* Alarms: the list of alarms needing attention follows the alarms topic; acknowledge, shelve
   (minutes + reason) and unshelve send commands. The history is a plain server page. */
"use strict";

(() => {
  const { $, el, fmt } = HMI;
  let shelving = null;

  function row(a) {
    const acts = el("td", { class: "row-actions" });
    if (HMI.canOperate()) {
      if (!a.acked_t) acts.append(el("button", { type: "button", class: "small", id: `alarm-${a.id}-ack`, "data-testid": `alarm-${a.id}-ack`, "data-action": "ack", "data-alarm": a.id, text: "Ack" }));
      if (a.state === "shelved") acts.append(el("button", { type: "button", class: "small", id: `alarm-${a.id}-unshelve`, "data-testid": `alarm-${a.id}-unshelve`, "data-action": "unshelve", "data-alarm": a.id, text: "Unshelve" }));
      else if (!a.cleared_t) acts.append(el("button", { type: "button", class: "small", id: `alarm-${a.id}-shelve`, "data-testid": `alarm-${a.id}-shelve`, "data-action": "shelve", "data-alarm": a.id, "data-name": a.name, text: "Shelve" }));
    }
    return el("tr", { id: `alarm-${a.id}`, "data-testid": `alarm-${a.id}`, class: `al-${a.state}` },
      el("td", { class: "num", text: a.id }), el("td", { class: "al-state", "data-testid": `alarm-${a.id}-state`, text: a.state.replace(/_/g, " ") }),
      el("td", { text: a.name }), el("td", { text: a.severity }), el("td", { text: a.detail }),
      el("td", { text: fmt.clock(a.raised_t, true) }), el("td", { text: fmt.clock(a.cleared_t) }),
      el("td", { "data-testid": `alarm-${a.id}-acked`, text: a.acked_t ? `${fmt.clock(a.acked_t)} ${a.acked_by}` : "-" }),
      el("td", { "data-testid": `alarm-${a.id}-shelved`, text: a.state === "shelved" ? `until ${fmt.clock(a.shelved_until)} by ${a.shelved_by}: ${a.shelve_reason}` : "-" }),
      acts);
  }

  /* A row whose alarm did not change is kept as it is: a row rebuilt between an operator's
     mouse-down and mouse-up on its Ack button loses the click. */
  function update(data) {
    if (!data.store || !data.store.ok) return;
    const body = $("alarms-active-body");
    const kept = new Map(Array.from(body.children, (tr) => [tr.id, tr]));
    const rows = data.alarms.map((a) => {
      const sig = JSON.stringify(a);
      const old = kept.get(`alarm-${a.id}`);
      if (old && old.dataset.sig === sig) return old;
      const tr = row(a);
      tr.dataset.sig = sig;
      return tr;
    });
    rows.forEach((tr, i) => { if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null); });
    while (body.children.length > rows.length) body.lastElementChild.remove();
    $("alarms-none").classList.toggle("hidden", data.alarms.length > 0);
  }

  $("alarms-active-body").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-action]");
    if (!b) return;
    const id = Number(b.dataset.alarm);
    if (b.dataset.action === "ack") HMI.send("ALARM_ACK", { alarm: id });
    else if (b.dataset.action === "unshelve") HMI.send("ALARM_UNSHELVE", { alarm: id });
    else {
      shelving = id;
      $("shelve-title").textContent = `Shelve alarm #${id} ${b.dataset.name || ""}`;
      $("shelve-reason").value = "";
      $("shelve-dialog").showModal();
      $("shelve-reason").focus();
    }
  });
  $("shelve-ok").addEventListener("click", () => {
    const reason = $("shelve-reason").value.trim();
    const minutes = Number($("shelve-minutes").value);
    if (!reason) { $("shelve-reason").placeholder = "a reason is required"; $("shelve-reason").focus(); return; }
    if (!(minutes > 0)) { $("shelve-minutes").focus(); return; }
    $("shelve-dialog").close();
    HMI.send("ALARM_SHELVE", { alarm: shelving, minutes, reason });
  });
  const all = $("alarm-ack-all");
  if (all) all.addEventListener("click", () => HMI.confirmThen("Acknowledge all", "Acknowledge every unacknowledged alarm?", () => HMI.send("ALARM_ACK", { alarm: 0 })));
  HMI.on("alarms", update);
})();
