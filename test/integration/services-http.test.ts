/**
 * The services REST API and its event streams over real loopback sockets, against an in-memory
 * ServicesApi. The double below is a STAND-IN FOR THE SCHEDULER: it keeps apps, versions and
 * deployments in maps and finishes nothing on its own; it exists so the HTTP layer's routing,
 * status codes, validation and streaming are tested on their own.
 */
import { request } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AppDefinition } from '../../frameworks/services/app-definition.ts';
import { startServicesHttp, type ServicesHttp } from '../../frameworks/services/http/server.ts';
import {
  ServicesError,
  type AppStatus,
  type AppVersion,
  type DeploymentView,
  type Endpoint,
  type ServicesApi,
  type ServicesEvent,
  type ServiceTask,
} from '../../frameworks/services/service-api.ts';
import { waitFor } from './helpers.ts';

/** Stand-in for the services scheduler (see the module comment). */
class FakeServicesApi implements ServicesApi {
  apps = new Map<string, { app: AppDefinition; version: string }>();
  history = new Map<string, AppVersion[]>();
  deployments = new Map<string, DeploymentView>();
  endpointsOf = new Map<string, Endpoint[]>();
  taskList: ServiceTask[] = [];
  calls: Array<{ method: string; args: unknown[] }> = [];
  private listeners = new Set<(event: ServicesEvent) => void>();
  private counter = 0;

  emit(event: ServicesEvent): void {
    for (const listener of this.listeners) listener(event);
  }
  get listenerCount(): number {
    return this.listeners.size;
  }

  private deploy(appId: string, instances: number, version: string, force: boolean | undefined): DeploymentView {
    const running = [...this.deployments.values()].find((d) => d.appId === appId && d.state === 'running');
    if (running && !force) throw new ServicesError('CONFLICT', `app ${appId} is being deployed by ${running.id}; wait, cancel it, or pass force`);
    if (running) this.deployments.delete(running.id);
    const id = `d${++this.counter}`;
    const deployment: DeploymentView = {
      id,
      appId,
      to: { version, instances },
      state: 'running',
      startedAtMs: 1,
      lastProgressAtMs: 1,
      bestDistance: instances,
      oldAtStart: 0,
      progress: { target: instances, newStarted: 0, newHealthy: 0, newReady: 0, oldRunning: 0, oldKilled: 0 },
    };
    this.deployments.set(id, deployment);
    this.emit({ type: 'deployment', deployment });
    return deployment;
  }
  private need(appId: string) {
    const entry = this.apps.get(appId);
    if (!entry) throw new ServicesError('NOT_FOUND', `no app ${appId}`);
    return entry;
  }
  private status(appId: string): AppStatus {
    const { app, version } = this.need(appId);
    return { app, version, tasks: this.taskList.filter((t) => t.appId === appId), deployment: [...this.deployments.values()].find((d) => d.appId === appId) };
  }

  async listApps() {
    return [...this.apps.keys()].map((id) => this.status(id));
  }
  async getApp(appId: string) {
    return this.apps.has(appId) ? this.status(appId) : undefined;
  }
  async putApp(app: AppDefinition, options?: { force?: boolean }) {
    this.calls.push({ method: 'putApp', args: [app, options] });
    const version = `v${++this.counter}`;
    const deployment = this.deploy(app.id, app.instances, version, options?.force);
    this.apps.set(app.id, { app, version });
    this.history.set(app.id, [...(this.history.get(app.id) ?? []), { version, createdAtMs: 1, app }]);
    this.emit({ type: 'app_changed', appId: app.id, version });
    return deployment;
  }
  async deleteApp(appId: string, options?: { force?: boolean }) {
    this.need(appId);
    const deployment = this.deploy(appId, 0, this.need(appId).version, options?.force);
    this.apps.delete(appId);
    return deployment;
  }
  async scale(appId: string, instances: number, options?: { force?: boolean }) {
    this.calls.push({ method: 'scale', args: [appId, instances, options] });
    const entry = this.need(appId);
    return this.deploy(appId, instances, entry.version, options?.force);
  }
  async restart(appId: string, options?: { force?: boolean }) {
    this.calls.push({ method: 'restart', args: [appId, options] });
    const entry = this.need(appId);
    return this.deploy(appId, entry.app.instances, entry.version, options?.force);
  }
  async rollback(appId: string, toVersion?: string, options?: { force?: boolean }) {
    this.calls.push({ method: 'rollback', args: [appId, toVersion, options] });
    const entry = this.need(appId);
    const versions = this.history.get(appId) ?? [];
    const target = toVersion === undefined ? versions[versions.length - 2] : versions.find((v) => v.version === toVersion);
    if (!target) throw new ServicesError('INVALID', toVersion === undefined ? `app ${appId} has no earlier version` : `app ${appId} has no version ${toVersion}`);
    return this.deploy(appId, entry.app.instances, target.version, options?.force);
  }
  async versions(appId: string) {
    this.need(appId);
    return this.history.get(appId) ?? [];
  }
  async listDeployments() {
    return [...this.deployments.values()];
  }
  async getDeployment(id: string) {
    return this.deployments.get(id);
  }
  async cancelDeployment(id: string, options?: { force?: boolean }) {
    this.calls.push({ method: 'cancelDeployment', args: [id, options] });
    if (!this.deployments.delete(id)) throw new ServicesError('NOT_FOUND', `no deployment ${id}`);
  }
  async tasks(appId?: string) {
    return this.taskList.filter((t) => appId === undefined || t.appId === appId);
  }
  async endpoints(appId: string) {
    this.need(appId);
    return this.endpointsOf.get(appId) ?? [];
  }
  subscribe(listener: (event: ServicesEvent) => void) {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }
}

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

