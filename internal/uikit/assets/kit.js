// Shared by the Outpost dashboards (internal/uikit). No dependencies.
"use strict";

const $ = (id) => document.getElementById(id);

// num formats a count or rate with a unit a technician reads at a glance.
function num(n, digits) {
  if (n === null || n === undefined || isNaN(n)) return "–";
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(1) + " G";
  if (a >= 1e6) return (n / 1e6).toFixed(1) + " M";
  if (a >= 1e4) return (n / 1e3).toFixed(1) + " k";
  return n.toFixed(digits === undefined ? 0 : digits);
}

function bytes(n) {
  if (!(n >= 0)) return "–";
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return n.toFixed(i ? 1 : 0) + " " + u[i];
}

function dur(s) {
  if (!(s >= 0)) return "–";
  if (s < 1) return "< 1 s";
  if (s < 90) return Math.round(s) + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " days";
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
}

function setText(id, text, cls) {
  const el = $(id);
  el.textContent = text;
  el.className = el.className.replace(/\b(good|warnc|bad)\b/g, "").trim();
  if (cls) el.classList.add(cls);
}

// follow reads the server-sent events of path with fetch (so the token is
// a header, never in a URL) and calls render with each snapshot. It calls
// locked on 401, and retries 2 s after the stream ends or fails.
async function follow(path, tokenKey, render, locked, lost) {
  const token = sessionStorage.getItem(tokenKey) || "";
  try {
    const r = await fetch(path, { headers: token ? { Authorization: "Bearer " + token } : {}, cache: "no-store" });
    if (r.status === 401) {
      locked(token !== "");
      return;
    }
    if (!r.ok || !r.body) throw new Error("HTTP " + r.status);
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const data = buf.slice(0, i).split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        buf = buf.slice(i + 2);
        if (data) {
          try { render(JSON.parse(data)); } catch (e) { console.error("dashboard: cannot show a snapshot:", e); }
        }
      }
    }
  } catch (e) {
    // the node went away or the network dropped: say so and retry
  }
  lost();
  setTimeout(() => follow(path, tokenKey, render, locked, lost), 2000);
}

// login wires the token form: the token is kept in this tab only.
function login(tokenKey, start) {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(tokenKey, $("token").value.trim());
    start();
  });
}

function lockedPage(refused) {
  $("dash").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = refused ? "That token was refused." : "";
  $("status").textContent = "LOCKED";
  $("status").className = "pill";
}

function lostPage(what) {
  $("status").textContent = "NO CONNECTION TO " + what;
  $("status").className = "pill bad";
}
