// edge-agent dashboard: draws the fleet that the server streams over Server-Sent Events.
//
// The server sends a snapshot when the stream opens (and again after any reconnect), then
// one delta per MQTT message; every rule about what the messages mean lives on the server
// (edge_agent/dashboard/fleet.py), so this file only stores and draws. Everything shown
// comes from MQTT and is untrusted: the DOM is built with createElement and textContent
// only, never from markup, so a device id or payload holding <script> is shown as text.
(function () {
  "use strict";

  const GLYPHS = {
    angry: "😠", disgust: "🤢", fear: "😨", happy: "😄", sad: "😢", surprise: "😮",
    neutral: "😐", uncertain: "❔",
  };
  const COLORS = {
    angry: "#d62728", disgust: "#6b8e23", fear: "#9467bd", happy: "#e6a700", sad: "#1f77b4",
    surprise: "#ff7f0e", neutral: "#7f7f7f", uncertain: "#b8b8b8",
  };
  const EVENT_WORDS = {
    face_appeared: "face appeared", emotion_changed: "emotion changed", face_lost: "face lost",
  };
  const LOG_ROWS = 200;
  const TICK_MS = 1000; // charts scroll and "… ago" texts age once a second
  const SORT_MS = 5000;

  let emotions = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
  let labels = [...emotions, "uncertain"];
  let windowS = 300;
  let skewMs = 0; // server clock minus this browser's, from the snapshot
  let mood = { t: [], v: [] };
  let moodChart = null;
  let pendingEvents = [];
  let queued = false;
  let order = [];
  let lastSort = 0;
  const devices = new Map(); // id -> {data, view}
  const dirty = new Set();
  const visible = new WeakSet();
  const stepped = () => uPlot.paths.stepped({ align: 1 });

  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function isNumber(value) {
    return typeof value === "number" && Number.isFinite(value);
  }

  function num(value, digits) {
    return isNumber(value) ? value.toFixed(digits) : "–";
  }

  function serverNow() {
    return Date.now() + skewMs;
  }

  function ago(ms) {
    if (!isNumber(ms) || ms <= 0) return "never";
    const s = (serverNow() - ms) / 1000;
    if (s < 2) return "now";
    if (s < 120) return `${Math.round(s)} s ago`;
    if (s < 7200) return `${Math.round(s / 60)} min ago`;
    return `${Math.round(s / 3600)} h ago`;
  }

  function span(seconds) {
    if (!isNumber(seconds)) return "–";
    if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
    if (seconds < 172800) return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
    return `${Math.floor(seconds / 86400)} d`;
  }

  const two = (n) => String(n).padStart(2, "0");

  function clockOf(seconds, withSeconds) {
    const d = new Date(seconds * 1000);
    const minutes = `${two(d.getHours())}:${two(d.getMinutes())}`;
    return withSeconds ? `${minutes}:${two(d.getSeconds())}` : minutes;
  }

  function clock(ts) {
    const t = Date.parse(ts);
    return isNumber(t) ? clockOf(t / 1000, true) : ts || "–";
  }

  // An emotion as glyph and word; "uncertain" has its own glyph, an unknown word a dot.
  function emotionNode(emotion, className) {
    const node = el("span", `emotion ${className || ""}`);
    if (emotion === null || emotion === undefined) {
      node.textContent = "–";
      return node;
    }
    const glyph = el("span", "glyph", Object.hasOwn(GLYPHS, emotion) ? GLYPHS[emotion] : "•");
    glyph.setAttribute("aria-hidden", "true");
    node.append(glyph, el("span", "word", emotion));
    if (Object.hasOwn(COLORS, emotion)) node.style.setProperty("--tone", COLORS[emotion]);
    return node;
  }

  // -- timelines ----------------------------------------------------------------------------

  function upsert(series, point) {
    const [t, row] = point;
    const last = series.t.length - 1;
    if (last >= 0 && series.t[last] >= t) series.v[last] = row;
    else {
      series.t.push(t);
      series.v.push(row);
    }
    const oldest = t - windowS;
    while (series.t.length > 1 && series.t[1] <= oldest) {
      series.t.shift();
      series.v.shift();
    }
  }

  // uPlot's columns for a stepped series, its last row held until now.
  function columns(series, width, nowS) {
    const xs = series.t.slice();
    const cols = [];
    for (let i = 0; i < width; i++) cols.push(series.v.map((row) => (row ? row[i] : null)));
    if (xs.length && xs[xs.length - 1] < nowS) {
      xs.push(nowS);
      const lastRow = series.v[series.v.length - 1];
      cols.forEach((col, i) => col.push(lastRow ? lastRow[i] : null));
    }
    return [xs, ...cols];
  }

  function chart(target, { height, axes, names, fill, yRange }) {
    const width = Math.max(120, target.clientWidth || 280);
    const series = [{}].concat(
      names.map((name) => ({
        label: name,
        stroke: COLORS[name] || "#444",
        fill: fill ? COLORS[name] || "#444" : undefined,
        width: fill ? 0 : 1.5,
        paths: stepped(),
        points: { show: false },
      })),
    );
    const axis = { stroke: "#666", grid: { stroke: "#eee", width: 1 }, ticks: { show: false }, font: "10px sans-serif", size: 24 };
    const timeAxis = { ...axis, space: 70, values: (_plot, splits, _axis, _space, step) => splits.map((t) => clockOf(t, step < 60)) };
    const options = {
      width,
      height,
      legend: { show: false },
      cursor: { show: false },
      select: { show: false },
      scales: {
        x: { time: true, range: () => { const n = serverNow() / 1000; return [n - windowS, n]; } },
        y: { range: yRange },
      },
      axes: axes ? [timeAxis, { ...axis, size: 30 }] : [{ show: false }, { show: false }],
      series,
    };
    return new uPlot(options, [[]].concat(names.map(() => [])), target);
  }

  // Stacked areas: each series is the running total up to its label, drawn tallest first,
  // so each label's colour shows between its total and the one below. A row without
  // values stays a gap.
  function stacked(series, width) {
    const [xs, ...cols] = columns(series, width, serverNow() / 1000);
    const totals = [];
    let running = xs.map(() => 0);
    cols.forEach((col) => {
      running = running.map((sum, i) => (sum === null || col[i] === null ? null : sum + col[i]));
      totals.push(running);
    });
    return [xs, ...totals.reverse()];
  }

  function drawScores(plot, series) {
    if (plot) plot.setData(stacked(series, emotions.length));
  }

  // The room's mood: faces per label, stacked.
  function drawMood() {
    if (moodChart) moodChart.setData(stacked(mood, labels.length));
  }

  function moodRange(_plot, _min, max) {
    return [0, Math.max(2, Math.ceil(max) + 1)];
  }

  // -- device tiles -------------------------------------------------------------------------

  // Text is only assigned when it changed: most deltas change a figure or two, and every
  // write to the DOM costs the page a style and layout pass.
  function setText(node, text) {
    const value = String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  function setEmotion(node, emotion) {
    const key = emotion === null || emotion === undefined ? "" : String(emotion);
    if (node.dataset.emotion === key && node.childNodes.length) return;
    node.dataset.emotion = key;
    node.replaceChildren(emotionNode(emotion));
  }

  function healthRow(list, name) {
    list.append(el("dt", "", name));
    const value = el("dd");
    list.append(value);
    return value;
  }

  function makeView(id) {
    const tile = el("article", "tile");
    tile.dataset.device = id;
    const head = el("div", "tile-head");
    const name = el("h3", "name", id);
    name.title = id;
    const badge = el("span", "badge", "…");
    head.append(name, badge);
    const camera = el("span");
    const fps = el("span");
    const accelerator = el("span");
    const seen = el("span", "seen");
    const meta = el("div", "meta");
    meta.append(camera, fps, accelerator, seen);
    const count = el("span", "count");
    const dominant = el("span", "dominant");
    const now = el("div", "now");
    now.append(count, el("span", "", "dominant"), dominant);
    const faces = el("div", "faces");
    const plotBox = el("div", "chart device-chart");
    const plotCaption = el("div", "caption", "emotion scores over the last minutes, faces averaged");
    const health = el("dl", "health");
    const error = el("div", "error");
    error.hidden = true;
    tile.append(head, meta, now, faces, plotBox, plotCaption, health, error);
    const view = {
      tile, badge, camera, fps, accelerator, seen, count, dominant, faces, plotBox, error,
      plot: null,
      stale: true,
      faceViews: new Map(),
      health: {
        latency: healthRow(health, "latency p50/95/99"),
        frames: healthRow(health, "frames done/dropped"),
        outbox: healthRow(health, "outbox / lost events"),
        temp: healthRow(health, "CPU temperature"),
        uptime: healthRow(health, "uptime"),
        stats: healthRow(health, "stats"),
      },
    };
    observer.observe(tile);
    return view;
  }

  function addDevice(data) {
    const entry = { data, view: makeView(data.id) };
    devices.set(data.id, entry);
    const empty = $("empty");
    if (empty) empty.remove();
    $("devices").append(entry.view.tile);
    entry.view.plot = chart(entry.view.plotBox, { height: 90, axes: true, names: [...emotions].reverse(), fill: true, yRange: [0, 1] });
    return entry;
  }

  function updateTile(entry) {
    const { data, view } = entry;
    view.stale = false;
    const stats = data.stats || {};
    const state = data.state || {};
    const online = data.availability === "online";
    view.tile.classList.toggle("offline", data.availability === "offline");
    setText(view.badge, data.availability || "unknown");
    view.badge.className = `badge ${online ? "ok" : data.availability === "offline" ? "bad" : ""}`;
    setText(view.camera, `camera ${stats.camera || "–"}`);
    view.camera.className = stats.camera && stats.camera !== "ok" ? "warn" : "";
    setText(view.fps, `${num(stats.fps, 1)} fps`);
    setText(view.accelerator, stats.accelerator || "–");
    setText(view.seen, `heard ${ago(data.seen)}`);

    const faces = data.faces || [];
    setText(view.count, `${faces.length} face${faces.length === 1 ? "" : "s"}`);
    setEmotion(view.dominant, state.dominant_emotion);
    updateFaces(entry, faces);

    const latency = stats.latency_ms || {};
    const h = view.health;
    setText(h.latency, `${num(latency.p50, 0)} / ${num(latency.p95, 0)} / ${num(latency.p99, 0)} ms`);
    setText(h.frames, `${num(stats.frames_processed, 0)} / ${num(stats.frames_dropped, 0)}`);
    setText(h.outbox, `${num(stats.outbox_depth, 0)} / ${num(stats.events_dropped, 0)}`);
    setText(h.temp, isNumber(stats.cpu_temp_c) ? `${stats.cpu_temp_c.toFixed(1)} °C` : "–");
    setText(h.uptime, span(stats.uptime_s));
    setText(h.stats, stats.ts ? `sent ${clock(stats.ts)}` : "none yet");
    view.error.hidden = !stats.outbox_error;
    setText(view.error, stats.outbox_error ? `outbox: ${stats.outbox_error}` : "");
  }

  function updateFaces(entry, faces) {
    const { data, view } = entry;
    const keep = new Set();
    faces.forEach((face, index) => {
      const key = face.track === null ? `?${index}` : String(face.track);
      keep.add(key);
      let fv = view.faceViews.get(key);
      if (!fv) {
        const row = el("div", "face");
        const line = el("div", "face-line");
        const parts = {
          track: el("span", "track", face.track === null ? "face" : `face #${face.track}`),
          emotion: el("span"),
          score: el("span", "score"),
          age: el("span"),
          gender: el("span"),
        };
        line.append(parts.track, parts.emotion, parts.score, parts.age, parts.gender);
        const box = el("div", "chart face-chart");
        row.append(line, box);
        fv = { row, box, parts, plot: null };
        view.faceViews.set(key, fv);
      }
      if (view.faces.children[index] !== fv.row) view.faces.insertBefore(fv.row, view.faces.children[index] || null);
      if (!fv.plot && face.track !== null) {
        fv.plot = chart(fv.box, { height: 34, axes: false, names: [...emotions].reverse(), fill: true, yRange: [0, 1] });
        drawScores(fv.plot, data.face_timelines[key] || { t: [], v: [] });
      }
      const score = face.scores && face.emotion ? face.scores[emotions.indexOf(face.emotion)] : null;
      const gender = face.gender ? `${face.gender}${isNumber(face.gender_score) ? " " + face.gender_score.toFixed(2) : ""}` : "gender –";
      setEmotion(fv.parts.emotion, face.emotion);
      setText(fv.parts.score, isNumber(score) ? score.toFixed(2) : "");
      setText(fv.parts.age, isNumber(face.age) ? `age ${Math.round(face.age)}` : "age –");
      setText(fv.parts.gender, gender);
    });
    for (const [key, fv] of view.faceViews) {
      if (!keep.has(key)) {
        if (fv.plot) fv.plot.destroy();
        fv.row.remove();
        view.faceViews.delete(key);
      }
    }
  }

  function drawTileCharts(entry) {
    const { data, view } = entry;
    drawScores(view.plot, data.timeline);
    for (const [key, fv] of view.faceViews) {
      if (fv.plot) drawScores(fv.plot, data.face_timelines[key] || { t: [], v: [] });
    }
  }

  function removeDevice(entry) {
    const { view } = entry;
    observer.unobserve(view.tile);
    if (view.plot) view.plot.destroy();
    for (const fv of view.faceViews.values()) if (fv.plot) fv.plot.destroy();
    view.tile.remove();
  }

  // Most active first: events in the window, then faces in view, online before not, name.
  function activity(data) {
    const since = serverNow() - windowS * 1000;
    return data.event_times.filter((t) => t > since).length;
  }

  // Tiles move at most every SORT_MS (or when one is added): a grid that reshuffles at every
  // event can be neither read nor clicked.
  function sortTiles(force) {
    const now = Date.now();
    if (!force && now - lastSort < SORT_MS) return;
    lastSort = now;
    const entries = [...devices.values()].map((e) => [e, activity(e.data)]);
    entries.sort(([a, aa], [b, ba]) =>
      ba - aa
      || (b.data.faces || []).length - (a.data.faces || []).length
      || (b.data.availability === "online") - (a.data.availability === "online")
      || (a.data.id < b.data.id ? -1 : a.data.id > b.data.id ? 1 : 0));
    const next = entries.map(([e]) => e.data.id);
    if (next.length === order.length && next.every((id, i) => id === order[i])) return;
    order = next;
    const box = $("devices");
    entries.forEach(([e]) => box.append(e.view.tile));
  }

  // -- event log ----------------------------------------------------------------------------

  function eventRow(event) {
    const row = el("tr", `ev ${Object.hasOwn(EVENT_WORDS, event.type) ? event.type : "other"}`);
    row.dataset.ts = event.ts || "";
    row.dataset.seq = event.seq === null ? "" : String(event.seq);
    const time = el("td", "time", clock(event.ts));
    time.title = event.ts || "";
    const emotion = el("td", "emotions");
    if (event.type === "emotion_changed") {
      emotion.append(emotionNode(event.previous_emotion), el("span", "arrow", "→"));
    }
    emotion.append(emotionNode(event.emotion));
    row.append(
      time,
      el("td", "device", event.device),
      el("td", "", event.seq === null ? "–" : `#${event.seq}`),
      el("td", "type", Object.hasOwn(EVENT_WORDS, event.type) ? EVENT_WORDS[event.type] : event.type || "–"),
      el("td", "", event.track === null ? "–" : `#${event.track}`),
      emotion,
      el("td", "", isNumber(event.age) ? Math.round(event.age) : "–"),
      el("td", "", event.gender || "–"),
      el("td", "", event.type === "face_lost" ? span(event.duration_s) : ""),
    );
    return row;
  }

  function flushEvents() {
    if (!pendingEvents.length) return;
    const body = $("log").tBodies[0];
    const fragment = document.createDocumentFragment();
    for (let i = pendingEvents.length - 1; i >= Math.max(0, pendingEvents.length - LOG_ROWS); i--) {
      fragment.append(eventRow(pendingEvents[i]));
    }
    body.prepend(fragment);
    while (body.rows.length > LOG_ROWS) body.lastElementChild.remove();
    pendingEvents = [];
  }

  // -- header and fleet ---------------------------------------------------------------------

  function updateHeader() {
    let online = 0;
    let faces = 0;
    for (const { data } of devices.values()) {
      if (data.availability === "online") online++;
      faces += (data.faces || []).length;
    }
    const n = devices.size;
    $("summary").textContent = `${n} device${n === 1 ? "" : "s"} · ${online} online · ${faces} face${faces === 1 ? "" : "s"} in view`;
    const fleet = $("fleet");
    const wasHidden = fleet.hidden;
    fleet.hidden = n < 2;
    if (!fleet.hidden && (wasHidden || !moodChart)) {
      if (!moodChart) {
        moodChart = chart($("mood-chart"), { height: 120, axes: true, names: [...labels].reverse(), fill: true, yRange: moodRange });
      }
      drawMood();
    }
    const last = mood.v.length ? mood.v[mood.v.length - 1] : null;
    const parts = [];
    if (last) labels.forEach((label, i) => { if (last[i]) parts.push(`${last[i]} ${label}`); });
    $("mood-now").textContent = parts.length ? `Now: ${parts.join(", ")}` : "Now: no face in view";
  }

  function moodLegend() {
    const legend = $("mood-legend");
    legend.replaceChildren(...labels.map((label) => {
      const item = emotionNode(label, "key");
      const swatch = el("span", "swatch");
      swatch.style.background = COLORS[label] || "#444";
      item.prepend(swatch);
      return item;
    }));
  }

  function setPill(id, text, good) {
    const pill = $(id);
    pill.textContent = text;
    pill.className = `pill ${good ? "ok" : "bad"}`;
  }

  // -- applying the stream ------------------------------------------------------------------

  function render() {
    queued = false;
    for (const id of dirty) {
      const entry = devices.get(id);
      if (!entry) continue;
      // Tiles out of sight are brought up to date when they scroll into view.
      if (visible.has(entry.view.tile)) updateTile(entry);
      else entry.view.stale = true;
    }
    dirty.clear();
    flushEvents();
    updateHeader();
    sortTiles(devices.size !== order.length);
  }

  function schedule() {
    if (!queued) {
      queued = true;
      requestAnimationFrame(render);
    }
  }

  function applySnapshot(snapshot) {
    for (const entry of devices.values()) removeDevice(entry);
    devices.clear();
    order = [];
    emotions = snapshot.emotions;
    labels = snapshot.labels;
    windowS = snapshot.window_s;
    skewMs = snapshot.now - Date.now();
    mood = snapshot.mood;
    if (moodChart) {
      moodChart.destroy();
      moodChart = null;
    }
    moodLegend();
    setPill("broker", `broker: ${snapshot.broker}`, snapshot.broker === "connected");
    snapshot.devices.forEach((data) => {
      const entry = addDevice(data);
      dirty.add(data.id);
      drawTileCharts(entry);
    });
    $("log").tBodies[0].replaceChildren();
    pendingEvents = snapshot.events.slice();
    schedule();
  }

  function applyDelta(delta) {
    if (delta.type === "broker") {
      setPill("broker", `broker: ${delta.status}`, delta.status === "connected");
      return;
    }
    if (delta.type !== "device") return;
    let entry = devices.get(delta.id);
    if (!entry) {
      entry = addDevice({
        id: delta.id, availability: "unknown", state: {}, faces: [], stats: null, seen: 0,
        timeline: { t: [], v: [] }, face_timelines: {}, event_times: [],
      });
    }
    const data = entry.data;
    Object.assign(data, delta.patch);
    if (delta.point) upsert(data.timeline, delta.point);
    if (delta.patch.faces) {
      const tracks = new Set(delta.patch.faces.map((f) => String(f.track)));
      for (const key of Object.keys(data.face_timelines)) if (!tracks.has(key)) delete data.face_timelines[key];
    }
    if (delta.face_points) {
      for (const [key, point] of Object.entries(delta.face_points)) {
        if (!Object.hasOwn(data.face_timelines, key)) data.face_timelines[key] = { t: [], v: [] };
        upsert(data.face_timelines[key], point);
      }
    }
    if (delta.event) {
      data.event_times.push(delta.event.received);
      pendingEvents.push(delta.event);
    }
    if (delta.mood) upsert(mood, delta.mood);
    dirty.add(delta.id);
    schedule();
  }

  function tick() {
    for (const entry of devices.values()) {
      if (!visible.has(entry.view.tile)) continue;
      setText(entry.view.seen, `heard ${ago(entry.data.seen)}`);
      drawTileCharts(entry);
    }
    if (!$("fleet").hidden) drawMood();
    sortTiles(false);
  }

  // Charts of tiles scrolled out of sight are not redrawn (many devices stay cheap).
  const observer = new IntersectionObserver((entries) => {
    for (const item of entries) {
      if (item.isIntersecting) {
        visible.add(item.target);
        const entry = devices.get(item.target.dataset.device);
        if (!entry) continue;
        if (entry.view.stale) updateTile(entry);
        drawTileCharts(entry);
      } else visible.delete(item.target);
    }
  });

  function resize() {
    const fit = (plot, box) => { if (plot) plot.setSize({ width: Math.max(120, box.clientWidth), height: plot.height }); };
    for (const { view } of devices.values()) {
      fit(view.plot, view.plotBox);
      for (const fv of view.faceViews.values()) fit(fv.plot, fv.box);
    }
    fit(moodChart, $("mood-chart"));
  }

  function connect() {
    const source = new EventSource("/events");
    source.addEventListener("snapshot", (e) => applySnapshot(JSON.parse(e.data)));
    source.onmessage = (e) => applyDelta(JSON.parse(e.data));
    source.onopen = () => setPill("link", "page: live", true);
    source.onerror = () => setPill("link", "page: reconnecting…", false);
  }

  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(resize, 200);
  });
  setInterval(tick, TICK_MS);
  connect();
})();