const WEB = { id: '/shop/web', instances: 2, cmd: 'python3 -m http.server $PORT0', ports: [{ port: 0, name: 'http' }] };

describe('services HTTP API (against a stand-in for the scheduler)', () => {
  let api: FakeServicesApi;
  let http: ServicesHttp;

  beforeAll(async () => {
    api = new FakeServicesApi();
    http = await startServicesHttp({ api, port: 0, heartbeatMs: 50 });
  });
  afterAll(async () => {
    await http.close();
  });
  beforeEach(() => {
    api.apps.clear();
    api.history.clear();
    api.deployments.clear();
    api.endpointsOf.clear();
    api.taskList = [];
    api.calls = [];
  });

  it('answers GET /health', async () => {
    const reply = await call(http.url, 'GET', '/health');
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({ status: 'ok' });
  });

  it('creates an app from JSON with POST /v1/apps: 201, the deployment, and a Location', async () => {
    const reply = await call(http.url, 'POST', '/v1/apps', WEB);
    expect(reply.status).toBe(201);
    expect(reply.headers.location).toBe('/v1/apps/shop/web');
    expect(reply.body).toMatchObject({ appId: '/shop/web', state: 'running', to: { instances: 2 } });
    const created = api.calls[0]!.args[0] as AppDefinition;
    expect(created.upgradeStrategy.minimumHealthCapacity).toBe(1); // defaults were applied
  });

  it('creates an app from YAML by content-type', async () => {
    const yaml = 'id: /shop/api\ninstances: 3\ncmd: sleep 1000\n';
    const reply = await call(http.url, 'POST', '/v1/apps', yaml, 'application/yaml');
    expect(reply.status).toBe(201);
    expect(reply.body).toMatchObject({ appId: '/shop/api', to: { instances: 3 } });
  });

  it('refuses POST of an app that exists with 409 pointing at PUT', async () => {
    await call(http.url, 'POST', '/v1/apps', WEB);
    const reply = await call(http.url, 'POST', '/v1/apps', WEB);
    expect(reply.status).toBe(409);
    expect(reply.body.error).toContain('PUT /v1/apps/shop/web');
  });

  it('answers an invalid definition with 422 and a problem per field', async () => {
    const reply = await call(http.url, 'POST', '/v1/apps', { id: '/Shop', instances: -1, cmd: 'x', intances: 2 });
    expect(reply.status).toBe(422);
    expect(reply.body.error).toMatch(/invalid app definition/);
    const fields = (reply.body.problems as Array<{ field: string; message: string }>).map((p) => p.field);
    expect(fields).toEqual(expect.arrayContaining(['id', 'instances', 'intances']));
    expect(reply.body.problems.find((p: { field: string }) => p.field === 'intances').message).toContain('instances');
    expect(api.calls).toEqual([]);
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
    await call(http.url, 'POST', '/v1/apps', WEB);
    const got = await call(http.url, 'GET', '/v1/apps/shop/web');
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ app: { id: '/shop/web', instances: 2 }, version: expect.any(String) });

    const { id: _id, ...withoutId } = WEB;
    const put = await call(http.url, 'PUT', '/v1/apps/shop/web?force=true', { ...withoutId, instances: 4 });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ appId: '/shop/web', to: { instances: 4 } });
    expect(api.calls.at(-1)!.args[1]).toEqual({ force: true });

    const mismatch = await call(http.url, 'PUT', '/v1/apps/shop/web', { ...WEB, id: '/shop/other' });
    expect(mismatch.status).toBe(422);
    expect(mismatch.body.problems[0].field).toBe('id');

    const versions = await call(http.url, 'GET', '/v1/apps/shop/web/versions');
    expect(versions.status).toBe(200);
    expect(versions.body.versions).toHaveLength(2);

    const list = await call(http.url, 'GET', '/v1/apps');
    expect(list.body.apps.map((a: AppStatus) => a.app.id)).toEqual(['/shop/web']);

    const deleted = await call(http.url, 'DELETE', '/v1/apps/shop/web?force=true');
    expect(deleted.status).toBe(200);
    expect(deleted.body.to.instances).toBe(0);
    expect((await call(http.url, 'GET', '/v1/apps/shop/web')).status).toBe(404);
  });

  it('turns a scheduler CONFLICT into 409 and NOT_FOUND into 404, with its message', async () => {
    await call(http.url, 'POST', '/v1/apps', WEB);
    const conflict = await call(http.url, 'POST', '/v1/apps/shop/web/scale', { instances: 5 });
    expect(conflict.status).toBe(409);
    expect(conflict.body).toMatchObject({ code: 'CONFLICT', error: expect.stringContaining('force') });
    const missing = await call(http.url, 'POST', '/v1/apps/nope/restart');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toContain('/nope');
  });

  it('scales, restarts and rolls back with force, and validates their bodies', async () => {
    await call(http.url, 'POST', '/v1/apps', WEB);
    await call(http.url, 'PUT', '/v1/apps/shop/web?force=true', { ...WEB, instances: 3 });

    const scale = await call(http.url, 'POST', '/v1/apps/shop/web/scale?force=true', { instances: 5 });
    expect(scale.status).toBe(200);
    expect(api.calls.at(-1)).toEqual({ method: 'scale', args: ['/shop/web', 5, { force: true }] });

    const badScale = await call(http.url, 'POST', '/v1/apps/shop/web/scale?force=true', { instances: 'five' });
    expect(badScale.status).toBe(422);
    expect(badScale.body.problems[0]).toMatchObject({ field: 'instances' });

    const restart = await call(http.url, 'POST', '/v1/apps/shop/web/restart?force=true');
    expect(restart.status).toBe(200);
    expect(api.calls.at(-1)).toEqual({ method: 'restart', args: ['/shop/web', { force: true }] });

    const rollback = await call(http.url, 'POST', '/v1/apps/shop/web/rollback?force=true');
    expect(rollback.status).toBe(200);
    expect(api.calls.at(-1)).toEqual({ method: 'rollback', args: ['/shop/web', undefined, { force: true }] });

    const first = api.history.get('/shop/web')![0]!.version;
    const to = await call(http.url, 'POST', '/v1/apps/shop/web/rollback?force=true', { version: first });
    expect(to.status).toBe(200);
    expect(to.body.to.version).toBe(first);

    const unknown = await call(http.url, 'POST', '/v1/apps/shop/web/rollback?force=true', { version: 'v999' });
    expect(unknown.status).toBe(422);
    expect(unknown.body.error).toContain('v999');
  });

  it('lists, shows and cancels deployments (revert by default, force stops without revert)', async () => {
    const created = await call(http.url, 'POST', '/v1/apps', WEB);
    const id = created.body.id as string;
    expect((await call(http.url, 'GET', '/v1/deployments')).body.deployments.map((d: DeploymentView) => d.id)).toEqual([id]);
    expect((await call(http.url, 'GET', `/v1/deployments/${id}`)).body).toMatchObject({ id, progress: { target: 2 } });

    const cancelled = await call(http.url, 'DELETE', `/v1/deployments/${id}?force=true`);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toEqual({ deploymentId: id, cancelled: true, reverted: false });
    expect(api.calls.at(-1)).toEqual({ method: 'cancelDeployment', args: [id, { force: true }] });

    const again = await call(http.url, 'DELETE', `/v1/deployments/${id}`);
    expect(again.status).toBe(404);
    expect((await call(http.url, 'GET', `/v1/deployments/${id}`)).status).toBe(404);
  });

  it('lists tasks, filtered by app', async () => {
    const task = (appId: string, taskId: string): ServiceTask => ({
      taskId, instanceId: taskId, appId, version: 'v1', state: 'RUNNING', healthy: true, ready: true, agentId: 'a1', host: '127.0.0.1', ports: [31000], startedAtMs: 1,
    });
    api.taskList = [task('/shop/web', 't1'), task('/shop/api', 't2')];
    expect((await call(http.url, 'GET', '/v1/tasks')).body.tasks).toHaveLength(2);
    const filtered = await call(http.url, 'GET', '/v1/tasks?app=shop/web');
    expect(filtered.body.tasks.map((t: ServiceTask) => t.taskId)).toEqual(['t1']);
  });

  it('shows endpoints, and 404 for an unknown app', async () => {
    await call(http.url, 'POST', '/v1/apps', WEB);
    api.endpointsOf.set('/shop/web', [{ taskId: 't1', host: '127.0.0.1', port: 31000, ports: [31000] }]);
    const reply = await call(http.url, 'GET', '/v1/apps/shop/web/endpoints');
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({ appId: '/shop/web', endpoints: [{ taskId: 't1', host: '127.0.0.1', port: 31000, ports: [31000] }] });
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
    const listenersBefore = api.listenerCount;
    const stream = openEventStream(`${http.url}/v1/events`);
    await waitFor(() => api.listenerCount > listenersBefore, 'the stream to subscribe');
    expect(stream.status).toBe(200);
    await call(http.url, 'POST', '/v1/apps', WEB);
    api.emit({ type: 'endpoints', appId: '/shop/web', endpoints: [] });
    await waitFor(() => stream.events.length >= 3, () => `three events, got ${JSON.stringify(stream.events)}`);
    expect(stream.events.map((e) => e.event)).toEqual(['deployment', 'app_changed', 'endpoints']);
    expect(stream.events[1]!.data).toMatchObject({ type: 'app_changed', appId: '/shop/web' });
    await waitFor(() => stream.comments.includes('heartbeat'), 'a heartbeat comment');
    stream.close();
    await waitFor(() => api.listenerCount === listenersBefore, 'the stream to unsubscribe');
  });

  it('filters /v1/events by ?type=', async () => {
    const listenersBefore = api.listenerCount;
    const stream = openEventStream(`${http.url}/v1/events?type=app_changed`);
    await waitFor(() => api.listenerCount > listenersBefore, 'the stream to subscribe');
    await call(http.url, 'POST', '/v1/apps', WEB);
    await waitFor(() => stream.events.length >= 1, 'an app_changed event');
    expect(stream.events.map((e) => e.event)).toEqual(['app_changed']);
    stream.close();
  });

  it.each(['/v1/apps/shop/web/endpoints?watch=true', '/v1/apps/shop/web/endpoints/events'])('streams one app\'s endpoints on %s: the current ones first, then changes', async (path) => {
    await call(http.url, 'POST', '/v1/apps', WEB);
    const first: Endpoint = { taskId: 't1', host: '127.0.0.1', port: 31000, ports: [31000] };
    api.endpointsOf.set('/shop/web', [first]);
    const listenersBefore = api.listenerCount;
    const stream = openEventStream(`${http.url}${path}`);
    await waitFor(() => stream.events.length >= 1 && api.listenerCount > listenersBefore, 'the current endpoints');
    expect(stream.events[0]).toEqual({ event: 'endpoints', data: { type: 'endpoints', appId: '/shop/web', endpoints: [first] } });

    api.emit({ type: 'endpoints', appId: '/shop/other', endpoints: [] });
    const second: Endpoint = { taskId: 't2', host: '127.0.0.1', port: 31001, ports: [31001] };
    api.emit({ type: 'endpoints', appId: '/shop/web', endpoints: [first, second] });
    api.emit({ type: 'app_changed', appId: '/shop/web', version: 'v9' });
    await waitFor(() => stream.events.length >= 2, 'the change');
    expect(stream.events[1]!.data.endpoints).toEqual([first, second]);
    expect(stream.events).toHaveLength(2);
    stream.close();
    await waitFor(() => api.listenerCount === listenersBefore, 'the stream to unsubscribe');
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
