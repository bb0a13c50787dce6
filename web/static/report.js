// casebook report: draws the charts of a saved report (runs from the file itself, offline).
(function () {
  "use strict";
  const palette = ["#2457c5", "#e8590c", "#2f9e44", "#c2255c", "#7048e8", "#0c8599", "#f08c00", "#5c7cfa", "#a61e4d", "#37b24d", "#868e96", "#495057"];
  document.querySelectorAll("figure.chart").forEach((fig) => {
    const spec = JSON.parse(fig.querySelector(".chart-data").textContent);
    const line = spec.type === "line";
    const timeAxis = line && spec.time && spec.times.length === spec.labels.length;
    const fmt = new Intl.DateTimeFormat("sv-SE", { timeZone: spec.tz || "UTC", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
    const datasets = spec.datasets.map((d, i) => ({
      label: d.label,
      data: timeAxis ? d.data.map((y, k) => ({ x: spec.times[k], y })).filter((p) => p.y !== 0 || spec.datasets.length === 1) : d.data,
      borderColor: palette[i % palette.length], backgroundColor: palette[i % palette.length] + (line ? "33" : "cc"),
      borderWidth: line ? 1.5 : 0, pointRadius: 0, fill: false,
    }));
    const chart = new Chart(fig.querySelector("canvas"), {
      type: spec.type,
      data: timeAxis ? { datasets } : { labels: spec.labels, datasets },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: datasets.length > 1, position: "bottom" } },
        scales: {
          x: timeAxis ? { type: "linear", ticks: { maxTicksLimit: 8, callback: (v) => fmt.format(new Date(v)) } }
                      : { stacked: !line && datasets.length > 1, ticks: { maxTicksLimit: 12, maxRotation: 0 } },
          y: { stacked: !line && datasets.length > 1, beginAtZero: true },
        },
      },
    });
    fig.dataset.drawn = String(chart.data.datasets.length);
  });
  document.body.dataset.ready = "1";
})();
