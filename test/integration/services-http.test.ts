/**
 * The services REST API and its event streams over real loopback sockets, against the real services
 * scheduler on a real cluster: one master, one agent (process containerizer) and
 * startServicesFramework with an in-memory store, shared by the whole file. Each test deploys its
 * own apps (small node HTTP servers with a fast health check, see services-scheduler-cluster.ts);
 * what they answer, and the events their real deployments produce, are what the HTTP layer's
 * routing, status codes, validation and streaming are checked against. Apps that must stay
 * mid-deployment answer 503 on their health check (SICK=1), so their deployment never finishes on
 * its own. The HTTP server is given the scheduler's api with only `subscribe` wrapped, to count the
 * listeners the event streams hold.
 */
import { request } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startServicesHttp, type ServicesHttp } from '../../frameworks/services/http/server.ts';
import type { AppDefinitionInput } from '../../frameworks/services/index.ts';
import type { AppStatus, AppVersion, DeploymentView, ServicesApi, ServicesEvent, ServiceTask } from '../../frameworks/services/service-api.ts';
import { waitFor } from './helpers.ts';
import { ServicesCluster, webApp } from './services-scheduler-cluster.ts';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
  text: string;
}

async function call(url: string, method: string, path: string, body?: string | object, contentType?: string): Promise<Reply> {
  const headers: Record<string, string> = {};
  let payload: string | undefined;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    headers['content-type'] = contentType ?? 'application/json';
  }
  const res = await fetch(`${url}${path}`, { method, headers, ...(payload !== undefined && { body: payload }) });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: Object.fromEntries(res.headers), body: parsed, text };
}

/** An SSE client on a raw http request: collects events by name and comment lines. */
function openEventStream(url: string) {
  const events: Array<{ event: string; data: any }> = [];
  const comments: string[] = [];
  let status = 0;
  let buffer = '';
  let ended = false;
  const req = request(url, { headers: { accept: 'text/event-stream' } }, (res) => {
    status = res.statusCode ?? 0;
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buffer += chunk;
      let at: number;
      while ((at = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, at);
        buffer = buffer.slice(at + 2);
        let event = 'message';
        let data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) comments.push(line.slice(1).trim());
          else if (line.startsWith('event: ')) event = line.slice(7);
          else if (line.startsWith('data: ')) data += line.slice(6);
        }
        if (data) events.push({ event, data: JSON.parse(data) });
      }
    });
    res.on('end', () => (ended = true));
    res.on('close', () => (ended = true));
  });
  req.on('error', () => (ended = true));
  req.end();
  return {
    events,
    comments,
    get status() {
      return status;
    },
    get ended() {
      return ended;
    },
    close: () => req.destroy(),
  };
}

/** A healthy app: its deployment finishes within a second or two. */
const web = (id: string, extra: Partial<AppDefinitionInput> = {}): AppDefinitionInput => webApp(id, extra);

/**
 * An app whose instances never get healthy (503 on /health) and are not killed for it in a test's
 * time: its deployment stays running until forced, cancelled or superseded.
 */
function stuck(id: string, extra: Partial<AppDefinitionInput> = {}): AppDefinitionInput {
  const base = webApp(id);
  return {
    ...base,
    env: { SICK: '1' },
    healthChecks: base.healthChecks!.map((h) => ({ ...h, gracePeriodSeconds: 600 })),
    upgradeStrategy: { minimumHealthCapacity: 1, maximumOverCapacity: 1, progressDeadlineSeconds: 600 },
    ...extra,
  };
}

/** The app an event is about. */
function appOf(event: ServicesEvent): string {
  switch (event.type) {
    case 'deployment':
      return event.deployment.appId;
    case 'task':
      return event.task.appId;
    default:
      return event.appId;
  }
}

