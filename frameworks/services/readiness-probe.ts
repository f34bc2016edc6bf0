/**
 * Readiness checks (Marathon's readinessChecks), run by the scheduler itself against an instance's
 * host:port: unlike health checks they never kill anything, they only tell a deployment that a new
 * instance may take traffic, so running them from the agent buys nothing. A probe runs until the
 * first success, then stops: readiness gates a deployment's progress, not an instance's life.
 */
import type { AppDefinition } from './app-definition.ts';
import { declaredPorts } from './app-definition.ts';

export type ReadinessCheck = NonNullable<AppDefinition['readinessCheck']>;

export class ReadinessProbe {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly url: string,
    private readonly check: ReadinessCheck,
    private readonly onReady: () => void,
  ) {}

  /** The URL to probe for an instance on `host` with these host ports, or undefined if the port is not there. */
  static urlFor(app: Pick<AppDefinition, 'ports' | 'container'>, check: ReadinessCheck, host: string, hostPorts: readonly number[]): string | undefined {
    const declared = declaredPorts(app);
    const index = check.portName !== undefined ? declared.findIndex((p) => p.name === check.portName) : 0;
    const port = hostPorts[index];
    return port === undefined ? undefined : `http://${host}:${port}${check.path}`;
  }

  start(): void {
    void this.probe();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async probe(): Promise<void> {
    if (this.stopped) return;
    let ready = false;
    try {
      const response = await fetch(this.url, { signal: AbortSignal.timeout(this.check.timeoutSeconds * 1000) });
      await response.body?.cancel();
      ready = this.check.httpStatusCodesForReady.includes(response.status);
    } catch {
      ready = false; // not listening yet, or too slow: try again next interval
    }
    if (this.stopped) return;
    if (ready) {
      this.stopped = true;
      this.onReady();
      return;
    }
    this.timer = setTimeout(() => void this.probe(), this.check.intervalSeconds * 1000);
    this.timer.unref();
  }
}
