// peergrid dashboard: the one script of its four pages (docs/live.md "Dashboard and streams").
//
// Plain JavaScript, no library, nothing loaded from elsewhere: it reads this server's API with
// the token entered on the page (kept in the tab's sessionStorage), draws its charts as inline
// SVG and listens to /v1/stream, refreshing what an event changed. Energy is in kWh (export
// positive), prices per kWh in the market's currency; times show in the browser's time zone.
"use strict";

(() => {
  const PAGE = document.body.dataset.page;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const TOKEN_KEY = `peergrid.token.${PAGE}`;
  const MAX_EVENTS = 40;
  const WINDOW_SLOTS = 96; // the pages show the slots from this many before the current one

  // --- small helpers ------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const finite = (x) => typeof x === "number" && Number.isFinite(x);
  const fmt = (x, digits) => (finite(x) ? x.toFixed(digits) : "—");
  const price = (x) => fmt(x, 4);
  const kwh = (x) => fmt(x, 3);
  const money = (x) => fmt(x, 2);
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);

  function when(iso) {
    if (!iso) return el("span", { text: "—" });
    const t = new Date(iso);
    return el("time", { datetime: iso, title: t.toISOString(), text: t.toLocaleString() });
  }

  // a table cell holding a number: the shown text and the exact value (data-value)
  function num(x, format, cls) {
    return el("td", { class: cls, "data-value": finite(x) ? x : "" , text: format(x) });
  }

  function text(x, cls) {
    return el("td", { class: cls ? `text ${cls}` : "text", text: x ?? "—" });
  }

  function fillBody(table, rows, empty) {
    const body = $(table).tBodies[0];
    const cols = $(table).tHead.rows[0].cells.length;
    body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colspan: cols, text: empty }))]));
  }

  function facts(id, pairs) {
    const dl = $(id);
    dl.replaceChildren();
    for (const [k, v] of pairs) {
      const dd = el("dd", {}, v instanceof Node ? v : String(v ?? "—"));
      dl.append(el("dt", { text: k }), dd);
    }
  }

  function kpis(id, items) {
    $(id).replaceChildren(
      ...items.map(([label, value, hint, key]) =>
        el("div", { class: "kpi", "data-kpi": key },
          el("div", { class: "label", text: label }),
          el("div", { class: "value", text: value }),
          hint ? el("div", { class: "hint", text: hint }) : ""),
      ),
    );
  }

  function showError(message) {
    const p = $("error");
    p.textContent = message || "";
    p.hidden = !message;
  }

  // --- the API -------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, detail) {
      super(`${status}: ${detail}`);
      this.status = status;
    }
  }

  const token = () => sessionStorage.getItem(TOKEN_KEY);

  async function api(path, { auth = true } = {}) {
    const headers = { Accept: "application/json" };
    const t = token();
    if (auth && t) headers.Authorization = `Bearer ${t}`;
    const r = await fetch(path, { headers });
    if (!r.ok) {
      let detail = r.statusText;
      try {
        detail = (await r.json()).detail ?? detail;
      } catch (_) { /* not JSON */ }
      throw new ApiError(r.status, typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    return r.json();
  }

  // calls `fn` once, a moment after the last of a burst of requests (a gate's events come together)
  function debounced(fn, ms = 150) {
    let timer = null;
    return () => {
      clearTimeout(timer);
      timer = setTimeout(() => fn().catch((e) => showError(String(e.message || e))), ms);
    };
  }

  // --- the stream ----------------------------------------------------------------------------

  function describe(e) {
    const slots = (e.slots || []).map((s) => s.slot);
    const range = slots.length > 1 ? `slots ${slots[0]}–${slots[slots.length - 1]}` : `slot ${slots[0]}`;
    let line;
    if (e.type === "gate-closed") {
      line = `gate at slot ${e.gate_slot} closed: ${sum((e.slots || []).map((s) => s.n_orders))} orders for ${range}`;
      if (e.n_submissions !== undefined) line += ` from ${e.n_submissions} submissions`;
    } else if (e.type === "cleared") {
      line = `${range} cleared: ` + e.slots.map((s) => (finite(s.clearing_price)
        ? `at ${price(s.clearing_price)}`
        : `buyers pay ${price(s.buy_price)}, sellers get ${price(s.sell_price)}`)).join("; ");
      const traded = e.slots.map((s) => s.traded_kwh).filter(finite);
      if (traded.length) line += `; ${kwh(sum(traded))} kWh traded`;
    } else if (e.type === "fallback") {
      line = `${range} fell back to the retail tariff`;
      if (e.reason) line += `: ${e.reason}`;
    } else if (e.type === "settled") {
      line = `slot ${e.slot} settled; community net ${kwh(e.community_net_kwh)} kWh`;
      if (e.community_net_kwh === null) line += ` (${e.community_net_status})`;
      if (e.community_net_metered_kwh !== undefined) line += `, metered ${kwh(e.community_net_metered_kwh)} kWh`;
      if (e.estimated !== undefined) line += `, ${e.estimated} meters estimated`;
    } else {
      line = e.type;
    }
    for (const own of e.own || []) {
      line += ` · you: committed ${kwh(own.committed_kwh)} kWh`;
      if (own.metered_kwh !== undefined) line += `, metered ${kwh(own.metered_kwh)} kWh, cost ${money(own.cost)}`;
    }
    return line;
  }

  function logEvent(e) {
    const list = $("events");
    if (!list) return;
    for (const li of list.querySelectorAll("li.empty")) li.remove();
    const at = e.at ? new Date(e.at) : new Date();
    list.prepend(el("li", { "data-type": e.type },
      el("time", { datetime: at.toISOString(), title: at.toISOString(), text: at.toLocaleTimeString() }),
      describe(e)));
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  }

  function setBadge(state, label) {
    const b = $("live");
    b.className = `badge ${state}`;
    b.textContent = label;
    b.dataset.state = state;
  }

  // Connects to /v1/stream (with the page's token as the first message when `withToken`) and
  // reconnects after a drop; `onEvent` hears every market event, `onConnect` each (re)connection.
  function connectStream({ withToken, onEvent, onConnect }) {
    let delay = 1000;
    const open = () => {
      setBadge("connecting", "connecting…");
      const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/stream`);
      const t = withToken ? token() : null;
      ws.onopen = () => {
        if (t) ws.send(JSON.stringify({ token: t }));
      };
      ws.onmessage = (m) => {
        const e = JSON.parse(m.data);
        if (e.type === "hello") {
          if (t && e.role === "public") return; // the token is on its way
          delay = 1000;
          setBadge("live", `live · ${e.role}`);
          if (onConnect) onConnect(e);
          return;
        }
        logEvent(e);
        onEvent(e);
      };
      ws.onclose = (c) => {
        setBadge("offline", c.reason ? `offline · ${c.reason}` : "offline");
        if (c.code === 1008) return; // the token was refused: reconnecting will not help
        setTimeout(open, delay);
        delay = Math.min(2 * delay, 15000);
      };
    };
    open();
  }

  // --- charts (inline SVG) ----------------------------------------------------------------------

  function niceStep(span) {
    const raw = span / 4;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
  }

  // chart(id, {x: [slot…], series: [{name, values, cls, kind: "line"|"bar", dashed}], unit})
  function chart(id, { x, series: given, unit }) {
    const host = $(id);
    if (!host) return;
    const series = given.filter((s) => s.values.some(finite)); // nothing to draw: no legend either
    // drawn at the width it is shown at, so that its text keeps its size
    const W = Math.max(host.clientWidth || 640, 320), H = 240, ml = 58, mr = 12, mt = 24, mb = 34;
    const pw = W - ml - mr, ph = H - mt - mb;
    const all = series.flatMap((s) => s.values.filter(finite));
    if (!x.length || !all.length) {
      host.replaceChildren(el("p", { class: "note", text: "Nothing to show yet." }));
      return;
    }
    const hasBars = series.some((s) => s.kind === "bar");
    let lo = Math.min(...all, ...(hasBars ? [0] : []));
    let hi = Math.max(...all, ...(hasBars ? [0] : []));
    if (hi - lo < 1e-9) { hi += Math.abs(hi) * 0.1 + 1e-3; lo -= Math.abs(lo) * 0.1 + (hasBars && lo === 0 ? 0 : 1e-3); }
    const pad = 0.05 * (hi - lo); // headroom, except at a bar chart's zero line
    if (hi !== 0 || !hasBars) hi += pad;
    if (lo !== 0 || !hasBars) lo -= pad;
    const step = niceStep(hi - lo);
    lo = Math.floor(lo / step + 1e-9) * step;
    hi = Math.ceil(hi / step - 1e-9) * step;
    const y = (v) => mt + ph - ((v - lo) / (hi - lo)) * ph;
    const bw = pw / x.length;
    const cx = (i) => ml + (i + 0.5) * bw;
    const root = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img" });
    root.append(svg("title", {}, series.map((s) => s.name).join(", ") + (unit ? ` [${unit}]` : "")));
    const grid = svg("g", { class: "grid" });
    const axis = svg("g", { class: "axis" });
    const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    for (let v = lo; v <= hi + step / 2; v += step) {
      grid.append(svg("line", { x1: ml, x2: W - mr, y1: y(v), y2: y(v) }));
      axis.append(svg("text", { x: ml - 6, y: y(v) + 4, "text-anchor": "end" }, v.toFixed(digits)));
    }
    axis.append(svg("line", { x1: ml, x2: ml, y1: mt, y2: mt + ph }));
    axis.append(svg("line", { x1: ml, x2: W - mr, y1: mt + ph, y2: mt + ph }));
    const every = Math.ceil(x.length / 12);
    x.forEach((slot, i) => {
      if (i % every === 0) axis.append(svg("text", { x: cx(i), y: H - mb + 16, "text-anchor": "middle" }, String(slot)));
    });
    axis.append(svg("text", { x: ml + pw / 2, y: H - 4, "text-anchor": "middle" }, "slot"));
    if (unit) axis.append(svg("text", { x: ml, y: 12, "text-anchor": "middle" }, unit));
    root.append(grid, axis);
    if (lo < 0 && hi > 0) root.append(svg("line", { class: "zero", x1: ml, x2: W - mr, y1: y(0), y2: y(0) }));
    const bars = series.filter((s) => s.kind === "bar");
    bars.forEach((s, k) => {
      const w = Math.min(bw * 0.8, 48) / bars.length;
      const g = svg("g", { class: s.cls });
      s.values.forEach((v, i) => {
        if (!finite(v)) return;
        const top = y(Math.max(v, 0)), bottom = y(Math.min(v, 0));
        const r = svg("rect", { x: cx(i) - (w * bars.length) / 2 + k * w, y: top, width: Math.max(w - 1, 1), height: Math.max(bottom - top, 0.5) });
        r.append(svg("title", {}, `slot ${x[i]}: ${s.name} ${v}`));
        g.append(r);
      });
      root.append(g);
    });
    for (const s of series.filter((s) => s.kind !== "bar")) {
      // a line per run of known values; a lone value shows as a dot
      let run = [];
      const flush = () => {
        if (run.length > 1) root.append(svg("polyline", { class: `${s.cls}${s.dashed ? " dashed" : ""}`, points: run.map((p) => p.join(",")).join(" ") }));
        run = [];
      };
      s.values.forEach((v, i) => {
        if (finite(v)) run.push([cx(i), y(v)]); else flush();
      });
      flush();
      if (x.length <= 60) {
        s.values.forEach((v, i) => {
          if (!finite(v)) return;
          const c = svg("circle", { class: s.cls, cx: cx(i), cy: y(v), r: s.dashed ? 1.5 : 2.5 });
          c.append(svg("title", {}, `slot ${x[i]}: ${s.name} ${v}`));
          root.append(c);
        });
      }
    }
    const legend = el("div", { class: "legend" },
      ...series.map((s) => el("span", {}, el("span", { class: `swatch ${s.cls}` }), s.name)));
    host.replaceChildren(root, legend);
  }

  // --- the market (every page) -----------------------------------------------------------------

  let market = null;

  async function loadMarket() {
    market = await api("/v1/market", { auth: false });
    const start = new Date(market.start);
    $("market").replaceChildren(
      `${market.scenario} · ${market.mechanism} · gate closure ${market.gate_closure} · ` +
        `${market.n_slots} slots of ${market.slot_seconds} s (${market.slot_hours * 60} min of energy each) from `,
      el("time", { datetime: market.start, title: market.start, text: start.toLocaleString() }),
      ` · ${market.participants.length} members · prices in ${market.currency}/kWh`,
    );
    return market;
  }

  // the first slot a page shows: a long market's history stays on the server
  function windowStart(clock) {
    return Math.max(0, Math.min(clock.current_slot, market.n_slots) - WINDOW_SLOTS);
  }

  function clockFacts(id, c) {
    facts(id, [
      ["now", when(c.now)],
      ["next step", c.finished ? "— (the market has run all its steps)" : `${c.next_step} of ${c.n_steps}: ${c.next_step_kind}`],
      ["next step at", when(c.next_step_at)],
      ["current slot", c.current_slot],
      ["next gate", c.next_gate ? `at slot ${c.next_gate.gate_slot} for slots ${c.next_gate.first_slot}–${c.next_gate.stop_slot - 1}` : "—"],
      ["next gate closes", when(c.next_gate && c.next_gate.closes_at)],
    ]);
  }

  // --- the community ---------------------------------------------------------------------------

  async function communityRefresh(fresh = new Set()) {
    const clock = await api("/v1/clock", { auth: false });
    const slots = await api(`/v1/slots?from_slot=${windowStart(clock)}`, { auth: false });
    clockFacts("clock", clock);
    const x = slots.map((s) => s.slot);
    const pick = (k) => slots.map((s) => s[k]);
    chart("prices-chart", {
      x,
      unit: `${market.currency}/kWh`,
      series: [
        { name: "clearing", values: pick("clearing_price"), cls: "c-clearing" },
        { name: "buyers pay", values: pick("buy_price"), cls: "c-buy" },
        { name: "sellers get", values: pick("sell_price"), cls: "c-sell" },
        { name: "retail", values: pick("retail_price"), cls: "c-retail", dashed: true },
        { name: "feed-in", values: pick("feed_in_price"), cls: "c-feed-in", dashed: true },
      ],
    });
    $("prices-note").textContent = slots.length && !slots.some((s) => finite(s.clearing_price))
      ? `${market.mechanism} publishes no single clearing price: buyers and sellers get separate prices.`
      : "";
    chart("volume-chart", { x, unit: "kWh", series: [{ name: "traded", values: pick("traded_kwh"), cls: "c-volume", kind: "bar" }] });
    chart("depth-chart", { x, unit: "orders", series: [{ name: "orders in the book", values: pick("n_orders"), cls: "c-depth", kind: "bar" }] });
    const settled = slots.filter((s) => s.status === "settled");
    chart("net-chart", {
      x: settled.map((s) => s.slot),
      unit: "kWh",
      series: [{ name: "community net (export +)", values: settled.map((s) => s.community_net_kwh), cls: "c-net", kind: "bar" }],
    });
    fillBody("slots-table", slots.map((s) => el("tr", { "data-slot": s.slot, class: fresh.has(s.slot) ? "fresh" : null },
      el("td", { text: s.slot }),
      el("td", { class: "text" }, when(s.start)),
      text(s.status, `status-${s.status}`),
      num(s.clearing_price, price, "clearing"),
      num(s.buy_price, price, "buy"),
      num(s.sell_price, price, "sell"),
      num(s.retail_price, price, "retail"),
      num(s.feed_in_price, price, "feed-in"),
      el("td", { class: "traded", "data-value": finite(s.traded_kwh) ? s.traded_kwh : "", title: s.traded_status,
        text: finite(s.traded_kwh) ? kwh(s.traded_kwh) : `— (${s.traded_status})` }),
      num(s.n_orders, (v) => String(v), "orders"),
      el("td", { class: "net", "data-value": finite(s.community_net_kwh) ? s.community_net_kwh : "", title: s.community_net_status ?? "",
        text: s.status !== "settled" ? "" : finite(s.community_net_kwh) ? kwh(s.community_net_kwh) : `— (${s.community_net_status})` }),
    )), "No slot has cleared yet.");

    const mean = (k) => {
      const v = slots.map((s) => s[k]).filter(finite);
      return v.length ? sum(v) / v.length : null;
    };
    const traded = slots.map((s) => s.traded_kwh).filter(finite);
    const known = settled.filter((s) => finite(s.community_net_kwh));
    const selfSufficient = known.filter((s) => s.community_net_kwh >= 0).length;
    const share = known.length ? `${((100 * selfSufficient) / known.length).toFixed(0)} %` : "—";
    kpis("kpis", [
      // slots clear and settle in order: the last one shown tells how far the market is
      ["slots cleared", `${slots.length ? slots[slots.length - 1].slot + 1 : 0} of ${market.n_slots}`,
        `${settled.length ? settled[settled.length - 1].slot + 1 : 0} settled`, "cleared"],
      ["buyers pay", price(mean("buy_price")), `mean over the slots shown; retail ${price(mean("retail_price"))}`, "buy-price"],
      ["sellers get", price(mean("sell_price")), `mean over the slots shown; feed-in ${price(mean("feed_in_price"))}`, "sell-price"],
      ["energy traded", `${kwh(sum(traded))} kWh`, `over the ${traded.length} released slots shown`, "traded"],
      ["self-sufficient slots", share, `${selfSufficient} of ${known.length} settled slots with a released net`, "self-sufficiency"],
    ]);
    $("self-sufficiency-text").textContent = known.length
      ? `In ${selfSufficient} of ${known.length} settled slots (${share}) the community's members exported at least as much as they imported: ` +
        `net community import over those slots ${kwh(sum(known.map((s) => Math.max(-s.community_net_kwh, 0))))} kWh, ` +
        `net export ${kwh(sum(known.map((s) => Math.max(s.community_net_kwh, 0))))} kWh.`
      : "No settled slot with a released community net yet.";
  }

  async function community() {
    await loadMarket();
    let fresh = new Set();
    const refresh = debounced(async () => {
      const f = fresh;
      fresh = new Set();
      await communityRefresh(f);
    });
    await communityRefresh();
    connectStream({
      withToken: false,
      onConnect: refresh, // after a reconnection, catch up on what was missed
      onEvent: (e) => {
        for (const s of e.slots || []) fresh.add(s.slot);
        if (e.slot !== undefined) fresh.add(e.slot);
        if (e.type !== "gate-closed") refresh();
      },
    });
  }

  // --- pages behind a token ----------------------------------------------------------------

  // The sign-in form: `roles` may use the page; `show(me)` fills it once the token is known.
  function signIn(roles, show) {
    const form = $("login");
    const out = $("logout");
    const who = $("whoami");
    const start = async () => {
      if (!token()) return false;
      let me;
      try {
        me = await api("/v1/me");
      } catch (e) {
        if (e.status === 401) {
          sessionStorage.removeItem(TOKEN_KEY);
          who.textContent = "That token is not valid on this server.";
          return false;
        }
        throw e;
      }
      if (!roles.includes(me.role)) {
        who.textContent = `${me.name} is a ${me.role} account; this page is for ${roles.join(" or ")} accounts.`;
        return false;
      }
      who.textContent = `Signed in as ${me.name} (${me.role}).`;
      who.dataset.account = me.name;
      out.hidden = false;
      $("content").hidden = false;
      await show(me);
      return true;
    };
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const t = $("token").value.trim();
      if (!t) return;
      sessionStorage.setItem(TOKEN_KEY, t);
      $("token").value = "";
      start().catch((e) => showError(String(e.message || e)));
    });
    out.addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      location.reload();
    });
    return start();
  }

  // --- a participant -------------------------------------------------------------------------

  async function participantRefresh() {
    const from = windowStart(await api("/v1/clock", { auth: false }));
    const [bill, commitments, orders, readings] = await Promise.all([
      api("/v1/bill"),
      api(`/v1/commitments?from_slot=${from}`),
      api("/v1/orders"),
      api(`/v1/readings?from_slot=${from}`),
    ]);
    const settled = commitments.filter((c) => c.settled);
    const dev = settled.map((c) => Math.abs(c.deviation_kwh));
    kpis("bill", [
      ["energy cost", `${money(bill.energy_cost)} ${bill.currency}`, `${bill.slots_settled} settled slots`, "energy-cost"],
      ["with the retailer alone", `${money(bill.baseline_cost)} ${bill.currency}`, "the same metered energy at the tariff", "baseline-cost"],
      ["saving", `${money(bill.savings)} ${bill.currency}`, "baseline − cost", "savings"],
      ["deviation", `${kwh(sum(dev))} kWh`, "total |metered − committed| over settled slots", "deviation"],
    ]);
    chart("commitments-chart", {
      x: commitments.map((c) => c.slot),
      unit: "kWh",
      series: [
        { name: "committed", values: commitments.map((c) => c.committed_kwh), cls: "c-clearing", kind: "bar" },
        { name: "metered", values: commitments.map((c) => (c.settled ? c.metered_kwh : null)), cls: "c-net", kind: "bar" },
      ],
    });
    fillBody("commitments-table", commitments.map((c) => el("tr", { "data-slot": c.slot },
      el("td", { text: c.slot }),
      text(c.settled ? "settled" : "cleared", c.settled ? "status-settled" : "status-cleared"),
      num(c.committed_kwh, kwh, "committed"),
      num(c.metered_kwh, kwh, "metered"),
      num(c.deviation_kwh, kwh, "deviation"),
      num(c.cost, money, "cost"),
      num(c.baseline_cost, money, "baseline"),
      num(c.settled ? c.baseline_cost - c.cost : null, money, "saving"),
    )), "No slot has cleared yet.");
    const rows = [];
    for (const o of orders) {
      o.orders.forEach((line, k) => rows.push(el("tr", { "data-order-id": o.order_id, class: `status-${o.status}` },
        el("td", { text: k === 0 ? o.order_id : "" }),
        el("td", { text: k === 0 ? o.gate_slot : "" }),
        text(k === 0 ? o.status : ""),
        el("td", { class: "text" }, k === 0 ? when(o.received_at) : ""),
        el("td", { text: line.slot }),
        text(line.side),
        num(line.quantity_kwh, kwh, "quantity"),
        num(line.limit_price, price, "limit"),
      )));
    }
    fillBody("orders-table", rows, "You have submitted no orders (your home agent submits them, signed).");
    const raw = readings.raw;
    const q = {};
    for (const iv of readings.intervals) q[iv.quality] = (q[iv.quality] || 0) + 1;
    facts("readings-summary", [
      ["readings received", raw.length],
      ["late readings", raw.filter((r) => r.late).length],
      ["last reading", raw.length ? when(raw[raw.length - 1].timestamp) : "—"],
      ["last registers", raw.length ? `import ${kwh(raw[raw.length - 1].import_register_kwh)} kWh · export ${kwh(raw[raw.length - 1].export_register_kwh)} kWh` : "—"],
      ["settled intervals", Object.entries(q).map(([k, v]) => `${v} ${k}`).join(", ") || "—"],
    ]);
    fillBody("intervals-table", readings.intervals.map((iv) => el("tr", { "data-slot": iv.slot },
      el("td", { text: iv.slot }), num(iv.net_kwh, kwh), text(iv.quality, `quality-${iv.quality}`))), "No slot has settled yet.");
  }

  async function participant() {
    await loadMarket();
    const refresh = debounced(participantRefresh);
    await signIn(["participant"], async () => {
      await participantRefresh();
      connectStream({ withToken: true, onConnect: refresh, onEvent: (e) => { if (e.type !== "gate-closed") refresh(); } });
    });
  }

  // --- the operator -----------------------------------------------------------------------------

  async function operatorRefresh() {
    const [status, clock, accounts] = await Promise.all([api("/v1/operator/status"), api("/v1/clock"), api("/v1/participants")]);
    let head = null;
    try {
      head = await api("/v1/ledger/head", { auth: false });
    } catch (e) {
      if (e.status !== 404) throw e;
    }
    const m = status.meter_data;
    const quality = m.intervals || {};
    const intervals = sum(Object.values(quality));
    kpis("op-kpis", [
      ["clock", status.clock.next_step >= status.clock.n_steps ? "finished" : `step ${status.clock.next_step} of ${status.clock.n_steps}`,
        status.clock.running_here ? "runs on this server" : "runs on another server", "clock"],
      ["gates", `${status.gates.cleared} cleared`, `${status.gates.fallback} fell back`, "gates"],
      ["ledger", head ? `${head.tree_size} entries` : "no head yet", head ? `signed at slot ${head.slot}` : "", "ledger"],
      ["meter data", intervals ? `${(100 * (quality.measured || 0) / intervals).toFixed(0)} % measured` : "—", `${intervals} settled intervals`, "meter"],
    ]);
    clockFacts("clock", clock);
    const errors = status.clock.errors || [];
    $("clock").append(el("dt", { text: "clock errors" }), el("dd", { text: errors.length ? errors.join("; ") : "none" }));
    if (status.stream) {
      const se = status.stream.errors;
      $("clock").append(el("dt", { text: "event stream" }),
        el("dd", { text: `${status.stream.connections} connected${se.length ? `; errors: ${se.join("; ")}` : ""}` }));
    }
    facts("ledger", head ? [
      ["tree size", el("span", { id: "tree-size", "data-value": head.tree_size, text: head.tree_size })],
      ["signed at slot", head.slot],
      ["root", head.root],
      ["signature", `${head.signature.slice(0, 32)}…`],
      ["from the status", status.ledger ? `${status.ledger.tree_size} entries, root ${status.ledger.root.slice(0, 16)}…` : "—"],
    ] : [["tree size", "the ledger has no signed head yet"]]);
    facts("meter-quality", [
      ["raw readings", m.raw_readings],
      ["late readings", m.late_readings],
      ["measured", quality.measured || 0],
      ["estimated", quality.estimated || 0],
      ["trued-up", quality["trued-up"] || 0],
    ]);
    facts("gates", [["cleared", status.gates.cleared], ["fell back", status.gates.fallback]]);
    fillBody("fallbacks-table", status.gates.fallback_reasons.map((r) => el("tr", {}, el("td", { text: r.gate }), text(r.reason))),
      "No gate fell back.");
    fillBody("participants-table", accounts.map((a) => el("tr", { "data-account": a.name },
      el("td", { text: a.id }), text(a.name), text(a.role), text(a.public_key ? `${a.public_key.slice(0, 16)}…` : "—"))), "No accounts.");
  }

  async function operator() {
    await loadMarket();
    const refresh = debounced(operatorRefresh);
    await signIn(["operator"], async () => {
      await operatorRefresh();
      connectStream({ withToken: true, onConnect: refresh, onEvent: refresh });
    });
  }

  // --- the network operator ---------------------------------------------------------------------

  const meteredNet = new Map(); // slot → unsuppressed community net, heard over the stream

  async function networkRefresh() {
    const from = windowStart(await api("/v1/clock", { auth: false }));
    const [envelopes, slots] = await Promise.all([api(`/v1/envelopes?from_slot=${from}`), api(`/v1/slots?from_slot=${from}`, { auth: false })]);
    fillBody("envelopes-table", envelopes.map((e) => el("tr", { "data-slot": e.slot, "data-participant": e.participant },
      el("td", { text: e.slot }), text(e.participant), num(e.import_limit_kwh, kwh, "import"), num(e.export_limit_kwh, kwh, "export"))),
      "No operating envelope is set.");
    const bySlot = new Map();
    for (const e of envelopes) {
      const t = bySlot.get(e.slot) || { imp: [], exp: [] };
      if (finite(e.import_limit_kwh)) t.imp.push(e.import_limit_kwh);
      if (finite(e.export_limit_kwh)) t.exp.push(e.export_limit_kwh);
      bySlot.set(e.slot, t);
    }
    const ex = [...bySlot.keys()].sort((a, b) => a - b);
    chart("envelopes-chart", {
      x: ex,
      unit: "kWh",
      series: [
        { name: "sum of import limits", values: ex.map((s) => (bySlot.get(s).imp.length ? sum(bySlot.get(s).imp) : null)), cls: "c-import", kind: "bar" },
        { name: "sum of export limits", values: ex.map((s) => (bySlot.get(s).exp.length ? sum(bySlot.get(s).exp) : null)), cls: "c-export", kind: "bar" },
      ],
    });
    const settled = slots.filter((s) => s.status === "settled");
    chart("net-chart", {
      x: settled.map((s) => s.slot),
      unit: "kWh",
      series: [
        { name: "released", values: settled.map((s) => s.community_net_kwh), cls: "c-net", kind: "bar" },
        { name: "metered (stream)", values: settled.map((s) => meteredNet.get(s.slot) ?? null), cls: "c-clearing", kind: "bar" },
      ],
    });
    fillBody("net-table", settled.map((s) => el("tr", { "data-slot": s.slot },
      el("td", { text: s.slot }), num(s.community_net_kwh, kwh, "released"), text(s.community_net_status),
      num(meteredNet.get(s.slot) ?? null, kwh, "metered"))), "No slot has settled yet.");
  }

  async function network() {
    await loadMarket();
    const refresh = debounced(networkRefresh);
    await signIn(["network-operator", "operator"], async () => {
      await networkRefresh();
      connectStream({
        withToken: true,
        onConnect: refresh,
        onEvent: (e) => {
          if (e.type === "settled" && e.community_net_metered_kwh !== undefined) meteredNet.set(e.slot, e.community_net_metered_kwh);
          if (e.type === "settled") refresh();
        },
      });
    });
  }

  const pages = { community, participant, operator, network };
  window.addEventListener("DOMContentLoaded", () => {
    (pages[PAGE] || community)().catch((e) => showError(String(e.message || e)));
  });
})();
