/**
 * The services scheduler when things break: crash loops, agents that go away (and come back), the
 * scheduler itself restarted mid-deployment, and its state round-tripping through a real Redis.
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.ts';
import { validateAppDefinition, type AppDefinitionInput, type DeploymentView, type ServicesApi, type ServicesEvent } from '../../frameworks/services/index.ts';
import { MemoryStore, type StoreWrite } from '../../frameworks/sdk/index.ts';
import { ServicesScheduler } from '../../frameworks/services/scheduler.ts';
import { putApp, putInstance, putVersion } from '../../frameworks/services/services-store.ts';
import { quiet, removeDir, tempDir, testRedis, waitFor } from './helpers.ts';
import { portRange, ServicesCluster, webApp } from './services-scheduler-cluster.ts';

const clusters: ServicesCluster[] = [];
afterEach(async () => {
  for (const cluster of clusters.splice(0)) await cluster.close();
});

async function newCluster(): Promise<ServicesCluster> {
  const c = await ServicesCluster.start();
  clusters.push(c);
  return c;
}

async function finished(api: ServicesApi, id: string, timeoutMs = 20_000): Promise<DeploymentView> {
  return waitFor(
    async () => {
      const d = await api.getDeployment(id);
      return d && d.state !== 'running' ? d : undefined;
    },
    `deployment ${id} to finish`,
    timeoutMs,
  );
}

/**
 * A memory store whose commits can be made to fail, as a full disk or a lost Redis would; it counts
 * the failures per key. A fake on purpose: a real file store on a filled tmpfs still takes a small
 * commit into the free end of its log's last page, so the failure would come and go with sizes.
 */
class FlakyStore extends MemoryStore {
  failing = false;
  readonly failedWritesOf = new Map<string, number>();

  override async commit(writes: readonly StoreWrite[]): Promise<number[]> {
    if (!this.failing) return super.commit(writes);
    for (const write of writes) this.failedWritesOf.set(write.key, (this.failedWritesOf.get(write.key) ?? 0) + 1);
    throw new Error('no space left on device (a test store)');
  }
}

/**
 * Agents host-a and host-b, and the framework. hostB() starts host-b's agent again, on the same work
 * dir and resources, as a machine that comes back after its agent stopped (its tasks live on).
 */
async function twoHostCluster(): Promise<{ c: ServicesCluster; agentB: Agent; hostB: () => Promise<Agent> }> {
  const c = await newCluster();
  await c.addAgent({ hostname: 'host-a' });
  const workDir = tempDir('agora-agent-b-');
  const resources = { cpus: 4, mem: 4096, disk: 1000, ports: [portRange(20)] as [number, number][] };
  const hostB = () => c.addAgent({ hostname: 'host-b', workDir, resources });
  const agentB = await hostB();
  await c.startFramework();
  return { c, agentB, hostB };
}

const sleeper = (id: string, extra: Partial<AppDefinitionInput> = {}) =>
  validateAppDefinition({ id, cmd: 'sleep 60', cpus: 0.1, mem: 16, killGracePeriodSeconds: 0, ...extra });

