/**
 * The services framework end to end, with nothing faked: a master and an agent on loopback, the
 * real services scheduler, its HTTP API and the service-port proxy. Apps are deployed through HTTP
 * and through the CLI in its own process; their endpoints are read back and reached through the
 * service port.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.ts';
import type { MasterServer } from '../../master/http/server.ts';
import { startServicesHttp, type ServicesHttp } from '../../frameworks/services/http/server.ts';
import { startServicesFramework, type ServicesFramework } from '../../frameworks/services/main.ts';
import { ServicePortProxy } from '../../frameworks/services/proxy.ts';
import type { DeploymentView, Endpoint } from '../../frameworks/services/service-api.ts';
import { agora as agoraCli, quiet, removeDir, startAgent, startMaster, tempDir, waitFor, type CliRun, freePort, readEventStream } from './helpers.ts';

const agora = (args: string[]): Promise<CliRun> => agoraCli(args, 60_000);



/** An HTTP app that answers with its version and pid, and a fast health check on the same port. */
function webApp(id: string, servicePort: number, greeting: string) {
  const server = `require('http').createServer((q,s)=>s.end(process.env.GREETING+' '+process.pid)).listen(+process.env.PORT_HTTP,'127.0.0.1')`;
  return {
    id,
    instances: 2,
    cmd: `exec ${JSON.stringify(process.execPath)} -e "${server}"`,
    cpus: 0.1,
    mem: 256,
    env: { GREETING: greeting },
    ports: [{ port: 0, name: 'http' }],
    servicePort,
    // Checked often so it turns healthy fast, but forgiving: a loaded CI machine must not fail it.
    healthChecks: [{ protocol: 'HTTP', path: '/', portName: 'http', gracePeriodSeconds: 30, intervalSeconds: 0.3, timeoutSeconds: 5, delaySeconds: 0, maxConsecutiveFailures: 20 }],
    upgradeStrategy: { minimumHealthCapacity: 0.5, maximumOverCapacity: 0.5, progressDeadlineSeconds: 30 },
    killGracePeriodSeconds: 1,
  };
}

async function json(url: string, method = 'GET', body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(url, { method, ...(body !== undefined && { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }) });
  return { status: res.status, body: await res.json() };
}

/** GET through the service port; undefined when the proxy closed the connection. */
function viaServicePort(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve(text));
      res.on('error', () => resolve(undefined));
    });
    req.on('error', () => resolve(undefined));
    req.end();
  });
}



