/**
 * The services scheduler end to end: a real master, real agents running real processes (small node
 * HTTP servers with HTTP health checks), and the scheduler through its ServicesApi.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ServicesError, validateAppDefinition, type AppDefinition, type AppDefinitionInput, type DeploymentView, type Endpoint, type ServicesApi } from '../../frameworks/services/index.ts';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, waitFor } from './helpers.ts';
import { serverScript, ServicesCluster, webApp } from './services-scheduler-cluster.ts';

const clusters: ServicesCluster[] = [];
afterEach(async () => {
  for (const cluster of clusters.splice(0)) await cluster.close();
});

async function cluster(agents = 1): Promise<ServicesCluster> {
  const c = await ServicesCluster.start();
  clusters.push(c);
  for (let i = 0; i < agents; i++) await c.addAgent();
  await c.startFramework();
  return c;
}

const app = (input: AppDefinitionInput): AppDefinition => validateAppDefinition(input);

/** Peeks at the master's allocator (private): is the services framework suppressed? */
function isSuppressed(c: ServicesCluster): boolean {
  const allocator = (c.master.master as unknown as { allocator: { frameworks: Map<string, { suppressed: boolean }> } }).allocator;
  return allocator.frameworks.get(c.framework!.frameworkId)?.suppressed === true;
}

async function finished(api: ServicesApi, deployment: DeploymentView, timeoutMs = 20_000): Promise<DeploymentView> {
  return waitFor(
    async () => {
      const d = await api.getDeployment(deployment.id);
      return d && d.state !== 'running' ? d : undefined;
    },
    `deployment ${deployment.id} of ${deployment.appId} to finish`,
    timeoutMs,
  ) as Promise<DeploymentView>;
}

async function get(endpoint: Endpoint): Promise<string> {
  const response = await fetch(`http://${endpoint.host}:${endpoint.port}/`);
  return `${response.status} ${await response.text()}`;
}