describe('services scheduler recovery', () => {
  it('backs off a crash loop: each relaunch waits longer', async () => {
    const c = await newCluster();
    await c.addAgent();
    await c.startFramework();
    // Delays after each failure: 0.2 s, 2 s, 20 s.
    await c.api.putApp(sleeper('/crash', { cmd: 'exit 1', backoff: { seconds: 0.2, factor: 10, maxLaunchDelaySeconds: 60 } }));
    const failed = () => c.masterTasks().completed.filter((t) => t.state === 'FAILED');
    await waitFor(() => failed().length >= 3, () => `3 failures (seen ${failed().length})`, 15_000);
    // The fourth launch is 20 s away; a second later there is still none.
    await new Promise((r) => setTimeout(r, 1000));
    const { live, completed } = c.masterTasks();
    expect(live).toEqual([]);
    expect(completed).toHaveLength(3);
    expect((await c.api.getApp('/crash'))!.tasks).toEqual([]);
  });

  it('kills an instance whose health check starts failing and replaces it after the backoff, the other serving on', async () => {
    const c = await newCluster();
    await c.addAgent();
    await c.startFramework();
    const sickFile = join(tempDir('agora-sick-'), 'sick');
    const app = validateAppDefinition(webApp('/ailing', { instances: 2, env: { SICK_FILE: sickFile }, backoff: { seconds: 1, factor: 2, maxLaunchDelaySeconds: 10 } }));
    await finished(c.api, (await c.api.putApp(app)).id);
    const [first, second] = await c.api.tasks('/ailing');

    // Only the first instance turns sick.
    writeFileSync(`${sickFile}.${first!.instanceId}`, '');
    const killed = await waitFor(() => c.masterTasks().completed.find((t) => t.taskId === first!.taskId), 'the sick instance to be killed', 15_000);
    expect(killed).toMatchObject({ state: 'KILLED', reason: 'TASK_HEALTH_CHECK_FAILED' });
    const endedAtMs = killed.updatedAtMs;

    // Replaced, after the backoff (1 s), by a new instance that is healthy; the other never stopped.
    const replacement = await waitFor(
      async () => (await c.api.tasks('/ailing')).find((t) => t.taskId !== first!.taskId && t.taskId !== second!.taskId && t.healthy === true),
      'a healthy replacement',
      20_000,
    );
    expect(replacement.startedAtMs - endedAtMs).toBeGreaterThanOrEqual(900);
    expect((await c.api.tasks('/ailing')).map((t) => t.taskId).sort()).toEqual([second!.taskId, replacement.taskId].sort());
    expect(c.masterTasks().completed.map((t) => t.taskId)).toEqual([first!.taskId]);
    await waitFor(async () => (await c.api.endpoints('/ailing')).length === 2, 'both instances to be endpoints again');
    expect((await c.api.endpoints('/ailing')).some((e) => e.taskId === first!.taskId)).toBe(false);
  }, 60_000);

  it('replaces the instances of an agent that went away, and kills the old ones when it comes back', async () => {
    const { c, agentB, hostB } = await twoHostCluster();
    const deployment = await c.api.putApp(sleeper('/spread', { instances: 4 }));
    await finished(c.api, deployment.id);
    const onB = (await c.api.tasks('/spread')).filter((t) => t.host === 'host-b').map((t) => t.taskId);
    expect(onB).toHaveLength(2); // spread by default

    await agentB.stop(); // its tasks live on, but the master hears nothing from it: UNREACHABLE after a second
    const runningOnA = async () => (await c.api.tasks('/spread')).filter((t) => t.host === 'host-a' && t.state === 'RUNNING');
    await waitFor(async () => (await runningOnA()).length === 4, 'four instances running on host-a', 15_000);
    expect((await c.api.tasks('/spread')).filter((t) => onB.includes(t.taskId)).every((t) => t.state === 'UNREACHABLE')).toBe(true);

    // The agent returns with its old tasks: they must not run next to their replacements.
    await hostB();
    await waitFor(
      () => onB.every((id) => c.masterTasks().completed.some((t) => t.taskId === id && t.state === 'KILLED')),
      () => `the returning instances to be killed (master: ${JSON.stringify(c.masterTasks().live.map((t) => [t.taskId, t.state]))})`,
      15_000,
    );
    const tasks = await c.api.tasks('/spread');
    expect(tasks).toHaveLength(4);
    expect(tasks.every((t) => t.host === 'host-a' && t.state === 'RUNNING')).toBe(true);
  });

  it('waits inactiveAfterSeconds before replacing an unreachable instance, and keeps one whose agent returns in time', async () => {
    const first = await twoHostCluster();
    const { c, hostB } = first;
    let agentB = first.agentB;
    await finished(c.api, (await c.api.putApp(sleeper('/patient', { instances: 2, unreachableStrategy: { inactiveAfterSeconds: 3 } }))).id);
    const [onB] = (await c.api.tasks('/patient')).filter((t) => t.host === 'host-b').map((t) => t.taskId);
    expect(onB).toBeDefined();
    const stateOfB = async () => (await c.api.tasks('/patient')).find((t) => t.taskId === onB)?.state;

    // Away for less than inactiveAfterSeconds: not replaced, and kept when its agent comes back.
    await agentB.stop();
    await waitFor(async () => (await stateOfB()) === 'UNREACHABLE', 'the instance on host-b to be UNREACHABLE', 15_000);
    await new Promise((r) => setTimeout(r, 1000));
    expect(await c.api.tasks('/patient')).toHaveLength(2);
    agentB = await hostB();
    await waitFor(async () => (await stateOfB()) === 'RUNNING', 'the instance on host-b to be RUNNING again', 15_000);
    await new Promise((r) => setTimeout(r, 3000));
    const kept = await c.api.tasks('/patient');
    expect(kept.map((t) => t.state)).toEqual(['RUNNING', 'RUNNING']);
    expect(kept.some((t) => t.taskId === onB)).toBe(true);
    expect(c.masterTasks().completed.filter((t) => t.taskId === onB)).toEqual([]);

    // Away for longer: replaced on host-a once inactiveAfterSeconds have passed, not before.
    await agentB.stop();
    await waitFor(async () => (await stateOfB()) === 'UNREACHABLE', 'the instance on host-b to be UNREACHABLE again', 15_000);
    const unreachableAtMs = Date.now();
    const onA = async () => (await c.api.tasks('/patient')).filter((t) => t.host === 'host-a');
    await waitFor(async () => (await onA()).length === 2, 'a replacement on host-a', 15_000);
    expect(Date.now() - unreachableAtMs).toBeGreaterThanOrEqual(2000);
  }, 60_000);

  it('resumes a deployment after the scheduler restarts mid-way, re-adopting its tasks and launching nothing twice', async () => {
    const c = await newCluster();
    await c.addAgent();
    const storeDir = tempDir('agora-services-store-');
    try {
      const first = await c.startFramework({ store: storeDir });
      const v1 = validateAppDefinition(webApp('/web', { instances: 4 }));
      await finished(c.api, (await c.api.putApp(v1)).id);
      // New instances take a while to get healthy, so the rollout is surely mid-way when the scheduler dies.
      const rollout = await c.api.putApp({
        ...v1,
        env: { LISTEN_AFTER_MS: '1500' },
        upgradeStrategy: { ...v1.upgradeStrategy, minimumHealthCapacity: 0.5, maximumOverCapacity: 0 },
      });
      await waitFor(async () => ((await c.api.getDeployment(rollout.id))?.progress.newStarted ?? 0) >= 2, 'the first new instances');
      await first.close();

      const second = await c.startFramework({ store: storeDir });
      expect(second.frameworkId).toBe(first.frameworkId);
      const resumed = await c.api.getDeployment(rollout.id);
      expect(resumed).toMatchObject({ id: rollout.id });
      expect(await finished(c.api, rollout.id)).toMatchObject({ state: 'succeeded' });

      const tasks = await c.api.tasks('/web');
      expect(tasks).toHaveLength(4);
      expect(tasks.every((t) => t.version === rollout.to.version && t.healthy === true)).toBe(true);
      await waitFor(() => c.masterTasks().live.length === 4, 'the old instances to be gone');
      // 4 of v1 and 4 of v2, each launched once: no task id beyond those 8 ever reached the master.
      const { live, completed } = c.masterTasks();
      const everLaunched = new Set([...live, ...completed].map((t) => t.taskId));
      expect(everLaunched.size).toBe(8);
      expect(completed.every((t) => t.state === 'KILLED')).toBe(true);
    } finally {
      await c.framework?.close();
      c.framework = undefined;
      removeDir(storeDir);
    }
  });

  it('registers anew and relaunches its apps when the master has removed the stored framework', async () => {
    const c = await newCluster();
    await c.addAgent();
    const storeDir = tempDir('agora-services-store-');
    try {
      // failoverTimeoutMs 0: the master removes the framework, and kills its tasks, as soon as it leaves.
      const first = await c.startFramework({ store: storeDir, scheduler: { failoverTimeoutMs: 0 } });
      await finished(c.api, (await c.api.putApp(sleeper('/web'))).id);
      const [before] = await c.api.tasks('/web');
      await first.close();
      await waitFor(() => c.masterTasks(first.frameworkId).live.length === 0, 'the master to remove the framework and its task');

      const second = await c.startFramework({ store: storeDir });
      expect(second.frameworkId).not.toBe(first.frameworkId);
      const [after] = await waitFor(async () => {
        const tasks = await c.api.tasks('/web');
        return tasks.length === 1 && tasks[0]!.taskId !== before!.taskId && tasks[0]!.state === 'RUNNING' ? tasks : undefined;
      }, 'the app relaunched under the new framework');
      expect(c.masterTasks(second.frameworkId).live.map((t) => t.taskId)).toEqual([after!.taskId]);
    } finally {
      await c.framework?.close();
      c.framework = undefined;
      removeDir(storeDir);
    }
  });

  it('acknowledges no status update it could not write: the update comes again and is applied once the store works', async () => {
    const c = await newCluster();
    await c.addAgent({ statusUpdateRetry: { initialMs: 200, maxMs: 400 } });
    const store = new FlakyStore();
    const triggers = tempDir('agora-services-exit-');
    const scheduler = new ServicesScheduler({ master: c.master.wsUrl, store, logger: quiet, reconnect: { initialMs: 50, maxMs: 500 } });
    const events: ServicesEvent[] = [];
    scheduler.subscribe((event) => events.push(event));
    const lastEndpoints = () => events.findLast((e) => e.type === 'endpoints' && e.appId === '/flaky');
    try {
      await scheduler.start();
      // Each instance runs until its trigger file appears, then fails.
      const app = sleeper('/flaky', {
        instances: 2,
        ports: [{ port: 0, name: 'http' }],
        cmd: `until [ -e ${triggers}/$AGORA_INSTANCE_ID ]; do sleep 0.05; done; exit 3`,
        backoff: { seconds: 0.1, factor: 1, maxLaunchDelaySeconds: 0.1 },
      });
      await finished(scheduler, (await scheduler.putApp(app)).id);
      const [victim, survivor] = await scheduler.tasks('/flaky');
      const victimKey = `instances/flaky/${victim!.instanceId}`;

      store.failing = true;
      writeFileSync(join(triggers, victim!.instanceId), '');
      // Not written, so not acknowledged: the agent sends the FAILED update again, and again the write fails.
      await waitFor(() => (store.failedWritesOf.get(victimKey) ?? 0) >= 2, 'the unwritten update to come again');
      expect(await store.get(victimKey)).toBeDefined();
      // The master keeps a task whose terminal update is unacknowledged among the live ones.
      expect(c.masterTasks(scheduler.frameworkId).live.find((t) => t.taskId === victim!.taskId)).toMatchObject({ state: 'FAILED' });
      // Written or not, it has ended: it leaves the endpoints (and so the proxy) at once; its task event waits for the write.
      await waitFor(() => {
        const last = lastEndpoints();
        return last?.type === 'endpoints' && last.endpoints.map((e) => e.taskId).join() === survivor!.taskId;
      }, 'the failed instance to leave the endpoints');
      const failedEvent = () => events.some((e) => e.type === 'task' && e.task.taskId === victim!.taskId && e.task.state === 'FAILED');
      expect(failedEvent()).toBe(false);

      store.failing = false;
      const replaced = await waitFor(async () => {
        const tasks = await scheduler.tasks('/flaky');
        return tasks.length === 2 && tasks.every((t) => t.state === 'RUNNING') && !(await store.get(victimKey)) ? tasks : undefined;
      }, 'the failed instance to be written off and replaced');
      expect(replaced.map((t) => t.taskId)).toContain(survivor!.taskId);
      expect(replaced.map((t) => t.taskId)).not.toContain(victim!.taskId);
      await waitFor(() => c.masterTasks(scheduler.frameworkId).completed.some((t) => t.taskId === victim!.taskId), 'the FAILED update to be acknowledged');
      expect(failedEvent()).toBe(true);
      // The store holds exactly the two live instances: a restarted scheduler would find no ghost.
      expect((await store.list('instances/flaky/')).map((e) => e.key).sort()).toEqual(replaced.map((t) => `instances/flaky/${t.instanceId}`).sort());
    } finally {
      await scheduler.close();
      removeDir(triggers);
    }
  });

  it('drops an instance record whose launch never reached the master (UNKNOWN) and launches its instance once', async () => {
    const c = await newCluster();
    const agent = await c.addAgent();
    const agentId = await waitFor(() => c.master.master.state().agents[0]?.id, 'the agent id');
    // What a scheduler that died between writing the record and launching leaves behind.
    const store = new MemoryStore();
    const web = sleeper('/web');
    await store.commit([
      putApp({ app: web, version: 'v1' }),
      putVersion({ version: 'v1', createdAtMs: 1, app: web }),
      putInstance({ instanceId: 'ghost', appId: '/web', taskId: 'web.ghost', version: 'v1', agentId, hostname: '127.0.0.1', attributes: {}, ports: [], startedAtMs: 1 }),
    ]);
    const scheduler = new ServicesScheduler({ master: c.master.wsUrl, store, logger: quiet, reconnect: { initialMs: 50, maxMs: 500 } });
    try {
      await scheduler.start();
      const [task] = await waitFor(async () => {
        const tasks = await scheduler.tasks('/web');
        return tasks.length === 1 && tasks[0]!.taskId !== 'web.ghost' && tasks[0]!.state === 'RUNNING' ? tasks : undefined;
      }, 'a fresh instance to replace the ghost');
      expect(await store.get('instances/web/ghost')).toBeUndefined();
      expect(await store.get(`instances/web/${task!.instanceId}`)).toMatchObject({ value: { taskId: task!.taskId, agentId } });
      expect(c.masterTasks(scheduler.frameworkId).live.map((t) => t.taskId)).toEqual([task!.taskId]);
    } finally {
      await scheduler.close();
      void agent;
    }
  });
});

