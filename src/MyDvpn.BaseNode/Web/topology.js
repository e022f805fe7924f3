// The myDvpn topology page: polls /api/topology and draws it. Every value goes in as text, never as markup.
"use strict";

const refreshMs = 3000;

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    tr.appendChild(cell instanceof HTMLTableCellElement ? cell : el("td", cell));
  }
  return tr;
}

function wrap(node) {
  const td = document.createElement("td");
  td.appendChild(node);
  return td;
}

// A value shown in its state's colour: the class is the state's name (up, down, active, relay, ...).
function badge(state, text) {
  return el("span", text === undefined ? state : text, String(state).replace(/[^a-z-]/g, ""));
}

function table(headers, rows, id) {
  const t = document.createElement("table");
  if (id) t.id = id;
  const head = document.createElement("tr");
  for (const h of headers) head.appendChild(el("th", h));
  const thead = document.createElement("thead");
  thead.appendChild(head);
  t.appendChild(thead);
  const tbody = document.createElement("tbody");
  for (const r of rows) tbody.appendChild(row(r));
  t.appendChild(tbody);
  return t;
}

function time(text) {
  return text ? new Date(text).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "-";
}

function pathText(a) {
  if (a.path === "relay") return "relayed via " + (a.clientRelayLeg || "?") + " \u2192 " + (a.exitRelayLeg || "?");
  if (a.path === "direct") return "direct";
  return "unknown (client session not seen)";
}

function renderRegions(regions) {
  const container = document.getElementById("regions");
  const fresh = document.createDocumentFragment();
  if (regions.length === 0) fresh.appendChild(el("p", "No region: no SuperNode has registered yet.", "muted"));
  for (const region of regions) {
    const box = el("div", null, "region");
    box.dataset.region = region.name;
    box.appendChild(el("h3", "Region " + region.name));
    box.appendChild(table(
      ["SuperNode", "status", "load (peers/capacity)", "streams", "exits available", "gRPC endpoint", "last report"],
      region.superNodes.map(n => [
        n.id, wrap(badge(n.status)), n.connectedPeers + "/" + n.capacity, n.streams === null ? "-" : n.streams,
        n.exitsAvailable, n.grpcEndpoint, time(n.lastReportAt),
      ])));
    if (region.exits === null) {
      box.appendChild(el("p", "Exits not shown: " + region.exitsProblem, "muted"));
    } else if (region.exits.length === 0) {
      box.appendChild(el("p", "No exits in this region.", "muted"));
    } else {
      box.appendChild(table(
        ["exit", "state", "clients/capacity", "subnet", "public address", "RTT ms"],
        region.exits.map(e => [
          e.peerId, wrap(badge(e.state)), e.clients + "/" + e.capacity, e.subnet || "-", e.publicAddress || "-",
          e.rttMs === null ? "-" : e.rttMs.toFixed(1),
        ])));
    }
    fresh.appendChild(box);
  }
  container.replaceChildren(fresh);
}

function renderAssignments(assignments) {
  const body = document.querySelector("#assignments tbody");
  const rows = assignments.map(a => {
    const tr = row([
      a.clientPeerId, a.clientRegion, a.exitPeerId, a.exitRegion, (a.clientAddress || "-").replace(/\/32$/, ""),
      wrap(badge(a.state)), wrap(badge(a.path, pathText(a))), a.clientSuperNode || "-",
    ]);
    tr.dataset.client = a.clientPeerId;
    tr.dataset.exit = a.exitPeerId;
    return tr;
  });
  body.replaceChildren(...rows);
  document.getElementById("no-assignments").hidden = assignments.length !== 0;
}

function renderProblems(view) {
  const list = document.getElementById("problem-list");
  const items = view.problems.map(p => el("li", p));
  if (view.unreachableSuperNodes.length > 0) {
    items.push(el("li", "SuperNodes that did not answer (their sessions are missing): " + view.unreachableSuperNodes.join(", ")));
  }
  list.replaceChildren(...items);
  document.getElementById("problems").hidden = items.length === 0;
}

function setStatus(text, error) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = error ? "status error" : "status";
}

async function refresh() {
  try {
    const response = await fetch("/api/topology", { cache: "no-store", credentials: "same-origin" });
    if (response.status === 401) {
      setStatus("Not signed in, or the login token expired: make a new one with `mydvpn admin web-token`. " + (await response.text()), true);
      return;
    }
    if (!response.ok) {
      setStatus("The BaseNode could not answer (" + response.status + "): " + (await response.text()) + " Retrying.", true);
      return;
    }
    const view = await response.json();
    renderRegions(view.regions);
    renderAssignments(view.assignments);
    renderProblems(view);
    document.body.dataset.generatedAt = view.generatedAt;
    setStatus("As of " + time(view.generatedAt) + "; refreshes every " + refreshMs / 1000 + " s.", false);
  } catch (e) {
    setStatus("The BaseNode is unreachable (" + e + "). Retrying.", true);
  } finally {
    setTimeout(refresh, refreshMs);
  }
}

refresh();
