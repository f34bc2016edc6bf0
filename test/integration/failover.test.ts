/**
 * Failure paths: a scheduler that goes away and comes back (or does not), and an agent killed with
 * SIGKILL and restarted. Real master, real agent processes, real task processes.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import type { MasterServer } from '../../master/http/server.ts';
import { Endpoint, PROTOCOL_VERSION } from '../../master/protocol/index.ts';
import { RawClient, removeDir, shellTask, startAgent, startAgentProcess, startMaster, tempDir, TestScheduler, waitFor } from './helpers.ts';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function readPid(file: string): Promise<number> {
  return waitFor(() => existsSync(file) && Number(readFileSync(file, 'utf8').trim()) > 0 && Number(readFileSync(file, 'utf8').trim()), `pid file ${file}`);
}

describe('scheduler failover', () => {
  it('keeps tasks while the scheduler is away and re-sends the updates it missed', async () => {
    const master = await startMaster();
    const agent = await startAgent(master);
    cleanups.push(() => master.close(), () => agent.stop({ killTasks: true }));
    const first = new TestScheduler(master, { name: 'failover', failoverTimeoutMs: 10_000 });
    const frameworkId = await first.start();
    const marker = join(tempDir(), 'go');
    // Runs until the test creates the marker file, then finishes.
    first.launchOnNextOffer(shellTask('survivor', `while [ ! -e ${marker} ]; do sleep 0.05; done; exit 0`));
    await first.waitForUpdate('survivor', 'RUNNING');
    await first.driver.stop(); // no teardown: a crash, as far as the master can tell

    await waitFor(() => master.master.state().frameworks.find((f) => f.id === frameworkId)?.status === 'DISCONNECTED', 'the framework to be disconnected');
    // While it is away, the task finishes.
    writeFileSync(marker, '');
    await waitFor(() => master.master.state().tasks.find((t) => t.taskId === 'survivor')?.state === 'FINISHED', 'the task to finish while the scheduler is away');

    const second = new TestScheduler(master, { name: 'failover', id: frameworkId, failoverTimeoutMs: 10_000 });
    cleanups.push(() => second.driver.stop({ teardown: true }));
    expect(await second.start()).toBe(frameworkId);
    const missed = await second.waitForUpdate('survivor', 'FINISHED');
    expect(missed.uuid).toBeTruthy(); // the agent's own update, not a reconciliation answer
    await waitFor(() => master.master.state().completedTasks.some((t) => t.taskId === 'survivor'), 'the acknowledged task to complete');
    expect(master.master.state().frameworks.find((f) => f.id === frameworkId)?.status).toBe('ACTIVE');
  });

  it('kills the tasks and removes the framework when the failover timeout passes', async () => {
    const master = await startMaster();
    const agent = await startAgent(master);
    cleanups.push(() => master.close(), () => agent.stop({ killTasks: true }));
    const s = new TestScheduler(master, { name: 'doomed', failoverTimeoutMs: 300 });
    const frameworkId = await s.start();
    const pidFile = join(tempDir(), 'pid');
    s.launchOnNextOffer(shellTask('orphan', `echo $$ > ${pidFile}; exec sleep 30`));
    await s.waitForUpdate('orphan', 'RUNNING');
    const pid = await readPid(pidFile);
    await s.driver.stop();

    await waitFor(() => master.master.state().completedFrameworks.some((f) => f.id === frameworkId), 'the framework to be removed');
    await waitFor(() => !alive(pid), 'the task process to be killed');
    expect(master.master.state().completedTasks.find((t) => t.taskId === 'orphan')?.state).toBe('KILLED');
    await waitFor(() => master.master.state().agents[0]!.taskCount === 0, 'the agent to free the task');

    // The framework cannot come back.
    const late = new TestScheduler(master, { name: 'doomed', id: frameworkId });
    await expect(late.start()).rejects.toThrow(/removed/);
    await late.driver.stop();
  });

  it('tears down at once on TEARDOWN', async () => {
    const master = await startMaster();
    const agent = await startAgent(master);
    cleanups.push(() => master.close(), () => agent.stop({ killTasks: true }));
    const s = new TestScheduler(master, { name: 'teardown', failoverTimeoutMs: 60_000 });
    const frameworkId = await s.start();
    s.launchOnNextOffer(shellTask('t', 'sleep 30'));
    await s.waitForUpdate('t', 'RUNNING');
    await s.driver.stop({ teardown: true });
    await waitFor(() => master.master.state().completedFrameworks.some((f) => f.id === frameworkId), 'the framework to be removed');
    await waitFor(() => master.master.state().agents[0]!.taskCount === 0, 'the task to be killed');
  });
});

describe('agent loss', () => {
  async function agentProcess(master: MasterServer, workDir: string): Promise<ChildProcess> {
    const child = startAgentProcess(master.wsUrl, workDir);
    cleanups.push(() => child.kill('SIGKILL'));
    await waitFor(() => master.master.state().agents.some((a) => a.status === 'ACTIVE'), 'the agent process to register', 20_000);
    return child;
  }

  it('marks a SIGKILLed agent UNREACHABLE, then RUNNING again when it restarts, without restarting the task', async () => {
    const master = await startMaster({ agentReregisterTimeoutMs: 500 });
    cleanups.push(() => master.close());
    const workDir = tempDir('agora-agent-');
    cleanups.push(() => removeDir(workDir));
    const first = await agentProcess(master, workDir);
    const s = new TestScheduler(master, { name: 'partition-aware', capabilities: ['PARTITION_AWARE'], failoverTimeoutMs: 60_000 });
    cleanups.push(() => s.driver.stop({ teardown: true }));
    await s.start();
    const pidFile = join(tempDir(), 'pid');
    s.launchOnNextOffer(shellTask('long', `echo $$ > ${pidFile}; exec sleep 60`));
    await s.waitForUpdate('long', 'RUNNING');
    const pid = await readPid(pidFile);

    first.kill('SIGKILL');
    const unreachable = await s.waitForUpdate('long', 'UNREACHABLE', 15_000);
    expect(unreachable.reason).toBe('AGENT_UNREACHABLE');
    expect(unreachable.source).toBe('MASTER');
    await waitFor(() => s.failures.length > 0, 'a FAILURE event');
    expect(master.master.state().agents[0]!.status).toBe('UNREACHABLE');
    expect(alive(pid)).toBe(true);

    s.updates.length = 0;
    await agentProcess(master, workDir);
    const back = await s.waitForUpdate('long', 'RUNNING', 20_000);
    expect(back.reason).toBe('AGENT_REREGISTERED');
    expect(master.master.state().agents).toHaveLength(1); // the same agent, not a new one
    expect(master.master.state().agents[0]!.status).toBe('ACTIVE');
    expect(alive(pid)).toBe(true);
    expect(Number(readFileSync(pidFile, 'utf8'))).toBe(pid); // not restarted

    // Still under control: a kill reaches the re-adopted process.
    s.driver.kill('long');
    await s.waitForUpdate('long', 'KILLED', 10_000);
    await waitFor(() => !alive(pid), 'the re-adopted process to die');
  });

  it('marks an agent that stops answering pings UNREACHABLE though its socket stays open', async () => {
    const master = await startMaster({ pingIntervalMs: 100, maxMissedPings: 3, agentReregisterTimeoutMs: 60_000 });
    cleanups.push(() => master.close());
    const s = new TestScheduler(master, { name: 'watcher', failoverTimeoutMs: 60_000 });
    cleanups.push(() => s.driver.stop({ teardown: true }));
    await s.start();
    const silent = await RawClient.connect(`${master.wsUrl}${Endpoint.agent}`, { autoPong: false });
    cleanups.push(() => silent.close());
    silent.send({ type: 'REGISTER', protocolVersion: PROTOCOL_VERSION, hostname: 'silent', resources: { cpus: 1, mem: 512 }, attributes: {}, tasks: [] });
    const { agentId } = await silent.next('REGISTERED');
    // Missed pings use up the grace at once: no 60 s re-registration wait.
    await waitFor(() => master.master.state().agents.find((a) => a.id === agentId)?.status === 'UNREACHABLE', 'the silent agent to become UNREACHABLE', 5000);
    await waitFor(() => s.failures.includes(agentId as string), 'a FAILURE event naming it');
  });

  it('reports LOST to a framework that is not partition-aware, and kills the task when the agent returns', async () => {
    const master = await startMaster({ agentReregisterTimeoutMs: 300 });
    cleanups.push(() => master.close());
    const workDir = tempDir('agora-agent-');
    cleanups.push(() => removeDir(workDir));
    const first = await agentProcess(master, workDir);
    const s = new TestScheduler(master, { name: 'classic', failoverTimeoutMs: 60_000 });
    cleanups.push(() => s.driver.stop({ teardown: true }));
    await s.start();
    const pidFile = join(tempDir(), 'pid');
    s.launchOnNextOffer(shellTask('classic', `echo $$ > ${pidFile}; exec sleep 60`));
    await s.waitForUpdate('classic', 'RUNNING');
    const pid = await readPid(pidFile);
    first.kill('SIGKILL');
    const lost = await s.waitForUpdate('classic', 'LOST', 15_000);
    expect(lost.reason).toBe('AGENT_UNREACHABLE');
    await agentProcess(master, workDir);
    await waitFor(() => !alive(pid), 'the LOST task to be killed on the returning agent', 20_000);
  });
});
