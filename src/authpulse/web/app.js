// authpulse dashboard: polls the JSON API and renders the list and session pages.
// No framework, no build step. Every value from the API is set with textContent,
// never parsed as HTML.
(function () {
  "use strict";

  const POLL_MS = 1500;
  const REQUEST_TIMEOUT_MS = 8000;
  const ACTION_TIMEOUT_MS = 60000; // a refresh may retry the token endpoint for up to 30 s
  const TOKEN_KEY = "authpulse.adminToken";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const BANDS = [
    // name, lowest score (see docs/health.md)
    ["excellent", 80],
    ["good", 60],
    ["fair", 40],
    ["poor", 20],
    ["critical", 0],
  ];

  const $ = (id) => document.getElementById(id);
  let pollTimer = null;
  let generation = 0; // bumps on navigation, so a late answer for another page is dropped
  let adminEnabled = null;
  let cancelArmedUntil = 0;
  let lastDetail = null;

  // ------------------------------------------------------------------ helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("data-")) node.setAttribute(k, String(v));
      else if (k === "href" || k === "title" || k === "id") node.setAttribute(k, String(v));
      else node.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function bandOf(score) {
    for (const [name, floor] of BANDS) if (score >= floor) return name;
    return "critical";
  }

  function fmtDuration(seconds) {
    const s = Math.abs(Math.round(seconds));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }

  function ago(at, now) {
    if (at === null || at === undefined) return "—";
    const d = now - at;
    if (d < 1) return "just now";
    return fmtDuration(d) + " ago";
  }

  function clockTime(at) {
    if (at === null || at === undefined) return "—";
    return new Date(at * 1000).toLocaleTimeString([], { hour12: false });
  }

  function fieldText(v) {
    if (typeof v === "string") return v;
    if (typeof v === "number" && !Number.isInteger(v)) return String(Number(v.toFixed(3)));
    return JSON.stringify(v);
  }

  function expiryNode(row) {
    if (row.expires_in === null || row.expires_in === undefined) {
      return el("span", { class: "expiry muted", text: row.live || row.open ? "no token" : "—" });
    }
    const s = row.expires_in;
    if (s <= 0) return el("span", { class: "expiry gone", "data-expires-in": s, text: "expired " + fmtDuration(s) + " ago" });
    return el("span", { class: "expiry" + (s < 60 ? " soon" : ""), "data-expires-in": s, text: fmtDuration(s) });
  }

  function scoreNode(score, band, big) {
    return el("span", {
      class: "score band-" + (band || bandOf(score)) + (big ? " big" : ""),
      "data-score": score,
      "data-band": band,
      text: String(score),
    });
  }

  // ------------------------------------------------------------------ API

  function adminToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (e) {
      return "";
    }
  }

  async function api(path, options, timeoutMs) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), timeoutMs || REQUEST_TIMEOUT_MS);
    try {
      const init = Object.assign({ cache: "no-store", signal: ctrl.signal, credentials: "same-origin" }, options || {});
      init.headers = Object.assign({ Accept: "application/json" }, (options && options.headers) || {});
      const response = await fetch(path, init);
      let body = null;
      try {
        body = await response.json();
      } catch (e) {
        body = null;
      }
      if (!response.ok) {
        const err = new Error((body && body.message) || response.status + " " + response.statusText);
        err.status = response.status;
        err.code = body && body.error;
        throw err;
      }
      return body;
    } finally {
      clearTimeout(timer);
    }
  }

  // ------------------------------------------------------------------ routing

  function currentRoute() {
    const m = location.hash.match(/^#\/session\/(.+)$/);
    if (m) {
      try {
        return { view: "detail", id: decodeURIComponent(m[1]) };
      } catch (e) {
        return { view: "list" };
      }
    }
    return { view: "list" };
  }

  function show(route) {
    $("list-view").hidden = route.view !== "list";
    $("detail-view").hidden = route.view !== "detail";
    document.title = route.view === "detail" ? route.id + " · authpulse" : "authpulse · session health";
  }

  function navigate() {
    generation += 1;
    lastDetail = null;
    cancelArmedUntil = 0;
    setResult("", "");
    const route = currentRoute();
    show(route);
    if (route.view === "detail") {
      $("detail-title").textContent = route.id;
      $("detail-sub").textContent = "loading…";
    }
    poll();
  }

  // ------------------------------------------------------------------ polling

  async function poll() {
    clearTimeout(pollTimer);
    const gen = generation;
    const route = currentRoute();
    try {
      const summary = await api("/api/health");
      if (gen !== generation) return;
      renderSummary(summary);
      if (route.view === "list") {
        const data = await api("/api/sessions?limit=500");
        if (gen !== generation) return;
        renderList(data);
      } else {
        try {
          const data = await api("/api/sessions/" + encodeURIComponent(route.id));
          if (gen !== generation) return;
          renderDetail(data);
        } catch (e) {
          if (e.status === 404) renderMissing(route.id);
          else throw e;
        }
      }
      setConnection(true, "live · updated " + new Date().toLocaleTimeString([], { hour12: false }));
    } catch (e) {
      if (gen === generation) setConnection(false, "cannot reach the dashboard: " + e.message);
    } finally {
      if (gen === generation) pollTimer = setTimeout(poll, POLL_MS);
    }
  }

  function setConnection(ok, text) {
    const node = $("conn-state");
    node.className = "conn " + (ok ? "live" : "down");
    node.textContent = text;
  }

  // ------------------------------------------------------------------ header

  function renderSummary(s) {
    adminEnabled = !!s.admin_enabled;
    const mean = s.mean_score === null || s.mean_score === undefined ? "" : " · mean " + Math.round(s.mean_score);
    const chips = [
      el("span", { class: "total", id: "summary-total", text: s.total + " sessions · " + s.open + " open" + mean }),
    ];
    for (const [name] of BANDS) {
      const n = s.bands[name] || 0;
      chips.push(
        el("span", {
          class: "chip " + (n ? "band-" + name : "muted-chip"),
          "data-band": name,
          "data-count": n,
          title: n + " open sessions " + name,
          text: n + " " + name,
        }),
      );
    }
    $("summary").replaceChildren(...chips);
    renderAdminState();
  }

  function renderAdminState() {
    const node = $("admin-state");
    if (adminEnabled === false) node.textContent = "actions are off on this server";
    else if (adminToken()) node.textContent = "saved for this tab";
    else node.textContent = "no token";
  }

  // ------------------------------------------------------------------ list page

  function renderList(data) {
    const rows = data.sessions.map((r) => {
      const who = el("span", { class: "session-sub" }, r.owner + " · " + r.kind);
      if (!r.live) who.append(" ", el("span", { class: "pill store", title: "not live in this process: health estimated from the store", text: "from store" }));
      const err = r.last_error
        ? el(
            "span",
            { class: "error-text", title: r.last_error.message + (r.last_error.error_class ? " (" + r.last_error.error_class + ")" : "") },
            r.last_error.message,
          )
        : el("span", { class: "muted", text: "—" });
      const errCell = el("td", { class: "last-error" }, err);
      if (r.last_error && r.last_error.at) errCell.append(el("span", { class: "session-sub", text: ago(r.last_error.at, data.now) }));
      const fill = el("div", { class: "fill band-" + r.band });
      fill.style.width = Math.max(0, Math.min(100, r.score)) + "%";
      const refreshes =
        r.refreshes === null
          ? el("span", { class: "muted", text: "—" })
          : el("span", { class: "refreshes", "data-refreshes": r.refreshes }, r.refreshes + " succeeded", r.refresh_failures ? el("span", { class: "session-sub", text: r.refresh_failures + " failed" }) : null);
      return el(
        "tr",
        { class: r.open ? "" : "ended", "data-session-id": r.id, "data-band": r.band, "data-score": r.score },
        el("td", {}, el("a", { class: "session-id", href: "#/session/" + encodeURIComponent(r.id), text: r.id }), who),
        el(
          "td",
          {},
          el(
            "div",
            { class: "health", title: r.worst ? "-" + r.worst.penalty + " " + r.worst.name + ": " + r.worst.reason : "nothing costs points" },
            scoreNode(r.score, r.band),
            el("div", { class: "bar" }, fill),
            el("span", { class: "band-name", text: r.band }),
          ),
        ),
        el("td", {}, el("span", { class: "pill state-" + r.auth_state, text: r.auth_state.replace("_", " ") })),
        el("td", {}, el("span", { class: "pill status-" + r.status, text: r.status })),
        el("td", {}, expiryNode(r)),
        el("td", {}, refreshes),
        errCell,
      );
    });
    $("sessions-body").replaceChildren(...rows);
    $("empty").hidden = rows.length > 0 || data.offset > 0;
  }

  // ------------------------------------------------------------------ session page

  function renderMissing(id) {
    $("detail-title").textContent = id;
    $("detail-sub").textContent = "no such session";
    $("detail-score").replaceChildren();
    $("detail-score").className = "score big";
    $("components-body").replaceChildren();
    $("facts").replaceChildren();
    $("timeline").replaceChildren();
    $("chart").replaceChildren();
    $("btn-refresh").disabled = true;
    $("btn-cancel").disabled = true;
  }

  function renderDetail(d) {
    lastDetail = d;
    const r = d.session;
    const h = d.health;
    const badge = $("detail-score");
    badge.className = "score big band-" + h.band;
    badge.setAttribute("data-score", h.score);
    badge.setAttribute("data-band", h.band);
    badge.textContent = String(h.score);
    $("detail-title").textContent = r.id;
    $("detail-sub").textContent =
      r.owner + " · " + r.kind + " · " + r.status + " · auth " + r.auth_state.replace("_", " ") + " · " + h.band +
      (h.estimated ? " (estimated from the store)" : "");

    renderActions(d);
    renderComponents(h);
    renderFacts(d);
    renderTimeline(d);
    drawChart($("chart"), d.history, d.now);
  }

  function renderActions(d) {
    const token = adminToken();
    const why =
      adminEnabled === false
        ? "admin actions are off on this server (start it with an admin token)"
        : !token
          ? "enter the admin token above to enable actions"
          : !d.actions.refresh
            ? d.session.open
              ? "this session is not live in this process"
              : "this session has ended"
            : "";
    for (const id of ["btn-refresh", "btn-cancel"]) {
      const b = $(id);
      b.disabled = !!why;
      b.title = why;
    }
    const cancel = $("btn-cancel");
    const armed = Date.now() < cancelArmedUntil;
    cancel.classList.toggle("armed", armed);
    cancel.textContent = armed ? "Confirm cancel" : "Cancel session";
    $("action-result").title = why;
  }

  function renderComponents(h) {
    const body = $("components-body");
    if (!h.components.length) {
      body.replaceChildren(el("tr", {}, el("td", { class: "ok-text", text: "Nothing costs points: " + h.score + "/100" })));
      return;
    }
    body.replaceChildren(
      ...h.components.map((c) =>
        el(
          "tr",
          { "data-component": c.name },
          el("td", { class: "penalty", text: "−" + c.penalty }),
          el("td", { class: "name", text: c.name }),
          el("td", { class: "reason", text: c.reason }),
        ),
      ),
    );
  }

  // what the request figures count (docs/dashboard.md says the same)
  const REQUESTS_HELP =
    "ok: calls answered without an error. smooth: calls that also did not wait for a " +
    "token refresh and met no 401 on the way (a call that waited, or was replayed " +
    "after a 401, is ok but not smooth).";

  function fact(dl, label, value, id) {
    dl.append(el("dt", { text: label }), value instanceof Node ? el("dd", { id: id }, value) : el("dd", { id: id, text: value === null || value === undefined ? "—" : String(value) }));
  }

  function renderFacts(d) {
    const dl = el("dl");
    const t = d.token;
    const now = d.now;
    fact(dl, "Token expires in", expiryNode(d.session), "detail-expiry");
    if (t) {
      if (t.token_type) fact(dl, "Token type", t.token_type + (t.scope ? " · scope " + t.scope : ""));
      fact(dl, "Issued", clockTime(t.issued_at) + " (" + ago(t.issued_at, now) + ")");
      if (t.has_refresh_token !== undefined) fact(dl, "Refresh token", t.has_refresh_token ? "held (rotates)" : "none");
      if (t.generation !== undefined) fact(dl, "Generation", t.generation, "detail-generation");
    }
    const f = d.refresh;
    if (f) {
      fact(dl, "Refreshes succeeded", f.refreshes, "detail-refreshes");
      fact(dl, "Refreshes failed", f.failures + (f.consecutive_failures ? " (" + f.consecutive_failures + " in a row)" : ""), "detail-failures");
      fact(dl, "Last refresh", ago(f.last_refresh_at, now));
      fact(dl, "Next refresh due", f.refresh_at === null ? "—" : f.refresh_at <= now ? "now" : "in " + fmtDuration(f.refresh_at - now));
    }
    const err = d.session.last_error;
    fact(dl, "Last error", err ? err.message + (err.error_class ? " [" + err.error_class + "]" : "") + " · " + ago(err.at, now) : "—", "detail-last-error");
    const q = d.requests;
    if (q && q.window) {
      const parts = [q.window + " in window"];
      if (q.success_rate !== null) parts.push(Math.round(q.success_rate * 100) + "% ok");
      if (q.ux_score !== null) parts.push(Math.round(q.ux_score) + "% smooth");
      if (q.p95_latency !== null) parts.push("p95 " + Math.round(q.p95_latency * 1000) + " ms");
      fact(dl, "Requests", el("span", { text: parts.join(" · "), title: REQUESTS_HELP }), "detail-requests");
    }
    if (d.session.breaker) fact(dl, "Circuit breaker", d.session.breaker.replace("_", "-"));
    fact(dl, "Created", clockTime(d.record.created_at) + " (" + ago(d.record.created_at, now) + ")");
    fact(dl, "Last activity", ago(d.record.last_activity_at, now));
    if (d.record.paused_reason) fact(dl, "Paused", d.record.paused_reason);
    fact(dl, "Labels", d.record.labels.join(", "));
    const dlNode = $("facts");
    dlNode.replaceChildren(...dl.childNodes);
  }

  function renderTimeline(d) {
    const events = d.timeline.slice(-100).reverse();
    $("timeline").replaceChildren(
      ...events.map((e) => {
        const fields = Object.entries(e.fields || {})
          .map(([k, v]) => k + "=" + fieldText(v))
          .join("  ");
        const isError = (e.labels || []).includes("error");
        return el(
          "li",
          { class: isError ? "error" : "", "data-kind": e.kind },
          el("span", { class: "when", title: clockTime(e.at), text: ago(e.at, d.now) }),
          el("span", { class: "kind", text: e.kind.replace(/_/g, " ") }),
          el("span", { class: "fields", text: fields }),
        );
      }),
    );
    if (!events.length) $("timeline").append(el("li", { class: "muted", text: "no events" }));
  }

  // ------------------------------------------------------------------ the chart

  function drawChart(node, history, now) {
    const W = Math.max(360, Math.round(node.clientWidth || 760)); // drawn at its real size
    const H = 220;
    const pad = { l: 34, r: 14, t: 10, b: 24 };
    const iw = W - pad.l - pad.r;
    const ih = H - pad.t - pad.b;
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "health score over time", id: "health-chart" });
    const y = (score) => pad.t + ih * (1 - score / 100);

    // band zones, then grid lines at the band edges
    let top = 100;
    for (const [name, floor] of BANDS) {
      root.append(svg("rect", { class: "zone band-" + name, x: pad.l, y: y(top), width: iw, height: y(floor) - y(top) }));
      top = floor;
    }
    for (const v of [0, 20, 40, 60, 80, 100]) {
      root.append(svg("line", { class: "grid-line", x1: pad.l, x2: pad.l + iw, y1: y(v), y2: y(v) }));
      root.append(svg("text", { class: "axis-label", x: pad.l - 6, y: y(v) + 4, "text-anchor": "end" }, String(v)));
    }

    const pts = history || [];
    if (!pts.length) {
      root.append(svg("text", { class: "no-data", x: pad.l + iw / 2, y: pad.t + ih / 2, "text-anchor": "middle" }, "no samples yet"));
      node.replaceChildren(root);
      return;
    }
    const t0 = pts[0].at;
    const t1 = Math.max(pts[pts.length - 1].at, now || 0);
    const span = t1 - t0;
    // by time when time has passed; by order when every sample has the same time
    const x = (p, i) => pad.l + (span > 0 ? ((p.at - t0) / span) * iw : pts.length > 1 ? (i / (pts.length - 1)) * iw : iw);

    let d = "";
    pts.forEach((p, i) => {
      const px = x(p, i).toFixed(1);
      const py = y(p.score).toFixed(1);
      d += i === 0 ? "M" + px + " " + py : " H" + px + " V" + py; // a step line: a score holds until the next sample
    });
    if (span > 0) d += " H" + (pad.l + iw).toFixed(1);
    root.append(svg("path", { class: "line", d: d }));
    const last = pts[pts.length - 1];
    root.append(svg("circle", { class: "dot band-" + bandOf(last.score), cx: span > 0 ? pad.l + iw : x(last, pts.length - 1), cy: y(last.score), r: 4.5 }));

    const label = span > 0 ? "−" + fmtDuration(span) : pts.length + (pts.length === 1 ? " sample" : " samples");
    root.append(svg("text", { class: "axis-label", x: pad.l, y: H - 6 }, label));
    root.append(svg("text", { class: "axis-label", x: pad.l + iw, y: H - 6, "text-anchor": "end" }, "now"));
    node.replaceChildren(root);
    node.setAttribute("data-samples", String(pts.length));
  }

  // ------------------------------------------------------------------ actions

  function setResult(text, kind) {
    const node = $("action-result");
    node.textContent = text;
    node.className = "action-result" + (kind ? " " + kind : "");
  }

  async function act(action) {
    const route = currentRoute();
    if (route.view !== "detail") return;
    const token = adminToken();
    if (!token) {
      setResult("enter the admin token above first", "bad");
      return;
    }
    setResult(action === "refresh" ? "refreshing…" : "cancelling…", "");
    try {
      const result = await api(
        "/api/sessions/" + encodeURIComponent(route.id) + "/" + action,
        { method: "POST", headers: { Authorization: "Bearer " + token } },
        ACTION_TIMEOUT_MS,
      );
      const r = result.session;
      setResult(
        action === "refresh" ? "refreshed: " + r.refreshes + " refreshes succeeded, score " + r.score : "cancelled",
        "ok",
      );
    } catch (e) {
      const text =
        e.status === 401 ? "the admin token was refused" : e.status === 403 ? "refused: " + e.message : e.message;
      setResult(text, "bad");
    }
    poll();
  }

  function setup() {
    $("admin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const input = $("admin-token");
      const value = input.value.trim();
      try {
        if (value) sessionStorage.setItem(TOKEN_KEY, value);
      } catch (e) {
        /* storage refused: actions stay off */
      }
      input.value = "";
      renderAdminState();
      if (lastDetail) renderActions(lastDetail);
    });
    $("admin-clear").addEventListener("click", () => {
      try {
        sessionStorage.removeItem(TOKEN_KEY);
      } catch (e) {
        /* nothing stored */
      }
      renderAdminState();
      if (lastDetail) renderActions(lastDetail);
    });
    $("btn-refresh").addEventListener("click", () => act("refresh"));
    $("btn-cancel").addEventListener("click", () => {
      if (Date.now() < cancelArmedUntil) {
        cancelArmedUntil = 0;
        act("cancel");
      } else {
        cancelArmedUntil = Date.now() + 5000;
        if (lastDetail) renderActions(lastDetail);
        setTimeout(() => lastDetail && renderActions(lastDetail), 5100);
      }
    });
    window.addEventListener("hashchange", navigate);
    navigate();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
  else setup();
})();
