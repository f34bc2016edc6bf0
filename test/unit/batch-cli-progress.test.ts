import { describe, expect, it } from 'vitest';
import { formatDuration, formatElapsed, formatRelative, table, truncate } from '../../frameworks/batch/cli/format.ts';
import { ProgressReporter, renderBar, renderProgress } from '../../frameworks/batch/cli/progress-bar.ts';
import type { RunCounts } from '../../frameworks/batch/run-state.ts';

const counts = (c: Partial<RunCounts>): RunCounts => ({ pending: 0, active: 0, succeeded: 0, failed: 0, cancelled: 0, ...c });

describe('progress line', () => {
  it('shows the bar, the counts and the clock in the documented shape', () => {
    const line = renderProgress({ counts: counts({ succeeded: 37, failed: 2, active: 10, pending: 51 }), tasks: 100 }, 12_400, 80);
    expect(line).toMatch(/^\[#+x*\.+\] 37\/100 done · 2 failed · 10 running · 51 pending {2}12s$/);
    expect(line.length).toBeLessThanOrEqual(80);
  });

  it('fills the bar in proportion, and full only when every task has ended', () => {
    expect(renderBar(counts({ succeeded: 5, pending: 5 }), 10, 10)).toBe('[#####.....]');
    expect(renderBar(counts({ succeeded: 3, failed: 2, pending: 5 }), 10, 10)).toBe('[###xx.....]');
    expect(renderBar(counts({ succeeded: 999, pending: 1 }), 1000, 10)).toBe('[#########.]');
    expect(renderBar(counts({ succeeded: 1000 }), 1000, 10)).toBe('[##########]');
    expect(renderBar(counts({ succeeded: 9, cancelled: 1 }), 10, 10)).toBe('[#########x]');
    expect(renderBar(counts({}), 0, 10)).toBe('[##########]'); // an empty run has nothing left
  });

  it('shrinks the bar to fit a narrow terminal and drops it when there is no room', () => {
    const input = { counts: counts({ succeeded: 1, active: 1, pending: 8 }), tasks: 10 };
    expect(renderProgress(input, 0, 200)).toMatch(/^\[[#.]{30}\] /);
    const narrow = renderProgress(input, 0, 64);
    expect(narrow.length).toBeLessThanOrEqual(64);
    expect(narrow).toMatch(/^\[[#.]{10,}\] 1\/10 done/);
    expect(renderProgress(input, 0, 50)).toBe('1/10 done · 0 failed · 1 running · 8 pending  0s');
  });

  it('names cancelled tasks only when there are some, and what a queued run waits for', () => {
    expect(renderProgress({ counts: counts({ succeeded: 1, cancelled: 3 }) }, 65_000, 120)).toContain('1/4 done · 0 failed · 3 cancelled · 0 running · 0 pending  1m05s');
    const waiting = renderProgress({ counts: counts({ pending: 2 }), waiting: "waiting for etl.extract's run to end" }, 0, 120);
    expect(waiting).toMatch(/0s {2}\(waiting for etl\.extract's run to end\)$/);
    const cut = renderProgress({ counts: counts({ pending: 2 }), waiting: 'x'.repeat(500) }, 0, 100);
    expect(cut.length).toBeLessThanOrEqual(100);
    expect(cut).toMatch(/…\)$/);
  });
});

describe('ProgressReporter', () => {
  function reporter(tty: boolean) {
    let now = 0;
    const out: string[] = [];
    const r = new ProgressReporter({ tty, write: (t) => out.push(t), now: () => now, width: () => 100 });
    return { r, out, advance: (ms: number) => (now += ms) };
  }

  it('redraws one line in place on a terminal and ends it with a newline', () => {
    const { r, out, advance } = reporter(true);
    r.update({ counts: counts({ pending: 2 }), tasks: 2 });
    advance(1000);
    r.tick();
    r.finish({ counts: counts({ succeeded: 2 }), tasks: 2 });
    expect(out).toHaveLength(4);
    expect(out[0]).toMatch(/^\r\[\.+\] 0\/2 done .* 0s\x1b\[K$/);
    expect(out[1]).toMatch(/ 1s\x1b\[K$/);
    expect(out[2]).toMatch(/^\r\[#+\] 2\/2 done/);
    expect(out[3]).toBe('\n');
  });

  it('prints a line per change at most once a second into a pipe, and the last change at the end', () => {
    const { r, out, advance } = reporter(false);
    r.update({ counts: counts({ pending: 3 }), tasks: 3 });
    r.update({ counts: counts({ pending: 3 }), tasks: 3 }); // no change
    advance(200);
    r.update({ counts: counts({ active: 1, pending: 2 }), tasks: 3 }); // held back: too soon
    advance(300);
    r.tick();
    expect(out).toHaveLength(1);
    advance(600);
    r.tick(); // a second has passed: the held-back change goes out
    expect(out).toHaveLength(2);
    expect(out[1]).toMatch(/0\/3 done · 0 failed · 1 running · 2 pending {2}1s\n$/);
    advance(100);
    r.update({ counts: counts({ succeeded: 3 }), tasks: 3 });
    r.finish();
    expect(out).toHaveLength(3);
    expect(out[2]).toMatch(/^\[#+\] 3\/3 done/);
    expect(out.every((l) => !l.includes('\r'))).toBe(true);
  });
});

describe('text helpers', () => {
  it('formats durations for clocks and for tasks', () => {
    expect(formatElapsed(0)).toBe('0s');
    expect(formatElapsed(59_999)).toBe('59s');
    expect(formatElapsed(65_000)).toBe('1m05s');
    expect(formatElapsed(3_723_000)).toBe('1h02m');
    expect(formatElapsed(90_000_000)).toBe('1d01h');
    expect(formatDuration(850)).toBe('850ms');
    expect(formatDuration(1_250)).toBe('1.2s');
    expect(formatDuration(12_000)).toBe('12s');
    expect(formatRelative(10_000, 0)).toBe('in 10s');
    expect(formatRelative(0, 5_000)).toBe('5s ago');
    expect(formatRelative(100, 0)).toBe('now');
  });

  it('aligns tables and truncates with an ellipsis', () => {
    expect(table(['A', 'BB'], [['xxx', 'y'], ['z', '']])).toBe('A    BB\nxxx  y\nz');
    expect(truncate('abcdef', 4)).toBe('abc…');
    expect(truncate('abc', 4)).toBe('abc');
  });
});
