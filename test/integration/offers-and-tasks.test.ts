/**
 * The offer cycle end to end: a real master, a real agent running real processes, and schedulers on
 * the SDK driver, all on loopback sockets.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.ts';
import type { MasterServer } from '../../master/http/server.ts';
import { Endpoint, PROTOCOL_VERSION } from '../../master/protocol/index.ts';
import type { FrameworkInfo, Offer, SchedulerDriver } from '../../frameworks/sdk/index.ts';
import { RawClient, shellTask, startAgent, startMaster, TestScheduler, waitFor } from './helpers.ts';

let master: MasterServer;
let agent: Agent;
let agentDir: string;
const schedulers: TestScheduler[] = [];

beforeAll(async () => {
  master = await startMaster({ offerTimeoutMs: 600 });
  agent = await startAgent(master, { resources: { cpus: 4, mem: 4096, disk: 1000 } });
  agentDir = (agent as unknown as { workDir: string }).workDir;
});
afterEach(async () => {
  for (const s of schedulers.splice(0)) await s.driver.stop({ teardown: true }).catch(() => {});
});
afterAll(async () => {
  await agent?.stop({ killTasks: true });
  await master?.close();
});

async function scheduler(framework: Partial<FrameworkInfo> = {}, declineRefuseSeconds = 1): Promise<TestScheduler> {
  const s = new TestScheduler(master, framework, declineRefuseSeconds);
  schedulers.push(s);
  await s.start();
  return s;
}

function sandbox(frameworkId: string, taskId: string, file: string): string {
  return readFileSync(join(agentDir, 'sandboxes', frameworkId, taskId, file), 'utf8');
}

describe('launching tasks', () => {
  it('runs a task to RUNNING then FINISHED, with its output in the sandbox', async () => {
    const s = await scheduler({ name: 'finisher' });
    s.launchOnNextOffer(shellTask('hello', 'echo "hello from $AGORA_TASK_ID"; echo oops >&2'));
    await s.waitForUpdate('hello', 'RUNNING');
    const finished = await s.waitForUpdate('hello', 'FINISHED');
    expect(finished.source).toBe('EXECUTOR'); // the task's own exit, as Mesos' command executor reports it
    expect(s.statesOf('hello')).toBe('RUNNING → FINISHED');
    expect(sandbox(s.driver.frameworkId!, 'hello', 'stdout')).toBe('hello from hello\n');
    expect(sandbox(s.driver.frameworkId!, 'hello', 'stderr')).toBe('oops\n');
    // The task's resources came back to the agent.
    await waitFor(() => master.master.state().agents[0]!.taskCount === 0, 'the task to leave the agent');
  });

  it('reports a failing command as FAILED with its exit code', async () => {
    const s = await scheduler({ name: 'failer' });
    s.launchOnNextOffer(shellTask('bad', 'exit 3'));
    const failed = await s.waitForUpdate('bad', 'FAILED');
    expect(failed.exitCode).toBe(3);
    expect(failed.message).toMatch(/code 3/);
  });

  it('kills with SIGTERM, then SIGKILL after the grace period', async () => {
    const s = await scheduler({ name: 'killer' });
    // Ignores TERM (after noting it), so only SIGKILL can end it.
    s.launchOnNextOffer(shellTask('stubborn', "trap 'echo got TERM' TERM; while true; do sleep 0.05; done", undefined, { killPolicy: { gracePeriodMs: 300 } }));
    await s.waitForUpdate('stubborn', 'RUNNING');
    s.driver.kill('stubborn');
    const killed = await s.waitForUpdate('stubborn', 'KILLED');
    expect(killed.reason).toBe('TASK_KILLED');
    expect(sandbox(s.driver.frameworkId!, 'stubborn', 'stdout')).toContain('got TERM');
  });

  it('kills a task politely when it exits on SIGTERM', async () => {
    const s = await scheduler({ name: 'polite' });
    s.launchOnNextOffer(shellTask('polite', 'sleep 30', undefined, { killPolicy: { gracePeriodMs: 10_000 } }));
    await s.waitForUpdate('polite', 'RUNNING');
    const t0 = Date.now();
    s.driver.kill('polite');
    await s.waitForUpdate('polite', 'KILLED');
    // Ending on TERM does not wait out a 10 s grace period (a behaviour bound, not a benchmark).
    expect(Date.now() - t0).toBeLessThan(9000);
  });
});

describe('offers', () => {
  it('withholds declined resources until refuseSeconds pass, then re-offers them', async () => {
    const s = await scheduler({ name: 'decliner' }, 1.5);
    const first = await waitFor(() => s.offers[0], 'a first offer');
    await waitFor(() => s.offers.length >= 2, 'the offer to come back', 8000);
    const second = s.offers[1]!;
    expect(second.agentId).toBe(first.agentId);
    // Declined by the driver at once with a 1.5 s filter: the same agent is not offered again sooner.
    expect(second.receivedAtMs - first.receivedAtMs).toBeGreaterThanOrEqual(1400);
  });

  it('sends no offers while suppressed, and offers again on revive', async () => {
    const s = await scheduler({ name: 'suppressor' }, 0);
    s.onOffers = (_offers, d) => d.suppress();
    await waitFor(() => s.offers.length > 0, 'a first offer');
    const count = s.offers.length;
    // With a zero filter an unsuppressed framework would be re-offered every allocation cycle (100 ms).
    await new Promise((r) => setTimeout(r, 800));
    expect(s.offers.length).toBe(count);
    s.onOffers = () => {};
    s.driver.revive();
    await waitFor(() => s.offers.length > count, 'an offer after REVIVE');
  });

  it('rescinds an offer after the offer timeout and offers it again', async () => {
    const raw = await RawClient.connect(`${master.wsUrl}${Endpoint.scheduler}`);
    raw.send({ type: 'SUBSCRIBE', protocolVersion: PROTOCOL_VERSION, framework: { name: 'hoarder', failoverTimeoutMs: 0 } });
    const offers = (await raw.take('OFFERS')).offers as { id: string }[];
    const rescind = await raw.next('RESCIND', () => true, 3000);
    expect(rescind.offerId).toBe(offers[0]!.id);
    const again = (await raw.next('OFFERS', () => true, 3000)).offers as { id: string }[];
    expect(again[0]!.id).not.toBe(offers[0]!.id);
    raw.send({ type: 'TEARDOWN' });
    await raw.waitClosed();
  });

  it('shares one agent between two frameworks by DRF', async () => {
    let ready = false;
    const launchOne = (prefix: string, counter: { n: number }) => (offers: Offer[], d: SchedulerDriver) => {
      if (!ready) {
        for (const o of offers) d.decline(o.id, 0);
        return;
      }
      const offer = offers[0]!;
      if ((offer.resources.cpus as number) >= 1) d.launch(offer, [shellTask(`${prefix}-${counter.n++}`, 'sleep 30', { cpus: 1, mem: 256 })], { refuseSeconds: 0 });
    };
    const a = await scheduler({ name: 'drf-a' }, 0);
    const b = await scheduler({ name: 'drf-b' }, 0);
    const ca = { n: 0 };
    const cb = { n: 0 };
    a.onOffers = launchOne('a', ca);
    b.onOffers = launchOne('b', cb);
    ready = true;
    // 4 cpus, 1 cpu per task: DRF alternates, so each ends with 2 running.
    const runningBy = (name: string) => {
      const state = master.master.state();
      const id = state.frameworks.find((f) => f.name === name)?.id;
      return state.tasks.filter((t) => t.frameworkId === id && t.state === 'RUNNING').length;
    };
    await waitFor(() => runningBy('drf-a') + runningBy('drf-b') === 4, () => `four tasks RUNNING (launched ${ca.n} + ${cb.n})`, 8000);
    expect([runningBy('drf-a'), runningBy('drf-b')]).toEqual([2, 2]);
    const shares = master.master.state().frameworks.filter((f) => f.name.startsWith('drf-')).map((f) => f.dominantShare);
    expect(shares[0]).toBeCloseTo(shares[1]!, 5);
  });
});
