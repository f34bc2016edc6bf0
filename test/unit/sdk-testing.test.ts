import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { firstFit, isTerminal, SchedulerDriver, type SchedulerHandlers, type TaskSpec, type TaskStatus } from '../../frameworks/sdk/index.ts';
import { createTestCluster, type TestCluster } from '../../frameworks/sdk/testing.ts';

const silent = pino({ level: 'silent' });
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function cluster(options: Parameters<typeof createTestCluster>[0]): Promise<TestCluster> {
  const c = await createTestCluster(options);
  cleanups.push(() => c.close());
  return c;
}

function driverFor(c: TestCluster, handlers: SchedulerHandlers, name = 'under-test'): SchedulerDriver {
  const driver = new SchedulerDriver({ connect: c.connect, framework: { name }, handlers, logger: silent, reconnect: { initialMs: 5, maxMs: 20 } });
  cleanups.push(() => driver.stop());
  return driver;
}

/** A tiny scheduler: run these specs once each, report every terminal status. */
function runOnce(specs: TaskSpec[], onTerminal: (status: TaskStatus) => void): SchedulerHandlers {
  let pending = [...specs];
  return {
    offers(offers, driver) {
      const { launches, unplaced } = firstFit(pending, offers);
      for (const { offer, tasks } of launches) driver.launch(offer, tasks);
      pending = unplaced;
    },
    update(status) {
      if (isTerminal(status.state)) onTerminal(status);
    },
  };
}

function task(taskId: string): TaskSpec {
  return { taskId, resources: { cpus: 1, mem: 128 }, command: { value: 'true' } };
}

describe('createTestCluster', () => {
  it('runs a scheduler against the real master and simulated agents', async () => {
    const c = await cluster({
      agents: [{ resources: 'cpus:2;mem:512' }, { resources: 'cpus:2;mem:512', attributes: 'zone:b' }],
      outcome: (t) => (t.taskId.startsWith('bad') ? { state: 'FAILED', exitCode: 3 } : { state: 'FINISHED', exitCode: 0 }),
    });
    const ended = new Map<string, TaskStatus>();
    const done = new Promise<void>((resolve) => {
      const driver = driverFor(
        c,
        runOnce([task('good-1'), task('good-2'), task('good-3'), task('bad-1')], (status) => {
          ended.set(status.taskId, status);
          if (ended.size === 4) resolve();
        }),
      );
      void driver.start();
    });
    await done;
    expect(Object.fromEntries([...ended].map(([id, s]) => [id, s.state]))).toEqual({
      'good-1': 'FINISHED',
      'good-2': 'FINISHED',
      'good-3': 'FINISHED',
      'bad-1': 'FAILED',
    });
    expect(ended.get('bad-1')!.exitCode).toBe(3);
    expect(c.agents).toHaveLength(2);
  });

  it('offers exactly the resources the test gave each agent', async () => {
    const c = await cluster({ agents: [{ resources: 'cpus:3;mem:256;ports:[40000-40001]', attributes: { rack: 'r7' }, hostname: 'h1' }] });
    const offered = new Promise<unknown>((resolve) => {
      const driver = driverFor(c, {
        offers(offers, d) {
          resolve(offers.map((o) => ({ resources: o.resources, attributes: o.attributes, hostname: o.hostname })));
          d.suppress();
        },
      });
      void driver.start();
    });
    expect(await offered).toEqual([{ resources: { cpus: 3, mem: 256, ports: [[40000, 40001]] }, attributes: { rack: 'r7' }, hostname: 'h1' }]);
  });

  it('lets a scheduler fail over: re-subscribes with the same framework id and keeps its running task', async () => {
    const c = await cluster({ outcome: () => ({ state: 'RUNNING', delayMs: Infinity }) });
    const subscribed: string[] = [];
    const updates: TaskStatus[] = [];
    let launched = false;
    let onRunning!: () => void;
    const running = new Promise<void>((resolve) => (onRunning = resolve));
    let onResubscribed!: () => void;
    const resubscribed = new Promise<void>((resolve) => (onResubscribed = resolve));
    let onReconciled!: () => void;
    const reconciled = new Promise<void>((resolve) => (onReconciled = resolve));
    const driver = driverFor(c, {
      subscribed(id) {
        subscribed.push(id);
        if (subscribed.length === 2) onResubscribed();
      },
      offers(offers, d) {
        if (launched) return;
        launched = true;
        d.launch(offers[0]!, [{ taskId: 'long-running', resources: { cpus: 1, mem: 64 }, command: { value: 'sleep 1000' } }]);
      },
      update(status) {
        updates.push(status);
        if (status.state === 'RUNNING' && status.uuid !== undefined) onRunning();
        if (subscribed.length === 2 && status.reason === 'RECONCILIATION' && status.state === 'RUNNING') onReconciled();
      },
    });
    const id = await driver.start();
    await running;
    c.dropSchedulerConnections();
    await resubscribed;
    await reconciled;
    expect(subscribed).toEqual([id, id]);
    expect(c.master.state().frameworks.map((f) => f.id)).toContain(id);
  });
});