const { url: redisUrl, reachable: redisReachable } = await testRedis('services-scheduler');

const namespaces: string[] = [];
afterAll(async () => {
  if (!redisReachable) return;
  const admin = new Redis(redisUrl);
  for (const namespace of namespaces) {
    const keys = await admin.keys(`agora:{${namespace}}:*`);
    if (keys.length > 0) await admin.del(...keys);
  }
  admin.disconnect();
});

describe.skipIf(!redisReachable)('services scheduler on Redis', () => {
  it('keeps the framework id, apps, versions and deployments in Redis and re-adopts its tasks after a restart', async () => {
    const c = await newCluster();
    await c.addAgent();
    const name = `services-test-${randomUUID()}`;
    namespaces.push(name);
    const first = await c.startFramework({ store: redisUrl, name });
    const deployment = await c.api.putApp(sleeper('/cache', { instances: 2 }));
    await finished(c.api, deployment.id);
    const before = (await c.api.getApp('/cache'))!;
    await first.close();

    const second = await c.startFramework({ store: redisUrl, name });
    expect(second.frameworkId).toBe(first.frameworkId);
    const after = (await c.api.getApp('/cache'))!;
    expect(after.version).toBe(before.version);
    expect(after.app).toEqual(before.app);
    expect((await c.api.versions('/cache')).map((v) => v.version)).toEqual([before.version]);
    expect(await c.api.getDeployment(deployment.id)).toMatchObject({ state: 'succeeded' });
    await waitFor(async () => (await c.api.tasks('/cache')).every((t) => t.state === 'RUNNING'), 'the tasks re-adopted as RUNNING');
    expect((await c.api.tasks('/cache')).map((t) => t.taskId).sort()).toEqual(before.tasks.map((t) => t.taskId).sort());
    // Give a wrongly planned launch the chance to happen; none may.
    await new Promise((r) => setTimeout(r, 300));
    const { live, completed } = c.masterTasks();
    expect(live).toHaveLength(2);
    expect(completed).toEqual([]);
  });
});
