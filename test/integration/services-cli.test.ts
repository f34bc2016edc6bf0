/**
 * `agora app …` as a user runs it: the real CLI in its own process against the real HTTP API on
 * loopback, with the real services scheduler behind it on a real master and agent (process
 * containerizer), nothing faked. One cluster serves the file; each test works on apps of its own,
 * small HTTP servers with a fast health check, so `--wait` follows real deployments: progress,
 * success, and a version that never gets healthy failing its progress deadline and reverting.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { startServicesHttp, type ServicesHttp } from '../../frameworks/services/http/server.ts';
import { validateAppDefinition, type AppDefinitionInput, type AppStatus, type DeploymentView } from '../../frameworks/services/index.ts';
import { agora as agoraCli, removeDir, tempDir, waitFor, type CliRun } from './helpers.ts';
import { ServicesCluster, webApp } from './services-scheduler-cluster.ts';

const agora = (args: string[]): Promise<CliRun> => agoraCli(args, 60_000);

/** A version as the scheduler makes them: an ISO timestamp. */
const VERSION = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`;

const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

describe('agora app (against the HTTP API over the real services scheduler on a real cluster)', () => {
  let cluster: ServicesCluster;
  let http: ServicesHttp;
  let dir: string;

  beforeAll(async () => {
    dir = tempDir('agora-app-cli-');
    cluster = await ServicesCluster.start();
    await cluster.addAgent();
    await cluster.startFramework({ scheduler: { declineRefuseSeconds: 1 } });
    http = await startServicesHttp({ api: cluster.api, port: 0 });
  }, 30_000);
  afterAll(async () => {
    await http?.close();
    await cluster?.close();
    removeDir(dir);
  });

  function file(name: string, text: string): string {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  }

  /** Waits for a deployment to end; it must succeed. */
  async function finished(deployment: DeploymentView): Promise<void> {
    let last: DeploymentView | undefined;
    await waitFor(
      async () => {
        last = await cluster.api.getDeployment(deployment.id);
        return last === undefined || last.state !== 'running';
      },
      () => `deployment ${deployment.id} of ${deployment.appId} to end; last seen ${JSON.stringify(last)}`,
      30_000,
    );
    expect(last?.state ?? 'succeeded', JSON.stringify(last)).toBe('succeeded');
  }

  /** Waits until the app has its instances, all running and healthy (a deployment ends on ready once). */
  async function healthy(appId: string): Promise<AppStatus> {
    let last: AppStatus | undefined;
    return waitFor(
      async () => {
        last = await cluster.api.getApp(appId);
        return last !== undefined && last.deployment === undefined && last.tasks.length === last.app.instances && last.tasks.every((t) => t.state === 'RUNNING' && t.healthy === true) && last;
      },
      () => `app ${appId} to be healthy; last seen ${JSON.stringify(last)}`,
      20_000,
    );
  }

  /** Deploys an app through the API (not the CLI under test) and waits until it is healthy. */
  async function deployed(id: string, extra: Partial<AppDefinitionInput> = {}): Promise<AppStatus> {
    await finished(await cluster.api.putApp(validateAppDefinition(webApp(id, extra))));
    return healthy(id);
  }

  it('deploys a YAML file with --wait: progress lines, then success and exit 0', async () => {
    const path = file('web.yaml', stringify(webApp('/cli/yaml', { instances: 2 })));
    const run = await agora(['app', 'deploy', path, '--wait', '--api', http.url]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`deploying /cli/yaml: deployment \\S+ to version ${VERSION} \\(2 instances\\)`));
    expect(run.stdout).toMatch(/running {3}new started \d\/2 · healthy \d\/2 · ready \d\/2\n/);
    expect(run.stdout).toMatch(/succeeded new started 2\/2 · healthy 2\/2 · ready 2\/2\n/);
    expect(run.stdout).toMatch(new RegExp(`deployed /cli/yaml version ${VERSION}: 2 instance\\(s\\) healthy`));
    expect((await cluster.api.getApp('/cli/yaml'))!.app.upgradeStrategy.minimumHealthCapacity).toBe(1);
  });

  it('deploys a JSON file without --wait and prints the deployment as JSON with --json', async () => {
    const path = file('api.json', JSON.stringify(webApp('/cli/json')));
    const run = await agora(['app', 'deploy', path, '--json', '--api', http.url]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const deployment = JSON.parse(run.stdout) as DeploymentView;
    expect(deployment).toMatchObject({ appId: '/cli/json', state: 'running', to: { instances: 1 } });
    await finished(deployment);
  });

  it('exits non-zero naming the reason and the revert when a deployment fails', async () => {
    const before = await deployed('/cli/broken', { instances: 2 });
    // Listens on nothing, so its health check never passes; the deadline is short and it reverts.
    const broken = { ...webApp('/cli/broken', { instances: 2 }), cmd: 'exec sleep 1000', upgradeStrategy: { minimumHealthCapacity: 1, maximumOverCapacity: 1, progressDeadlineSeconds: 2, autoRevert: true } };
    const run = await agora(['app', 'deploy', file('broken-v2.json', JSON.stringify(broken)), '--wait', '--json', '--api', http.url]);
    expect(run.code).toBe(1);
    // --json: the outcome on stdout for a program, the reason on stderr for a person, either way.
    expect(JSON.parse(run.stdout)).toMatchObject({ ok: false, reason: expect.stringMatching(/progressDeadlineSeconds/), deployment: { state: 'failed' }, revert: { to: { version: before.version } } });
    expect(run.stderr).toMatch(
      new RegExp(`deployment \\S+ of /cli/broken failed: no progress for 2 s \\(progressDeadlineSeconds\\): .*; reverting to version ${escape(before.version)} \\(deployment \\S+\\)`),
    );
    const after = await healthy('/cli/broken');
    expect(after.version).toBe(before.version);
  });

  it('refuses an invalid file before calling the API, naming the file and each field', async () => {
    const run = await agora(['app', 'deploy', file('bad.yaml', 'id: /Bad\ninstnces: 2\ncmd: x\n'), '--api', http.url]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('bad.yaml');
    expect(run.stderr).toMatch(/id: must be a path/);
    expect(run.stderr).toMatch(/instnces: unknown field; did you mean instances\?/);
    expect((await cluster.api.listApps()).map((s) => s.app.id)).not.toContain('/Bad');
  });

  it('says how to start the API when nothing answers', async () => {
    const run = await agora(['app', 'list', '--api', 'http://127.0.0.1:9']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/cannot reach the services API at http:\/\/127\.0\.0\.1:9 .*agora up/);
  });

  it('lists apps as a table and as JSON', async () => {
    const [a] = await Promise.all([deployed('/cli/list/a', { instances: 2 }), deployed('/cli/list/b')]);
    const run = await agora(['app', 'list', '--api', http.url]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^ID\s+RUNNING\s+HEALTHY\s+VERSION\s+DEPLOYMENT\s+SERVICE PORT\n/);
    expect(run.stdout).toMatch(new RegExp(`/cli/list/a\\s+2/2\\s+2\\s+${escape(a!.version)}\\s+-\\s+-\n`));
    const json = await agora(['app', 'list', '--json', '--api', http.url]);
    expect(json.code).toBe(0);
    expect((JSON.parse(json.stdout) as AppStatus[]).map((s) => s.app.id)).toEqual(expect.arrayContaining(['/cli/list/a', '/cli/list/b']));
  });

  it('shows one app with its tasks, and 2 with a hint for an unknown one', async () => {
    const { version, tasks } = await deployed('/cli/status', { instances: 2 });
    const run = await agora(['app', 'status', '/cli/status', '--api', http.url]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^APP /cli/status {2}version ${escape(version)} {2}instances 2\n`));
    expect(run.stdout).toMatch(new RegExp(`TASKS \\(2\\)\nTASK\\s+VERSION\\s+STATE\\s+HEALTH\\s+HOST\\s+PORTS\ncli_status\\.\\S+\\s+${escape(version)}\\s+RUNNING\\s+healthy\\s+127\\.0\\.0\\.1\\s+\\d+\n`));
    for (const t of tasks) expect(run.stdout).toContain(t.taskId);
    const json = await agora(['app', 'status', '/cli/status', '--json', '--api', http.url]);
    expect(json.code).toBe(0);
    const status = JSON.parse(json.stdout) as AppStatus;
    expect(status).toMatchObject({ app: { id: '/cli/status', instances: 2 }, version });
    expect(status.tasks.map((t) => t.taskId).sort()).toEqual(tasks.map((t) => t.taskId).sort());
    const missing = await agora(['app', 'status', 'nope', '--api', http.url]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('agora app list');
  });

  it('scales with --wait, and refuses a count that is not a number', async () => {
    await deployed('/cli/scale');
    const run = await agora(['app', 'scale', 'cli/scale', '2', '--wait', '--api', http.url]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/scaling cli\/scale to 2: deployment/);
    // A scale keeps the version: nothing old to kill, one new instance to start.
    expect(run.stdout).toMatch(/succeeded new started 2\/2 · healthy 2\/2 · ready 2\/2 · old killed 0\/0\n/);
    expect((await cluster.api.getApp('/cli/scale'))!.app.instances).toBe(2);
    const down = await agora(['app', 'scale', 'cli/scale', '1', '--wait', '--json', '--api', http.url]);
    expect(down.code).toBe(0);
    expect(JSON.parse(down.stdout)).toMatchObject({ ok: true, deployment: { appId: '/cli/scale', state: 'succeeded', to: { instances: 1 } } });
    const bad = await agora(['app', 'scale', 'cli/scale', 'three', '--api', http.url]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/whole number/);
  });

  it('restarts, lists versions, rolls back --to a version, and reports a version that does not exist', async () => {
    const first = await deployed('/cli/roll');
    const restart = await agora(['app', 'restart', '/cli/roll', '--wait', '--api', http.url]);
    expect(restart.code).toBe(0);
    expect(restart.stdout).toMatch(new RegExp(`restarting /cli/roll: deployment \\S+ to version ${VERSION} \\(1 instances\\)`));
    expect(restart.stdout).toMatch(/succeeded new started 1\/1 · healthy 1\/1 · ready 1\/1 · old killed 1\/1\n/);
    const v2 = await agora(['app', 'deploy', file('roll-v2.json', JSON.stringify(webApp('/cli/roll', { env: { GREETING: 'v2' } }))), '--wait', '--api', http.url]);
    expect(v2.code).toBe(0);
    const versions = await agora(['app', 'versions', '/cli/roll', '--json', '--api', http.url]);
    expect(versions.code).toBe(0);
    const listed = (JSON.parse(versions.stdout) as Array<{ version: string }>).map((v) => v.version);
    expect(listed).toHaveLength(3);
    expect(listed[0]).toBe(first.version);
    const back = await agora(['app', 'rollback', '/cli/roll', '--to', first.version, '--wait', '--json', '--api', http.url]);
    expect(back.code).toBe(0);
    expect(JSON.parse(back.stdout)).toMatchObject({ ok: true, deployment: { state: 'succeeded', to: { version: first.version } } });
    expect((await healthy('/cli/roll')).version).toBe(first.version);
    const none = await agora(['app', 'rollback', '/cli/roll', '--to', 'v999', '--api', http.url]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(new RegExp(`no version v999; known: ${escape(listed.join(', '))}`));
  }, 60_000); // five CLI runs and four deployments

  it('shows endpoints as host:port', async () => {
    const { tasks } = await deployed('/cli/endpoints');
    const port = tasks[0]!.ports[0]!;
    const run = await agora(['app', 'endpoints', '/cli/endpoints', '--api', http.url]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^TASK\\s+ADDRESS\\s+PORTS\n${escape(tasks[0]!.taskId)}\\s+127\\.0\\.0\\.1:${port}\\s+${port}\n$`));
    expect(tasks[0]!.taskId).toMatch(/^cli_endpoints\./);
  });

  it('removes an app', async () => {
    await deployed('/cli/rm');
    const run = await agora(['app', 'rm', '/cli/rm', '--wait', '--api', http.url]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(await cluster.api.getApp('/cli/rm')).toBeUndefined();
    await waitFor(async () => (await cluster.api.tasks('/cli/rm')).length === 0, 'the app\'s tasks to be gone');
  });

  it('answers restart and rm with the deployment as JSON with --json, and the outcome with --wait --json', async () => {
    const before = await deployed('/cli/json');
    const restart = await agora(['app', 'restart', '/cli/json', '--json', '--api', http.url]);
    expect(restart.code).toBe(0);
    const restarting = JSON.parse(restart.stdout) as DeploymentView;
    expect(restarting).toMatchObject({ appId: '/cli/json', state: 'running', from: { version: before.version, instances: 1 }, to: { instances: 1 } });
    await finished(restarting);
    const rm = await agora(['app', 'rm', '/cli/json', '--wait', '--json', '--api', http.url]);
    expect(rm.code).toBe(0);
    expect(JSON.parse(rm.stdout)).toMatchObject({ ok: true, deployment: { appId: '/cli/json', state: 'succeeded', to: { instances: 0 } } });
    expect(await cluster.api.getApp('/cli/json')).toBeUndefined();
  });
});
