/**
 * Crash-loop backoff (Marathon's launch rate limiter): after an instance fails, the app's next
 * launch waits `seconds`, and each further consecutive failure multiplies the wait by `factor`, up
 * to `maxLaunchDelaySeconds`. Once an instance has stayed healthy for RESET_AFTER_HEALTHY_MS the
 * count starts again — resetting at the first healthy moment would let an app that crashes a few
 * seconds after passing its check loop without any backoff.
 */
import type { Backoff } from './app-definition.ts';

export const RESET_AFTER_HEALTHY_MS = 60_000;

export interface LaunchBackoff {
  consecutiveFailures: number;
  /** No launch before this time. */
  launchNotBeforeMs: number;
  /** Since when an instance has been healthy without a failure in between. */
  healthySinceMs?: number;
}

export const NO_BACKOFF: LaunchBackoff = { consecutiveFailures: 0, launchNotBeforeMs: 0 };

/** The wait before the next launch after `failures` consecutive failures: seconds × factor^(failures − 1), capped. */
export function launchDelayMs(backoff: Backoff, failures: number): number {
  if (failures <= 0) return 0;
  const seconds = backoff.seconds * backoff.factor ** (failures - 1);
  return Math.round(Math.min(seconds, backoff.maxLaunchDelaySeconds) * 1000);
}

/** An instance failed (exited, was killed by its health check, lost) at `nowMs`. */
export function recordFailure(state: LaunchBackoff, backoff: Backoff, nowMs: number): LaunchBackoff {
  const consecutiveFailures = state.consecutiveFailures + 1;
  return { consecutiveFailures, launchNotBeforeMs: nowMs + launchDelayMs(backoff, consecutiveFailures) };
}

/** An instance is healthy at `nowMs`; after RESET_AFTER_HEALTHY_MS of that, the failures are forgotten. */
export function recordHealthy(state: LaunchBackoff, nowMs: number, resetAfterMs = RESET_AFTER_HEALTHY_MS): LaunchBackoff {
  if (state.consecutiveFailures === 0) return state;
  const healthySinceMs = state.healthySinceMs ?? nowMs;
  if (nowMs - healthySinceMs >= resetAfterMs) return NO_BACKOFF;
  return state.healthySinceMs === undefined ? { ...state, healthySinceMs } : state;
}
