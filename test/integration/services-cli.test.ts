/**
 * `agora app …` as a user runs it: the real CLI in its own process against the real HTTP API on
 * loopback. Behind the API is an in-memory STAND-IN FOR THE SCHEDULER whose deployments advance a
 * step each time they are read, so `--wait` sees progress, success, and a failure with a revert.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppDefinition } from '../../frameworks/services/app-definition.ts';
import { startServicesHttp, type ServicesHttp } from '../../frameworks/services/http/server.ts';
import { ServicesError, type AppStatus, type DeploymentView, type ServicesApi, type ServicesEvent } from '../../frameworks/services/service-api.ts';
import { agora as agoraCli, removeDir, tempDir, type CliRun } from './helpers.ts';

const agora = (args: string[]): Promise<CliRun> => agoraCli(args, 25_000);


/** Stand-in for the scheduler: an app whose id contains "broken" fails its deployment and reverts. */
class SteppingServicesApi implements ServicesApi {
  apps = new Map<string, { app: AppDefinition; version: string; versions: string[] }>();
  deployments = new Map<string, DeploymentView>();
  private counter = 0;

  private deploy(appId: string, instances: number, version: string, from?: { version: string; instances: number }, revertOf?: string): DeploymentView {
    const deployment: DeploymentView = {
      id: `d${++this.counter}`,
      appId,
      ...(from && { from }),
      to: { version, instances },
      state: 'running',
      ...(revertOf !== undefined && { revertOf }),
      startedAtMs: 1,
      lastProgressAtMs: 1,
      bestDistance: instances,
      oldAtStart: from?.instances ?? 0,
      progress: { target: instances, newStarted: 0, newHealthy: 0, newReady: 0, oldRunning: from?.instances ?? 0, oldKilled: 0 },
    };
    this.deployments.set(deployment.id, deployment);
    return deployment;
  }
  /** One step per read: started, healthy and ready, old killed, done (or failed, for "broken"). */
  private step(d: DeploymentView): void {
    if (d.state !== 'running') return;
    const p = d.progress;
    if (d.appId.includes('broken') && d.revertOf === undefined) {
      if (p.newStarted < p.target) {
        p.newStarted = p.target;
        return;
      }
      d.state = 'failed';
      d.reason = 'no progress for 1 s (progressDeadlineSeconds): 0 of 2 new instances became healthy';
      const entry = this.apps.get(d.appId)!;
      const previous = entry.versions[entry.versions.length - 2]!;
      entry.version = previous;
      this.deploy(d.appId, d.from?.instances ?? 0, previous, d.to, d.id);
      return;
    }
    if (p.newStarted < p.target) p.newStarted = p.target;
    else if (p.newHealthy < p.target) p.newHealthy = p.newReady = p.target;
    else if (p.oldRunning > 0) {
      p.oldKilled = p.oldRunning;
      p.oldRunning = 0;
    } else d.state = 'succeeded';
  }
  private need(appId: string) {
    const entry = this.apps.get(appId);
    if (!entry) throw new ServicesError('NOT_FOUND', `no app ${appId}`);
    return entry;
  }
  private status(appId: string): AppStatus {
    const { app, version } = this.need(appId);
    const deployment = [...this.deployments.values()].find((d) => d.appId === appId && d.state === 'running');
    const tasks = Array.from({ length: app.instances }, (_, i) => ({
      taskId: `${appId.slice(1).replace(/\//g, '_')}.${i}`, instanceId: `i${i}`, appId, version, state: 'RUNNING' as const, healthy: true, ready: true, agentId: 'a1', host: '127.0.0.1', ports: [31000 + i], startedAtMs: 1,
    }));
    return { app, version, tasks, deployment };
  }

