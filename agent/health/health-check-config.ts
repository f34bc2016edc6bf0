/**
 * Turns a task's `healthCheck` into what the checker runs: Mesos' defaults filled in, seconds
 * turned into milliseconds, and the port resolved against the task's `ports` resource. A config
 * that cannot work (a `portIndex` past the task's ports) is refused here, so the agent can fail the
 * task at launch with the reason rather than kill it later for a check that never had a chance.
 */
import type { HealthCheck, TaskInfo } from '../../master/protocol/messages.ts';
import { rangesOf } from '../../master/protocol/resources.ts';
import type { HealthCheckPolicy } from './health-checker.ts';

/** Mesos' HealthCheck defaults. */
export const HEALTH_CHECK_DEFAULTS = {
  delaySeconds: 15,
  intervalSeconds: 10,
  timeoutSeconds: 20,
  gracePeriodSeconds: 10,
  consecutiveFailures: 3,
} as const;

export type HealthCheckTarget =
  | { type: 'HTTP'; port: number; path: string }
  | { type: 'TCP'; port: number }
  | { type: 'COMMAND'; command: string };

export interface ResolvedHealthCheck {
  policy: HealthCheckPolicy;
  target: HealthCheckTarget;
}

export type HealthCheckResolution = { ok: true; check: ResolvedHealthCheck } | { ok: false; error: string };

/** The task's ports in the order PORT0, PORT1, ... (its `ports` ranges flattened). */
export function taskPorts(task: TaskInfo): number[] {
  const ports: number[] = [];
  for (const [begin, end] of rangesOf(task.resources, 'ports')) {
    for (let port = begin; port <= end; port++) ports.push(port);
  }
  return ports;
}

export function resolveHealthCheck(task: TaskInfo, check: HealthCheck): HealthCheckResolution {
  const policy: HealthCheckPolicy = {
    delayMs: (check.delaySeconds ?? HEALTH_CHECK_DEFAULTS.delaySeconds) * 1000,
    intervalMs: (check.intervalSeconds ?? HEALTH_CHECK_DEFAULTS.intervalSeconds) * 1000,
    timeoutMs: (check.timeoutSeconds ?? HEALTH_CHECK_DEFAULTS.timeoutSeconds) * 1000,
    gracePeriodMs: (check.gracePeriodSeconds ?? HEALTH_CHECK_DEFAULTS.gracePeriodSeconds) * 1000,
    consecutiveFailures: check.consecutiveFailures ?? HEALTH_CHECK_DEFAULTS.consecutiveFailures,
  };
  switch (check.type) {
    case 'HTTP': {
      if (!check.http) return { ok: false, error: 'a HTTP health check needs `http`' };
      const port = resolvePort(task, 'http', check.http);
      if (typeof port === 'string') return { ok: false, error: port };
      return { ok: true, check: { policy, target: { type: 'HTTP', port, path: check.http.path ?? '/' } } };
    }
    case 'TCP': {
      if (!check.tcp) return { ok: false, error: 'a TCP health check needs `tcp`' };
      const port = resolvePort(task, 'tcp', check.tcp);
      if (typeof port === 'string') return { ok: false, error: port };
      return { ok: true, check: { policy, target: { type: 'TCP', port } } };
    }
    case 'COMMAND': {
      if (!check.command) return { ok: false, error: 'a COMMAND health check needs `command`' };
      return { ok: true, check: { policy, target: { type: 'COMMAND', command: check.command.value } } };
    }
  }
}

/**
 * `port` as given (any port on the agent's loopback), else the `portIndex`-th port of the task
 * (@default portIndex 0, as Marathon). For a Docker bridge task the task's ports are the mapped
 * host ports, so the same rule reaches the container. Returns an error message when it cannot.
 */
function resolvePort(task: TaskInfo, field: 'http' | 'tcp', spec: { port?: number | undefined; portIndex?: number | undefined }): number | string {
  if (spec.port !== undefined) return spec.port;
  const ports = taskPorts(task);
  const index = spec.portIndex ?? 0;
  const port = ports[index];
  if (port !== undefined) return port;
  const named = spec.portIndex === undefined ? `names no \`${field}.port\` and` : `has \`${field}.portIndex\` ${index} but`;
  const has = ports.length === 0 ? 'the task has no ports resource' : `the task has only ${ports.length} port(s): ${ports.join(', ')}`;
  return `the health check ${named} ${has}`;
}
