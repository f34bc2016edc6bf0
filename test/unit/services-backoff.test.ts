import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffSchema } from '../../frameworks/services/app-definition.ts';
import { launchDelayMs, NO_BACKOFF, recordFailure, recordHealthy, RESET_AFTER_HEALTHY_MS } from '../../frameworks/services/backoff.ts';

const marathon = backoffSchema.parse({}); // 1 s, × 1.15, at most 300 s

describe('crash-loop backoff', () => {
  it('waits nothing before any failure, `seconds` after the first, and × factor after each further one', () => {
    const b = backoffSchema.parse({ seconds: 2, factor: 2, maxLaunchDelaySeconds: 3600 });
    expect([0, 1, 2, 3, 4, 5].map((n) => launchDelayMs(b, n))).toEqual([0, 2000, 4000, 8000, 16000, 32000]);
    expect(launchDelayMs(marathon, 2)).toBe(1150);
  });

  it('caps the delay at maxLaunchDelaySeconds', () => {
    const b = backoffSchema.parse({ seconds: 10, factor: 3, maxLaunchDelaySeconds: 60 });
    expect([1, 2, 3, 4, 50].map((n) => launchDelayMs(b, n))).toEqual([10_000, 30_000, 60_000, 60_000, 60_000]);
    expect(launchDelayMs(marathon, 1000)).toBe(300_000);
  });

  it('grows with consecutive failures and sets the next launch time', () => {
    const b = backoffSchema.parse({ seconds: 1, factor: 2 });
    let state = recordFailure(NO_BACKOFF, b, 10_000);
    expect(state).toEqual({ consecutiveFailures: 1, launchNotBeforeMs: 11_000 });
    state = recordFailure(state, b, 20_000);
    expect(state).toEqual({ consecutiveFailures: 2, launchNotBeforeMs: 22_000 });
  });

  it('forgets the failures only after an instance stays healthy for a while', () => {
    const b = backoffSchema.parse({ seconds: 1, factor: 2 });
    let state = recordFailure(recordFailure(NO_BACKOFF, b, 0), b, 1000);
    state = recordHealthy(state, 5_000);
    expect(state).toMatchObject({ consecutiveFailures: 2, healthySinceMs: 5_000 });
    expect(recordHealthy(state, 5_000 + RESET_AFTER_HEALTHY_MS - 1)).toBe(state);
    // A failure in between restarts the healthy clock.
    const failedAgain = recordFailure(state, b, 30_000);
    expect(failedAgain).toEqual({ consecutiveFailures: 3, launchNotBeforeMs: 34_000 });
    expect(recordHealthy(recordHealthy(failedAgain, 40_000), 40_000 + RESET_AFTER_HEALTHY_MS)).toEqual(NO_BACKOFF);
    expect(recordHealthy(NO_BACKOFF, 1)).toBe(NO_BACKOFF);
  });

  it('never shrinks as failures grow, and never passes the cap', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 60, noNaN: true }), fc.double({ min: 1, max: 5, noNaN: true }), fc.double({ min: 0, max: 3600, noNaN: true }), fc.nat(200), (seconds, factor, max, n) => {
        const b = { seconds, factor, maxLaunchDelaySeconds: max };
        expect(launchDelayMs(b, n + 1)).toBeGreaterThanOrEqual(launchDelayMs(b, n));
        expect(launchDelayMs(b, n)).toBeLessThanOrEqual(Math.round(max * 1000));
      }),
    );
  });
});
