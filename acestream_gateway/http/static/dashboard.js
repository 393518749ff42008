// The gateway's live dashboard: polls the JSON endpoints (the orchestrator status, /engines,
// /streams) every POLL_MS, computes throughput from successive polls, and calls the management
// API with the key the operator typed in. Everything shown is written as text, never as markup:
// content ids and names come from players and engines.
"use strict";

const POLL_MS = 2000;
const KEY_STORE = "acestream-gateway.api-key";

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, body) {
    const detail = body && typeof body === "object" ? body.detail || body.error : body;
    super(`${status} ${(body && body.error) || "error"}: ${detail || "no detail"}`);
    this.status = status;
    this.body = body;
  }
}

// --- the API key ---------------------------------------------------------------------------

function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

function showKeyState() {
  $("key-state").textContent = apiKey() ? "key in use" : "no key";
}

function setupKeyForm() {
  $("api-key").value = apiKey();
  showKeyState();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
    showKeyState();
    pollNow();
  });
  $("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    $("api-key").value = "";
    showKeyState();
    pollNow();
  });
}

// --- calls ---------------------------------------------------------------------------------

async function api(method, path) {
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  // Relative paths: the page also works behind a reverse proxy that adds a path prefix.
  const response = await fetch(path, { method, headers, cache: "no-store" });
  const text = await response.text();
  let body = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    // Not JSON: keep the text, shown as it came.
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// --- formatting ----------------------------------------------------------------------------

function bytes(n) {
  if (n == null) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function bitrate(bytesPerSecond) {
  if (bytesPerSecond == null) return "…";
  const bits = bytesPerSecond * 8;
  if (bits >= 1e6) return `${(bits / 1e6).toFixed(1)} Mbit/s`;
  if (bits >= 1e3) return `${(bits / 1e3).toFixed(0)} kbit/s`;
  return `${bits.toFixed(0)} bit/s`;
}

function kbps(value) {
  return value == null ? "–" : `${value} KB/s`;
}

function clock(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "–";
}

function age(iso, now) {
  if (!iso) return "–";
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

function text(id, value) {
  $(id).textContent = value;
}

// --- throughput from successive polls ------------------------------------------------------

const previous = new Map(); // stream key -> {in, out, at}

function rates(streams, at) {
  const out = new Map();
  for (const s of streams) {
    const before = previous.get(s.key);
    const dt = before ? (at - before.at) / 1000 : 0;
    out.set(
      s.key,
      dt > 0
        ? {
            in: Math.max(0, (s.bytes_in - before.in) / dt),
            out: Math.max(0, (s.bytes_out - before.out) / dt),
          }
        : { in: null, out: null },
    );
  }
  previous.clear();
  for (const s of streams) previous.set(s.key, { in: s.bytes_in, out: s.bytes_out, at });
  return out;
}

// --- tables --------------------------------------------------------------------------------

// Rows are kept by key and only their cells' text changes, so a button keeps its focus across
// polls.
function syncRows(tbody, items, keyOf, build, update) {
  const rows = new Map([...tbody.rows].map((row) => [row.dataset.key, row]));
  let before = tbody.firstChild;
  for (const item of items) {
    const key = keyOf(item);
    let row = rows.get(key);
    if (row) rows.delete(key);
    else {
      row = build(item);
      row.dataset.key = key;
    }
    update(row, item);
    if (row !== before) tbody.insertBefore(row, before);
    before = row.nextSibling;
  }
  for (const row of rows.values()) row.remove();
}

function cells(row, names) {
  for (const name of names) {
    const cell = document.createElement(name === names[0] ? "th" : "td");
    if (name === names[0]) cell.scope = "row";
    cell.dataset.field = name;
    row.appendChild(cell);
  }
}

function setCells(row, values) {
  for (const [name, value] of Object.entries(values)) {
    const cell = row.querySelector(`[data-field="${name}"]`);
    if (cell.textContent !== String(value)) cell.textContent = value;
  }
}

function button(label, title, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.setAttribute("aria-label", title);
  b.addEventListener("click", () => act(b, onClick));
  return b;
}

const ENGINE_FIELDS = [
  "name", "state", "health", "streams", "players", "address", "vpn", "created", "last_used",
];

function engineRow(engine) {
  const row = document.createElement("tr");
  row.dataset.engine = engine.id;
  cells(row, ENGINE_FIELDS);
  const actions = document.createElement("td");
  actions.className = "actions";
  const name = engine.name;
  actions.append(
    button("Drain", `Drain engine ${name}`, () => manage("POST", `engines/${enc(engine.id)}/drain`, `drain ${name}`)),
    button("Remove", `Remove engine ${name}`, () => manage("DELETE", `engines/${enc(engine.id)}`, `remove ${name}`)),
  );
  row.appendChild(actions);
  return row;
}

function updateEngine(row, engine, maxStreams) {
  row.className = `state-${engine.state}`;
  setCells(row, {
    name: engine.name,
    state: engine.state,
    health: engine.health,
    streams: maxStreams ? `${engine.streams} / ${maxStreams}` : engine.streams,
    players: engine.players,
    address: `${engine.address}:${engine.port}`,
    vpn: engine.vpn || "–",
    created: clock(engine.created_at),
    last_used: clock(engine.last_used_at),
  });
}

const STREAM_FIELDS = [
  "content", "state", "engine", "players", "rate_in", "rate_out", "bytes",
  "peers", "speeds", "engine_status", "failovers", "started",
];

function streamRow(stream) {
  const row = document.createElement("tr");
  row.dataset.stream = stream.key;
  cells(row, STREAM_FIELDS);
  row.querySelector('[data-field="content"]').title = stream.key;
  const actions = document.createElement("td");
  actions.className = "actions";
  actions.append(
    watchLink(stream),
    button("Stop", `Stop stream ${stream.content_id}`, () => manage("DELETE", `streams/${enc(stream.key)}`, `stop ${stream.content_id}`)),
  );
  row.appendChild(actions);
  return row;
}

// The watch page plays the channel's HLS output, in a tab of its own so this page keeps polling.
function watchLink(stream) {
  const query = new URLSearchParams({ [stream.kind]: stream.content_id });
  if (stream.file_indexes !== "0") query.set("file_indexes", stream.file_indexes);
  const link = document.createElement("a");
  link.className = "button";
  link.href = `dashboard/watch?${query}`;
  link.target = "_blank";
  link.rel = "noopener";
  link.textContent = "Watch";
  link.setAttribute("aria-label", `Watch stream ${stream.content_id}`);
  return link;
}

function updateStream(row, stream, rate, now) {
  const stats = stream.engine_stats || {};
  row.className = `state-${stream.state}`;
  setCells(row, {
    content: stream.content_id,
    state: stream.state,
    engine: stream.engine ? stream.engine.name : "–",
    players: withHls(stream.players, stream.players_hls),
    rate_in: bitrate(rate.in),
    rate_out: bitrate(rate.out),
    bytes: `${bytes(stream.bytes_in)} / ${bytes(stream.bytes_out)}`,
    peers: stats.peers == null ? "–" : stats.peers,
    speeds: `${kbps(stats.speed_down)} / ${kbps(stats.speed_up)}`,
    engine_status: stats.status || "–",
    failovers: stream.failovers,
    started: age(stream.started_at, now),
  });
}

const enc = encodeURIComponent;

// Players count TS and HLS players; the HLS ones (watch pages among them) are named.
function withHls(players, hls) {
  return hls ? `${players} (${hls} HLS)` : players;
}

// --- the summary cards ---------------------------------------------------------------------

function renderSummary(status, streams, streamRates) {
  const overall = $("overall");
  overall.textContent = status.status;
  overall.className = `badge ${status.status}`;

  const e = status.engines;
  text("engines-total", e.total);
  text(
    "engines-detail",
    `${e.healthy - e.draining} ready · ${e.starting} starting · ${e.draining} draining · ${e.unhealthy} unhealthy`,
  );

  const c = status.capacity;
  text("capacity-figure", `${c.used} / ${c.total} in use`);
  const meter = $("capacity-meter");
  meter.max = Math.max(1, c.total);
  meter.value = c.used;
  text(
    "capacity-detail",
    `${c.available} available · ${c.streams} of ${c.total * c.max_streams_per_engine} stream slots · ` +
      `at most ${c.max_replicas} engines, ${c.min_replicas} kept spare`,
  );

  const players = streams.reduce((sum, s) => sum + s.players, 0);
  const hls = streams.reduce((sum, s) => sum + (s.players_hls || 0), 0);
  text("streams-figure", `${status.streams.active} playing`);
  text("streams-detail", `${status.streams.total} open · ${withHls(`${players} players`, hls)}`);

  let rateIn = 0;
  let rateOut = 0;
  let known = false;
  for (const r of streamRates.values()) {
    if (r.in == null) continue;
    known = true;
    rateIn += r.in;
    rateOut += r.out;
  }
  text("throughput-figure", known ? `${bitrate(rateOut)} out` : streams.length ? "…" : "idle");
  text("throughput-detail", known ? `${bitrate(rateIn)} in from engines` : "");

  const p = status.provisioning;
  const d = p.blocked_reason_details;
  text("provisioning-figure", p.can_provision ? "can provision" : `blocked: ${d ? d.code : "?"}`);
  const parts = [`breaker ${p.circuit_breaker_state}`];
  if (d) {
    parts.unshift(d.message);
    if (d.recovery_eta_seconds != null) parts.push(`retry in ${d.recovery_eta_seconds} s`);
    parts.push(d.should_wait ? "lifts by itself" : "needs the operator");
  }
  text("provisioning-detail", parts.join(" · "));
  $("provisioning-figure").className = `figure ${p.can_provision ? "" : "warn"}`;

  const v = status.vpn;
  if (!v.enabled) {
    text("vpn-figure", "off");
    text("vpn-detail", "engines use the host's network");
  } else {
    text("vpn-figure", v.connected ? "connected" : "disconnected");
    $("vpn-figure").className = `figure ${v.connected ? "" : "warn"}`;
    const each = (v.vpns || []).map(
      (x) => `${x.container}: ${x.connected ? "up" : "down"}, ${x.engines.length} engines` +
        (x.forwarded_port ? `, port ${x.forwarded_port}` : ""),
    );
    text("vpn-detail", each.join(" · ") || `${v.container} (${v.health})`);
  }
}

// Each Docker endpoint with its reachability, engines, room and ports (on a Swarm, each node
// under it); none when the engines are a fixed list (ENGINE_URLS).
function endpointLine(x) {
  const share = `${x.engines} / ${x.max_engines} engines · room ${x.room}`;
  const ports = `ports ${x.ports} (${x.ports_held} held)`;
  const state = x.reachable ? "up" : `down: ${x.down_reason || "unreachable"}`;
  const blocked = x.reachable && x.blocked ? ` · blocked: ${x.blocked}` : "";
  return `${x.name}: ${state} · ${share} · ${ports}${blocked}`;
}

// A Swarm node: where it is, whether it takes engines (drained, down ...), and the ports of the
// engines whose task runs on it.
function nodeLine(n) {
  const where = n.address ? ` (${n.address})` : "";
  const ports = n.engines.map((e) => e.port).join(", ");
  const engines = `${n.engines.length} engines${ports ? ` on ${ports}` : ""}`;
  return `${n.hostname || n.id}${where}: ${n.condition} · ${n.role} · ${engines}`;
}

function renderNodes(li, nodes) {
  let list = li.querySelector("ul.nodes");
  if (!nodes.length) {
    if (list) list.remove();
    return;
  }
  if (!list) {
    list = document.createElement("ul");
    list.className = "nodes";
    li.append(list);
  }
  while (list.children.length > nodes.length) list.lastElementChild.remove();
  while (list.children.length < nodes.length) list.append(document.createElement("li"));
  nodes.forEach((n, i) => {
    const item = list.children[i];
    item.dataset.node = n.id;
    item.className = n.reachable ? "" : "warn";
    item.textContent = nodeLine(n);
  });
}

function renderEndpoints(endpoints) {
  const list = $("endpoints-list");
  const up = endpoints.filter((x) => x.reachable).length;
  text("endpoints-figure", endpoints.length ? `${up} / ${endpoints.length} reachable` : "none");
  $("endpoints-figure").className = `figure ${up < endpoints.length ? "warn" : ""}`;
  const items = endpoints.length ? endpoints : [null];
  while (list.children.length > items.length) list.lastElementChild.remove();
  while (list.children.length < items.length) {
    const li = document.createElement("li");
    li.append(document.createElement("span"));
    list.append(li);
  }
  items.forEach((x, i) => {
    const li = list.children[i];
    li.dataset.endpoint = x ? x.name : "";
    li.firstElementChild.textContent = x ? endpointLine(x) : "fixed engines (ENGINE_URLS)";
    renderNodes(li, x ? x.nodes || [] : []);
  });
}

function render(status, engines, streams, at) {
  const now = Date.now();
  const maxStreams = status.capacity.max_streams_per_engine;
  syncRows($("engines").tBodies[0], engines, (x) => x.id, engineRow, (row, x) => updateEngine(row, x, maxStreams));
  $("engines-empty").hidden = engines.length > 0;
  const streamRates = rates(streams, at);
  syncRows($("streams").tBodies[0], streams, (x) => x.key, streamRow, (row, x) => updateStream(row, x, streamRates.get(x.key), now));
  $("streams-empty").hidden = streams.length > 0;
  renderSummary(status, streams, streamRates);
  renderEndpoints(status.endpoints || []);
  text("updated", `updated ${new Date(now).toLocaleTimeString()}`);
}

// --- channels -------------------------------------------------------------------------------

const CHANNEL_FIELDS = ["number", "name", "group", "tvg_id", "players", "sources"];

function channelRow() {
  const row = document.createElement("tr");
  cells(row, CHANNEL_FIELDS);
  return row;
}

function sourceText(source) {
  const until = source.bad_until ? ` until ${clock(source.bad_until)}` : "";
  return `${source.id.slice(0, 8)}… ${source.state}${until}`;
}

function updateChannel(row, channel) {
  const working = channel.sources.some((s) => s.state !== "bad");
  row.className = working ? "" : "state-unhealthy";
  setCells(row, {
    number: channel.number,
    name: channel.name,
    group: channel.group || "–",
    tvg_id: channel.tvg_id || "–",
    players: channel.players,
  });
  const cell = row.querySelector('[data-field="sources"]');
  const shown = channel.sources.map(sourceText).join(" · ");
  if (cell.dataset.shown === shown) return;
  cell.dataset.shown = shown;
  cell.replaceChildren(
    ...channel.sources.flatMap((source, index) => {
      const item = document.createElement("span");
      item.className = `source source-${source.state}`;
      item.title = source.id;
      item.textContent = sourceText(source);
      return index ? [" · ", item] : [item];
    }),
  );
}

function renderChannels(channels, report, playing) {
  // Players attached to each channel now (the status lists the channels that play).
  const players = new Map(playing.map((p) => [p.number, p.players]));
  const shown = channels.map((c) => ({ ...c, players: players.get(c.number) ?? 0 }));
  syncRows($("channels").tBodies[0], shown, (x) => String(x.number), channelRow, updateChannel);
  $("channels-empty").hidden = channels.length > 0 || report.configured;
  const list = report.list;
  let line = "";
  if (report.configured) {
    line = `${list.location}: ${list.channels ?? 0} channels, ${list.skipped ?? 0} entries skipped`;
    if (list.error) line += ` · last load failed: ${list.error}`;
  }
  text("channels-source", line);
}

// --- errors and the action log -------------------------------------------------------------

function alertWith(message) {
  const box = $("alert");
  box.hidden = !message;
  if (box.textContent !== message) box.textContent = message;
}

function logLine(message, failed) {
  const item = document.createElement("li");
  item.className = failed ? "error" : "ok";
  item.textContent = `${new Date().toLocaleTimeString()} ${message}`;
  $("log").prepend(item);
  while ($("log").children.length > 20) $("log").lastChild.remove();
}

function readFailure(error) {
  if (error instanceof ApiError && error.status === 401) {
    return "The gateway protects its reads (PROTECT_READS): type the API key above. " + error.message;
  }
  if (error instanceof ApiError && error.status === 403) {
    return "The API key is wrong. " + error.message;
  }
  if (error instanceof ApiError) return `The gateway answered ${error.message}`;
  return `The gateway cannot be reached: ${error.message}`;
}

// --- polling -------------------------------------------------------------------------------

let timer = null;
let polling = false;
let again = false;

async function poll() {
  if (polling) {
    again = true;
    return;
  }
  polling = true;
  clearTimeout(timer);
  try {
    const [status, engines, streams] = await Promise.all([
      api("GET", "orchestrator/status"),
      api("GET", "engines"),
      api("GET", "streams"),
    ]);
    render(status, engines, streams, performance.now());
    const lineup = await Promise.all([api("GET", "channels"), api("GET", "channels/status")]);
    renderChannels(...lineup, status.channels?.playing ?? []);
    alertWith("");
  } catch (error) {
    alertWith(readFailure(error));
    if (error instanceof ApiError && error.status === 401 && !apiKey()) $("api-key").focus();
  } finally {
    polling = false;
    timer = setTimeout(poll, POLL_MS);
    if (again) {
      again = false;
      pollNow();
    }
  }
}

function pollNow() {
  clearTimeout(timer);
  poll();
}

// --- management actions --------------------------------------------------------------------

async function act(control, action) {
  control.disabled = true;
  try {
    await action();
  } finally {
    control.disabled = false;
  }
}

async function manage(method, path, what) {
  try {
    const body = await api(method, path);
    const state = body && body.state ? ` (${body.state})` : "";
    logLine(`${what}: done${state}`, false);
  } catch (error) {
    const hint =
      error instanceof ApiError && error.status === 401 ? " — type the API key above" : "";
    logLine(`${what}: ${error.message}${hint}`, true);
  }
  pollNow();
}

function setupFleetActions() {
  const start = $("start-engine");
  start.addEventListener("click", () => act(start, () => manage("POST", "engines", "start an engine")));
  const reconcile = $("reconcile");
  reconcile.addEventListener("click", () => act(reconcile, () => manage("POST", "fleet/reconcile", "reconcile")));
}

document.addEventListener("DOMContentLoaded", () => {
  setupKeyForm();
  setupFleetActions();
  poll();
});
