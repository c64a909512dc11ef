// The admin page: the API of this listener, with the token kept for this tab only.
"use strict";

const $ = (sel) => document.querySelector(sel);
let token = sessionStorage.getItem("wharf-token") || "";
let timer = null;

function status(text, error) {
  const s = $("#status");
  s.textContent = text || "";
  s.className = error ? "error" : "";
}

async function api(method, path, body) {
  const headers = { "Authorization": "Bearer " + token };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch("/api/v1" + path, init);
  if (r.status === 401) {
    signOut("The token was refused.");
    throw new Error("unauthorized");
  }
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (!r.ok) {
    throw new Error((data && data.error) || ("HTTP " + r.status));
  }
  return data;
}

// A table cell with text (never HTML: names and paths come from clients).
function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function button(row, label, cls, id, onClick) {
  const td = document.createElement("td");
  const b = document.createElement("button");
  b.textContent = label;
  b.className = cls;
  b.dataset.id = id;
  b.addEventListener("click", onClick);
  td.appendChild(b);
  row.appendChild(td);
  return b;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function when(secs) {
  return secs ? new Date(secs * 1000).toISOString().replace("T", " ").replace(".000Z", " UTC") : "never";
}

async function refreshSessions() {
  const list = await api("GET", "/sessions");
  const body = $("#sessions tbody");
  body.replaceChildren();
  $("#session-count").textContent = "(" + list.length + ")";
  for (const s of list) {
    const row = document.createElement("tr");
    row.dataset.id = s.id;
    cell(row, s.id);
    cell(row, s.user || "(not logged in)");
    cell(row, s.client);
    cell(row, when(s.since));
    const t = s.transfer;
    cell(row, t ? t.verb + " " + t.path : "", "path");
    cell(row, t ? bytes(t.bytes) : "", "progress");
    cell(row, t ? bytes(t.rate) + "/s" : "", "rate");
    button(row, "Disconnect", "disconnect", s.id, async () => {
      try {
        await api("DELETE", "/sessions/" + s.id);
        status("Session " + s.id + " disconnected.");
        await refreshSessions();
      } catch (e) { status(e.message, true); }
    });
    body.appendChild(row);
  }
}

async function refreshUsers() {
  const body = $("#users tbody");
  let list;
  try {
    list = await api("GET", "/users");
    $("#users-note").hidden = true;
  } catch (e) {
    $("#users-note").textContent = e.message;
    $("#users-note").hidden = false;
    body.replaceChildren();
    return;
  }
  body.replaceChildren();
  for (const u of list) {
    const row = document.createElement("tr");
    row.dataset.name = u.name;
    cell(row, u.name, "name");
    cell(row, u.enabled ? "yes" : "no", "enabled");
    cell(row, u.totp ? "yes" : "no", "totp");
    cell(row, u.home || "(root)");
    cell(row, u.permissions);
    cell(row, when(u.last_login));
    const td = document.createElement("td");
    const act = (label, cls, fn) => {
      const b = document.createElement("button");
      b.textContent = label;
      b.className = cls;
      b.dataset.name = u.name;
      b.addEventListener("click", async () => {
        try { await fn(); await refreshUsers(); } catch (e) { status(e.message, true); }
      });
      td.appendChild(b);
    };
    act(u.enabled ? "Disable" : "Enable", "toggle", async () => {
      await api("PATCH", "/users/" + encodeURIComponent(u.name), { enabled: !u.enabled });
      status("User " + u.name + (u.enabled ? " disabled." : " enabled."));
    });
    act("Set password", "passwd", async () => {
      const pw = prompt("New password for " + u.name);
      if (!pw) return;
      await api("PATCH", "/users/" + encodeURIComponent(u.name), { password: pw });
      status("Password of " + u.name + " changed.");
    });
    act("Delete", "delete", async () => {
      if (!confirm("Delete " + u.name + "? Its files stay.")) return;
      await api("DELETE", "/users/" + encodeURIComponent(u.name));
      status("User " + u.name + " deleted.");
    });
    row.appendChild(td);
    body.appendChild(row);
  }
}

async function refreshBans() {
  const list = await api("GET", "/bans");
  const body = $("#bans tbody");
  body.replaceChildren();
  for (const b of list) {
    const row = document.createElement("tr");
    cell(row, b.address);
    cell(row, b.seconds_left + " s");
    button(row, "Lift", "lift", b.address, async () => {
      try {
        await api("DELETE", "/bans/" + encodeURIComponent(b.address));
        status("Ban of " + b.address + " lifted.");
        await refreshBans();
      } catch (e) { status(e.message, true); }
    });
    body.appendChild(row);
  }
}

async function tick() {
  try {
    await refreshSessions();
    await refreshBans();
  } catch (e) {
    if (e.message !== "unauthorized") status(e.message, true);
  }
}

async function signIn(candidate) {
  token = candidate;
  try {
    await api("GET", "/sessions");
  } catch (e) {
    if (e.message !== "unauthorized") signOut(e.message);
    return;
  }
  sessionStorage.setItem("wharf-token", token);
  $("#signin-view").hidden = true;
  $("#dashboard").hidden = false;
  $("#signout").hidden = false;
  status("Signed in.");
  await refreshUsers();
  await tick();
  timer = setInterval(tick, 1000);
}

function signOut(message) {
  token = "";
  sessionStorage.removeItem("wharf-token");
  if (timer) clearInterval(timer);
  timer = null;
  $("#dashboard").hidden = true;
  $("#signout").hidden = true;
  $("#signin-view").hidden = false;
  status(message || "", !!message);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    signIn($("#token").value.trim());
  });
  $("#signout").addEventListener("click", () => signOut());
  $("#add-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const user = { name: $("#add-name").value.trim(), permissions: $("#add-perm").value.trim() || "read" };
    const pw = $("#add-password").value;
    const home = $("#add-home").value.trim();
    if (pw) user.password = pw;
    if (home) user.home = home;
    try {
      const made = await api("POST", "/users", user);
      status("User " + made.name + " added." + (made.password ? " Its password (shown once): " + made.password : ""));
      $("#add-form").reset();
      await refreshUsers();
    } catch (e) { status(e.message, true); }
  });
  if (token) signIn(token);
});
