// Outpost edge dashboard. No dependencies, no build step: it reads one
// snapshot per second from /ui/events (server-sent events).
"use strict";

// Helpers ($, num, bytes, dur, cell, setText, follow, login) are in
// /ui/kit.js (internal/uikit).
const TOKEN = "outpost-token";

function headers() {
  const token = sessionStorage.getItem(TOKEN) || "";
  return token ? { Authorization: "Bearer " + token } : {};
}

function render(s) {
  $("login").hidden = true;
  $("dash").hidden = false;
  $("who").textContent = (s.site ? s.site + " / " : "") + (s.node || "edge node");
  document.title = "Outpost " + (s.node || "edge");
  const st = $("status");
  if (!s.ready) { st.textContent = "NOT READY"; st.className = "pill bad"; }
  else if (s.warnings.length) { st.textContent = "ATTENTION"; st.className = "pill warn"; }
  else { st.textContent = "HEALTHY"; st.className = "pill ok"; }

  const w = $("warnings");
  w.replaceChildren(...s.warnings.map((t) => { const li = document.createElement("li"); li.textContent = t; return li; }));

  setText("rate", num(s.ingest.total, s.ingest.total < 10 ? 1 : 0) + " msg/s");
  $("rate-qos").textContent = "QoS 0: " + num(s.ingest.qos0) + " · QoS 1: " + num(s.ingest.qos1) + " · QoS 2: " + num(s.ingest.qos2);
  setText("clients", num(s.clients));
  const top = s.devices.filter((d) => d.messages > 0).slice(0, 3).map((d) => d.id).join(", ");
  $("connections").textContent = num(s.connections) + " open connections" + (top ? " · busiest: " + top : "");
  const ok = s.acks_per_s.success || 0;
  setText("acks", num(ok, ok < 10 ? 1 : 0) + " /s");
  const refused = Object.entries(s.acks_total).filter(([r]) => r !== "success").reduce((a, [, v]) => a + v, 0)
    + Object.values(s.refused_total).reduce((a, v) => a + v, 0);
  $("refusals").textContent = (refused ? num(refused) + " refused since start" : "none refused") +
    (s.ack_latency_ms ? " · " + s.ack_latency_ms.toFixed(1) + " ms to ack" : "");

  const up = s.uplink;
  if (!up.configured) { setText("uplink", "not set"); $("uplink-sub").textContent = "no upstream configured: data stays here"; }
  else if (up.connected) { setText("uplink", "connected", "good"); $("uplink-sub").textContent = num(up.reconnects) + " reconnects since start"; }
  else { setText("uplink", "DOWN", "bad"); $("uplink-sub").textContent = "down for " + dur(up.down_seconds); }
  setText("lag", up.configured ? num(up.lag_records) + " records" : "–", up.lag_records > 0 && !up.connected ? "warnc" : "");
  $("lag-sub").textContent = up.configured ? (up.lag_seconds > 0 ? "oldest waiting " + dur(up.lag_seconds) : "nothing old waiting") : "";

  const d = s.disk;
  setText("disk", bytes(d.log_bytes));
  let ds = d.budget > 0 ? "of " + bytes(d.budget) + " budget" : "no disk budget set";
  if (d.growth_bytes_per_s > 0) ds += " · +" + bytes(d.growth_bytes_per_s) + "/s";
  if (d.full_in_seconds >= 0) ds += " · full in " + dur(d.full_in_seconds);
  $("disk-sub").textContent = ds;
  setText("sync", "sync: " + (s.sync || "?"));
  let ss = s.fsync_ms ? "fsync " + s.fsync_ms.toFixed(1) + " ms" : "";
  if (s.records_per_fsync > 0) ss += " · " + s.records_per_fsync.toFixed(1) + " records each";
  if (s.disk_written_bytes_per_record > 0) ss += " · " + bytes(s.disk_written_bytes_per_record) + " written per record";
  $("sync-sub").textContent = ss;

  $("repl-card").hidden = !s.replication.configured;
  if (s.replication.configured) {
    const u = s.replication.under_replicated;
    setText("repl", u ? u + " under-replicated" : "in sync", u ? "warnc" : "good");
    $("repl-sub").textContent = num(s.replication.peers_connected) + " peer links up · " + num(s.replication.acks_waiting) + " acks waiting";
  }
  setText("downlink", num(s.downlink.queued));

  devices(s.devices, s.devices_known);
  chart(s.history);
  parts(s.partitions);
  schema(s.schema);
  $("foot").textContent = "Outpost " + (s.version || "") + " · updated " + new Date(s.time).toLocaleTimeString();
}

