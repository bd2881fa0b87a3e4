// The throughput chart: logs/s and requests/s over the last 60 s, drawn with uPlot (MIT,
// vendored in vendor/uplot/, loaded as the global `uPlot` by index.html).

const SPAN_S = 60;
const clock = (seconds) => new Date(seconds * 1000).toLocaleTimeString("en-GB");

export class ThroughputChart {
  constructor(container) {
    this.container = container;
    /** [times (s), logs/s, requests/s]: the points of the last SPAN_S seconds. */
    this.data = [[], [], []];
    this.plot = null;
    if (typeof window.uPlot !== "function") {
      container.textContent = "chart unavailable (vendor/uplot/uPlot.iife.min.js not loaded)";
      return;
    }
    const axis = {
      stroke: "#8792a2",
      grid: { stroke: "#222a36", width: 1 },
      ticks: { stroke: "#2a3240", width: 1 },
    };
    this.plot = new window.uPlot(
      {
        width: Math.max(container.clientWidth, 300),
        height: 200,
        legend: { live: false },
        cursor: { drag: { x: false, y: false } },
        scales: {
          // Up to the last SPAN_S seconds, sliding (at least 10 s).
          x: {
            time: true,
            range: (u, min) => {
              const now = Date.now() / 1000;
              return [Math.min(Math.max(min ?? now, now - SPAN_S), now - 10), now];
            },
          },
          y: { range: (u, min, max) => [0, Math.max(1, (max ?? 1) * 1.15)] },
        },
        axes: [
          { ...axis, space: 70, values: (u, splits) => splits.map((t) => clock(t)) },
          { ...axis, size: 44 },
        ],
        series: [
          {},
          { label: "logs/s", stroke: "#58a6ff", width: 2, fill: "rgba(88,166,255,0.12)" },
          { label: "requests/s (gateway window avg)", stroke: "#3fb950", width: 2 },
        ],
      },
      this.data,
      container,
    );
    new ResizeObserver(() => {
      const width = Math.max(container.clientWidth, 300);
      if (width !== this.plot.width) this.plot.setSize({ width, height: 200 });
    }).observe(container);
  }

  /** Add a point at now; values may be null (a gap). */
  push(logsPerSecond, requestsPerSecond) {
    const now = Date.now() / 1000;
    const [times, logs, requests] = this.data;
    times.push(now);
    logs.push(logsPerSecond ?? null);
    requests.push(requestsPerSecond ?? null);
    while (times.length && times[0] < now - SPAN_S) {
      times.shift();
      logs.shift();
      requests.shift();
    }
    this.plot?.setData(this.data);
  }

  get points() {
    return this.data[0].length;
  }
}
