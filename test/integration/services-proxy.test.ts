/**
 * The service-port proxy on real loopback sockets: real backend TCP servers, a real listener per
 * app. The api is an in-memory STAND-IN FOR THE SCHEDULER that holds apps and endpoints and emits
 * the events the real one does; tests change endpoints through it and watch where connections go.
 */
import { createServer, connect, type Server } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AppDefinition } from '../../frameworks/services/app-definition.ts';
import { ServicePortProxy } from '../../frameworks/services/proxy.ts';
import type { AppStatus, Endpoint, ServicesApi, ServicesEvent } from '../../frameworks/services/service-api.ts';
import { waitFor, freePort } from './helpers.ts';

/** Stand-in for the scheduler: only what the proxy reads. */
class FakeServicesApi implements Pick<ServicesApi, 'listApps' | 'getApp' | 'endpoints' | 'subscribe'> {
  servicePorts = new Map<string, number | undefined>();
  endpointsOf = new Map<string, Endpoint[]>();
  /** When set, endpoints() waits for it: a slow read. */
  endpointsGate: Promise<void> | undefined;
  private listeners = new Set<(event: ServicesEvent) => void>();

  setApp(appId: string, servicePort: number | undefined): void {
    this.servicePorts.set(appId, servicePort);
    this.emit({ type: 'app_changed', appId, version: 'v1' });
  }
  deleteApp(appId: string): void {
    this.servicePorts.delete(appId);
    this.emit({ type: 'app_changed', appId, version: undefined });
  }
  setEndpoints(appId: string, ports: number[], emit = true): void {
    const endpoints = ports.map((port, i) => ({ taskId: `${appId}-${i}`, host: '127.0.0.1', port, ports: [port] }));
    this.endpointsOf.set(appId, endpoints);
    if (emit) this.emit({ type: 'endpoints', appId, endpoints });
  }
  emit(event: ServicesEvent): void {
    for (const listener of this.listeners) listener(event);
  }
  private status(appId: string): AppStatus {
    const servicePort = this.servicePorts.get(appId);
    const app = { id: appId, ...(servicePort !== undefined && { servicePort }) } as AppDefinition;
    return { app, version: 'v1', tasks: [], deployment: undefined };
  }
  async listApps() {
    return [...this.servicePorts.keys()].map((id) => this.status(id));
  }
  async getApp(appId: string) {
    return this.servicePorts.has(appId) ? this.status(appId) : undefined;
  }
  async endpoints(appId: string) {
    const endpoints = this.endpointsOf.get(appId) ?? [];
    await this.endpointsGate;
    return endpoints;
  }
  subscribe(listener: (event: ServicesEvent) => void) {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }
}

/** A backend that answers every connection with its name and closes. */
async function startBackend(name: string): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => socket.end(`${name}\n`));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port };
}

/** An echo backend, to check bytes flow both ways. */
async function startEcho(): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port };
}


/** Connects to the service port; resolves with what came back and whether the proxy closed it without data. */
function request(port: number, send?: string): Promise<{ data: string; error?: string }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    let error: string | undefined;
    socket.on('connect', () => {
      if (send !== undefined) socket.end(send);
    });
    socket.on('data', (d) => (data += d.toString()));
    socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    socket.on('close', () => resolve({ data, ...(error !== undefined && { error }) }));
  });
}

