/* sortcentre HMI: what every page shares - CSRF-protected requests, sending a command and
   showing its outcome, the live SSE stream, the header strip, small DOM and format helpers.
   Plain JS, no library: the floor network has no internet and there is no build step. */
"use strict";

const HMI = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const pageHandlers = {};

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("data-") || k === "id" || k === "title" || k === "type" || k === "disabled") e.setAttribute(k, v === true ? "" : v);
      else e[k] = v;
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  }

  function setText(id, text) { const e = $(id); if (e && e.textContent !== String(text)) e.textContent = text; }

  const fmt = {
    clock(t, withDate) {
      if (!t) return "-";
      const d = new Date(t * 1000);
      const p = (n) => String(n).padStart(2, "0");
      const time = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
      return withDate ? `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${time}` : time;
    },
    num(v, digits) {
      if (v === null || v === undefined || Number.isNaN(v)) return "-";
      return Number(v).toLocaleString("en-GB", { minimumFractionDigits: digits || 0, maximumFractionDigits: digits || 0 });
    },
    pct(v, digits) { return (v === null || v === undefined) ? "-" : `${(100 * v).toFixed(digits === undefined ? 1 : digits)} %`; },
  };

  async function request(url, options) {
    const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
    opts.headers = Object.assign({ "Accept": "application/json" }, opts.headers);
    if (opts.method && opts.method !== "GET") opts.headers["X-CSRF-Token"] = csrf();
    const resp = await fetch(url, opts);
    if (resp.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); }
    let body = null;
    try { body = await resp.json(); } catch (_e) { body = null; }
    return { status: resp.status, ok: resp.ok, body: body || {} };
  }

  function postJSON(url, data) {
    return request(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });
  }

  function postForm(url, formData) {
    return request(url, { method: "POST", body: formData });
  }

  // ---- commands and their outcome -------------------------------------------------------
  function toast(text, cls, id) {
    const log = $("cmd-log");
    const close = el("button", { class: "close small", type: "button", text: "x", title: "dismiss" });
    const t = el("div", { class: "cmd-toast " + (cls || ""), id: id || null, "data-testid": "cmd-toast" }, close, el("span", { class: "msg", text }));
    close.addEventListener("click", () => t.remove());
    log.prepend(t);
    while (log.children.length > 5) log.lastChild.remove();
    return t;
  }

  function describe(command, args) {
    const a = Object.entries(args || {}).filter(([k]) => k !== "plan_csv" && k !== "csv" && k !== "settings_yaml")
      .map(([k, v]) => `${k} ${v}`).join(", ");
    return a ? `${command} (${a})` : command;
  }

  async function follow(id, label, t) {
    const msg = t.querySelector(".msg");
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 300));
      const r = await request(`/api/commands/${id}`);
      if (r.ok && r.body.done) {
        const refused = String(r.body.result).startsWith("refused");
        t.className = "cmd-toast " + (refused ? "refused" : "accepted");
        t.dataset.result = r.body.result;
        msg.textContent = `${label}: ${r.body.result}`;
        if (!refused) setTimeout(() => t.remove(), 15000);
        return r.body;
      }
    }
    msg.textContent = `${label}: sent (#${id}), the service has not answered yet - is it running?`;
    t.className = "cmd-toast failed";
    return null;
  }

  /* Send one command; the toast shows "sent", then the service's answer. */
  async function send(command, args) {
    const label = describe(command, args);
    const r = await postJSON("/api/command", { command, args: args || {} });
    return afterSend(r, label);
  }

  async function afterSend(r, label) {
    if (r.status !== 202) {
      const e = r.body.error;
      toast(`${label}: not sent - ${typeof e === "object" && e ? (e.text || e.message) : (e || "HTTP " + r.status)}`, "failed");
      return r;
    }
    const t = toast(`${label}: sent (#${r.body.id}), waiting for the service`, "pending", `cmd-toast-${r.body.id}`);
    follow(r.body.id, label, t);
    return r;
  }

  function confirmThen(title, text, action) {
    const d = $("confirm-dialog");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    d.returnValue = "";
    d.onclose = () => { if (d.returnValue === "ok") action(); };
    d.showModal();
  }

  // ---- live stream ------------------------------------------------------------------------
  function header(ov) {
    if (!ov.store || !ov.store.ok) {
      setText("hdr-unit-state", "NO STORE"); $("hdr-unit-state").className = "cell state-UNKNOWN";
      const b = $("store-banner"); b.textContent = (ov.store && ov.store.error) || "event store unavailable"; b.classList.remove("hidden");
      return;
    }
    $("store-banner").classList.add("hidden");
    const s = $("hdr-unit-state"); s.textContent = ov.unit.state; s.className = "cell state-" + ov.unit.state;
    setText("hdr-mode", ov.unit.mode);
    const svc = $("hdr-service"); svc.textContent = "SERVICE " + ov.service.status.toUpperCase(); svc.className = "cell svc-" + ov.service.status;
    const al = $("hdr-alarms"); al.textContent = `ALARMS ${ov.alarms.unack} / ${ov.alarms.active}`;
    al.className = "cell" + (ov.alarms.unack ? " alarm-unack" : ov.alarms.active ? " alarm-ack" : "");
  }

  function stream(topics) {
    const all = Array.from(new Set(["overview", ...topics]));
    const src = new EventSource("/api/stream?topics=" + all.join(","));
    const link = $("hdr-link");
    src.onopen = () => { link.textContent = "LIVE"; link.className = "cell"; };
    src.onerror = () => { link.textContent = "RECONNECTING"; link.className = "cell link-down"; };
    src.addEventListener("logout", () => { src.close(); location.href = "/login?next=" + encodeURIComponent(location.pathname); });
    for (const topic of all) {
      src.addEventListener(topic, (ev) => {
        const data = JSON.parse(ev.data);
        if (topic === "overview") header(data);
        const h = pageHandlers[topic];
        if (h) h(data);
        // a test hook: when each topic last arrived (data-live-overview, ...)
        document.body.dataset["live" + topic[0].toUpperCase() + topic.slice(1)] = String(Date.now());
      });
    }
    return src;
  }

  function on(topic, handler) { pageHandlers[topic] = handler; }

  function tick() { setText("hdr-clock", fmt.clock(Date.now() / 1000, true)); }

  document.addEventListener("DOMContentLoaded", () => {
    tick(); setInterval(tick, 1000);
    // each page script registers its handlers at load; the stream starts after them all
    setTimeout(() => stream(Object.keys(pageHandlers)), 0);
  });

  return { $, el, setText, fmt, request, postJSON, postForm, send, afterSend, toast, confirmThen, on, canOperate: () => ["operator", "engineer"].includes(document.body.dataset.role), canEngineer: () => document.body.dataset.role === "engineer" };
})();