  async listApps() {
    return [...this.apps.keys()].map((id) => this.status(id));
  }
  async getApp(appId: string) {
    return this.apps.has(appId) ? this.status(appId) : undefined;
  }
  async putApp(app: AppDefinition) {
    const existing = this.apps.get(app.id);
    const version = `v${++this.counter}`;
    this.apps.set(app.id, { app, version, versions: [...(existing?.versions ?? []), version] });
    return this.deploy(app.id, app.instances, version, existing && { version: existing.version, instances: existing.app.instances });
  }
  async deleteApp(appId: string) {
    const entry = this.need(appId);
    this.apps.delete(appId);
    return this.deploy(appId, 0, entry.version, { version: entry.version, instances: entry.app.instances });
  }
  async scale(appId: string, instances: number) {
    const entry = this.need(appId);
    const from = { version: entry.version, instances: entry.app.instances };
    entry.app = { ...entry.app, instances };
    return this.deploy(appId, instances, entry.version, from);
  }
  async restart(appId: string) {
    const entry = this.need(appId);
    return this.deploy(appId, entry.app.instances, entry.version, { version: entry.version, instances: entry.app.instances });
  }
  async rollback(appId: string, toVersion?: string) {
    const entry = this.need(appId);
    const target = toVersion ?? entry.versions[entry.versions.length - 2];
    if (target === undefined || !entry.versions.includes(target)) throw new ServicesError('INVALID', `app ${appId} has no version ${target ?? 'before ' + entry.version}; \`agora app versions ${appId}\` lists them`);
    const from = { version: entry.version, instances: entry.app.instances };
    entry.version = target;
    return this.deploy(appId, entry.app.instances, target, from);
  }
  async versions(appId: string) {
    const entry = this.need(appId);
    return entry.versions.map((version) => ({ version, createdAtMs: 0, app: entry.app }));
  }
  async listDeployments() {
    return [...this.deployments.values()];
  }
  async getDeployment(id: string) {
    const d = this.deployments.get(id);
    if (d) this.step(d);
    return d;
  }
  async cancelDeployment(id: string) {
    this.deployments.delete(id);
  }
  async tasks(appId?: string) {
    return (await this.listApps()).flatMap((s) => s.tasks).filter((t) => appId === undefined || t.appId === appId);
  }
  async endpoints(appId: string) {
    return this.status(appId).tasks.map((t) => ({ taskId: t.taskId, host: t.host, port: t.ports[0]!, ports: t.ports }));
  }
  subscribe(_listener: (event: ServicesEvent) => void) {
    return () => {};
  }
}


