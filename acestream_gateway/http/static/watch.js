// The watch page: plays one channel's HLS output (/ace/manifest.m3u8, cut by the gateway from the
// channel's shared engine session) in a <video>, through the vendored hls.js wherever the browser
// has Media Source Extensions, else through the browser's own HLS. The channel comes from this
// page's query (the dashboard's Watch button), the player token from the form (kept in the tab's
// sessionStorage, like the dashboard's API key). Every error is written in the page, with no URL
// (and so no token) in it; nothing is written to the console. Leaving the page, or Stop, ends all
// loading.
"use strict";

const TOKEN_STORE = "acestream-gateway.player-token";
// The inputs /ace/getstream takes (one of them) and the file choice that goes with it.
const INPUTS = ["id", "content_id", "infohash", "url", "magnet"];
const REFRESH_MS = 500;
// The first playlist request of a channel that is not playing waits while the engine prebuffers
// (the gateway bounds that wait with FIRST_DATA_TIMEOUT_S and then answers why): hls.js must not
// give up or ask again before the gateway answers.
const FIRST_PLAYLIST_MS = 180000;
// hls.js starts a live playlist three segments behind its end, but a channel that just started
// lists one: playing it at once runs dry before the next is cut. Playback waits until this many
// target durations are buffered (two segments), which then stays ahead of the cutting; at most
// half of what hls.js buffers at all (its maxBufferLength), which one long segment may exceed.
const START_TARGETS = 1.5;
// A media error recovered this recently and failing again is not recovered a second time.
const RECOVERY_WINDOW_MS = 10000;

const $ = (id) => document.getElementById(id);
const video = () => $("video");

// --- the channel and the token -------------------------------------------------------------

function channelQuery() {
  const here = new URLSearchParams(window.location.search);
  const query = new URLSearchParams();
  for (const name of [...INPUTS, "file_indexes"]) {
    const value = here.get(name);
    if (value) query.set(name, value);
  }
  return query;
}

function describeChannel(query) {
  const name = INPUTS.find((n) => query.has(n));
  const files = query.get("file_indexes");
  return `${name} ${query.get(name)}${files && files !== "0" ? ` (files ${files})` : ""}`;
}

function token() {
  return sessionStorage.getItem(TOKEN_STORE) || "";
}

// Relative: the page also works behind a reverse proxy that adds a path prefix.
function manifestUrl(query) {
  const withToken = new URLSearchParams(query);
  if (token()) withToken.set("token", token());
  return `../ace/manifest.m3u8?${withToken}`;
}

// Text the page does not write itself (answers, the browser's messages) passes through here: no
// message may carry the token.
function redact(message) {
  const secret = token();
  if (!secret) return message;
  let out = String(message);
  for (const form of new Set([secret, encodeURIComponent(secret)])) out = out.split(form).join("…");
  return out;
}

function showTokenState() {
  $("token-state").textContent = token() ? "token in use" : "no token";
}

function setupTokenForm() {
  $("token").value = token();
  showTokenState();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (value) sessionStorage.setItem(TOKEN_STORE, value);
    else sessionStorage.removeItem(TOKEN_STORE);
    showTokenState();
    start();
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_STORE);
    $("token").value = "";
    showTokenState();
  });
}

// --- what the page shows -------------------------------------------------------------------

function text(id, value) {
  if ($(id).textContent !== String(value)) $(id).textContent = value;
}

function setState(state) {
  const badge = $("state");
  badge.textContent = state;
  badge.className = `badge ${{ playing: "healthy", error: "unavailable", stalled: "degraded" }[state] || ""}`;
}

function alertWith(message) {
  const box = $("alert");
  box.hidden = !message;
  box.textContent = message;
}

function logLine(message, kind) {
  const item = document.createElement("li");
  item.className = kind;
  item.textContent = `${new Date().toLocaleTimeString()} ${message}`;
  $("log").prepend(item);
  while ($("log").children.length > 50) $("log").lastChild.remove();
}

function seconds(s) {
  return `${s.toFixed(1)} s`;
}

function bufferedAhead() {
  const v = video();
  for (let i = 0; i < v.buffered.length; i += 1) {
    if (v.buffered.start(i) <= v.currentTime && v.currentTime <= v.buffered.end(i)) {
      return v.buffered.end(i) - v.currentTime;
    }
  }
  return 0;
}

function refreshFigures() {
  const v = video();
  text("position", v.currentTime ? seconds(v.currentTime) : "–");
  text("buffered", v.buffered.length ? `${seconds(bufferedAhead())} buffered ahead` : "");
  text("picture", v.videoWidth ? `${v.videoWidth}×${v.videoHeight}` : "–");
  const quality = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
  text("dropped", quality ? `${quality.totalVideoFrames} frames, ${quality.droppedVideoFrames} dropped` : "");
}

// --- the players ---------------------------------------------------------------------------

// A player is {name, stop()}; at most one runs.
let player = null;
let segments = 0;

function gatewayReason(networkDetails) {
  // The gateway answers refusals as JSON with a reason; hls.js hands over its request.
  if (!(networkDetails instanceof XMLHttpRequest)) return "";
  let body = "";
  try {
    const raw = networkDetails.response;
    body = typeof raw === "string" ? raw : raw instanceof ArrayBuffer ? new TextDecoder().decode(raw) : "";
    const parsed = JSON.parse(body);
    return redact(parsed.detail || parsed.error || "");
  } catch (_) {
    return "";
  }
}

