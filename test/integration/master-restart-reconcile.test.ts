/**
 * A master restarted under running tasks: a scheduler that reconciles before the agent has
 * re-registered must not be told its task is gone (it would relaunch a task that runs fine). The
 * new master holds the answer until the agent is back, or the re-registration timeout passes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.ts';
import type { MasterServer } from '../../master/http/server.ts';
import { removeDir, shellTask, startAgent, startMaster, tempDir, TestScheduler, waitFor } from './helpers.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function masterOn(port: number, agentReregisterTimeoutMs: number): Promise<MasterServer> {
  const master = await startMaster({ port, agentReregisterTimeoutMs });
  cleanups.push(() => master.close());
  return master;
}

describe('reconciliation after a master restart', () => {
  it('holds the answer for a task on an agent that has not re-registered yet, then answers RUNNING', async () => {
    const first = await startMaster({ agentReregisterTimeoutMs: 8000 });
    const port = first.port;
    const workDir = tempDir('agora-agent-');
    cleanups.push(() => removeDir(workDir));
    // The agent comes back slowly (3 s between tries); the scheduler quickly.
    const agent: Agent = await startAgent(first, { workDir, reconnect: { initialMs: 3000, maxMs: 3000 } });
    cleanups.push(() => agent.stop({ killTasks: true }));
    const scheduler = new TestScheduler(first, { failoverTimeoutMs: 60_000 });
    cleanups.push(() => scheduler.driver.stop());
    await scheduler.start();
    scheduler.launchOnNextOffer(shellTask('keeps-running', 'sleep 60'));
    const running = await scheduler.waitForUpdate('keeps-running', 'RUNNING');

    await first.close();
    const second = await masterOn(port, 8000);
    const frameworkId = scheduler.driver.frameworkId;
    // Both sides: the new master has the subscription, and the driver has its SUBSCRIBED (either
    // alone can be true while the other is still in flight).
    await waitFor(
      () => scheduler.driver.state === 'subscribed' && second.master.state().frameworks.some((f) => f.id === frameworkId && f.status === 'ACTIVE'),
      'the scheduler to re-subscribe to the new master',
    );
    expect(second.master.state().agents).toHaveLength(0); // the agent is not back yet: that is the point
    const before = scheduler.updates.length;
    scheduler.driver.reconcile([{ taskId: 'keeps-running', agentId: running.agentId! }]);
    await waitFor(() => second.master.state().agents.some((a) => a.id === running.agentId), 'the agent to re-register', 10_000);
    const answer = await waitFor(() => scheduler.updates.slice(before).find((u) => u.taskId === 'keeps-running'), () => `an answer about the task (${JSON.stringify(scheduler.updates)} ${JSON.stringify(second.master.state().tasks)} ${scheduler.driver.state})`);
    expect(answer.state).toBe('RUNNING');
    expect(scheduler.updates.slice(before).map((u) => u.state)).not.toContain('LOST');
  }, 30_000);

  it('answers LOST once the re-registration timeout passes without the agent', async () => {
    const master = await masterOn(0, 800);
    const scheduler = new TestScheduler(master, { failoverTimeoutMs: 60_000 });
    cleanups.push(() => scheduler.driver.stop());
    await scheduler.start();
    const asked = Date.now();
    scheduler.driver.reconcile([{ taskId: 'ghost', agentId: 'agent-that-never-returns' }]);
    const answer = await waitFor(() => scheduler.updates.find((u) => u.taskId === 'ghost'), 'an answer about the ghost task', 5000);
    expect(answer.state).toBe('LOST');
    expect(Date.now() - asked).toBeGreaterThanOrEqual(200); // held, not answered at once
    // After the window, unknown tasks are answered at once.
    scheduler.driver.reconcile([{ taskId: 'ghost-2', agentId: 'agent-that-never-returns' }]);
    expect((await waitFor(() => scheduler.updates.find((u) => u.taskId === 'ghost-2'), 'an immediate answer', 1000)).state).toBe('LOST');
  });
});
