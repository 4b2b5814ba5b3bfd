import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  LineElement,
  PointElement,
  ScatterController,
  Tooltip,
  type ChartDataset,
} from 'chart.js';
import type { AvailableSeries, Marker } from './available-series';
import type { UsageRow } from './api';
import { formatCredits, formatDay, formatTime } from './format';

// Only what the two charts use, so the bundle stays small.
Chart.register(
  BarController,
  BarElement,
  CategoryScale,
  LinearScale,
  LineElement,
  PointElement,
  ScatterController,
  Legend,
  Tooltip,
);
Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
Chart.defaults.color = '#2b2f36';
// No animation: nothing moves for people who get motion sick, and screenshots are stable.
Chart.defaults.animation = false;

const COLORS = {
  available: '#1d5fbf',
  grant: '#1e7b34',
  expiry: '#b42318',
  transfer: '#7a3fb8',
  kept: '#1d5fbf',
  refunded: '#e0a100',
};

/** For tests and the curious: what each chart holds, on its canvas. */
function describe(canvas: HTMLCanvasElement, chart: Chart) {
  canvas.dataset.datasets = JSON.stringify(
    chart.data.datasets.map((dataset) => ({ label: dataset.label, points: dataset.data.length })),
  );
}

type Point = { x: number; y: number };

export function drawBalanceChart(canvas: HTMLCanvasElement, series: AvailableSeries): Chart {
  Chart.getChart(canvas)?.destroy();
  const markers = (label: string, list: Marker[], color: string, pointStyle: string) =>
    ({
      label,
      data: list.map(({ at, available }) => ({ x: at, y: available })),
      backgroundColor: color,
      borderColor: color,
      borderWidth: 2,
      pointStyle,
      pointRadius: 8,
      pointHoverRadius: 10,
    }) as ChartDataset<'scatter', Point[]>;
  const markerLists = [series.grants, series.expiries, series.transfers];
  const first = series.points[0]?.at ?? 0;
  const last = series.points.at(-1)?.at ?? 0;
  const pad = Math.max((last - first) * 0.03, 60_000);
  // Under three days of history, ticks need the time of day too.
  const short = last - first < 3 * 24 * 3600_000;
  const chart = new Chart<'scatter', Point[]>(canvas, {
    type: 'scatter',
    data: {
      datasets: [
        {
          label: 'Available credits',
          data: series.points.map(({ at, available }) => ({ x: at, y: available })),
          showLine: true,
          // The balance holds until the next change, then moves at once.
          stepped: true,
          borderColor: COLORS.available,
          backgroundColor: COLORS.available,
          borderWidth: 2,
          pointRadius: 2,
        },
        markers('Grants', series.grants, COLORS.grant, 'triangle'),
        markers('Expiries', series.expiries, COLORS.expiry, 'crossRot'),
        markers('Transfers', series.transfers, COLORS.transfer, 'rectRot'),
      ],
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      scales: {
        x: {
          type: 'linear',
          // Exactly the span of the history, a little padded, rather than "nice" numbers of ms.
          min: first - pad,
          max: last + pad,
          ticks: {
            maxTicksLimit: 8,
            callback: (value) =>
              short ? formatTime(Number(value)).slice(5, 16) : formatDay(Number(value)),
          },
        },
        y: {
          beginAtZero: true,
          title: { display: true, text: 'credits' },
          ticks: { callback: (value) => formatCredits(Number(value)) },
        },
      },
      plugins: {
        legend: { position: 'bottom', labels: { usePointStyle: true } },
        tooltip: {
          callbacks: {
            title: (items) => (items[0] ? formatTime(items[0].parsed.x ?? 0) : ''),
            label: (item) => {
              const credits = `${formatCredits(item.parsed.y ?? 0)} available`;
              const marker = markerLists[item.datasetIndex - 1]?.[item.dataIndex];
              return marker ? `${marker.label}: ${credits}` : credits;
            },
          },
        },
      },
    },
  });
  describe(canvas, chart);
  return chart;
}

export function drawUsageChart(canvas: HTMLCanvasElement, rows: UsageRow[]): Chart {
  Chart.getChart(canvas)?.destroy();
  const chart = new Chart(canvas, {
    type: 'bar',
    data: {
      labels: rows.map((row) => row.key),
      datasets: [
        {
          label: 'Kept (credits less refunds)',
          data: rows.map((row) => row.credits - row.refunded),
          backgroundColor: COLORS.kept,
          stack: 'credits',
        },
        {
          label: 'Refunded',
          data: rows.map((row) => row.refunded),
          backgroundColor: COLORS.refunded,
          stack: 'credits',
        },
      ],
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      scales: {
        x: { stacked: true },
        y: {
          stacked: true,
          beginAtZero: true,
          title: { display: true, text: 'credits' },
          ticks: { callback: (value) => formatCredits(Number(value)) },
        },
      },
      plugins: { legend: { position: 'bottom' } },
    },
  });
  describe(canvas, chart);
  return chart;
}
