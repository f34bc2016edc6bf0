/**
 * The health check state machine (Mesos' HealthChecker), free of sockets and real timers: it takes
 * a clock and a probe, and tells its owner when the task's health changes and when the task must
 * be killed.
 *
 * ```ts
 * const checker = new HealthChecker({
 *   policy: { delayMs: 15_000, intervalMs: 10_000, timeoutMs: 20_000, gracePeriodMs: 10_000, consecutiveFailures: 3 },
 *   probe: httpProbe('127.0.0.1', 31000, '/'),
 *   onHealthChanged: (healthy, message) => sendRunningUpdate({ healthy, message }),
 *   onFailed: (message) => killTask(message),
 * });
 * checker.start();   // when the task is RUNNING
 * checker.stop();    // when it ends or is killed
 * ```
 *
 * Semantics copied from Mesos:
 * - the first check runs `delayMs` after start; the next one `intervalMs` after the previous one
 *   finished (checks never overlap), each bounded by `timeoutMs`;
 * - failures within `gracePeriodMs` of the task's start are ignored, until the first success: a
 *   task that has been healthy once is out of its grace period for good;
 * - `consecutiveFailures` counted failures in a row end the checks and ask for a kill;
 * - the owner hears about health only when it changes (the first result, then every flip).
 */

export interface HealthCheckPolicy {
  delayMs: number;
  intervalMs: number;
  timeoutMs: number;
  gracePeriodMs: number;
  consecutiveFailures: number;
}

export type ProbeResult = { healthy: true } | { healthy: false; message: string };

export interface Probe {
  /** Names the check in messages: "HTTP GET http://127.0.0.1:31000/", "TCP connect to 127.0.0.1:31000". */
  readonly description: string;
  /** One check. Should give up by itself after `timeoutMs`; the checker also stops waiting then. A rejection is a failure. */
  run(timeoutMs: number): Promise<ProbeResult>;
}

/** The timers the checker needs; tests pass a fake one. */
export interface HealthClock {
  now(): number;
  setTimeout(fire: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Real time. Timers are unref'd: an agent's checks never keep its process alive. */
export const systemClock: HealthClock = {
  now: () => Date.now(),
  setTimeout: (fire, ms) => setTimeout(fire, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface HealthCheckerOptions {
  policy: HealthCheckPolicy;
  probe: Probe;
  /** The first result, then every flip. `message` says why a check failed. */
  onHealthChanged: (healthy: boolean, message: string | undefined) => void;
  /** `consecutiveFailures` counted failures in a row: the checker has stopped; the owner kills the task. */
  onFailed: (message: string, failures: number) => void;
  /** @default systemClock */
  clock?: HealthClock;
  /** When the task started, for the grace period. @default clock.now() at start() */
  startedAtMs?: number;
}

export class HealthChecker {
  private readonly clock: HealthClock;
  private timer: unknown;
  private stopped = false;
  private started = false;
  private startedAtMs = 0;
  private inGrace = true;
  private failures = 0;
  private current: boolean | undefined;
  private checks = 0;

  constructor(private readonly options: HealthCheckerOptions) {
    this.clock = options.clock ?? systemClock;
  }

  /** The last reported health; undefined until the first counted result. */
  get healthy(): boolean | undefined {
    return this.current;
  }

  get consecutiveFailures(): number {
    return this.failures;
  }

  /** Checks run so far (finished or not). */
  get checksRun(): number {
    return this.checks;
  }

  get running(): boolean {
    return this.started && !this.stopped;
  }

  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.startedAtMs = this.options.startedAtMs ?? this.clock.now();
    this.schedule(this.options.policy.delayMs);
  }

  /** No more checks; a check in flight is ignored when it finishes. Idempotent. */
  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(ms: number): void {
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.check();
    }, Math.max(0, ms));
  }

  private check(): void {
    if (this.stopped) return;
    this.checks++;
    const { timeoutMs } = this.options.policy;
    const { probe } = this.options;
    let settled = false;
    const finish = (result: ProbeResult) => {
      if (settled) return;
      settled = true;
      this.clock.clearTimeout(deadline);
      if (!this.stopped) this.onResult(result);
    };
    const deadline = this.clock.setTimeout(() => finish({ healthy: false, message: `${probe.description} timed out after ${formatSeconds(timeoutMs)}` }), timeoutMs);
    let pending: Promise<ProbeResult>;
    try {
      pending = probe.run(timeoutMs);
    } catch (error) {
      pending = Promise.reject(error);
    }
    pending.then(finish, (error: unknown) => finish({ healthy: false, message: `${probe.description}: ${error instanceof Error ? error.message : String(error)}` }));
  }

  private onResult(result: ProbeResult): void {
    const { policy } = this.options;
    if (result.healthy) {
      this.inGrace = false;
      this.failures = 0;
      this.report(true, undefined);
    } else if (this.inGrace && this.clock.now() - this.startedAtMs < policy.gracePeriodMs) {
      // Still starting up: Mesos ignores the failure altogether (no count, no report).
    } else {
      this.failures++;
      this.report(false, result.message);
      if (this.stopped) return; // the owner stopped the checks while hearing about it
      if (this.failures >= policy.consecutiveFailures) {
        this.stop();
        this.options.onFailed(result.message, this.failures);
        return;
      }
    }
    if (!this.stopped) this.schedule(policy.intervalMs);
  }

  private report(healthy: boolean, message: string | undefined): void {
    if (this.current === healthy) return;
    this.current = healthy;
    this.options.onHealthChanged(healthy, message);
  }
}

export function formatSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}
