/** Small text helpers the `agora job` commands share: aligned tables and durations for people. */

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** Whole seconds for a clock that ticks: `0s`, `12s`, `1m05s`, `2h03m`, `3d04h`. */
export function formatElapsed(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`;
}

/** A duration with sub-second detail where it matters: `850ms`, `1.2s`, `12s`, `1m05s`. */
export function formatDuration(ms: number): string {
  const clamped = Math.max(0, Math.round(ms));
  if (clamped < 1000) return `${clamped}ms`;
  if (clamped < 10_000) return `${(Math.floor(clamped / 100) / 10).toFixed(1)}s`;
  return formatElapsed(clamped);
}

/** `in 4m10s`, `5s ago`, `now`: a moment relative to `nowMs`. */
export function formatRelative(atMs: number, nowMs: number): string {
  const delta = atMs - nowMs;
  if (Math.abs(delta) < 1000) return 'now';
  return delta > 0 ? `in ${formatElapsed(delta)}` : `${formatElapsed(-delta)} ago`;
}

/** `2026-05-01 14:03:07Z`: an instant, to the second, in UTC (what the servers log). */
export function formatInstant(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/** Cuts text to `max` characters, ending in "…" when cut. */
export function truncate(text: string, max: number): string {
  if (max <= 0) return '';
  return text.length <= max ? text : `${text.slice(0, Math.max(0, max - 1))}…`;
}
