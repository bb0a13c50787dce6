// casebook — page behaviour: run sections without reloading, field errors, time ranges,
// server-side table paging/sorting/search, exports, and charts (vendored Chart.js).
(function () {
  "use strict";
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  // Every POST from a page: the CSRF token in its header, the session cookie, an optional body.
  const post = (url, body) => fetch(url, { method: "POST", body, headers: { "x-csrf-token": csrf() }, credentials: "same-origin" });

  // ---- index: filter playbooks -------------------------------------------------------
  const filter = document.getElementById("filter");
  if (filter) {
    filter.addEventListener("input", () => {
      const q = filter.value.trim().toLowerCase();
      let shown = 0;
      document.querySelectorAll("#playbooks .card").forEach((c) => {
        const ok = !q || c.dataset.search.includes(q);
        c.hidden = !ok;
        if (ok) shown++;
      });
      document.getElementById("no-match").hidden = shown > 0;
      document.getElementById("filter-count").textContent = shown + " playbooks";
    });
  }

  // ---- time range widgets ----------------------------------------------------------
  function syncRange(w) {
    const preset = w.querySelector(".tr-preset");
    const custom = w.querySelector(".tr-custom");
    const value = w.querySelector(".tr-value");
    if (preset.value === "custom") {
      custom.hidden = false;
      const a = w.querySelector(".tr-start").value, b = w.querySelector(".tr-end").value;
      value.value = a && b ? a + " .. " + b : "";
    } else {
      custom.hidden = true;
      value.value = preset.value;
    }
  }
  document.querySelectorAll(".time-range").forEach((w) => {
    w.addEventListener("change", () => syncRange(w));
    w.addEventListener("input", () => syncRange(w));
  });

  // ---- running a section ----------------------------------------------------------
  const form = document.getElementById("params");
  function showErrors(errors) {
    document.querySelectorAll(".field").forEach((f) => {
      const name = f.dataset.field;
      const el = document.getElementById("err-" + name);
      const msg = errors && errors[name];
      f.classList.toggle("has-error", !!msg);
      if (el) { el.textContent = msg || ""; el.hidden = !msg; }
    });
    const first = document.querySelector(".field.has-error input, .field.has-error select");
    if (first) first.focus();
  }
  // Posts `body` to `url`; a 422 shows its messages next to the fields, another failure in
  // `err`, and a success goes to the `location` the server names.
  async function submitAndGo(url, body, err) {
    const r = await post(url, body);
    if (r.status === 422) {
      showErrors((await r.json()).errors);
      err.textContent = "Please correct the highlighted fields."; err.hidden = false;
      return;
    }
    if (!r.ok) { err.textContent = "The server answered " + r.status; err.hidden = false; return; }
    location.href = (await r.json()).location;
  }
  function formQuery() {
    const data = new FormData(form);
    data.delete("_csrf");
    const usp = new URLSearchParams();
    for (const [k, v] of data.entries()) if (v !== "") usp.append(k, v);
    return usp;
  }
  // "Step 2 of 3: Flows per day · chunk 4 of 7 · 12,345 rows · 8.1 s", or for one long
  // query "Step 1 of 5: Host pairs · read 4,194,304 of 10,010,781 rows (41 %) · 6.0 s"; the bar
  // counts finished steps, and the chunks or the files of the current one.
  function showProgress(p, text, bar) {
    if (p.state === "queued") { text.textContent = "Waiting for a free slot…"; return; }
    if (!p.of) { text.textContent = "Starting…"; return; }
    let t = "Step " + p.step + " of " + p.of + ": " + p.current;
    if (p.chunks) t += " · chunk " + Math.min(p.chunk + 1, p.chunks) + " of " + p.chunks;
    const share = p.to_read ? Math.min(p.scanned / p.to_read, 1) : 0;
    if (p.scanned) t += " · read " + p.scanned.toLocaleString("en") + (p.to_read ? " of " + p.to_read.toLocaleString("en") : "") + " rows";
    if (p.to_read && !p.chunks) t += " (" + Math.floor(share * 100) + " %)";
    else if (p.files && !p.chunks) t += " of " + Math.min(p.files_opened, p.files) + "/" + p.files + " files";
    if (p.rows) t += " · " + p.rows.toLocaleString("en") + " rows";
    if (p.job) t += " · on the cluster, job " + p.job;
    text.textContent = t + " · " + (p.elapsed_ms / 1000).toFixed(1) + " s";
    bar.max = p.of;
    // Within a step: its chunks done, or else the share of its files' rows the query has read
    // (of the files it has opened, for formats that do not count their rows).
    const within = p.chunks ? p.chunk / p.chunks : (p.to_read ? share : (p.files ? Math.min(p.files_opened, p.files) / p.files : 0));
    bar.value = Math.max(0, p.step - 1) + Math.min(within, 0.99);
  }

  async function runSection(button) {
    const i = button.dataset.section;
    const out = document.getElementById("results-" + i);
    const formError = document.getElementById("form-error");
    document.querySelectorAll(".time-range").forEach(syncRange);
    button.disabled = true; button.classList.add("busy");
    const label = button.textContent;
    button.textContent = "Running…";
    const runId = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
    out.innerHTML = '<div class="running"><span class="spinner"></span> <span class="progress-text">Starting…</span>' +
      '<progress max="1" value="0"></progress> <button type="button" class="cancel">Cancel</button></div>';
    const events = new EventSource("/runs/" + runId + "/events");
    events.addEventListener("progress", (ev) => {
      const p = JSON.parse(ev.data);
      const text = out.querySelector(".progress-text"), bar = out.querySelector("progress");
      if (!text) return;
      showProgress(p, text, bar);
    });
    events.addEventListener("done", () => events.close());
    out.querySelector("button.cancel").addEventListener("click", (e) => {
      e.target.disabled = true; e.target.textContent = "Cancelling…";
      post("/runs/" + runId + "/cancel");
    });
    formError.hidden = true;
    try {
      const body = new URLSearchParams(new FormData(form));
      body.set("_run", runId);
      const r = await post("/p/" + encodeURIComponent(form.dataset.playbook) + "/run/" + i, body);
      if (r.status === 422) {
        const j = await r.json();
        showErrors(j.errors);
        out.innerHTML = "";
        formError.textContent = "Please correct the highlighted fields.";
        formError.hidden = false;
        return;
      }
      if (!r.ok) {
        const text = await r.text();
        const doc = new DOMParser().parseFromString(text, "text/html");
        const msg = (doc.querySelector(".error-text") || {}).textContent || ("The server answered " + r.status);
        out.innerHTML = "";
        const div = document.createElement("div");
        div.className = "step-error"; div.textContent = msg;
        out.appendChild(div);
        return;
      }
      const j = await r.json();
      showErrors({});
      out.innerHTML = j.html;
      out.dataset.run = j.run_id;
      initCharts(out);
      // Keep the filled form in the address so the page can be shared or bookmarked.
      history.replaceState(null, "", location.pathname + "?" + formQuery().toString());
    } catch (e) {
      out.innerHTML = '<div class="step-error">Could not reach casebook: ' + String(e).replace(/[<&>]/g, "") + "</div>";
    } finally {
      events.close();
      button.disabled = false; button.classList.remove("busy"); button.textContent = label;
    }
  }
  document.querySelectorAll("button.run").forEach((b) => b.addEventListener("click", () => runSection(b)));
  if (form) form.addEventListener("submit", (e) => { e.preventDefault(); const b = document.querySelector("button.run"); if (b) runSection(b); });

  // ---- pivots: a cell holding an IP, domain or URL opens the playbooks that take one ----
  let pivotMenu = null;
  const closePivot = () => { if (pivotMenu) { pivotMenu.remove(); pivotMenu = null; } };
  document.addEventListener("click", (e) => {
    const td = e.target.closest("td[data-pv]");
    if (!td) { if (!e.target.closest(".pivot-menu")) closePivot(); return; }
    const w = td.closest(".table-widget");
    let all = [];
    try { all = JSON.parse(w.dataset.pivots || "[]"); } catch (err) { all = []; }
    const kind = td.dataset.pv, value = td.textContent.trim();
    const offers = all.filter((p) => p.kind === kind);
    closePivot();
    if (!offers.length) return;
    pivotMenu = document.createElement("div");
    pivotMenu.className = "pivot-menu";
    pivotMenu.setAttribute("role", "menu");
    const head = document.createElement("div");
    head.className = "pivot-head"; head.textContent = "Investigate " + value + " in…";
    pivotMenu.appendChild(head);
    offers.forEach((p) => {
      const a = document.createElement("a");
      a.setAttribute("role", "menuitem");
      a.href = "/p/" + encodeURIComponent(p.id) + "?" + new URLSearchParams([[p.param, value], ["_from", w.dataset.run]]).toString();
      a.textContent = p.title + " (" + p.label + ")";
      pivotMenu.appendChild(a);
    });
    const r = td.getBoundingClientRect();
    pivotMenu.style.left = (window.scrollX + r.left) + "px";
    pivotMenu.style.top = (window.scrollY + r.bottom + 2) + "px";
    document.body.appendChild(pivotMenu);
  });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closePivot(); });

  // ---- saving a threat from a run ------------------------------------------------------
  const threatForm = document.getElementById("threat-form");
  if (threatForm) {
    threatForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      await submitAndGo("/runs/" + threatForm.dataset.run + "/threat", new URLSearchParams(new FormData(threatForm)),
        document.getElementById("threat-error"));
    });
  }

  // ---- rating rows (Spot's Score) ------------------------------------------------------
  document.addEventListener("change", (e) => {
    if (!e.target.classList.contains("pick-all")) return;
    e.target.closest("table").querySelectorAll("input.row-pick").forEach((b) => { b.checked = e.target.checked; });
  });
  document.addEventListener("click", async (e) => {
    const b = e.target.closest("button.rate-selected, button.rate-matching, button.rate-where-btn");
    if (!b) return;
    const w = b.closest(".table-widget");
    const out = w.querySelector(".rate-result");
    const body = new URLSearchParams();
    body.set("field", w.querySelector(".rate-field").value);
    body.set("rating", (w.querySelector(".rate-choice input:checked") || {}).value || "");
    body.set("note", w.querySelector(".rate-note").value);
    if (b.classList.contains("rate-selected")) {
      w.querySelectorAll("input.row-pick:checked").forEach((c) => body.append("row", c.value));
    } else if (b.classList.contains("rate-where-btn")) {
      w.querySelectorAll(".rate-where").forEach((p) => {
        body.append("where_col", p.querySelector(".where-col").value);
        body.append("where_val", p.querySelector(".where-val").value);
      });
    } else {
      body.set("search", w.querySelector(".rate-search").value);
    }
    b.disabled = true;
    try {
      const r = await post("/runs/" + w.dataset.run + "/steps/" + w.dataset.step + "/rate", body);
      const j = await r.json();
      const names = { 1: "high", 2: "medium", 3: "low" };
      out.className = "rate-result " + (r.ok ? "good" : "bad");
      out.textContent = r.ok
        ? "Rated " + j.rated + " value" + (j.rated === 1 ? "" : "s") + " " + names[j.rating] + ": " + j.values.slice(0, 5).join(", ") + (j.rated > 5 ? "…" : "")
        : j.error;
    } catch (err) {
      out.className = "rate-result bad"; out.textContent = "Could not reach casebook.";
    } finally { b.disabled = false; }
  });

  // ---- a schedule made from the filled form ------------------------------------------
  const sched = document.getElementById("schedule-form");
  if (sched && form) {
    const every = sched.querySelector("[name=_sched_every]");
    const showWhen = () => {
      sched.querySelector(".at").hidden = !["day", "weekday", "monday"].includes(every.value);
      sched.querySelector(".cron").hidden = every.value !== "cron";
    };
    every.addEventListener("change", showWhen);
    showWhen();
    sched.addEventListener("submit", async (e) => {
      e.preventDefault();
      document.querySelectorAll(".time-range").forEach(syncRange);
      const body = new URLSearchParams(new FormData(form));
      for (const [k, v] of new FormData(sched).entries()) body.append(k, v);
      await submitAndGo("/p/" + encodeURIComponent(sched.dataset.playbook) + "/schedule", body, document.getElementById("schedule-error"));
    });
  }

  // ---- tables: paging, sorting, search and export on the server ----------------------
  async function reload(w, changes) {
    const st = Object.assign({ page: w.dataset.page, size: w.dataset.size, sort: w.dataset.sort, dir: w.dataset.dir,
      q: (w.querySelector(".table-search") || {}).value || "", export: w.dataset.export }, changes);
    const usp = new URLSearchParams(st);
    w.classList.add("loading");
    const r = await fetch("/runs/" + w.dataset.run + "/steps/" + w.dataset.step + "/table?" + usp.toString(), { credentials: "same-origin" });
    w.classList.remove("loading");
    if (!r.ok) return;
    const tmp = document.createElement("div");
    tmp.innerHTML = await r.text();
    const fresh = tmp.firstElementChild;
    const hadFocus = document.activeElement && document.activeElement.classList.contains("table-search");
    w.replaceWith(fresh);
    if (hadFocus) { const s = fresh.querySelector(".table-search"); s.focus(); s.setSelectionRange(s.value.length, s.value.length); }
    // A search of a big table answers its first page before it has counted every match:
    // the same view again shortly gives the count, unless the analyst moved on.
    if (fresh.dataset.counting === "1") setTimeout(() => { if (document.contains(fresh)) reload(fresh, {}); }, 800);
  }
  const timers = new WeakMap();
  document.addEventListener("click", async (e) => {
    const w = e.target.closest(".table-widget");
    if (!w) return;
    const sort = e.target.closest("button.sort");
    if (sort) {
      const col = sort.dataset.col;
      const dir = w.dataset.sort === col && w.dataset.dir === "asc" ? "desc" : "asc";
      return reload(w, { sort: col, dir, page: 1 });
    }
    const pg = e.target.closest("button.page");
    if (pg && !pg.disabled) return reload(w, { page: pg.dataset.page });
    const ex = e.target.closest("button.export");
    if (ex) {
      ex.disabled = true;
      const body = new URLSearchParams({ format: ex.dataset.format, _csrf: csrf() });
      const r = await post("/runs/" + w.dataset.run + "/steps/" + w.dataset.step + "/export", body);
      ex.disabled = false;
      if (r.ok) {
        const list = document.getElementById("exports");
        if (list) { list.innerHTML = await r.text(); list.scrollIntoView({ behavior: "smooth", block: "nearest" }); }
      }
    }
  });
  document.addEventListener("input", (e) => {
    if (!e.target.classList.contains("table-search")) return;
    const w = e.target.closest(".table-widget");
    clearTimeout(timers.get(w));
    timers.set(w, setTimeout(() => reload(w, { page: 1 }), 300));
  });
  document.addEventListener("change", (e) => {
    if (!e.target.classList.contains("table-size")) return;
    reload(e.target.closest(".table-widget"), { size: e.target.value, page: 1 });
  });

  // ---- a run's permalink, while it goes on ------------------------------------------
  const live = document.querySelector("[data-live-run]");
  if (live) {
    const es = new EventSource("/runs/" + live.dataset.liveRun + "/events");
    es.addEventListener("progress", (ev) => {
      const p = JSON.parse(ev.data);
      showProgress(p, live.querySelector(".progress-text"), live.querySelector("progress"));
    });
    es.addEventListener("done", () => { es.close(); location.reload(); });
  }

  // ---- management page ----------------------------------------------------------------
  // Forms that delete or overwrite ask first.
  const confirmForms = (root) => root.querySelectorAll("form[data-confirm]").forEach((f) =>
    f.addEventListener("submit", (e) => { if (!window.confirm(f.dataset.confirm)) e.preventDefault(); }));
  confirmForms(document);
  document.querySelectorAll("input.select-all").forEach((box) =>
    box.addEventListener("change", () => box.closest("table").querySelectorAll("tbody input[type=checkbox]")
      .forEach((c) => { c.checked = box.checked; })));
  // A management button that POSTs and shows the HTML answer in its panel.
  function postAndShow(buttonId, url, outId, busy, failed) {
    const button = document.getElementById(buttonId);
    if (!button) return;
    button.addEventListener("click", async () => {
      const out = document.getElementById(outId);
      button.disabled = true;
      out.innerHTML = '<div class="running"><span class="spinner"></span> ' + busy + '</div>';
      const r = await post(url);
      out.innerHTML = r.ok ? await r.text() : '<div class="step-error">' + failed + '</div>';
      confirmForms(out);
      button.disabled = false;
    });
  }
  postAndShow("run-selftests", "/manage/selftests", "selftests", "Running self-tests…", "The self-tests could not run.");
  postAndShow("repo-check", "/manage/repo/check", "repo-incoming", "Fetching…", "The check failed.");

  document.querySelectorAll("button.service-check").forEach((b) => b.addEventListener("click", async () => {
    const out = b.parentElement.querySelector(".service-result");
    b.disabled = true;
    out.className = "service-result muted";
    out.textContent = "asking…";
    try {
      const r = await post("/manage/services/" + encodeURIComponent(b.dataset.service) + "/check");
      const j = await r.json();
      out.className = "service-result " + (j.ok ? "good" : "bad");
      out.textContent = (j.ok ? "✓ " : "✗ ") + j.note;
    } catch (e) {
      out.className = "service-result bad";
      out.textContent = "✗ the check could not run";
    }
    b.disabled = false;
  }));

  // ---- charts ---------------------------------------------------------------------
  const palette = ["#2457c5", "#e8590c", "#2f9e44", "#c2255c", "#7048e8", "#0c8599", "#f08c00", "#5c7cfa", "#a61e4d", "#37b24d", "#868e96", "#495057"];
  function initCharts(root) {
    if (!window.Chart) return;
    root.querySelectorAll("figure.chart").forEach((fig) => {
      if (fig.dataset.ready) return;
      fig.dataset.ready = "1";
      const spec = JSON.parse(fig.querySelector(".chart-data").textContent);
      const line = spec.type === "line";
      // A time series on a line chart gets a true time axis (gaps stay gaps).
      const timeAxis = line && spec.time && spec.times.length === spec.labels.length;
      const fmt = new Intl.DateTimeFormat("sv-SE", { timeZone: spec.tz || "UTC", year: "numeric", month: "2-digit",
        day: "2-digit", hour: "2-digit", minute: "2-digit" });
      const datasets = spec.datasets.map((d, i) => ({
        label: d.label,
        data: timeAxis ? d.data.map((y, k) => ({ x: spec.times[k], y })).filter((p) => p.y !== 0 || spec.datasets.length === 1) : d.data,
        borderColor: palette[i % palette.length], backgroundColor: palette[i % palette.length] + (line ? "33" : "cc"),
        borderWidth: line ? 1.5 : 0, pointRadius: line && d.data.length < 80 ? 2 : 0, tension: 0.15, fill: false,
      }));
      new window.Chart(fig.querySelector("canvas"), {
        type: spec.type,
        data: timeAxis ? { datasets } : { labels: spec.labels, datasets },
        options: {
          responsive: true, maintainAspectRatio: false, animation: false,
          interaction: timeAxis ? { mode: "nearest", axis: "x", intersect: false } : { mode: "index", intersect: false },
          plugins: {
            legend: { display: datasets.length > 1, position: "bottom" },
            tooltip: timeAxis ? { callbacks: { title: (items) => items.length ? fmt.format(new Date(items[0].parsed.x)) : "" } } : {},
          },
          scales: {
            x: timeAxis
              ? { type: "linear", title: { display: true, text: spec.x + " (" + (spec.tz || "UTC") + ")" },
                  ticks: { maxTicksLimit: 10, maxRotation: 0, callback: (v) => fmt.format(new Date(v)) } }
              : { stacked: !line && datasets.length > 1, title: { display: true, text: spec.x }, ticks: { maxTicksLimit: 12, autoSkip: true, maxRotation: 0 } },
            y: { stacked: !line && datasets.length > 1, beginAtZero: true, title: { display: true, text: spec.y } },
          },
        },
      });
    });
  }
  window.addEventListener("load", () => initCharts(document));
})();
