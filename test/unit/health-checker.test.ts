import { describe, expect, it } from 'vitest';
import { HealthChecker, type HealthCheckPolicy, type HealthClock, type Probe, type ProbeResult } from '../../agent/health/health-checker.ts';

/** A clock whose time moves only when the test says so; timers fire in time order. */
class FakeClock implements HealthClock {
  private time = 0;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fire: () => void }>();

  now(): number {
    return this.time;
  }

  setTimeout(fire: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.time + ms, fire });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  get pendingTimers(): number {
    return this.timers.size;
  }

  /** Moves time forward to `now + ms`, firing due timers and letting probe promises settle between them. */
  async advance(ms: number): Promise<void> {
    const target = this.time + ms;
    await settle();
    for (;;) {
      let next: [number, { at: number; fire: () => void }] | undefined;
      for (const entry of this.timers) if (entry[1].at <= target && (!next || entry[1].at < next[1].at)) next = entry;
      if (!next) break;
      this.timers.delete(next[0]);
      this.time = next[1].at;
      next[1].fire();
      await settle();
    }
    this.time = target;
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

/** A probe that answers from a script (one result per check; the last repeats) and records when it ran. */
function scriptedProbe(clock: FakeClock, script: Array<ProbeResult | 'hang'>): Probe & { calls: number[] } {
  const calls: number[] = [];
  return {
    description: 'TCP connect to 127.0.0.1:31000',
    calls,
    run() {
      const result = script[Math.min(calls.length, script.length - 1)]!;
      calls.push(clock.now());
      return result === 'hang' ? new Promise<ProbeResult>(() => {}) : Promise.resolve(result);
    },
  };
}

const ok: ProbeResult = { healthy: true };
const refused: ProbeResult = { healthy: false, message: 'TCP connect to 127.0.0.1:31000: connection refused' };

function setup(script: Array<ProbeResult | 'hang'>, policy: Partial<HealthCheckPolicy> = {}) {
  const clock = new FakeClock();
  const probe = scriptedProbe(clock, script);
  const changes: Array<{ healthy: boolean; message: string | undefined; at: number }> = [];
  const failed: Array<{ message: string; failures: number; at: number }> = [];
  const checker = new HealthChecker({
    policy: { delayMs: 1000, intervalMs: 100, timeoutMs: 50, gracePeriodMs: 0, consecutiveFailures: 3, ...policy },
    probe,
    clock,
    onHealthChanged: (healthy, message) => changes.push({ healthy, message, at: clock.now() }),
    onFailed: (message, failures) => failed.push({ message, failures, at: clock.now() }),
  });
  return { clock, probe, checker, changes, failed };
}

describe('HealthChecker', () => {
  it('runs the first check delayMs after start, then one every intervalMs after the previous finished', async () => {
    const { clock, probe, checker } = setup([ok]);
    checker.start();
    await clock.advance(999);
    expect(probe.calls).toEqual([]);
    await clock.advance(1 + 300);
    expect(probe.calls).toEqual([1000, 1100, 1200, 1300]);
  });

  it('reports the first result and then only flips, not every check', async () => {
    const { clock, checker, changes, failed } = setup([ok, ok, refused, refused, ok, ok, refused, ok], { consecutiveFailures: 5 });
    checker.start();
    await clock.advance(1000 + 7 * 100);
    expect(changes.map((c) => c.healthy)).toEqual([true, false, true, false, true]);
    expect(changes[1]).toEqual({ healthy: false, message: refused.message, at: 1200 });
    expect(failed).toEqual([]);
  });

  it('asks for a kill after consecutiveFailures counted failures in a row, naming the last failure, and stops checking', async () => {
    const { clock, probe, checker, changes, failed } = setup([ok, refused]);
    checker.start();
    await clock.advance(1000 + 10 * 100);
    expect(changes.map((c) => c.healthy)).toEqual([true, false]);
    expect(failed).toEqual([{ message: refused.message, failures: 3, at: 1300 }]);
    expect(probe.calls).toEqual([1000, 1100, 1200, 1300]);
    expect(checker.running).toBe(false);
    expect(clock.pendingTimers).toBe(0);
  });

  it('resets the failure count on a success', async () => {
    const { clock, checker, failed } = setup([refused, refused, ok, refused, refused, ok, refused, refused]);
    checker.start();
    await clock.advance(1000 + 7 * 100);
    expect(failed).toEqual([]);
    expect(checker.consecutiveFailures).toBe(2);
  });

  it('ignores failures within gracePeriodMs of the start: no count, no report', async () => {
    const { clock, probe, checker, changes, failed } = setup([refused], { delayMs: 0, gracePeriodMs: 1000 });
    checker.start();
    await clock.advance(950);
    expect(probe.calls.length).toBe(10);
    expect(changes).toEqual([]);
    expect(checker.consecutiveFailures).toBe(0);
    await clock.advance(1000);
    // Checks at 1000, 1100 and 1200 count.
    expect(changes).toEqual([{ healthy: false, message: refused.message, at: 1000 }]);
    expect(failed).toEqual([{ message: refused.message, failures: 3, at: 1200 }]);
  });

  it('does not kill a task that becomes healthy inside its grace period', async () => {
    const { clock, checker, changes, failed } = setup([refused, refused, refused, refused, refused, ok], { delayMs: 0, gracePeriodMs: 1000 });
    checker.start();
    await clock.advance(3000);
    expect(changes.map((c) => c.healthy)).toEqual([true]);
    expect(failed).toEqual([]);
  });

  it('ends the grace period at the first success: a failure right after it counts', async () => {
    const { clock, checker, changes, failed } = setup([refused, ok, refused], { delayMs: 0, gracePeriodMs: 10_000 });
    checker.start();
    await clock.advance(450);
    expect(changes.map((c) => [c.healthy, c.at])).toEqual([
      [true, 100],
      [false, 200],
    ]);
    expect(failed).toEqual([{ message: refused.message, failures: 3, at: 400 }]);
  });

  it('measures the grace period from startedAtMs when given (a task that started before its checker)', async () => {
    const clock = new FakeClock();
    await clock.advance(5000);
    const probe = scriptedProbe(clock, [refused]);
    const changes: boolean[] = [];
    const checker = new HealthChecker({
      policy: { delayMs: 0, intervalMs: 100, timeoutMs: 50, gracePeriodMs: 4000, consecutiveFailures: 3 },
      probe,
      clock,
      startedAtMs: 0,
      onHealthChanged: (healthy) => changes.push(healthy),
      onFailed: () => {},
    });
    checker.start();
    await clock.advance(0);
    expect(changes).toEqual([false]);
  });

  it('counts a probe that does not answer within timeoutMs as a failure, naming the timeout', async () => {
    const { clock, checker, changes, failed } = setup(['hang'], { timeoutMs: 2000, intervalMs: 100, consecutiveFailures: 1 });
    checker.start();
    await clock.advance(1000 + 1999);
    expect(changes).toEqual([]);
    await clock.advance(1);
    expect(failed).toEqual([{ message: 'TCP connect to 127.0.0.1:31000 timed out after 2 s', failures: 1, at: 3000 }]);
  });

  it('counts a probe that throws or rejects as a failure with its error', async () => {
    const clock = new FakeClock();
    const messages: string[] = [];
    let n = 0;
    const checker = new HealthChecker({
      policy: { delayMs: 0, intervalMs: 100, timeoutMs: 50, gracePeriodMs: 0, consecutiveFailures: 2 },
      probe: {
        description: 'health check command `true`',
        run: () => {
          if (n++ === 0) throw new Error('spawn sh ENOENT');
          return Promise.reject(new Error('timed out'));
        },
      },
      clock,
      onHealthChanged: (_healthy, message) => messages.push(`changed: ${message}`),
      onFailed: (message) => messages.push(`failed: ${message}`),
    });
    checker.start();
    await clock.advance(200);
    expect(messages).toEqual(['changed: health check command `true`: spawn sh ENOENT', 'failed: health check command `true`: timed out']);
  });

  it('stops checking when stopped, and ignores a result that arrives after the stop', async () => {
    const clock = new FakeClock();
    let answer!: (result: ProbeResult) => void;
    let calls = 0;
    const changes: boolean[] = [];
    const checker = new HealthChecker({
      policy: { delayMs: 0, intervalMs: 100, timeoutMs: 1000, gracePeriodMs: 0, consecutiveFailures: 1 },
      probe: {
        description: 'x',
        run: () => {
          calls++;
          return new Promise<ProbeResult>((resolve) => (answer = resolve));
        },
      },
      clock,
      onHealthChanged: (healthy) => changes.push(healthy),
      onFailed: () => changes.push(false),
    });
    checker.start();
    await clock.advance(10);
    expect(calls).toBe(1);
    checker.stop();
    answer(refused);
    await clock.advance(5000);
    expect(changes).toEqual([]);
    expect(calls).toBe(1);
    expect(clock.pendingTimers).toBe(0);
  });

  it('never starts when stopped before its delay has passed', async () => {
    const { clock, probe, checker } = setup([ok]);
    checker.start();
    await clock.advance(500);
    checker.stop();
    await clock.advance(5000);
    expect(probe.calls).toEqual([]);
  });
});
