/**
 * Health checks end to end: a real master, a real agent running real processes, a scheduler on the
 * SDK driver. The tasks are small servers on their own port ($PORT0) that a test makes sick or
 * deaf by dropping a marker file into their sandbox.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.ts';
import { SimulatedContainerizer, type SimulatedContainerizerOptions } from '../../agent/containerizers/simulated.ts';
import { sandboxPath } from '../../agent/sandbox.ts';
import type { MasterServer } from '../../master/http/server.ts';
import { Reason, type HealthCheck, type TaskInfo, type TaskStatus } from '../../master/protocol/messages.ts';
import { removeDir, startAgent, startMaster, tempDir, TestScheduler, waitFor, freePort } from './helpers.ts';

/**
 * `node server.mjs http|tcp [listenAfterMs]`: serves on $PORT0 (HTTP: 200, or 503 once `sick`
 * exists in the working directory) and closes its listener once `deaf` exists, staying alive.
 */
const SERVER = `
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
const [mode, listenAfterMs = '0'] = process.argv.slice(2);
const server = mode === 'tcp'
  ? net.createServer((socket) => socket.end())
  : http.createServer((req, res) => { res.writeHead(fs.existsSync('sick') ? 503 : 200); res.end(req.url); });
setTimeout(() => server.listen(Number(process.env.PORT0), '127.0.0.1'), Number(listenAfterMs));
const watch = setInterval(() => { if (fs.existsSync('deaf')) { clearInterval(watch); server.close(); } }, 20);
setInterval(() => {}, 1 << 30);
`;

const scratch = tempDir('agora-health-');
const serverScript = join(scratch, 'server.mjs');
writeFileSync(serverScript, SERVER);