describe('services HTTP API (against the real scheduler on a real cluster)', () => {
  let cluster: ServicesCluster;
  /** The real scheduler's api, with `subscribe` wrapped to count live listeners. */
  let api: ServicesApi;
  const live = new Set<object>();
  let http: ServicesHttp;

  beforeAll(async () => {
    cluster = await ServicesCluster.start();
    await cluster.addAgent();
    const real = (await cluster.startFramework()).api;
    api = new Proxy(real, {
      get(target, key) {
        if (key === 'subscribe') {
          return (listener: (event: ServicesEvent) => void) => {
            const token = {};
            live.add(token);
            const unsubscribe = target.subscribe(listener);
            return () => {
              live.delete(token);
              unsubscribe();
            };
          };
        }
        const value = Reflect.get(target, key, target) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    http = await startServicesHttp({ api, port: 0, heartbeatMs: 50 });
  }, 30_000);
  afterAll(async () => {
    await http?.close();
    await cluster?.close();
  }, 30_000);
  afterEach(async () => {
    // Free the agent for the next test: every app goes, whatever its deployment is doing.
    for (const status of await api.listApps()) await api.deleteApp(status.app.id, { force: true }).catch(() => undefined);
  });

  /** Waits for a deployment to end and returns how it ended. */
  async function finished(id: string, timeoutMs = 20_000): Promise<DeploymentView> {
    let last: DeploymentView | undefined;
    return waitFor(
      async () => {
        last = await api.getDeployment(id);
        return last && last.state !== 'running' ? last : undefined;
      },
      () => `deployment ${id} to finish; last seen ${JSON.stringify(last)}`,
      timeoutMs,
    );
  }

  /** POSTs an app and waits for its deployment to succeed. */
  async function deployed(input: AppDefinitionInput): Promise<DeploymentView> {
    const reply = await call(http.url, 'POST', '/v1/apps', input);
    expect(reply.status, reply.text).toBe(201);
    const done = await finished(reply.body.id as string);
    expect(done.state, JSON.stringify(done)).toBe('succeeded');
    return done;
  }

  it('answers GET /health', async () => {
    const reply = await call(http.url, 'GET', '/health');
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({ status: 'ok' });
  });

  it('creates an app from JSON with POST /v1/apps: 201, the deployment, and a Location', async () => {
    const reply = await call(http.url, 'POST', '/v1/apps', web('/json/web', { instances: 2 }));
    expect(reply.status).toBe(201);
    expect(reply.headers.location).toBe('/v1/apps/json/web');
    expect(reply.body).toMatchObject({ appId: '/json/web', state: 'running', to: { instances: 2 } });
    const created = await call(http.url, 'GET', '/v1/apps/json/web');
    expect(created.body.app.upgradeStrategy.minimumHealthCapacity).toBe(1); // defaults were applied
    expect(created.body.version).toBe(reply.body.to.version);
  });

  it('creates an app from YAML by content-type', async () => {
    const { cmd } = web('/yaml/api');
    const yaml = `id: /yaml/api\ninstances: 2\ncmd: ${JSON.stringify(cmd)}\ncpus: 0.1\nmem: 32\nports:\n  - port: 0\n    name: http\n`;
    const reply = await call(http.url, 'POST', '/v1/apps', yaml, 'application/yaml');
    expect(reply.status, reply.text).toBe(201);
    expect(reply.body).toMatchObject({ appId: '/yaml/api', to: { instances: 2 } });
    expect((await call(http.url, 'GET', '/v1/apps/yaml/api')).body.app).toMatchObject({ id: '/yaml/api', cmd, cpus: 0.1, mem: 32 });
  });

  it('refuses POST of an app that exists with 409 pointing at PUT', async () => {
    const app = web('/exists/web');
    expect((await call(http.url, 'POST', '/v1/apps', app)).status).toBe(201);
    const reply = await call(http.url, 'POST', '/v1/apps', app);
    expect(reply.status).toBe(409);
    expect(reply.body.error).toContain('PUT /v1/apps/exists/web');
  });

  it('answers an invalid definition with 422 and a problem per field', async () => {
    const before = (await api.listApps()).map((a) => a.app.id);
    const reply = await call(http.url, 'POST', '/v1/apps', { id: '/Shop', instances: -1, cmd: 'x', intances: 2 });
    expect(reply.status).toBe(422);
    expect(reply.body.error).toMatch(/invalid app definition/);
    const fields = (reply.body.problems as Array<{ field: string; message: string }>).map((p) => p.field);
    expect(fields).toEqual(expect.arrayContaining(['id', 'instances', 'intances']));
    expect(reply.body.problems.find((p: { field: string }) => p.field === 'intances').message).toContain('instances');
    // The scheduler never saw it: no app was added (earlier tests' apps may still be going).
    expect(before).toEqual(expect.arrayContaining((await api.listApps()).map((a) => a.app.id)));
  });

  it('answers unreadable JSON with 400 naming the problem, and YAML likewise', async () => {
    const json = await call(http.url, 'POST', '/v1/apps', '{"id": "/a", ', 'application/json');
    expect(json.status).toBe(400);
    expect(json.body.error).toMatch(/not valid JSON/);
    const yaml = await call(http.url, 'POST', '/v1/apps', 'id: [unclosed', 'text/yaml');
    expect(yaml.status).toBe(400);
    expect(yaml.body.error).toMatch(/not valid YAML \(line \d+, column \d+\)/);
    const empty = await call(http.url, 'POST', '/v1/apps', '', 'application/json');
    expect(empty.status).toBe(400);
    expect(empty.body.error).toMatch(/empty/);
  });

  it('refuses a body over 1 MiB with 413', async () => {
    const reply = await call(http.url, 'POST', '/v1/apps', JSON.stringify({ id: '/big', cmd: 'x'.repeat(1024 * 1024 + 10) }));
    expect(reply.status).toBe(413);
    expect(reply.body.error).toMatch(/limit/);
    expect((await call(http.url, 'GET', '/health')).status).toBe(200);
    expect(await api.getApp('/big')).toBeUndefined();
  });

  it('refuses a chunked body that grows past 1 MiB with 413 while it is still arriving', async () => {
    const status = await new Promise<number | string>((resolve) => {
      const req = request(`${http.url}/v1/apps`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', (e) => resolve(e.message));
      const chunk = 'x'.repeat(64 * 1024);
      let sent = 0;
      const write = () => {
        while (sent < 40) {
          sent++;
          if (!req.write(chunk)) return void req.once('drain', write);
        }
        req.end();
      };
      write();
    });
    expect(status).toBe(413);
  });

  it('routes path ids: GET, PUT (id from the path), versions, and DELETE', async () => {
    const app = stuck('/paths/web');
    const created = await call(http.url, 'POST', '/v1/apps', app);
    expect(created.status).toBe(201);
    const got = await call(http.url, 'GET', '/v1/apps/paths/web');
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ app: { id: '/paths/web', instances: 1 }, version: expect.any(String) });

    const { id: _id, ...withoutId } = app;
    const put = await call(http.url, 'PUT', '/v1/apps/paths/web?force=true', { ...withoutId, instances: 2, env: { SICK: '1', CHANGED: '1' } });
    expect(put.status, put.text).toBe(200);
    expect(put.body).toMatchObject({ appId: '/paths/web', to: { instances: 2 } });
    // force reached the scheduler: the running deployment was stopped, not refused.
    expect((await api.getDeployment(created.body.id))?.state).toBe('failed');

    const mismatch = await call(http.url, 'PUT', '/v1/apps/paths/web', { ...app, id: '/paths/other' });
    expect(mismatch.status).toBe(422);
    expect(mismatch.body.problems[0].field).toBe('id');

    const versions = await call(http.url, 'GET', '/v1/apps/paths/web/versions');
    expect(versions.status).toBe(200);
    expect(versions.body.versions.map((v: AppVersion) => v.version)).toEqual([created.body.to.version, put.body.to.version]);

    const list = await call(http.url, 'GET', '/v1/apps');
    expect(list.body.apps.map((a: AppStatus) => a.app.id)).toContain('/paths/web');

    const deleted = await call(http.url, 'DELETE', '/v1/apps/paths/web?force=true');
    expect(deleted.status).toBe(200);
    expect(deleted.body.to.instances).toBe(0);
    await waitFor(async () => (await call(http.url, 'GET', '/v1/apps/paths/web')).status === 404, 'the app to be gone', 20_000);
  });

  it('turns a scheduler CONFLICT into 409 and NOT_FOUND into 404, with its message', async () => {
    expect((await call(http.url, 'POST', '/v1/apps', stuck('/conflict/web'))).status).toBe(201);
    const conflict = await call(http.url, 'POST', '/v1/apps/conflict/web/scale', { instances: 2 });
    expect(conflict.status).toBe(409);
    expect(conflict.body).toMatchObject({ code: 'CONFLICT', error: expect.stringContaining('force') });
    const missing = await call(http.url, 'POST', '/v1/apps/nope/restart');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toContain('/nope');
  });

  it('scales, restarts and rolls back with force, and validates their bodies', async () => {
    const created = await call(http.url, 'POST', '/v1/apps', stuck('/actions/web'));
    const first = created.body.to.version as string;
    const put = await call(http.url, 'PUT', '/v1/apps/actions/web?force=true', stuck('/actions/web', { env: { SICK: '1', CHANGED: '1' } }));
    expect(put.status, put.text).toBe(200);
    const second = put.body.to.version as string;
    expect(second).not.toBe(first);

    // Each change below supersedes a deployment that is still running: only force lets it through.
    const scale = await call(http.url, 'POST', '/v1/apps/actions/web/scale?force=true', { instances: 2 });
    expect(scale.status, scale.text).toBe(200);
    expect(scale.body).toMatchObject({ appId: '/actions/web', to: { version: second, instances: 2 } });
    expect((await api.getDeployment(put.body.id))?.state).toBe('failed');

    const badScale = await call(http.url, 'POST', '/v1/apps/actions/web/scale?force=true', { instances: 'five' });
    expect(badScale.status).toBe(422);
    expect(badScale.body.problems[0]).toMatchObject({ field: 'instances' });

    const restart = await call(http.url, 'POST', '/v1/apps/actions/web/restart?force=true');
    expect(restart.status, restart.text).toBe(200);
    expect(restart.body).toMatchObject({ appId: '/actions/web', to: { instances: 2 } });
    expect(restart.body.to.version).not.toBe(second); // a fresh version of the same definition
    expect((await api.getDeployment(scale.body.id))?.state).toBe('failed');

    const rollback = await call(http.url, 'POST', '/v1/apps/actions/web/rollback?force=true');
    expect(rollback.status, rollback.text).toBe(200);
    expect(rollback.body.to.version).toBe(second); // the version before the restart's
    expect((await api.getDeployment(restart.body.id))?.state).toBe('failed');

    const to = await call(http.url, 'POST', '/v1/apps/actions/web/rollback?force=true', { version: first });
    expect(to.status, to.text).toBe(200);
    expect(to.body.to.version).toBe(first);

    // The scheduler calls an unknown version NOT_FOUND.
    const unknown = await call(http.url, 'POST', '/v1/apps/actions/web/rollback?force=true', { version: 'v999' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toContain('v999');
  });

  it('lists, shows and cancels deployments (revert by default, force stops without revert)', async () => {
    const created = await call(http.url, 'POST', '/v1/apps', stuck('/cancel/web', { instances: 2 }));
    const id = created.body.id as string;
    const listed = (await call(http.url, 'GET', '/v1/deployments')).body.deployments as DeploymentView[];
    expect(listed.filter((d) => d.appId === '/cancel/web').map((d) => d.id)).toEqual([id]);
    expect((await call(http.url, 'GET', `/v1/deployments/${id}`)).body).toMatchObject({ id, state: 'running', progress: { target: 2 } });

    const cancelled = await call(http.url, 'DELETE', `/v1/deployments/${id}?force=true`);
    expect(cancelled.status, cancelled.text).toBe(200);
    expect(cancelled.body).toEqual({ deploymentId: id, cancelled: true, reverted: false });
    // The scheduler keeps it, ended: cancelling it again is a conflict.
    expect((await call(http.url, 'GET', `/v1/deployments/${id}`)).body).toMatchObject({ id, state: 'failed' });
    const again = await call(http.url, 'DELETE', `/v1/deployments/${id}`);
    expect(again.status).toBe(409);
    expect(again.body.error).toContain(`deployment ${id} already failed`);

    const missing = await call(http.url, 'DELETE', '/v1/deployments/no-such-deployment');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toContain('no-such-deployment');
    expect((await call(http.url, 'GET', '/v1/deployments/no-such-deployment')).status).toBe(404);
  });

  it('lists tasks, filtered by app', async () => {
    expect((await call(http.url, 'POST', '/v1/apps', web('/tasks/web'))).status).toBe(201);
    expect((await call(http.url, 'POST', '/v1/apps', web('/tasks/api'))).status).toBe(201);
    const [webTask, apiTask] = await waitFor(async () => {
      const [w, a] = [await api.tasks('/tasks/web'), await api.tasks('/tasks/api')];
      return w.length === 1 && a.length === 1 && [w[0]!, a[0]!];
    }, 'a task of each app');
    const all = (await call(http.url, 'GET', '/v1/tasks')).body.tasks as ServiceTask[];
    expect(all.map((t) => t.taskId)).toEqual(expect.arrayContaining([webTask.taskId, apiTask.taskId]));
    const filtered = await call(http.url, 'GET', '/v1/tasks?app=tasks/web');
    expect(filtered.body.tasks.map((t: ServiceTask) => t.taskId)).toEqual([webTask.taskId]);
    expect(filtered.body.tasks[0]).toMatchObject({ appId: '/tasks/web', host: '127.0.0.1', ports: [expect.any(Number)] });
  });

  it('shows endpoints, and 404 for an unknown app', async () => {
    await deployed(web('/endpoints/web'));
    const endpoint = await waitFor(async () => {
      const [task] = await api.tasks('/endpoints/web');
      const list = await api.endpoints('/endpoints/web');
      return task && list.length === 1 && { taskId: task.taskId, host: '127.0.0.1', port: task.ports[0]!, ports: task.ports };
    }, 'one endpoint');
    const reply = await call(http.url, 'GET', '/v1/apps/endpoints/web/endpoints');
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({ appId: '/endpoints/web', endpoints: [endpoint] });
    expect((await call(http.url, 'GET', '/v1/apps/nope/endpoints')).status).toBe(404);
  });

  it('answers an unknown route with 404 listing the routes, and a wrong method with 405', async () => {
    const reply = await call(http.url, 'GET', '/v2/things');
    expect(reply.status).toBe(404);
    expect(reply.body.error).toContain('/v2/things');
    expect(reply.body.routes).toEqual(expect.arrayContaining([expect.stringContaining('/v1/apps/{id}/endpoints')]));
    const method = await call(http.url, 'PATCH', '/v1/apps');
    expect(method.status).toBe(405);
    expect(method.headers.allow).toBe('GET, POST');
    const badEncoding = await call(http.url, 'GET', '/v1/apps/%E0%A4%A');
    expect(badEncoding.status).toBe(400);
  });

  it('survives garbage: non-object bodies, arrays, a broken request line', async () => {
    expect((await call(http.url, 'POST', '/v1/apps', '[1,2]')).status).toBe(422);
    expect((await call(http.url, 'POST', '/v1/apps', '"text"', 'application/json')).status).toBe(422);
    expect((await call(http.url, 'POST', '/v1/apps/shop/web/scale', '[]')).status).toBe(400);
    const { Socket } = await import('node:net');
    const raw = await new Promise<string>((resolve) => {
      const socket = new Socket();
      let answer = '';
      socket.connect(http.port, '127.0.0.1', () => socket.write('NOT HTTP AT ALL\r\n\r\n'));
      socket.on('data', (d) => (answer += d.toString()));
      socket.on('close', () => resolve(answer));
      socket.on('error', () => resolve(answer));
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400/);
    expect((await call(http.url, 'GET', '/health')).status).toBe(200);
  });

  it('streams every ServicesEvent on GET /v1/events, with heartbeats, and unsubscribes on close', async () => {
    const listenersBefore = live.size;
    const stream = openEventStream(`${http.url}/v1/events`);
    await waitFor(() => live.size > listenersBefore, 'the stream to subscribe');
    expect(stream.status).toBe(200);
    await call(http.url, 'POST', '/v1/apps', web('/events/web'));
    const ours = () => stream.events.filter((e) => appOf(e.data as ServicesEvent) === '/events/web');
    await waitFor(
      () => ours().some((e) => e.event === 'endpoints' && e.data.endpoints.length === 1),
      () => `the app's events up to its endpoint, got ${JSON.stringify(ours())}`,
      20_000,
    );
    for (const e of stream.events) expect(e.data.type).toBe(e.event);
    // What a real deploy tells: the new version, then its deployment, then its task and endpoint.
    expect(ours().slice(0, 2).map((e) => e.event)).toEqual(['app_changed', 'deployment']);
    expect(ours()[0]!.data).toMatchObject({ type: 'app_changed', appId: '/events/web' });
    expect(new Set(ours().map((e) => e.event))).toEqual(new Set(['app_changed', 'deployment', 'task', 'endpoints']));
    await waitFor(() => stream.comments.includes('heartbeat'), 'a heartbeat comment');
    stream.close();
    await waitFor(() => live.size === listenersBefore, 'the stream to unsubscribe');
  });

  it('filters /v1/events by ?type=', async () => {
    const listenersBefore = live.size;
    const stream = openEventStream(`${http.url}/v1/events?type=app_changed`);
    await waitFor(() => live.size > listenersBefore, 'the stream to subscribe');
    const done = await deployed(web('/filter/web'));
    // A second change: once its app_changed arrives, every event of the first deploy (deployment,
    // task, endpoints) was sent before it on the same stream, had it passed the filter.
    const scaled = await call(http.url, 'POST', '/v1/apps/filter/web/scale', { instances: 2 });
    expect(scaled.status, scaled.text).toBe(200);
    const mine = () => stream.events.filter((e) => e.data.appId === '/filter/web');
    await waitFor(() => mine().length >= 2, () => `two app_changed events, got ${JSON.stringify(stream.events)}`);
    expect(mine().map((e) => e.data)).toEqual([
      { type: 'app_changed', appId: '/filter/web', version: done.to.version },
      { type: 'app_changed', appId: '/filter/web', version: done.to.version },
    ]);
    expect(new Set(stream.events.map((e) => e.event))).toEqual(new Set(['app_changed']));
    stream.close();
    await waitFor(() => live.size === listenersBefore, 'the stream to unsubscribe');
  });

  it.each([
    ['/v1/apps/watch/web/endpoints?watch=true', '/watch'],
    ['/v1/apps/sse/web/endpoints/events', '/sse'],
  ])("streams one app's endpoints on %s: the current ones first, then changes", async (path, group) => {
    const appId = `${group}/web`;
    const otherId = `${group}/other`;
    await deployed(web(appId));
    const first = await waitFor(async () => {
      const list = await api.endpoints(appId);
      return list.length === 1 && list[0]!;
    }, 'the first endpoint');
    const listenersBefore = live.size;
    const stream = openEventStream(`${http.url}${path}`);
    await waitFor(() => stream.events.length >= 1 && live.size > listenersBefore, 'the current endpoints');
    expect(stream.events[0]).toEqual({ event: 'endpoints', data: { type: 'endpoints', appId, endpoints: [first] } });

    // Another app's endpoints change, then this app's version does: neither is this stream's.
    await deployed(web(otherId));
    await waitFor(() => cluster.events.some((e) => e.type === 'endpoints' && e.appId === otherId && e.endpoints.length === 1), "the other app's endpoints");
    const scaled = await call(http.url, 'POST', `/v1/apps${appId}/scale`, { instances: 2 });
    expect(scaled.status, scaled.text).toBe(200);
    await waitFor(() => stream.events.length >= 2, 'the change', 20_000);
    expect(stream.events[1]!.data).toMatchObject({ type: 'endpoints', appId });
    const second = await waitFor(async () => {
      const list = await api.endpoints(appId);
      return list.length === 2 && list;
    }, 'two endpoints');
    expect(stream.events[1]!.data.endpoints).toEqual(second);
    expect(second).toContainEqual(first);
    expect(stream.events).toHaveLength(2);
    stream.close();
    await waitFor(() => live.size === listenersBefore, 'the stream to unsubscribe');
  });

  it('answers an endpoint stream for an unknown app with 404, not a stream', async () => {
    const reply = await call(http.url, 'GET', '/v1/apps/nope/endpoints/events');
    expect(reply.status).toBe(404);
  });

  it('ends open streams when closed', async () => {
    const other = await startServicesHttp({ api, port: 0 });
    const stream = openEventStream(`${other.url}/v1/events`);
    await waitFor(() => stream.status === 200, 'the stream to open');
    await other.close();
    await waitFor(() => stream.ended, 'the stream to end');
  });
});
