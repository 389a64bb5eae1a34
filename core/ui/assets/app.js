// Outpost core dashboard: sites and nodes, live from /ui/events
// (server-sent events read with fetch so the token stays in a header).
"use strict";

// Helpers ($, num, dur, cell, follow, login) are in /ui/kit.js
// (internal/uikit).
const TOKEN = "outpost-core-token";
let selected = null;
let last = null;

function render(s) {
  last = s;
  $("login").hidden = true;
  $("dash").hidden = false;
  const warnings = [];
  if (!s.ready) warnings.push("Not ready: " + s.not_ready);
  if (s.stale) warnings.push(s.stale + " node(s) have not reported recently: their uplink or the node may be down.");
  const st = $("status");
  if (!s.ready) { st.textContent = "NOT READY"; st.className = "pill bad"; }
  else if (warnings.length) { st.textContent = "ATTENTION"; st.className = "pill warn"; }
  else { st.textContent = "HEALTHY"; st.className = "pill ok"; }
  $("warnings").replaceChildren(...warnings.map((t) => { const li = document.createElement("li"); li.textContent = t; return li; }));

  $("sites").textContent = num(s.sites.length);
  $("nodes").textContent = num(s.nodes) + " nodes" + (s.stale ? ", " + s.stale + " stale" : "");
  $("lag").textContent = num(s.lag_records) + " records";
  $("lag-sub").textContent = s.lag_seconds > 0 ? "oldest waiting " + dur(s.lag_seconds) : "nothing old waiting";
  $("subjects").textContent = num(s.subjects.length);
  $("subjects-sub").textContent = s.subjects.slice(0, 4).join(", ");

  const rows = [];
  for (const site of s.sites) {
    for (const n of site.nodes) {
      const tr = document.createElement("tr");
      tr.dataset.site = site.site;
      tr.dataset.node = n.node;
      let oldest = 0;
      for (const p of n.partitions) oldest = Math.max(oldest, p.oldest_unforwarded_age_ms / 1000);
      // A peer forwarding this node's replicated partitions: the node is down.
      const by = n.forwarded_by && n.forwarded_by !== n.node ? " — forwarded by " + n.forwarded_by : "";
      cell(tr, site.site + " / " + n.node + by, by ? "warnc" : "");
      cell(tr, dur(n.last_contact_age_seconds) + " ago", n.stale ? "bad" : "good");
      cell(tr, num(n.lag_records), n.lag_records > 0 ? "warnc" : "");
      cell(tr, oldest > 0 ? dur(oldest) : "–");
      cell(tr, num(n.partitions.length));
      cell(tr, n.software || "–");
      tr.addEventListener("click", () => { selected = { site: site.site, node: n.node }; detail(); });
      rows.push(tr);
    }
  }
  $("nodes-table").tBodies[0].replaceChildren(...rows);
  const bad = { failed: "bad", rejected: "bad", expired: "warnc", succeeded: "good", delivered: "good" };
  $("commands").tBodies[0].replaceChildren(...s.commands.map((c) => {
    const tr = document.createElement("tr");
    cell(tr, new Date(c.updated).toLocaleTimeString());
    cell(tr, c.site + " / " + c.device);
    cell(tr, c.topic);
    cell(tr, c.status + (c.reason ? " (" + c.reason + ")" : ""), bad[c.status] || "");
    cell(tr, c.id);
    return tr;
  }));
  $("commands-hint").textContent = s.commands.length ? "" : "No command sent or answered since core started.";
  detail();
  $("foot").textContent = "updated " + new Date(s.time).toLocaleTimeString();
}

function detail() {
  if (!selected || !last) return;
  const site = last.sites.find((x) => x.site === selected.site);
  const n = site && site.nodes.find((x) => x.node === selected.node);
  if (!n) { $("detail").hidden = true; return; }
  $("detail").hidden = false;
  $("detail-title").textContent = "Partitions of " + selected.site + " / " + selected.node;
  $("detail-table").tBodies[0].replaceChildren(...n.partitions.map((p) => {
    const tr = document.createElement("tr");
    cell(tr, p.topic + " / " + p.partition);
    cell(tr, num(p.end_offset));
    cell(tr, num(p.forwarded_offset));
    cell(tr, num(p.lag_records), p.lag_records > 0 ? "warnc" : "");
    cell(tr, p.oldest_unforwarded_age_ms > 0 ? dur(p.oldest_unforwarded_age_ms / 1000) : "–");
    cell(tr, p.error || "", p.error ? "bad" : "");
    return tr;
  }));
}

const start = () => follow("/ui/events", TOKEN, render, lockedPage, () => lostPage("CORE"));
login(TOKEN, start);
start();