function describeHlsError(data) {
  const code = data.response && data.response.code;
  const reason = gatewayReason(data.networkDetails);
  const http = code ? ` (HTTP ${code}${reason ? `: ${reason}` : ""})` : "";
  return `hls.js ${data.fatal ? "fatal " : ""}${data.type} ${data.details}${http}`;
}

function refusal(data) {
  const code = data.response && data.response.code;
  if (data.details !== Hls.ErrorDetails.MANIFEST_LOAD_ERROR) return "";
  if (code === 401) return "This gateway needs its player token (PLAYER_TOKEN): type it above.";
  if (code === 403) return "The player token is wrong: type the right one above.";
  return "";
}

function startHlsJs(url) {
  const hls = new Hls({
    debug: false,
    // The worker is a file of this origin: the page's policy allows no blob: scripts.
    workerPath: "vendor/hls.worker.js",
    liveDurationInfinity: true,
    manifestLoadPolicy: {
      default: {
        maxTimeToFirstByteMs: Infinity,
        maxLoadTimeMs: FIRST_PLAYLIST_MS,
        timeoutRetry: null,
        errorRetry: { maxNumRetry: 1, retryDelayMs: 1000, maxRetryDelayMs: 1000 },
      },
    },
  });
  let recoveredAt = -Infinity;
  let startAhead = Infinity;
  let begun = false;
  hls.on(Hls.Events.MANIFEST_PARSED, () => logLine("playlist loaded", "ok"));
  hls.on(Hls.Events.LEVEL_LOADED, (_, data) => {
    const d = data.details;
    // A failover shows as one discontinuity (the playlist counts them from the channel's start).
    const breaks = d.endCC ? ` · ${d.endCC} discontinuit${d.endCC === 1 ? "y" : "ies"}` : "";
    text("sequence", `sequence ${d.startSN}–${d.endSN} · target ${d.targetduration} s${breaks}`);
    startAhead = Math.min(START_TARGETS * d.targetduration, hls.config.maxBufferLength / 2);
  });
  hls.on(Hls.Events.FRAG_BUFFERED, () => {
    if (begun || bufferedAhead() < startAhead) return;
    begun = true;
    play();
  });
  hls.on(Hls.Events.FRAG_LOADED, () => {
    segments += 1;
    text("segments", segments);
  });
  hls.on(Hls.Events.ERROR, (_, data) => {
    const message = describeHlsError(data);
    if (!data.fatal) {
      logLine(`${message}; hls.js retries`, "error");
      return;
    }
    const denied = refusal(data);
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR && performance.now() - recoveredAt > RECOVERY_WINDOW_MS) {
      recoveredAt = performance.now();
      logLine(`${message}; recovering`, "error");
      begun = false; // playback starts again once enough is buffered
      hls.recoverMediaError();
      return;
    }
    fail(denied || message);
    if (denied) $("token").focus();
  });
  hls.loadSource(url);
  hls.attachMedia(video());
  return { name: `hls.js ${Hls.version}`, stop: () => hls.destroy() };
}

function startNative(url) {
  const v = video();
  const onError = () => fail(`the browser's HLS failed: ${redact((v.error && v.error.message) || "no detail")}`);
  v.addEventListener("error", onError);
  v.src = url;
  play(); // the browser's own HLS keeps its own distance from the live edge
  return {
    name: "the browser's HLS",
    stop: () => {
      v.removeEventListener("error", onError);
      v.removeAttribute("src");
      v.load();
    },
  };
}

function stop() {
  if (!player) return;
  player.stop();
  player = null;
  video().pause();
  $("stop").hidden = true;
  $("play").hidden = false;
}

function fail(message) {
  stop();
  setState("error");
  alertWith(message);
  logLine(message, "error");
}

function start() {
  stop();
  alertWith("");
  const query = channelQuery();
  if (!INPUTS.some((n) => query.has(n))) {
    fail("No channel given: open this page from the dashboard's Watch button.");
    return;
  }
  text("channel", describeChannel(query));
  const url = manifestUrl(query);
  segments = 0;
  text("segments", 0);
  if (typeof Hls !== "undefined" && Hls.isSupported()) player = startHlsJs(url);
  else if (video().canPlayType("application/vnd.apple.mpegurl")) player = startNative(url);
  else {
    fail("This browser plays no HLS: it has neither Media Source Extensions nor HLS of its own.");
    return;
  }
  text("player", player.name);
  setState("loading");
  $("stop").hidden = false;
  $("play").hidden = true;
}

function play() {
  // Muted, the browser lets the page start the video; should it refuse, its controls remain.
  video().play().catch(() => player && setState("paused"));
}

function setupPlayer() {
  const v = video();
  v.addEventListener("playing", () => {
    if (player) {
      setState("playing");
      alertWith("");
    }
  });
  v.addEventListener("waiting", () => player && setState("stalled"));
  v.addEventListener("pause", () => player && setState("paused"));
  $("stop").addEventListener("click", () => {
    stop();
    setState("stopped");
    logLine("stopped", "ok");
  });
  $("play").addEventListener("click", start);
  // Leaving the page (closed, reloaded, navigated away, or put in the back/forward cache)
  // ends every request for the channel.
  window.addEventListener("pagehide", stop);
  window.addEventListener("pageshow", (event) => event.persisted && start());
  setInterval(refreshFigures, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  setupTokenForm();
  setupPlayer();
  start();
});
