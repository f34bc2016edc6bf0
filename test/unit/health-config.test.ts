import { describe, expect, it } from 'vitest';
import { resolveHealthCheck, taskPorts } from '../../agent/health/health-check-config.ts';
import type { HealthCheck, TaskInfo } from '../../master/protocol/messages.ts';

function task(ports?: Array<[number, number]>): TaskInfo {
  return { taskId: 't1', resources: { cpus: 0.1, ...(ports ? { ports } : {}) }, command: { value: 'true' } };
}

describe('resolveHealthCheck', () => {
  it("fills in Mesos' defaults, in milliseconds", () => {
    const resolved = resolveHealthCheck(task(), { type: 'COMMAND', command: { value: 'true' } });
    expect(resolved).toEqual({
      ok: true,
      check: {
        policy: { delayMs: 15_000, intervalMs: 10_000, timeoutMs: 20_000, gracePeriodMs: 10_000, consecutiveFailures: 3 },
        target: { type: 'COMMAND', command: 'true' },
      },
    });
  });

  it('takes the portIndex-th port of the task, its port ranges flattened in order', () => {
    const t = task([[31000, 31001], [31005, 31005]]);
    expect(taskPorts(t)).toEqual([31000, 31001, 31005]);
    const check: HealthCheck = { type: 'HTTP', http: { portIndex: 2, path: '/health' }, intervalSeconds: 0.1 };
    expect(resolveHealthCheck(t, check)).toMatchObject({ ok: true, check: { policy: { intervalMs: 100 }, target: { type: 'HTTP', port: 31005, path: '/health' } } });
  });

  it('uses the first port when neither port nor portIndex is given, and an explicit port as is', () => {
    expect(resolveHealthCheck(task([[31000, 31000]]), { type: 'TCP', tcp: {} })).toMatchObject({ ok: true, check: { target: { type: 'TCP', port: 31000 } } });
    expect(resolveHealthCheck(task(), { type: 'HTTP', http: { port: 8080 } })).toMatchObject({ ok: true, check: { target: { type: 'HTTP', port: 8080, path: '/' } } });
  });

  it('refuses a portIndex beyond the task ports, saying which ports it has', () => {
    expect(resolveHealthCheck(task([[31000, 31000]]), { type: 'HTTP', http: { portIndex: 1 } })).toEqual({
      ok: false,
      error: 'the health check has `http.portIndex` 1 but the task has only 1 port(s): 31000',
    });
    expect(resolveHealthCheck(task(), { type: 'TCP', tcp: {} })).toEqual({ ok: false, error: 'the health check names no `tcp.port` and the task has no ports resource' });
  });
});