interface Cluster {
  master: MasterServer;
  agent: Agent;
  workDir: string;
  scheduler: TestScheduler;
  port: number;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

async function cluster(simulated?: SimulatedContainerizerOptions): Promise<Cluster> {
  const port = await freePort();
  const master = await startMaster();
  cleanups.push(() => master.close());
  const workDir = tempDir('agora-agent-');
  cleanups.push(async () => removeDir(workDir));
  const agent = await startAgent(master, {
    workDir,
    resources: { cpus: 4, mem: 4096, disk: 1000, ports: [[port, port]] },
    ...(simulated ? { containerizer: new SimulatedContainerizer(simulated) } : {}),
  });
  cleanups.push(() => agent.stop({ killTasks: true }));
  const scheduler = new TestScheduler(master, { name: 'health' });
  cleanups.push(() => scheduler.driver.stop({ teardown: true }));
  await scheduler.start();
  return { master, agent, workDir, scheduler, port };
}

/** Fast checks; a grace period long enough for node to start listening. */
function check(partial: Partial<HealthCheck> & Pick<HealthCheck, 'type'>): HealthCheck {
  return { delaySeconds: 0, intervalSeconds: 0.1, timeoutSeconds: 2, gracePeriodSeconds: 20, consecutiveFailures: 3, ...partial };
}

function serverTask(taskId: string, port: number, args: string, healthCheck: HealthCheck): TaskInfo {
  return {
    taskId,
    resources: { cpus: 0.1, mem: 64, ports: [[port, port]] },
    command: { value: `exec "${process.execPath}" "${serverScript}" ${args}` },
    healthCheck,
    killPolicy: { gracePeriodMs: 500 },
  };
}

/** Health updates of one task, a redelivered one (same uuid) counted once. */
function healthUpdates(s: TestScheduler, taskId: string): TaskStatus[] {
  const seen = new Set<string | undefined>();
  return s.updates.filter((u) => {
    if (u.taskId !== taskId || u.state !== 'RUNNING' || u.healthy === undefined || seen.has(u.uuid)) return false;
    seen.add(u.uuid);
    return true;
  });
}

function waitForHealth(s: TestScheduler, taskId: string, healthy: boolean): Promise<TaskStatus> {
  return waitFor(
    () => healthUpdates(s, taskId).find((u) => u.healthy === healthy),
    `task ${taskId} to be reported healthy=${healthy} (seen: ${s.statesOf(taskId)}; offers: ${s.offers.length}; errors: ${JSON.stringify(s.errors)})`,
    15_000,
  );
}

function marker(c: Cluster, taskId: string, name: string): string {
  return join(sandboxPath(c.workDir, c.scheduler.driver.frameworkId!, taskId), name);
}

describe('health checks', () => {
  it('reports an HTTP-checked task healthy, then unhealthy when it answers 503, and kills it with TASK_HEALTH_CHECK_FAILED', async () => {
    const c = await cluster();
    c.scheduler.launchOnNextOffer(serverTask('web', c.port, 'http', check({ type: 'HTTP', http: { portIndex: 0, path: '/health' } })));
    const healthy = await waitForHealth(c.scheduler, 'web', true);
    expect(healthy).toMatchObject({ state: 'RUNNING', healthy: true });

    writeFileSync(marker(c, 'web', 'sick'), '');
    const unhealthy = await waitForHealth(c.scheduler, 'web', false);
    expect(unhealthy.message).toBe(`HTTP GET http://127.0.0.1:${c.port}/health returned 503`);

    const killed = await c.scheduler.waitForUpdate('web', 'KILLED', 15_000);
    expect(killed).toMatchObject({ reason: Reason.TASK_HEALTH_CHECK_FAILED, healthy: false });
    expect(killed.message).toBe(`killed after 3 failed health checks in a row; the last: HTTP GET http://127.0.0.1:${c.port}/health returned 503`);
    // Reported on change only: one healthy, one unhealthy, then the end.
    expect(healthUpdates(c.scheduler, 'web').map((u) => u.healthy)).toEqual([true, false]);
  });

  it('kills an HTTP-checked task whose server stops listening while its process lives on (connection refused)', async () => {
    const c = await cluster();
    c.scheduler.launchOnNextOffer(serverTask('deaf-web', c.port, 'http', check({ type: 'HTTP', http: {} })));
    await waitForHealth(c.scheduler, 'deaf-web', true);
    writeFileSync(marker(c, 'deaf-web', 'deaf'), '');
    const unhealthy = await waitForHealth(c.scheduler, 'deaf-web', false);
    // A connection caught in the backlog as the listener closes is reset; every later one is refused.
    expect(unhealthy.message).toMatch(new RegExp(`^HTTP GET http://127\\.0\\.0\\.1:${c.port}/: connection (refused|reset)$`));
    const killed = await c.scheduler.waitForUpdate('deaf-web', 'KILLED', 15_000);
    expect(killed.reason).toBe(Reason.TASK_HEALTH_CHECK_FAILED);
    expect(killed.message).toBe(`killed after 3 failed health checks in a row; the last: HTTP GET http://127.0.0.1:${c.port}/: connection refused`);
  });

  it('reports a TCP-checked task healthy while it listens, then unhealthy and kills it once it stops', async () => {
    const c = await cluster();
    c.scheduler.launchOnNextOffer(serverTask('tcp', c.port, 'tcp', check({ type: 'TCP', tcp: { port: c.port }, consecutiveFailures: 2 })));
    await waitForHealth(c.scheduler, 'tcp', true);
    writeFileSync(marker(c, 'tcp', 'deaf'), '');
    const unhealthy = await waitForHealth(c.scheduler, 'tcp', false);
    expect(unhealthy.message).toMatch(new RegExp(`^TCP connect to 127\\.0\\.0\\.1:${c.port}: connection (refused|reset)$`));
    const killed = await c.scheduler.waitForUpdate('tcp', 'KILLED', 15_000);
    expect(killed).toMatchObject({ reason: Reason.TASK_HEALTH_CHECK_FAILED, healthy: false });
    expect(killed.message).toContain('killed after 2 failed health checks in a row');
  });

  it("runs a COMMAND check in the task's sandbox with its environment: healthy, then unhealthy when it exits non-zero", async () => {
    const c = await cluster();
    const task: TaskInfo = {
      taskId: 'cmd',
      resources: { cpus: 0.1, mem: 32, ports: [[c.port, c.port]] },
      command: { value: 'touch ok && exec sleep 60', environment: { GREETING: 'hi' } },
      healthCheck: check({ type: 'COMMAND', command: { value: 'test -e ok && test "$PWD" = "$AGORA_SANDBOX" && test "$GREETING" = hi && test -n "$PORT0"' } }),
      killPolicy: { gracePeriodMs: 500 },
    };
    c.scheduler.launchOnNextOffer(task);
    await waitForHealth(c.scheduler, 'cmd', true);
    rmSync(marker(c, 'cmd', 'ok'));
    const unhealthy = await waitForHealth(c.scheduler, 'cmd', false);
    expect(unhealthy.message).toMatch(/^health check command `test -e ok .*` exited with code 1$/);
    const killed = await c.scheduler.waitForUpdate('cmd', 'KILLED', 15_000);
    expect(killed.reason).toBe(Reason.TASK_HEALTH_CHECK_FAILED);
  });

  it('does not count failures inside the grace period: a task that starts answering late is not killed', async () => {
    const c = await cluster();
    // Listens only after 1.5 s; without the grace period one failure would kill it.
    c.scheduler.launchOnNextOffer(serverTask('slow', c.port, 'http 1500', check({ type: 'HTTP', http: {}, consecutiveFailures: 1, gracePeriodSeconds: 20 })));
    await waitForHealth(c.scheduler, 'slow', true);
    expect(healthUpdates(c.scheduler, 'slow').map((u) => u.healthy)).toEqual([true]);
    expect(c.scheduler.updates.filter((u) => u.taskId === 'slow' && u.state !== 'RUNNING')).toEqual([]);
  });

  it('fails a task at launch whose health check names a port the task does not have', async () => {
    const c = await cluster();
    c.scheduler.launchOnNextOffer(serverTask('bad-port', c.port, 'http', check({ type: 'HTTP', http: { portIndex: 2 } })));
    const error = await c.scheduler.waitForUpdate('bad-port', 'ERROR');
    expect(error).toMatchObject({ reason: Reason.TASK_INVALID, source: 'AGENT' });
    expect(error.message).toBe(`invalid health check: the health check has \`http.portIndex\` 2 but the task has only 1 port(s): ${c.port}`);
    expect(c.scheduler.statesOf('bad-port')).toBe('ERROR');
  });

  it('stops checking a task the scheduler kills: it ends KILLED with TASK_KILLED, not a health check failure', async () => {
    const c = await cluster();
    c.scheduler.launchOnNextOffer(serverTask('bye', c.port, 'http', check({ type: 'HTTP', http: {} })));
    await waitForHealth(c.scheduler, 'bye', true);
    c.scheduler.driver.kill('bye');
    const killed = await c.scheduler.waitForUpdate('bye', 'KILLED', 15_000);
    expect(killed.reason).toBe(Reason.TASK_KILLED);
    expect(killed.healthy).toBeUndefined();
  });

  it('checks a re-adopted task again after an agent restart, from its checkpointed TaskInfo', async () => {
    const c = await cluster();
    c.scheduler.launchOnNextOffer(serverTask('phoenix', c.port, 'http', check({ type: 'HTTP', http: {} })));
    await waitForHealth(c.scheduler, 'phoenix', true);
    await c.agent.stop(); // the task keeps running
    const before = healthUpdates(c.scheduler, 'phoenix').length;
    const agent = await startAgent(c.master, { workDir: c.workDir, resources: { cpus: 4, mem: 4096, disk: 1000, ports: [[c.port, c.port]] } });
    cleanups.push(() => agent.stop({ killTasks: true }));
    // The new agent's first result is news again.
    await waitFor(() => healthUpdates(c.scheduler, 'phoenix').length > before, 'a health update from the restarted agent', 15_000);
    writeFileSync(marker(c, 'phoenix', 'sick'), '');
    const killed = await c.scheduler.waitForUpdate('phoenix', 'KILLED', 15_000);
    expect(killed).toMatchObject({ reason: Reason.TASK_HEALTH_CHECK_FAILED, healthy: false });
  });
});

describe('health checks with the simulated containerizer (a fake health)', () => {
  const forever = () => ({ state: 'RUNNING' as const, delayMs: Infinity });

  it('reports every flip, and only flips, as RUNNING updates in order', async () => {
    let exitCode = 0;
    const c = await cluster({ outcome: forever, checkCommand: () => exitCode });
    c.scheduler.launchOnNextOffer({
      taskId: 'flaky',
      resources: { cpus: 0.1 },
      command: { value: 'simulated' },
      healthCheck: check({ type: 'COMMAND', command: { value: 'check' }, consecutiveFailures: 1_000_000 }),
    });
    await waitForHealth(c.scheduler, 'flaky', true);
    exitCode = 3;
    expect((await waitForHealth(c.scheduler, 'flaky', false)).message).toBe('health check command `check` exited with code 3');
    exitCode = 0;
    await waitFor(() => healthUpdates(c.scheduler, 'flaky').length === 3, 'healthy again', 15_000);
    expect(healthUpdates(c.scheduler, 'flaky').map((u) => u.healthy)).toEqual([true, false, true]);
  });

  it('reports a COMMAND check unhealthy, naming the containerizer, when its containers cannot run commands', async () => {
    const c = await cluster({ outcome: forever });
    c.scheduler.launchOnNextOffer({
      taskId: 'mute',
      resources: { cpus: 0.1 },
      command: { value: 'simulated' },
      healthCheck: check({ type: 'COMMAND', command: { value: 'check' }, gracePeriodSeconds: 0, consecutiveFailures: 1 }),
    });
    const killed = await c.scheduler.waitForUpdate('mute', 'KILLED', 15_000);
    expect(killed).toMatchObject({ reason: Reason.TASK_HEALTH_CHECK_FAILED, healthy: false });
    expect(killed.message).toBe('killed after a failed health check: health check command `check`: the simulated containerizer cannot run COMMAND health checks');
  });
});

afterAll(() => removeDir(scratch));