function chart(h) {
  const svg = $("chart");
  if (!h || h.length < 2) { svg.replaceChildren(); return; }
  const t0 = h[h.length - 1].t - 300000;
  const max = Math.max(1, ...h.map((p) => p.rate));
  const pts = h.filter((p) => p.t >= t0).map((p) => ((p.t - t0) / 300000 * 600).toFixed(1) + "," + (135 - p.rate / max * 125).toFixed(1));
  const ns = "http://www.w3.org/2000/svg";
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#2b6cb0");
  line.setAttribute("stroke-width", "2");
  line.setAttribute("vector-effect", "non-scaling-stroke");
  svg.replaceChildren(line);
  $("chart-max").textContent = "5 min ago · peak " + num(max) + " msg/s";
}

function parts(ps) {
  const tb = $("parts").tBodies[0];
  tb.replaceChildren(...ps.map((p) => {
    const tr = document.createElement("tr");
    tr.dataset.topic = p.topic;
    tr.dataset.partition = p.partition;
    cell(tr, p.topic + " / " + p.partition);
    cell(tr, num(p.end));
    cell(tr, p.forwarded === undefined ? "–" : num(p.forwarded));
    cell(tr, p.forwarded === undefined ? "–" : num(p.lag_records), p.paused ? "bad" : (p.lag_records > 0 ? "warnc" : ""));
    cell(tr, p.lag_seconds > 0 ? dur(p.lag_seconds) : "–");
    cell(tr, num(p.append_per_s, p.append_per_s < 10 ? 1 : 0));
    cell(tr, bytes(p.bytes));
    cell(tr, p.insync_followers === undefined ? "–" : num(p.insync_followers) + " in sync, HW " + num(p.high_watermark));
    tr.addEventListener("click", () => openRecords(p.topic, p.partition, Math.max(p.start, p.end - 20)));
    return tr;
  }));
}

function devices(ds, known) {
  $("devices-title").textContent = "Devices" + (known > ds.length ? " (the " + ds.length + " busiest of " + known + ")" : " (" + known + ")");
  const proto = { 3: "3.1", 4: "3.1.1", 5: "5" };
  $("devices").tBodies[0].replaceChildren(...ds.map((d) => {
    const tr = document.createElement("tr");
    cell(tr, d.id);
    cell(tr, d.connected ? "connected" : "offline", d.connected ? "good" : "warnc");
    cell(tr, proto[d.protocol] || String(d.protocol));
    cell(tr, d.address || "–");
    cell(tr, num(d.messages));
    cell(tr, d.last_seen_seconds >= 0 ? dur(d.last_seen_seconds) + " ago" : "never");
    return tr;
  }));
}

function schema(ss) {
  $("schema-sec").hidden = !ss.length;
  $("schema").tBodies[0].replaceChildren(...ss.map((s) => {
    const tr = document.createElement("tr");
    cell(tr, s.subject);
    cell(tr, num(s.checked));
    cell(tr, num(s.violations), s.violations ? "warnc" : "");
    return tr;
  }));
}

let current = null;
function openRecords(topic, partition, from) {
  current = { topic, partition };
  $("records").hidden = false;
  $("records-title").textContent = "Records of " + topic + " / " + partition;
  $("records-offset").value = from;
  readRecords();
  $("records").scrollIntoView({ behavior: "smooth" });
}

async function readRecords() {
  if (!current) return;
  const off = $("records-offset").value || 0;
  const url = "/v1/topics/" + encodeURIComponent(current.topic) + "/partitions/" + current.partition + "/records?offset=" + off + "&limit=50";
  $("records-error").textContent = "";
  try {
    const r = await fetch(url, { headers: headers() });
    const body = await r.json();
    if (!r.ok) { $("records-error").textContent = body.error || r.statusText; return; }
    $("records-table").tBodies[0].replaceChildren(...body.records.map((rec) => {
      const tr = document.createElement("tr");
      cell(tr, rec.offset);
      cell(tr, new Date(rec.timestamp).toLocaleString());
      cell(tr, rec.key_text !== undefined ? rec.key_text : rec.key);
      cell(tr, rec.value_text !== undefined ? rec.value_text : "(binary) " + rec.value);
      return tr;
    }));
    if (!body.records.length) $("records-error").textContent = "No records from offset " + off + " (the partition holds " + body.start_offset + " to " + (body.end_offset - 1) + ").";
  } catch (e) {
    $("records-error").textContent = "Could not read records: " + e.message;
  }
}

const start = () => follow("/ui/events", TOKEN, render, lockedPage, () => lostPage("NODE"));
login(TOKEN, start);
$("records-form").addEventListener("submit", (e) => { e.preventDefault(); readRecords(); });
$("records-close").addEventListener("click", () => { $("records").hidden = true; current = null; });
start();
