/**
 * The real probes: an HTTP GET, a TCP connect and a command in the task's container. HTTP and TCP
 * probes only ever dial the agent's loopback address, where the task's ports (or a Docker bridge
 * task's mapped host ports) are reachable; they never reach for a container's own address.
 */
import http from 'node:http';
import net from 'node:net';
import type { Container } from '../containerizers/containerizer.ts';
import { formatSeconds, type Probe, type ProbeResult } from './health-checker.ts';
import type { HealthCheckTarget } from './health-check-config.ts';

export const LOOPBACK = '127.0.0.1';

/** Healthy on a status from 200 to 399, as Mesos (which follows redirects no further). */
export function httpProbe(host: string, port: number, path: string): Probe {
  const url = `http://${host}:${port}${path}`;
  const description = `HTTP GET ${url}`;
  return {
    description,
    run: (timeoutMs) =>
      settle(description, timeoutMs, (finish) => {
        // agent: false: a fresh connection each time, as a new curl would; a kept-alive socket
        // would hide a listener that has gone away.
        const request = http.get({ host, port, path, agent: false, headers: { 'user-agent': 'agora-health-check' } }, (response) => {
          const status = response.statusCode ?? 0;
          response.resume();
          finish(status >= 200 && status < 400 ? { healthy: true } : { healthy: false, message: `${description} returned ${status}` });
        });
        request.on('error', (error) => finish({ healthy: false, message: `${description}: ${describeSocketError(error)}` }));
        return () => request.destroy();
      }),
  };
}

export function tcpProbe(host: string, port: number): Probe {
  const description = `TCP connect to ${host}:${port}`;
  return {
    description,
    run: (timeoutMs) =>
      settle(description, timeoutMs, (finish) => {
        const socket = net.connect({ host, port });
        socket.once('connect', () => finish({ healthy: true }));
        socket.once('error', (error) => finish({ healthy: false, message: `${description}: ${describeSocketError(error)}` }));
        return () => socket.destroy();
      }),
  };
}

/**
 * One probe attempt: `start` begins it and returns how to clean up; the first result (or the
 * timeout) wins, and the connection is always torn down.
 */
function settle(description: string, timeoutMs: number, start: (finish: (result: ProbeResult) => void) => () => void): Promise<ProbeResult> {
  return new Promise<ProbeResult>((resolve) => {
    let done = false;
    let cleanup: (() => void) | undefined;
    const finish = (result: ProbeResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      cleanup?.();
      resolve(result);
    };
    const timer = setTimeout(() => finish({ healthy: false, message: `${description} timed out after ${formatSeconds(timeoutMs)}` }), timeoutMs);
    timer.unref();
    cleanup = start(finish);
    if (done) cleanup();
  });
}

/**
 * Runs the command where the task runs (`Container.runCheckCommand`); exit code 0 is healthy.
 * `container` is read at each check: the agent learns of its container after the launch call returns.
 */
export function commandProbe(command: string, container: () => Container | undefined, containerizerName: string): Probe {
  const description = `health check command \`${command}\``;
  return {
    description,
    run: async (timeoutMs) => {
      const target = container();
      if (!target) return { healthy: false, message: `${description}: the task has no container` };
      if (!target.runCheckCommand) return { healthy: false, message: `${description}: the ${containerizerName} containerizer cannot run COMMAND health checks` };
      const code = await target.runCheckCommand(command, timeoutMs);
      return code === 0 ? { healthy: true } : { healthy: false, message: `${description} exited with code ${code}` };
    },
  };
}

export function probeFor(target: HealthCheckTarget, container: () => Container | undefined, containerizerName: string, host = LOOPBACK): Probe {
  switch (target.type) {
    case 'HTTP':
      return httpProbe(host, target.port, target.path);
    case 'TCP':
      return tcpProbe(host, target.port);
    case 'COMMAND':
      return commandProbe(target.command, container, containerizerName);
  }
}

const SOCKET_ERRORS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EPIPE: 'connection closed',
};

function describeSocketError(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code && SOCKET_ERRORS[code]) return SOCKET_ERRORS[code];
  if (error.message === 'socket hang up') return 'the connection closed before a response';
  return error.message;
}