describe('agora app (against the HTTP API over a stand-in for the scheduler)', () => {
  let api: SteppingServicesApi;
  let http: ServicesHttp;
  let dir: string;

  beforeAll(async () => {
    api = new SteppingServicesApi();
    http = await startServicesHttp({ api, port: 0 });
    dir = tempDir('agora-app-cli-');
  });
  afterAll(async () => {
    await http.close();
    removeDir(dir);
  });

  function file(name: string, text: string): string {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  }

  it('deploys a YAML file with --wait: progress lines, then success and exit 0', async () => {
    const path = file('web.yaml', 'id: /shop/web\ninstances: 2\ncmd: sleep 1000\n');
    const run = await agora(['app', 'deploy', path, '--wait', '--api', http.url]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/deploying \/shop\/web: deployment d\d+ to version v\d+ \(2 instances\)/);
    expect(run.stdout).toMatch(/new started 2\/2 · healthy 0\/2/);
    expect(run.stdout).toMatch(/new started 2\/2 · healthy 2\/2/);
    expect(run.stdout).toMatch(/deployed \/shop\/web version v\d+: 2 instance\(s\) healthy/);
    expect(api.apps.get('/shop/web')!.app.upgradeStrategy.minimumHealthCapacity).toBe(1);
  });

  it('deploys a JSON file without --wait and prints the deployment as JSON with --json', async () => {
    const path = file('api.json', JSON.stringify({ id: '/shop/api', instances: 1, cmd: 'sleep 1000' }));
    const run = await agora(['app', 'deploy', path, '--json', '--api', http.url]);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ appId: '/shop/api', state: 'running', to: { instances: 1 } });
  });

  it('exits non-zero naming the reason and the revert when a deployment fails', async () => {
    await agora(['app', 'deploy', file('broken-v1.yaml', 'id: /broken\ninstances: 2\ncmd: sleep 1000\n'), '--api', http.url]);
    api.deployments.forEach((d) => d.appId === '/broken' && (d.state = 'succeeded'));
    const run = await agora(['app', 'deploy', file('broken-v2.yaml', 'id: /broken\ninstances: 2\ncmd: exit 1\n'), '--wait', '--api', http.url]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/deployment d\d+ of \/broken failed: no progress for 1 s .*; reverting to version v\d+ \(deployment d\d+\)/);
  });

  it('refuses an invalid file before calling the API, naming the file and each field', async () => {
    const run = await agora(['app', 'deploy', file('bad.yaml', 'id: /Bad\ninstnces: 2\ncmd: x\n'), '--api', http.url]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('bad.yaml');
    expect(run.stderr).toMatch(/id: must be a path/);
    expect(run.stderr).toMatch(/instnces: unknown field; did you mean instances\?/);
    expect(api.apps.has('/Bad')).toBe(false);
  });

  it('says how to start the API when nothing answers', async () => {
    const run = await agora(['app', 'list', '--api', 'http://127.0.0.1:9']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/cannot reach the services API at http:\/\/127\.0\.0\.1:9 .*agora up/);
  });

  it('lists apps as a table and as JSON', async () => {
    const run = await agora(['app', 'list', '--api', http.url]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^ID\s+RUNNING\s+HEALTHY\s+VERSION\s+DEPLOYMENT\s+SERVICE PORT\n/);
    expect(run.stdout).toMatch(/\/shop\/web\s+2\/2\s+2\s+v\d+/);
    const json = await agora(['app', 'list', '--json', '--api', http.url]);
    expect((JSON.parse(json.stdout) as AppStatus[]).map((s) => s.app.id)).toEqual(expect.arrayContaining(['/shop/web', '/shop/api']));
  });

  it('shows one app with its tasks, and 2 with a hint for an unknown one', async () => {
    const run = await agora(['app', 'status', '/shop/web', '--api', http.url]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^APP \/shop\/web {2}version v\d+ {2}instances 2/);
    expect(run.stdout).toMatch(/TASKS \(2\)\nTASK\s+VERSION\s+STATE\s+HEALTH\s+HOST\s+PORTS\nshop_web\.0\s+v\d+\s+RUNNING\s+healthy\s+127\.0\.0\.1\s+31000/);
    const missing = await agora(['app', 'status', 'nope', '--api', http.url]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('agora app list');
  });

  it('scales with --wait, and refuses a count that is not a number', async () => {
    const run = await agora(['app', 'scale', 'shop/web', '3', '--wait', '--api', http.url]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/scaling shop\/web to 3: deployment/);
    expect(run.stdout).toMatch(/old killed 2\/2/);
    expect(api.apps.get('/shop/web')!.app.instances).toBe(3);
    const bad = await agora(['app', 'scale', 'shop/web', 'three', '--api', http.url]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/whole number/);
  });

  it('restarts, lists versions, rolls back --to a version, and reports a version that does not exist', async () => {
    expect((await agora(['app', 'restart', '/shop/web', '--api', http.url])).stdout).toMatch(/restarting \/shop\/web: deployment d\d+/);
    await agora(['app', 'deploy', file('web2.yaml', 'id: /shop/web\ninstances: 3\ncmd: sleep 2000\n'), '--api', http.url]);
    const versions = await agora(['app', 'versions', '/shop/web', '--json', '--api', http.url]);
    const [first] = JSON.parse(versions.stdout) as Array<{ version: string }>;
    const back = await agora(['app', 'rollback', '/shop/web', '--to', first!.version, '--wait', '--json', '--api', http.url]);
    expect(back.code).toBe(0);
    expect(JSON.parse(back.stdout)).toMatchObject({ ok: true, deployment: { to: { version: first!.version } } });
    const none = await agora(['app', 'rollback', '/shop/web', '--to', 'v999', '--api', http.url]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no version v999.*agora app versions/);
  });

  it('shows endpoints as host:port', async () => {
    const run = await agora(['app', 'endpoints', '/shop/api', '--api', http.url]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^TASK\s+ADDRESS\s+PORTS\nshop_api\.0\s+127\.0\.0\.1:31000\s+31000\n$/);
  });

  it('removes an app', async () => {
    const run = await agora(['app', 'rm', '/shop/api', '--wait', '--api', http.url]);
    expect(run.code).toBe(0);
    expect(api.apps.has('/shop/api')).toBe(false);
  });
});
