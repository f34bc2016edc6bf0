/**
 * The progress of a run for `agora job run --wait`: one line,
 * `[#####.....] 37/100 done · 2 failed · 10 running · 51 pending  12s`, redrawn in place on a
 * terminal, and printed a line per change (at most one a second) into a pipe or a log file.
 */
import type { RunCounts } from '../run-state.ts';
import { formatElapsed, truncate } from './format.ts';

export interface ProgressInput {
  counts: RunCounts;
  /** Tasks in the run; the counts' sum when absent. */
  tasks?: number;
  /** Why a queued run launches nothing yet (shown after the clock). */
  waiting?: string;
}

const MAX_BAR = 30;
const MIN_BAR = 10;

/** The tasks the counts cover. */
export function totalOf(input: ProgressInput): number {
  const c = input.counts;
  return input.tasks ?? c.pending + c.active + c.succeeded + c.failed + c.cancelled;
}

/**
 * `[###x......]`: "#" succeeded, "x" failed or cancelled, "." not ended yet; full only when every
 * task has ended.
 */
export function renderBar(counts: RunCounts, total: number, cells: number): string {
  if (cells <= 0) return '';
  const ended = counts.succeeded + counts.failed + counts.cancelled;
  const cellsFor = (n: number) => (total <= 0 ? cells : n >= total ? cells : Math.min(cells - 1, Math.floor((n / total) * cells)));
  const good = cellsFor(counts.succeeded);
  const done = Math.max(good, cellsFor(ended));
  return `[${'#'.repeat(good)}${'x'.repeat(done - good)}${'.'.repeat(cells - done)}]`;
}

/** The counts as words: `37/100 done · 2 failed · 10 running · 51 pending` (cancelled only when some are). */
export function describeCounts(input: ProgressInput): string {
  const c = input.counts;
  const parts = [`${c.succeeded}/${totalOf(input)} done`, `${c.failed} failed`];
  if (c.cancelled > 0) parts.push(`${c.cancelled} cancelled`);
  parts.push(`${c.active} running`, `${c.pending} pending`);
  return parts.join(' · ');
}

/**
 * One progress line, at most `width` characters: the bar shrinks (down to 10 cells, then goes) and
 * the waiting note is cut before the counts are.
 */
export function renderProgress(input: ProgressInput, elapsedMs: number, width = 80): string {
  const words = `${describeCounts(input)}  ${formatElapsed(elapsedMs)}`;
  const barFor = (room: number) => Math.min(MAX_BAR, room - 3); // "[", "]" and a space
  let cells = barFor(width - words.length);
  let note = '';
  if (input.waiting) {
    // What a queued run waits for says more than its (empty) bar: shrink the bar for it first.
    const wanted = `  (${input.waiting})`;
    cells = Math.min(cells, Math.max(MIN_BAR, barFor(width - words.length - wanted.length)));
    const left = width - words.length - (cells >= MIN_BAR ? cells + 3 : 0);
    if (left >= 12) note = wanted.length <= left ? wanted : `  (${truncate(input.waiting, left - 4)})`;
  }
  const line = cells >= MIN_BAR ? `${renderBar(input.counts, totalOf(input), cells)} ${words}${note}` : `${words}${note}`;
  return truncate(line, width);
}

export interface ProgressReporterOptions {
  /** true: redraw one line in place (a terminal); false: print a line per change. */
  tty: boolean;
  write: (text: string) => void;
  /** Terminal columns. @default 80 */
  width?: () => number | undefined;
  now?: () => number;
  /** Non-TTY: at most one line this often. @default 1000 */
  minIntervalMs?: number;
}

/**
 * Draws a run's progress over time. Call `update` with each new state, `tick` every second or so
 * (the clock moves, and held-back changes go out), and `finish` once: it leaves the last state
 * on its own line.
 */
export class ProgressReporter {
  private readonly startedAtMs: number;
  private latest: ProgressInput | undefined;
  private printedKey = '';
  private printedAtMs = Number.NEGATIVE_INFINITY;
  private drawn = false;

  constructor(private readonly options: ProgressReporterOptions) {
    this.startedAtMs = this.now();
  }

  update(input: ProgressInput): void {
    this.latest = input;
    this.render(false);
  }

  tick(): void {
    this.render(false);
  }

  /** Ends the display: the final line on a terminal, the last unprinted change otherwise. */
  finish(input?: ProgressInput): void {
    if (input) this.latest = input;
    this.render(true);
    if (this.options.tty && this.drawn) this.options.write('\n');
    this.drawn = false;
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  private render(final: boolean): void {
    const input = this.latest;
    if (!input) return;
    const now = this.now();
    const width = Math.max(20, (this.options.width?.() || 80) - 1); // a pseudo-terminal may say 0 columns
    if (this.options.tty) {
      this.options.write(`\r${renderProgress(input, now - this.startedAtMs, width)}\x1b[K`);
      this.drawn = true;
      return;
    }
    const key = JSON.stringify([input.counts, input.tasks, input.waiting]);
    if (key === this.printedKey) return;
    if (!final && now - this.printedAtMs < (this.options.minIntervalMs ?? 1000)) return;
    this.printedKey = key;
    this.printedAtMs = now;
    this.options.write(`${renderProgress(input, now - this.startedAtMs, width)}\n`);
  }
}