describe('services framework end to end: HTTP API, CLI and service port over a real cluster', () => {
  let master: MasterServer;
  let agent: Agent;
  let services: ServicesFramework;
  let http: ServicesHttp;
  let proxy: ServicePortProxy;
  let dir: string;

  /** What the test saw, for a failure message: the answers, the proxy's view and the tasks. */
  async function seen(answers: Iterable<string | undefined>): Promise<string> {
    const tasks = (await services.api.tasks('/e2e/web')).map((t) => `${t.taskId} ${t.version} ${t.state} healthy=${t.healthy} ports=${t.ports.join(',')}`);
    return `answers ${JSON.stringify([...answers])}\nproxy ${JSON.stringify(proxy.status())}\ntasks\n  ${tasks.join('\n  ')}`;
  }

  beforeAll(async () => {
    dir = tempDir('agora-services-e2e-');
    master = await startMaster();
    agent = await startAgent(master, { hostname: '127.0.0.1' });
    services = await startServicesFramework({ master: master.wsUrl, store: 'memory:', logger: quiet, scheduler: { declineRefuseSeconds: 1 } });
    http = await startServicesHttp({ api: services.api, port: 0 });
    services.setApiUrl(http.url); // as `agora up` and `agora services` do once the API listens
    proxy = new ServicePortProxy({ api: services.api, pollIntervalMs: 500 });
    await proxy.start();
  });
  afterAll(async () => {
    await proxy?.close();
    await http?.close();
    await services?.close();
    await agent?.stop({ killTasks: true });
    await master?.close();
    removeDir(dir);
  });

  it('deploys through HTTP, lists healthy endpoints, and serves through the service port', async () => {
    const servicePort = await freePort();
    const created = await json(`${http.url}/v1/apps`, 'POST', webApp('/e2e/web', servicePort, 'hello'));
    expect(created.status).toBe(201);
    const deployment = created.body as DeploymentView;

    let last: unknown;
    await waitFor(
      async () => {
        last = (await json(`${http.url}/v1/deployments/${deployment.id}`)).body;
        return (last as DeploymentView).state === 'succeeded';
      },
      () => `deployment ${deployment.id} to succeed; last seen ${JSON.stringify(last)}`,
      30_000,
    );
    // Succeeded means both were healthy and ready once; read the endpoints once they are again.
    const endpoints = await waitFor(async () => {
      const list = (await json(`${http.url}/v1/apps/e2e/web/endpoints`)).body.endpoints as Endpoint[];
      return list.length === 2 && list;
    }, () => `two endpoints; the proxy sees ${JSON.stringify(proxy.status())}`, 10_000);
    for (const e of endpoints) expect(e.host).toBe('127.0.0.1');

    await waitFor(() => proxy.status().find((l) => l.appId === '/e2e/web')?.endpoints.length === 2, 'the proxy to see both endpoints', 10_000);
    const answers = new Set<string>();
    for (let i = 0; i < 4; i++) answers.add((await viaServicePort(servicePort)) ?? 'closed');
    expect([...answers].every((a) => a.startsWith('hello ')), await seen(answers)).toBe(true);
    expect(answers.size).toBe(2); // round-robin reached both instances
  });

  it('tells every task where the services API is, so an app finds another without declaring it a dependency', async () => {
    const found = join(dir, 'found.json');
    const finder = `fetch(process.env.AGORA_SERVICES_API+'/v1/apps/e2e/web/endpoints').then(r=>r.text()).then(t=>{const fs=require('fs');fs.writeFileSync(process.env.FOUND+'.tmp',JSON.stringify({api:process.env.AGORA_SERVICES_API,endpoints:JSON.parse(t).endpoints}));fs.renameSync(process.env.FOUND+'.tmp',process.env.FOUND);setInterval(()=>{},1e6)})`;
    const created = await json(`${http.url}/v1/apps`, 'POST', { id: '/e2e/finder', instances: 1, cmd: `exec ${JSON.stringify(process.execPath)} -e "${finder}"`, cpus: 0.1, mem: 128, env: { FOUND: found }, killGracePeriodSeconds: 0 });
    expect(created.status).toBe(201);
    const report = await waitFor(() => existsSync(found) && (JSON.parse(readFileSync(found, 'utf8')) as { api: string; endpoints: Endpoint[] }), 'the finder to report', 20_000);
    expect(report.api).toBe(http.url);
    const web = (await services.api.endpoints('/e2e/web')).map((e) => `${e.host}:${e.port}`).sort();
    expect(report.endpoints.map((e) => `${e.host}:${e.port}`).sort()).toEqual(web);
    expect(web).toHaveLength(2);
    await services.api.deleteApp('/e2e/finder', { force: true });
    await waitFor(async () => (await services.api.getApp('/e2e/finder')) === undefined && (await services.api.tasks()).every((t) => t.appId !== '/e2e/finder'), 'the finder to be removed', 20_000);
  });

  it('rolls out a new version with `agora app deploy --wait`, and the service port serves it', async () => {
    const servicePort = (await services.api.getApp('/e2e/web'))!.app.servicePort!;
    const file = join(dir, 'web-v2.json');
    writeFileSync(file, JSON.stringify(webApp('/e2e/web', servicePort, 'bonjour')));
    const before = new Set((await services.api.endpoints('/e2e/web')).map((e) => e.taskId));
    const stream = readEventStream(`${http.url}/v1/apps/e2e/web/endpoints/events`);
    const lists = () => stream.events.filter((e) => e.name === 'endpoints').map((e) => (e.data as { endpoints: Endpoint[] }).endpoints);
    await waitFor(() => lists().length > 0, 'the endpoint stream to send the current endpoints');
    const run = await agora(['app', 'deploy', file, '--wait', '--api', http.url]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/new started \d\/2 · healthy \d\/2/);
    expect(run.stdout).toMatch(/deployed \/e2e\/web version \S+: 2 instance\(s\) healthy/);

    // Both new instances are endpoints once healthy again (a loaded machine can delay a check).
    let listed: Endpoint[] = [];
    await waitFor(
      async () => {
        const run = await agora(['app', 'endpoints', '/e2e/web', '--json', '--api', http.url]);
        expect(run.code).toBe(0);
        listed = JSON.parse(run.stdout) as Endpoint[];
        return listed.length === 2;
      },
      () => `agora app endpoints to list both instances; it listed ${JSON.stringify(listed)}; the proxy sees ${JSON.stringify(proxy.status())}`,
      20_000,
    );

    // The stream told of the change: some list holds only new instances.
    await waitFor(() => lists().some((list) => list.length > 0 && list.every((e) => !before.has(e.taskId))), 'an endpoints event with the new instances');
    stream.close();
    await waitFor(async () => (await viaServicePort(servicePort))?.startsWith('bonjour '), 'the service port to serve the new version', 10_000);
    for (let i = 0; i < 4; i++) expect(await viaServicePort(servicePort)).toMatch(/^bonjour /);
  });

  it('exits non-zero when a version never gets healthy, reverts, and the old version serves throughout', async () => {
    const servicePort = (await services.api.getApp('/e2e/web'))!.app.servicePort!;
    const before = (await services.api.getApp('/e2e/web'))!.version;
    const broken = {
      ...webApp('/e2e/web', servicePort, 'broken'),
      cmd: 'exec sleep 1000', // listens on nothing: its health check never passes
      upgradeStrategy: { minimumHealthCapacity: 1, maximumOverCapacity: 1, progressDeadlineSeconds: 2, autoRevert: true },
    };
    const file = join(dir, 'web-broken.json');
    writeFileSync(file, JSON.stringify(broken));

    const answers: Array<string | undefined> = [];
    let deploying = true;
    const traffic = (async () => {
      while (deploying) {
        answers.push(await viaServicePort(servicePort));
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    const run = await agora(['app', 'deploy', file, '--wait', '--api', http.url]);
    // Traffic goes on through the revert deployment too, until the app has no deployment left.
    await waitFor(async () => (await services.api.getApp('/e2e/web'))?.deployment === undefined, 'the revert to finish', 20_000);
    deploying = false;
    await traffic;

    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/deployment \S+ of \/e2e\/web failed: .+; reverting to version \S+ \(deployment \S+\)/);
    expect(answers.length).toBeGreaterThan(0);
    expect(answers.filter((a) => !a?.startsWith('bonjour ')), await seen(answers)).toEqual([]);
    expect((await services.api.getApp('/e2e/web'))!.version).toBe(before);
    expect((await services.api.tasks('/e2e/web')).map((t) => t.version)).toEqual([before, before]);
  });

  it('cancels a deployment in progress with `agora app cancel`: it reverts and the old version keeps serving', async () => {
    const servicePort = (await services.api.getApp('/e2e/web'))!.app.servicePort!;
    const before = (await services.api.getApp('/e2e/web'))!.version;
    // A version that never gets healthy, with a deadline far away: only a cancel ends it.
    const stuck = { ...webApp('/e2e/web', servicePort, 'stuck'), cmd: 'exec sleep 1000', upgradeStrategy: { minimumHealthCapacity: 1, maximumOverCapacity: 1, progressDeadlineSeconds: 600 } };
    const started = await services.api.putApp((await import('../../frameworks/services/index.ts')).validateAppDefinition(stuck));
    await waitFor(async () => (await services.api.tasks('/e2e/web')).some((t) => t.version === started.to.version && t.state === 'RUNNING'), 'a new instance running');

    const cancel = await agora(['app', 'cancel', '/e2e/web', '--wait', '--api', http.url]);
    expect(cancel.stderr).toBe('');
    expect(cancel.code).toBe(0);
    expect(cancel.stdout).toContain(`cancelled deployment ${started.id} of /e2e/web; reverting to version ${before}`);
    expect(cancel.stdout).toMatch(/deployed \/e2e\/web version \S+: 2 instance\(s\) healthy/);
    expect((await services.api.getDeployment(started.id))?.state).toBe('failed');
    const status = (await services.api.getApp('/e2e/web'))!;
    expect(status.version).toBe(before);
    expect(status.tasks.every((t) => t.version === before)).toBe(true);
    expect(await viaServicePort(servicePort)).toMatch(/^bonjour /);

    // Nothing left to cancel: a clear refusal.
    const nothing = await agora(['app', 'cancel', '/e2e/web', '--api', http.url]);
    expect(nothing.code).not.toBe(0);
    expect(nothing.stderr).toContain('app /e2e/web has no deployment in progress');
  });

  it('shows the app in `agora app list` and removes it with `agora app rm --wait`, closing its service port', async () => {
    const servicePort = (await services.api.getApp('/e2e/web'))!.app.servicePort!;
    const list = await agora(['app', 'list', '--api', http.url]);
    expect(list.stdout).toMatch(/\/e2e\/web\s+2\/2\s+2\s+/);
    const rm = await agora(['app', 'rm', '/e2e/web', '--wait', '--api', http.url]);
    expect(rm.code).toBe(0);
    await waitFor(async () => (await json(`${http.url}/v1/apps/e2e/web`)).status === 404, 'the app to be gone', 15_000);
    await waitFor(() => !proxy.status().some((l) => l.appId === '/e2e/web'), 'the service port to close', 10_000);
    expect(await viaServicePort(servicePort)).toBeUndefined();
  });
});