describe('service-port proxy (against a stand-in for the scheduler)', () => {
  let api: FakeServicesApi;
  let proxy: ServicePortProxy;
  const servers: Server[] = [];

  async function backend(name: string) {
    const b = await startBackend(name);
    servers.push(b.server);
    return b.port;
  }

  beforeEach(async () => {
    api = new FakeServicesApi();
    proxy = new ServicePortProxy({ api: api as unknown as ServicesApi, pollIntervalMs: 0 });
  });
  afterEach(async () => {
    await proxy.close();
    await Promise.all(servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  });

  it('forwards round-robin across the app\'s endpoints', async () => {
    const servicePort = await freePort();
    api.setApp('/web', servicePort);
    api.setEndpoints('/web', [await backend('a'), await backend('b'), await backend('c')], false);
    await proxy.start();
    expect(proxy.status()).toMatchObject([{ appId: '/web', servicePort, listening: true }]);

    const answers: string[] = [];
    for (let i = 0; i < 6; i++) answers.push((await request(servicePort)).data.trim());
    expect(answers).toEqual(['a', 'b', 'c', 'a', 'b', 'c']);
  });

  it('carries bytes both ways and honours half-close', async () => {
    const echo = await startEcho();
    servers.push(echo.server);
    const servicePort = await freePort();
    api.setApp('/echo', servicePort);
    api.setEndpoints('/echo', [echo.port], false);
    await proxy.start();
    const payload = 'x'.repeat(256 * 1024);
    const reply = await request(servicePort, payload);
    expect(reply.data).toBe(payload);
  });

  it('follows endpoint changes live from events', async () => {
    const servicePort = await freePort();
    api.setApp('/web', servicePort);
    api.setEndpoints('/web', [await backend('old')], false);
    await proxy.start();
    expect((await request(servicePort)).data.trim()).toBe('old');

    api.setEndpoints('/web', [await backend('new-1'), await backend('new-2')]);
    const answers = new Set<string>();
    for (let i = 0; i < 4; i++) answers.add((await request(servicePort)).data.trim());
    expect([...answers].sort()).toEqual(['new-1', 'new-2']);
  });

  it('keeps an endpoints event that arrives during a slower read of the api', async () => {
    const servicePort = await freePort();
    api.setApp('/web', servicePort);
    api.setEndpoints('/web', [await backend('stale')], false);
    let release!: () => void;
    api.endpointsGate = new Promise<void>((resolve) => (release = resolve));
    const starting = proxy.start();
    await waitFor(() => proxy.status().length === 1, 'the listener to be created');
    api.setEndpoints('/web', [await backend('fresh')]);
    release();
    await starting;
    expect((await request(servicePort)).data.trim()).toBe('fresh');
  });

  it('closes the client connection at once when the app has no endpoints', async () => {
    const servicePort = await freePort();
    api.setApp('/empty', servicePort);
    await proxy.start();
    const reply = await request(servicePort);
    expect(reply.data).toBe('');
    expect(proxy.status()[0]!.listening).toBe(true);
  });

  it('skips a backend that refuses and uses the next one', async () => {
    const servicePort = await freePort();
    api.setApp('/web', servicePort);
    const dead = await freePort();
    api.setEndpoints('/web', [dead, await backend('alive')], false);
    await proxy.start();
    for (let i = 0; i < 4; i++) expect((await request(servicePort)).data.trim()).toBe('alive');
  });

  it('closes the client when every backend refuses', async () => {
    const servicePort = await freePort();
    api.setApp('/web', servicePort);
    api.setEndpoints('/web', [await freePort(), await freePort()], false);
    await proxy.start();
    expect((await request(servicePort)).data).toBe('');
  });

  it('opens, moves and closes listeners as apps gain, change and lose service ports', async () => {
    await proxy.start();
    expect(proxy.status()).toEqual([]);

    const first = await freePort();
    api.setEndpoints('/web', [await backend('web')], false);
    api.setApp('/web', first);
    await proxy.settled();
    expect((await request(first)).data.trim()).toBe('web');

    const second = await freePort();
    api.setApp('/web', second);
    await proxy.settled();
    expect(proxy.status()).toMatchObject([{ servicePort: second, listening: true }]);
    expect((await request(second)).data.trim()).toBe('web');
    expect((await request(first)).error).toBe('ECONNREFUSED');

    api.setApp('/web', undefined);
    await proxy.settled();
    expect(proxy.status()).toEqual([]);
    expect((await request(second)).error).toBe('ECONNREFUSED');

    api.setApp('/web', first);
    await proxy.settled();
    api.deleteApp('/web');
    await proxy.settled();
    expect(proxy.status()).toEqual([]);
    expect((await request(first)).error).toBe('ECONNREFUSED');
  });

  it('reports a service port it cannot bind and binds it at a later poll', async () => {
    const taken = await startBackend('squatter');
    api.setApp('/web', taken.port);
    api.setEndpoints('/web', [await backend('web')], false);
    const polling = new ServicePortProxy({ api: api as unknown as ServicesApi, pollIntervalMs: 50 });
    try {
      await polling.start();
      expect(polling.status()[0]).toMatchObject({ listening: false, error: expect.stringContaining('EADDRINUSE') });
      await new Promise<void>((resolve) => taken.server.close(() => resolve()));
      await waitFor(() => polling.status()[0]?.listening, 'the port to be bound at a poll');
      expect((await request(taken.port)).data.trim()).toBe('web');
    } finally {
      await polling.close();
    }
  });

  it('picks up apps and endpoints by polling when no event arrives', async () => {
    const polling = new ServicePortProxy({ api: api as unknown as ServicesApi, pollIntervalMs: 50 });
    try {
      await polling.start();
      const servicePort = await freePort();
      api.servicePorts.set('/quiet', servicePort); // no event
      api.setEndpoints('/quiet', [await backend('quiet')], false);
      await waitFor(() => polling.status()[0]?.endpoints.length === 1, 'a poll to find the app');
      expect((await request(servicePort)).data.trim()).toBe('quiet');
    } finally {
      await polling.close();
    }
  });
});