describe('services scheduler', () => {
  it('deploys 5 instances, sees them healthy, and publishes their endpoints', async () => {
    const c = await cluster();
    const deployment = await c.api.putApp(app(webApp('/shop/web', { instances: 5 })));
    expect(deployment).toMatchObject({ appId: '/shop/web', state: 'running', to: { instances: 5 } });
    expect(deployment.from).toBeUndefined();

    const done = await finished(c.api, deployment);
    expect(done).toMatchObject({ state: 'succeeded', progress: { target: 5, newStarted: 5, newHealthy: 5, newReady: 5, oldRunning: 0 } });
    const status = (await c.api.getApp('/shop/web'))!;
    expect(status.deployment).toBeUndefined();
    expect(status.tasks).toHaveLength(5);
    expect(status.tasks.every((t) => t.state === 'RUNNING' && t.healthy === true && t.ready === true && t.version === status.version)).toBe(true);

    const endpoints = await c.api.endpoints('/shop/web');
    expect(endpoints).toHaveLength(5);
    expect(new Set(endpoints.map((e) => e.port)).size).toBe(5);
    for (const endpoint of endpoints) expect(await get(endpoint)).toBe(`200 ${status.version}`);
    const last = c.events.filter((e) => e.type === 'endpoints' && e.appId === '/shop/web').at(-1);
    expect(last).toMatchObject({ type: 'endpoints', endpoints });
    // Task ids encode the app and instance (Marathon's naming).
    expect(status.tasks.every((t) => t.taskId === `shop_web.${t.instanceId}`)).toBe(true);
    expect(c.masterTasks().live).toHaveLength(5);
    // Nothing pending: the framework suppressed its offers instead of declining them forever.
    await waitFor(() => isSuppressed(c), 'the framework to suppress offers');
  });

  it('scales up, then down killing the youngest instances first, without restarting the rest', async () => {
    const c = await cluster();
    await finished(c.api, await c.api.putApp(app(webApp('/web', { instances: 3 }))));
    const original = (await c.api.tasks('/web')).map((t) => t.taskId).sort();
    const version = (await c.api.getApp('/web'))!.version;

    const up = await finished(c.api, await c.api.scale('/web', 5));
    expect(up).toMatchObject({ state: 'succeeded', from: { version, instances: 3 }, to: { version, instances: 5 } });
    const afterUp = (await c.api.tasks('/web')).map((t) => t.taskId);
    expect(afterUp).toHaveLength(5);
    expect(afterUp).toEqual(expect.arrayContaining(original));
    const added = afterUp.filter((id) => !original.includes(id));

    // YOUNGEST_FIRST (the default): the two added last go first, then the youngest original.
    const down = await finished(c.api, await c.api.scale('/web', 2));
    expect(down).toMatchObject({ state: 'succeeded' });
    const survivors = (await c.api.tasks('/web')).map((t) => t.taskId);
    expect(survivors).toHaveLength(2);
    expect(survivors.every((id) => original.includes(id))).toBe(true);
    expect(survivors.some((id) => added.includes(id))).toBe(false);
    expect((await c.api.getApp('/web'))!.version).toBe(version);
    expect((await c.api.versions('/web')).map((v) => v.version)).toEqual([version]);
    await waitFor(() => c.masterTasks().live.length === 2, 'the master to see 2 tasks left');
  });

  it('scales down killing the oldest instances first with killSelection OLDEST_FIRST', async () => {
    const c = await cluster();
    const input = webApp('/old-first', { instances: 2, killSelection: 'OLDEST_FIRST' });
    await finished(c.api, await c.api.putApp(app(input)));
    const original = (await c.api.tasks('/old-first')).map((t) => t.taskId);
    await finished(c.api, await c.api.scale('/old-first', 4));
    const added = (await c.api.tasks('/old-first')).map((t) => t.taskId).filter((id) => !original.includes(id));
    expect(added).toHaveLength(2);

    expect(await finished(c.api, await c.api.scale('/old-first', 2))).toMatchObject({ state: 'succeeded' });
    expect((await c.api.tasks('/old-first')).map((t) => t.taskId).sort()).toEqual([...added].sort());
    await waitFor(() => c.masterTasks().live.length === 2, 'the master to see 2 tasks left');
  });

  it('holds a rolling update while the new instances are healthy but not ready, killing no old one until they are', async () => {
    const c = await cluster();
    const readyFile = join(tempDir('agora-ready-'), 'ready');
    const v1 = app(webApp('/gated', { instances: 3, readinessCheck: { path: '/ready', intervalSeconds: 0.1, timeoutSeconds: 1 } }));
    await finished(c.api, await c.api.putApp(v1));
    const oldTasks = (await c.api.tasks('/gated')).map((t) => t.taskId);

    // v2 answers its health check at once but /ready only once the file exists.
    const rollout = await c.api.putApp({ ...v1, env: { READY_FILE: readyFile }, upgradeStrategy: { ...v1.upgradeStrategy, minimumHealthCapacity: 1, maximumOverCapacity: 0.34 } });
    const fresh = async () => (await c.api.tasks('/gated')).filter((t) => !oldTasks.includes(t.taskId));
    await waitFor(async () => (await fresh()).some((t) => t.state === 'RUNNING' && t.healthy === true && t.ready === false), 'a new instance healthy but not ready');
    await new Promise((r) => setTimeout(r, 1500));
    const held = (await c.api.getDeployment(rollout.id))!;
    // Healthy (as its progress says) but unready takes no traffic, so it does not count as serving:
    // nothing old may go yet.
    expect(held).toMatchObject({ state: 'running', progress: { newStarted: 1, newHealthy: 1, newReady: 0, oldRunning: 3, oldKilled: 0 } });
    // Only ready instances are endpoints: the three old ones, not the healthy-but-unready new one.
    expect((await c.api.endpoints('/gated')).map((e) => e.taskId).sort()).toEqual([...oldTasks].sort());
    expect((await c.api.tasks('/gated')).filter((t) => oldTasks.includes(t.taskId) && t.state === 'RUNNING')).toHaveLength(3);

    writeFileSync(readyFile, '');
    expect(await finished(c.api, rollout)).toMatchObject({ state: 'succeeded', progress: { newReady: 3, oldKilled: 3 } });
    expect((await c.api.tasks('/gated')).some((t) => oldTasks.includes(t.taskId))).toBe(false);
  });

  it('rolls out a healthy new version with readiness checks, keeping enough instances serving', async () => {
    const c = await cluster();
    const v1 = app(webApp('/web', { instances: 3, env: { RELEASE: '1' }, readinessCheck: { path: '/ready', intervalSeconds: 0.1, timeoutSeconds: 1 } }));
    await finished(c.api, await c.api.putApp(v1));
    const firstVersion = (await c.api.getApp('/web'))!.version;
    const oldTasks = (await c.api.tasks('/web')).map((t) => t.taskId);

    const serving: number[] = [];
    const unsubscribe = c.api.subscribe((event) => {
      if (event.type === 'endpoints' && event.appId === '/web') serving.push(event.endpoints.length);
    });
    const rollout = await c.api.putApp({ ...v1, env: { RELEASE: '2' }, upgradeStrategy: { ...v1.upgradeStrategy, minimumHealthCapacity: 0.5, maximumOverCapacity: 0.34 } });
    expect(rollout.from).toEqual({ version: firstVersion, instances: 3 });
    const done = await finished(c.api, rollout);
    unsubscribe();
    expect(done).toMatchObject({ state: 'succeeded', progress: { newReady: 3, oldRunning: 0, oldKilled: 3 } });

    const status = (await c.api.getApp('/web'))!;
    expect(status.version).toBe(rollout.to.version);
    expect(status.tasks.map((t) => t.taskId).some((id) => oldTasks.includes(id))).toBe(false);
    for (const endpoint of await c.api.endpoints('/web')) expect(await get(endpoint)).toBe(`200 ${status.version}`);
    // ceil(3 × 0.5) = 2 instances served at every moment of the rollout.
    expect(Math.min(...serving)).toBeGreaterThanOrEqual(2);
    expect((await c.api.versions('/web')).map((v) => v.version)).toEqual([firstVersion, status.version]);
    // Progress was visible along the way, not only at the end.
    const progress = c.events.flatMap((e) => (e.type === 'deployment' && e.deployment.id === rollout.id ? [e.deployment.progress.newReady] : []));
    expect(progress[0]).toBe(0);
    expect(progress.at(-1)).toBe(3);
    expect(progress.some((n) => n > 0 && n < 3)).toBe(true);

    // Rolling back brings the first version back (its own version id), as another rolling deployment.
    const rollback = await c.api.rollback('/web');
    expect(rollback).toMatchObject({ from: { version: status.version }, to: { version: firstVersion, instances: 3 } });
    expect(await finished(c.api, rollback)).toMatchObject({ state: 'succeeded' });
    const back = (await c.api.getApp('/web'))!;
    expect(back.version).toBe(firstVersion);
    expect(back.app.env).toEqual({ RELEASE: '1' });
    for (const endpoint of await c.api.endpoints('/web')) expect(await get(endpoint)).toBe(`200 ${firstVersion}`);
  });

  it('cancels a deployment by reverting it, or with force leaves it where it is', async () => {
    const c = await cluster();
    const v1 = app(webApp('/web', { instances: 2 }));
    await finished(c.api, await c.api.putApp(v1));
    const good = (await c.api.getApp('/web'))!;
    const stuck = await c.api.putApp({ ...v1, env: { SICK: '1' } });
    await waitFor(async () => ((await c.api.getDeployment(stuck.id))?.progress.newStarted ?? 0) > 0, 'a new instance to start');
    await c.api.cancelDeployment(stuck.id);
    expect(await c.api.getDeployment(stuck.id)).toMatchObject({ state: 'failed', reason: expect.stringMatching(/cancelled/) });
    const revert = (await c.api.listDeployments()).find((d) => d.revertOf === stuck.id)!;
    expect(await finished(c.api, revert)).toMatchObject({ state: 'succeeded' });
    expect((await c.api.getApp('/web'))!.version).toBe(good.version);
    expect((await c.api.tasks('/web')).map((t) => t.taskId).sort()).toEqual(good.tasks.map((t) => t.taskId).sort());
    await expect(c.api.cancelDeployment(stuck.id)).rejects.toMatchObject({ code: 'CONFLICT' });

    const again = await c.api.putApp({ ...v1, env: { SICK: '1' } });
    await waitFor(async () => ((await c.api.getDeployment(again.id))?.progress.newStarted ?? 0) > 0, 'a new instance to start');
    await c.api.cancelDeployment(again.id, { force: true });
    expect(await c.api.getDeployment(again.id)).toMatchObject({ state: 'failed' });
    expect((await c.api.listDeployments()).some((d) => d.revertOf === again.id)).toBe(false);
    expect((await c.api.getApp('/web'))!.version).toBe(again.to.version);
  });

  it('fails a version that never gets healthy at its progress deadline and reverts, the old instances serving throughout', async () => {
    const c = await cluster();
    const v1 = app(webApp('/web', { instances: 2, upgradeStrategy: { progressDeadlineSeconds: 20, autoRevert: true, minimumHealthCapacity: 1, maximumOverCapacity: 1 } }));
    await finished(c.api, await c.api.putApp(v1));
    const good = (await c.api.getApp('/web'))!;
    const oldEndpoints = await c.api.endpoints('/web');

    // Probe the old instances all the way through.
    let probes = 0;
    const failures: string[] = [];
    let probing = true;
    const prober = (async () => {
      while (probing) {
        for (const endpoint of oldEndpoints) {
          const answer = await get(endpoint).catch((error: Error) => error.message);
          probes++;
          if (answer !== `200 ${good.version}`) failures.push(answer);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    // The target version's strategy rules its deployment: 2 s for the bad one, 20 s for the revert.
    const bad = await c.api.putApp({ ...v1, env: { SICK: '1' }, upgradeStrategy: { ...v1.upgradeStrategy, progressDeadlineSeconds: 2 } });
    const failed = await finished(c.api, bad);
    expect(failed.state).toBe('failed');
    expect(failed.reason).toMatch(/no progress for 2 s \(progressDeadlineSeconds\)/);
    const revert = await waitFor(async () => (await c.api.listDeployments()).find((d) => d.revertOf === bad.id), 'the revert deployment');
    expect(revert).toMatchObject({ from: { version: bad.to.version }, to: { version: good.version, instances: 2 } });
    expect(await finished(c.api, revert)).toMatchObject({ state: 'succeeded' });
    probing = false;
    await prober;

    expect(failures).toEqual([]);
    expect(probes).toBeGreaterThan(0);
    const status = (await c.api.getApp('/web'))!;
    expect(status.version).toBe(good.version);
    expect(status.app.env).toEqual({});
    expect(status.tasks.map((t) => t.taskId).sort()).toEqual(good.tasks.map((t) => t.taskId).sort());
    await waitFor(() => c.masterTasks().live.length === 2, 'the sick instances to be gone');
  });

  it('places UNIQUE hostname instances on three different agents and leaves a fourth pending', async () => {
    const c = await ServicesCluster.start();
    clusters.push(c);
    for (const hostname of ['host-a', 'host-b', 'host-c']) await c.addAgent({ hostname });
    await c.startFramework();
    const sleeper = { id: '/spread', cmd: 'sleep 600', cpus: 0.1, mem: 16, killGracePeriodSeconds: 0, constraints: [['hostname', 'UNIQUE']] } as unknown as AppDefinitionInput;
    await finished(c.api, await c.api.putApp(app({ ...sleeper, instances: 3 })));
    const hosts = (await c.api.tasks('/spread')).map((t) => t.host).sort();
    expect(hosts).toEqual(['host-a', 'host-b', 'host-c']);

    const more = await c.api.scale('/spread', 4);
    await new Promise((r) => setTimeout(r, 500));
    expect((await c.api.getDeployment(more.id))!.state).toBe('running');
    expect(await c.api.tasks('/spread')).toHaveLength(3);
    // A change while it runs is refused unless forced.
    await expect(c.api.scale('/spread', 3)).rejects.toMatchObject({ code: 'CONFLICT' });
    const forced = await c.api.scale('/spread', 3, { force: true });
    expect((await c.api.getDeployment(more.id))!.state).toBe('failed');
    expect(await finished(c.api, forced)).toMatchObject({ state: 'succeeded' });
  });

  it('places by agent attributes from the offers: IS pins to a rack, GROUP_BY spreads evenly over racks', async () => {
    const c = await ServicesCluster.start();
    clusters.push(c);
    for (const [hostname, rack] of [['host-a', 'r1'], ['host-b', 'r1'], ['host-c', 'r2']] as const) await c.addAgent({ hostname, attributes: { rack } });
    await c.startFramework();
    const sleeper = (id: string, instances: number, constraints: unknown[]) =>
      app({ id, instances, cmd: 'sleep 600', cpus: 0.1, mem: 16, killGracePeriodSeconds: 0, constraints } as unknown as AppDefinitionInput);

    await finished(c.api, await c.api.putApp(sleeper('/pinned', 3, [['rack', 'IS', 'r2']])));
    expect((await c.api.tasks('/pinned')).map((t) => t.host)).toEqual(['host-c', 'host-c', 'host-c']);

    await finished(c.api, await c.api.putApp(sleeper('/grouped', 4, [['rack', 'GROUP_BY', '2']])));
    const hosts = (await c.api.tasks('/grouped')).map((t) => t.host);
    expect(hosts.filter((h) => h === 'host-c')).toHaveLength(2); // rack r2 is one host
    expect(hosts.filter((h) => h !== 'host-c')).toHaveLength(2); // rack r1 gets the other half

    // No agent has rack r3: the instance stays pending, and nothing is launched elsewhere.
    const nowhere = await c.api.putApp(sleeper('/nowhere', 1, [['rack', 'IS', 'r3']]));
    await new Promise((r) => setTimeout(r, 500));
    expect((await c.api.getDeployment(nowhere.id))!.state).toBe('running');
    expect(await c.api.tasks('/nowhere')).toEqual([]);
  });

  it('waits for a dependency to be healthy before launching, says why, and tells the app where it is', async () => {
    const c = await cluster();
    const web = await c.api.putApp(app({ ...webApp('/web'), dependencies: ['/db'], cmd: `echo "$AGORA_ENDPOINTS_DB" > db-endpoints; exec "${process.execPath}" "${serverScript}"` }));
    await waitFor(async () => (await c.api.getDeployment(web.id))?.waiting, 'the web deployment to say it waits');
    expect((await c.api.getDeployment(web.id))!.waiting).toBe('waiting for dependency /db: it does not exist');

    const db = await c.api.putApp(app(webApp('/db', { env: { LISTEN_AFTER_MS: '1000' } })));
    await waitFor(async () => (await c.api.getDeployment(web.id))?.waiting?.includes('0 of 1'), 'web to wait for db health');
    expect(await c.api.tasks('/web')).toEqual([]);
    await finished(c.api, db);
    expect(await finished(c.api, web)).toMatchObject({ state: 'succeeded' });

    // The dependency was healthy before the first web task was launched.
    const firstWebTask = c.events.findIndex((e) => e.type === 'task' && e.task.appId === '/web');
    const dbServing = c.events.findIndex((e) => e.type === 'endpoints' && e.appId === '/db' && e.endpoints.length === 1);
    expect(dbServing).toBeGreaterThanOrEqual(0);
    expect(dbServing).toBeLessThan(firstWebTask);
    const [dbEndpoint] = await c.api.endpoints('/db');
    const [webTask] = await c.api.tasks('/web');
    const { readFileSync } = await import('node:fs');
    const { sandboxPath } = await import('../../agent/sandbox.ts');
    const workDir = (c.agents[0] as unknown as { options: { workDir: string } }).options.workDir;
    expect(readFileSync(`${sandboxPath(workDir, c.framework!.frameworkId, webTask!.taskId)}/db-endpoints`, 'utf8').trim()).toBe(`${dbEndpoint!.host}:${dbEndpoint!.port}`);
  });

  it('refuses bad app definitions with errors naming the fields, and changes nothing', async () => {
    const c = await cluster();
    // /a waits for /c, which does not exist: its deployment stays running, with nothing launched.
    const a = await c.api.putApp(app({ ...webApp('/a'), servicePort: 10080, dependencies: ['/c'] }));
    await waitFor(async () => (await c.api.getDeployment(a.id))?.waiting, '/a to wait for /c');
    const snapshot = async () => JSON.stringify({ apps: await c.api.listApps(), deployments: await c.api.listDeployments(), versions: await c.api.versions('/a') });
    const before = await snapshot();

    const invalid = await c.api.putApp({ id: '/Bad_Id', instances: -1, cmd: 'true', cpus: 0 } as unknown as AppDefinition).then(
      () => undefined,
      (error: unknown) => error as ServicesError,
    );
    expect(invalid).toBeInstanceOf(ServicesError);
    expect(invalid!.code).toBe('INVALID');
    expect((invalid!.details as { field: string }[]).map((p) => p.field).sort()).toEqual(['cpus', 'id', 'instances']);
    expect(invalid!.message).toMatch(/instances: must be 0 or more/);

    await expect(c.api.putApp(app({ ...webApp('/b'), servicePort: 10080 }))).rejects.toMatchObject({ code: 'INVALID', message: expect.stringMatching(/servicePort: 10080 is already the service port of \/a/) });
    await expect(c.api.putApp(app({ ...webApp('/c'), dependencies: ['/a'] }))).rejects.toMatchObject({ code: 'INVALID', message: expect.stringMatching(/cycle: \/c → \/a → \/c/) });
    await expect(c.api.putApp(app(webApp('/a')))).rejects.toMatchObject({ code: 'CONFLICT' });
    // One framework, one role: an app asking for another role is refused, not run under '*'.
    await expect(c.api.putApp(app({ ...webApp('/d'), role: 'analytics' }))).rejects.toMatchObject({
      code: 'INVALID',
      message: expect.stringMatching(/role: analytics is not this services framework's role \(\*\); run a services framework with --role analytics/),
    });
    await expect(c.api.scale('/a', -2)).rejects.toMatchObject({ code: 'INVALID' });
    await expect(c.api.scale('/nope', 2)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(c.api.deleteApp('/nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(c.api.rollback('/a', 'no-such-version')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(c.api.cancelDeployment('no-such-deployment')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await snapshot()).toBe(before);
    expect(c.masterTasks().live).toEqual([]);

    // Deleting is a deployment too; once done the app is gone.
    const deletion = await c.api.deleteApp('/a', { force: true });
    expect(await finished(c.api, deletion)).toMatchObject({ state: 'succeeded' });
    expect(await c.api.getApp('/a')).toBeUndefined();
    expect(c.events.filter((e) => e.type === 'app_changed' && e.appId === '/a').at(-1)).toEqual({ type: 'app_changed', appId: '/a', version: undefined });
  });
});
