// casebook — a threat's storyboard: incident progression (tree), impact analysis (bar chart,
// click to break down), map of peers (country shapes served by casebook), timeline, and
// Spot's network view. Data comes from /threats/<id>/story.json; each panel marks itself
// data-drawn="yes" when drawn.
(function () {
  "use strict";
  const root = document.getElementById("storyboard");
  if (!root) return;
  const id = root.dataset.threat;
  const COLORS = { outbound: "#2457c5", inbound: "#c2410c", "two-way": "#7c3aed" };
  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v));
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const fmt = (n) => Number(n || 0).toLocaleString("en");
  const group = (rows, key) => rows.reduce((m, r) => { const k = key(r); (m[k] = m[k] || []).push(r); return m; }, {});
  const conns = (list) => list.reduce((a, p) => a + (p.connections || 0), 0);
  const place = (p) => p.peer_name || (p.peer_zone === "internal" ? "internal, unnamed" : (p.peer_country ? "outside · " + p.peer_country + (p.peer_owner ? " · " + p.peer_owner : "") : "outside"));

  function tree(t, peers) {
    const box = document.querySelector("#panel-tree .tree");
    box.textContent = "";
    const top = el("ul", { class: "tree-root" });
    const li = el("li");
    li.appendChild(el("strong", {}, t.entity));
    li.appendChild(el("span", { class: "muted" }, " · " + peers.length + " peers"));
    const dirs = el("ul");
    const byDir = group(peers, (p) => p.direction);
    ["outbound", "two-way", "inbound"].filter((d) => byDir[d]).forEach((d) => {
      const dl = el("li");
      dl.appendChild(el("span", { class: "dir " + d }, d));
      dl.appendChild(el("span", { class: "muted" }, " · " + byDir[d].length + " peers, " + fmt(byDir[d].reduce((a, p) => a + (p.connections || 0), 0)) + " connections"));
      const ctx = el("ul");
      // The busiest groups first: that is where the story is.
      Object.entries(group(byDir[d], place)).sort((a, b) => conns(b[1]) - conns(a[1])).forEach(([name, list]) => {
        const cl = el("li");
        const det = el("details");
        det.appendChild(el("summary", {}, name + " — " + list.length + (list.length === 1 ? " peer, " : " peers, ") + fmt(conns(list)) + " connections"));
        const ul = el("ul", { class: "peers" });
        list.slice(0, 12).forEach((p) => ul.appendChild(el("li", {}, p.peer + " — " + fmt(p.connections) + " connections, " + fmt(p.bytes) + " bytes")));
        if (list.length > 12) ul.appendChild(el("li", { class: "muted" }, "… " + (list.length - 12) + " more"));
        det.appendChild(ul);
        cl.appendChild(det);
        ctx.appendChild(cl);
      });
      dl.appendChild(ctx);
      dirs.appendChild(dl);
    });
    li.appendChild(dirs);
    top.appendChild(li);
    box.appendChild(peers.length ? top : el("p", { class: "muted" }, "No connections of this entity in the window."));
    box.dataset.drawn = "yes";
  }

  function impact(peers) {
    const canvas = document.getElementById("impact-chart");
    const dirs = ["inbound", "outbound", "two-way"];
    const counts = dirs.map((d) => peers.filter((p) => p.direction === d).length);
    const detail = document.getElementById("impact-detail");
    const breakdown = (d) => {
      detail.textContent = "";
      const rows = Object.entries(group(peers.filter((p) => p.direction === d), place)).sort((a, b) => conns(b[1]) - conns(a[1]));
      const table = el("table", { class: "plain" });
      const head = el("tr");
      ["Where (" + d + ")", "Peers", "Connections"].forEach((h) => head.appendChild(el("th", {}, h)));
      table.appendChild(el("thead")).appendChild(head);
      const body = el("tbody");
      rows.forEach(([name, list]) => {
        const tr = el("tr");
        tr.appendChild(el("td", {}, name));
        tr.appendChild(el("td", { class: "num" }, fmt(list.length)));
        tr.appendChild(el("td", { class: "num" }, fmt(list.reduce((a, p) => a + (p.connections || 0), 0))));
        body.appendChild(tr);
      });
      table.appendChild(body);
      detail.appendChild(rows.length ? table : el("p", { class: "muted" }, "No " + d + " peers."));
    };
    if (window.Chart) {
      new window.Chart(canvas, {
        type: "bar",
        data: { labels: dirs, datasets: [{ label: "peers", data: counts, backgroundColor: dirs.map((d) => COLORS[d]) }] },
        options: {
          animation: false, responsive: true, maintainAspectRatio: false, plugins: { legend: { display: false } },
          onClick: (_, els) => { if (els.length) breakdown(dirs[els[0].index]); },
        },
      });
    }
    breakdown(counts[1] >= counts[0] ? "outbound" : "inbound");
    canvas.dataset.drawn = "yes";
  }

  async function map(peers) {
    const canvas = document.getElementById("map");
    const g = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height;
    const x = (lon) => ((lon + 180) / 360) * W, y = (lat) => ((90 - lat) / 180) * H;
    g.fillStyle = "#eef3fb"; g.fillRect(0, 0, W, H);
    try {
      const world = await (await fetch("/static/vendor/world-110m.json")).json();
      g.fillStyle = "#d5dbe5"; g.strokeStyle = "#ffffff"; g.lineWidth = 0.6;
      world.countries.forEach((c) => c.rings.forEach((ring) => {
        g.beginPath();
        // A ring that crosses the antimeridian is broken there, not drawn across the map.
        let prev = null;
        ring.forEach(([lon, lat]) => {
          if (prev === null || Math.abs(lon - prev) > 180) g.moveTo(x(lon), y(lat)); else g.lineTo(x(lon), y(lat));
          prev = lon;
        });
        g.closePath(); g.fill(); g.stroke();
      }));
    } catch (e) { /* the shapes are optional; the dots still say where */ }
    const located = peers.filter((p) => p.peer_lat !== null && p.peer_lat !== undefined && p.peer_lon !== null);
    const max = Math.max(1, ...located.map((p) => p.connections || 0));
    located.forEach((p) => {
      const r = 3 + 9 * Math.sqrt((p.connections || 0) / max);
      g.beginPath(); g.arc(x(p.peer_lon), y(p.peer_lat), r, 0, 2 * Math.PI);
      g.fillStyle = (COLORS[p.direction] || "#555") + "cc"; g.fill();
      g.strokeStyle = "#fff"; g.lineWidth = 1; g.stroke();
    });
    g.fillStyle = "#334155"; g.font = "14px system-ui, sans-serif";
    g.fillText(located.length ? located.length + " located peers" : "No peer has a known location (internal hosts, or no geolocation data)", 12, H - 12);
    canvas.dataset.drawn = "yes";
  }

  function timeline(rows) {
    const canvas = document.getElementById("timeline-chart");
    const hours = [...new Set(rows.map((r) => r.hour))].sort();
    const dirs = [...new Set(rows.map((r) => r.direction))];
    if (window.Chart) {
      new window.Chart(canvas, {
        type: "line",
        data: {
          labels: hours,
          datasets: dirs.map((d) => ({
            label: d, borderColor: COLORS[d] || "#555", backgroundColor: (COLORS[d] || "#555") + "33", fill: true, pointRadius: 0, tension: 0.2,
            data: hours.map((h) => (rows.find((r) => r.hour === h && r.direction === d) || {}).connections || 0),
          })),
        },
        options: { animation: false, responsive: true, maintainAspectRatio: false, scales: { x: { ticks: { maxTicksLimit: 12 } } } },
      });
    }
    canvas.dataset.drawn = "yes";
  }

  function network(t, peers) {
    const canvas = document.getElementById("network");
    const g = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height, cx = W / 2, cy = H / 2;
    g.fillStyle = "#fff"; g.fillRect(0, 0, W, H);
    const top = peers.slice().sort((a, b) => (b.connections || 0) - (a.connections || 0)).slice(0, 60);
    const inside = top.filter((p) => p.peer_zone === "internal"), outside = top.filter((p) => p.peer_zone !== "internal");
    const max = Math.max(1, ...top.map((p) => p.connections || 0));
    const pos = new Map();
    inside.forEach((p, i) => { const a = (2 * Math.PI * i) / Math.max(1, inside.length); pos.set(p.peer, [cx + 150 * Math.cos(a), cy + 150 * Math.sin(a)]); });
    outside.forEach((p, i) => { const a = (2 * Math.PI * (i + 0.5)) / Math.max(1, outside.length); pos.set(p.peer, [cx + 420 * Math.cos(a), cy + 240 * Math.sin(a)]); });
    top.forEach((p) => {
      const [px, py] = pos.get(p.peer);
      g.strokeStyle = (COLORS[p.direction] || "#888") + "99"; g.lineWidth = 0.5 + 5 * ((p.connections || 0) / max);
      g.beginPath(); g.moveTo(cx, cy); g.lineTo(px, py); g.stroke();
    });
    g.font = "11px system-ui, sans-serif"; g.textAlign = "center";
    top.forEach((p) => {
      const [px, py] = pos.get(p.peer);
      if (p.peer_zone === "internal") { g.fillStyle = "#2457c5"; g.fillRect(px - 6, py - 6, 12, 12); }
      else { g.fillStyle = "#f59e0b"; g.beginPath(); g.arc(px, py, 6, 0, 2 * Math.PI); g.fill(); }
      g.fillStyle = "#334155"; g.fillText(p.peer, px, py + 18);
    });
    g.fillStyle = "#b42318"; g.beginPath(); g.arc(cx, cy, 11, 0, 2 * Math.PI); g.fill();
    g.fillStyle = "#111827"; g.font = "bold 13px system-ui, sans-serif"; g.fillText(t.entity, cx, cy - 18);
    if (!top.length) { g.fillStyle = "#64748b"; g.fillText("No connections in the window", cx, cy + 40); }
    canvas.dataset.drawn = "yes";
  }

  fetch("/threats/" + encodeURIComponent(id) + "/story.json", { credentials: "same-origin" })
    .then((r) => r.json())
    .then(async (d) => {
      const peers = d.peers || [];
      tree(d.threat, peers);
      impact(peers);
      timeline(d.timeline || []);
      network(d.threat, peers);
      await map(peers);
      root.dataset.drawn = "yes";
    })
    .catch((e) => { root.prepend(el("p", { class: "step-error" }, "The storyboard's data could not be read: " + e)); });
})();
