/**
 * Service-port load balancing (Marathon's marathon-lb, in-process and TCP only): every app with a
 * `servicePort` gets a TCP listener that forwards each connection, round-robin, to one of the
 * app's current endpoints (its healthy, ready instances).
 *
 * Endpoints arrive as `endpoints` events; `app_changed` events open, move and close listeners; and a
 * slow poll of the api repairs anything an event missed (the events are a hint, the api the truth).
 * A connection that arrives while the app has no endpoints is closed at once, so clients fail fast
 * instead of hanging; a backend that refuses is skipped for the next one.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Endpoint, ServicesApi, ServicesEvent } from './service-api.ts';

export interface ServicePortProxyOptions {
  api: ServicesApi;
  /** Address the service ports listen on. @default '127.0.0.1' */
  host?: string;
  /** Re-read apps and endpoints from the api this often; 0 = events only. @default 5000 */
  pollIntervalMs?: number;
  /** Give up on a backend that has not accepted within this long and try the next. @default 3000 */
  connectTimeoutMs?: number;
  logger?: Logger;
}

export interface ServicePortListener {
  appId: string;
  servicePort: number;
  /** true once listening; false with `error` when the port could not be bound (retried at each poll). */
  listening: boolean;
  error?: string;
  endpoints: Endpoint[];
  connections: number;
}

interface AppListener {
  appId: string;
  servicePort: number;
  server: Server;
  listening: boolean;
  error?: string;
  endpoints: Endpoint[];
  /** Round-robin cursor into `endpoints`. */
  next: number;
  /** Counts endpoint events, so a slower read from the api never overwrites a newer event. */
  endpointEvents: number;
  sockets: Set<Socket>;
}

export class ServicePortProxy {
  private readonly api: ServicesApi;
  private readonly host: string;
  private readonly pollIntervalMs: number;
  private readonly connectTimeoutMs: number;
  private readonly logger: Logger | undefined;
  private readonly listeners = new Map<string, AppListener>();
  private unsubscribe: (() => void) | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  /** Syncs run one at a time, so two events for one app never open its port twice. */
  private queue: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(options: ServicePortProxyOptions) {
    this.api = options.api;
    this.host = options.host ?? '127.0.0.1';
    this.pollIntervalMs = options.pollIntervalMs ?? 5000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 3000;
    this.logger = options.logger;
  }

  /** Subscribes, then opens a listener for every app that has a service port. */
  async start(): Promise<void> {
    this.unsubscribe = this.api.subscribe((event) => this.onEvent(event));
    await this.enqueue(() => this.syncAll());
    if (this.pollIntervalMs > 0) this.schedulePoll();
  }

  /** The listeners and what each forwards to, for status pages and tests. */
  status(): ServicePortListener[] {
    return [...this.listeners.values()].map((l) => ({
      appId: l.appId,
      servicePort: l.servicePort,
      listening: l.listening,
      ...(l.error !== undefined && { error: l.error }),
      endpoints: [...l.endpoints],
      connections: l.sockets.size,
    }));
  }

  /** Resolves once every change seen so far has been applied (tests and shutdown use it). */
  settled(): Promise<void> {
    return this.enqueue(async () => {});
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    if (this.pollTimer) clearTimeout(this.pollTimer);
    await this.queue;
    await Promise.all([...this.listeners.values()].map((l) => this.closeListener(l)));
  }

  private onEvent(event: ServicesEvent): void {
    if (event.type === 'endpoints') {
      const listener = this.listeners.get(event.appId);
      if (listener) {
        listener.endpointEvents++;
        this.setEndpoints(listener, event.endpoints);
      }
    } else if (event.type === 'app_changed') {
      void this.enqueue(() => this.syncApp(event.appId));
    }
  }

  private enqueue(work: () => Promise<void>): Promise<void> {
    const run = this.queue.then(async () => {
      if (this.closed) return;
      try {
        await work();
      } catch (error) {
        this.logger?.warn({ err: error }, 'service-port proxy: sync failed; the next poll retries');
      }
    });
    this.queue = run;
    return run;
  }

  private schedulePoll(): void {
    this.pollTimer = setTimeout(() => {
      void this.enqueue(() => this.syncAll()).then(() => {
        if (!this.closed) this.schedulePoll();
      });
    }, this.pollIntervalMs);
    this.pollTimer.unref();
  }

  private async syncAll(): Promise<void> {
    const apps = await this.api.listApps();
    const wanted = new Map<string, number>();
    for (const status of apps) if (status.app.servicePort !== undefined) wanted.set(status.app.id, status.app.servicePort);
    for (const [appId, listener] of this.listeners) {
      if (wanted.get(appId) !== listener.servicePort) await this.removeListener(appId, listener);
    }
    for (const [appId, servicePort] of wanted) await this.ensureListener(appId, servicePort);
  }

  private async syncApp(appId: string): Promise<void> {
    const status = await this.api.getApp(appId);
    const servicePort = status?.app.servicePort;
    const listener = this.listeners.get(appId);
    if (listener && listener.servicePort !== servicePort) await this.removeListener(appId, listener);
    if (servicePort !== undefined) await this.ensureListener(appId, servicePort);
  }

  private async ensureListener(appId: string, servicePort: number): Promise<void> {
    let listener = this.listeners.get(appId);
    if (!listener) {
      listener = { appId, servicePort, server: this.createServer(appId), listening: false, endpoints: [], next: 0, endpointEvents: 0, sockets: new Set() };
      this.listeners.set(appId, listener);
    }
    if (!listener.listening) await this.listen(listener);
    // Endpoints from the api, not only events: an app seen for the first time has had no event yet.
    // An event that arrives while this read is under way is newer than it, and wins.
    const eventsBefore = listener.endpointEvents;
    const endpoints = await this.api.endpoints(appId).catch(() => undefined);
    if (endpoints && listener.endpointEvents === eventsBefore) this.setEndpoints(listener, endpoints);
  }

  private listen(listener: AppListener): Promise<void> {
    return new Promise((resolve) => {
      const onError = (error: Error) => {
        listener.error = `cannot listen on ${this.host}:${listener.servicePort}: ${error.message}`;
        this.logger?.warn({ appId: listener.appId }, `service-port proxy: ${listener.error}`);
        resolve();
      };
      listener.server.once('error', onError);
      listener.server.listen(listener.servicePort, this.host, () => {
        listener.server.off('error', onError);
        listener.listening = true;
        delete listener.error;
        this.logger?.info({ appId: listener.appId }, `service port ${this.host}:${listener.servicePort} → ${listener.appId}`);
        resolve();
      });
    });
  }

  private async removeListener(appId: string, listener: AppListener): Promise<void> {
    this.listeners.delete(appId);
    await this.closeListener(listener);
  }

  private closeListener(listener: AppListener): Promise<void> {
    for (const socket of listener.sockets) socket.destroy();
    if (!listener.listening) return Promise.resolve();
    listener.listening = false;
    return new Promise((resolve) => listener.server.close(() => resolve()));
  }

  private setEndpoints(listener: AppListener, endpoints: Endpoint[]): void {
    listener.endpoints = [...endpoints];
    if (listener.next >= listener.endpoints.length) listener.next = 0;
  }

  private createServer(appId: string): Server {
    const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (client) => {
      const listener = this.listeners.get(appId);
      if (!listener || listener.server !== server) {
        client.destroy();
        return;
      }
      this.forward(listener, client);
    });
    return server;
  }

  /** Tries each endpoint once, starting at the round-robin cursor; none left → the client is closed. */
  private forward(listener: AppListener, client: Socket): void {
    const candidates = listener.endpoints;
    if (candidates.length === 0) {
      client.destroy();
      return;
    }
    const start = listener.next % candidates.length;
    listener.next = (start + 1) % candidates.length;
    listener.sockets.add(client);
    client.on('close', () => listener.sockets.delete(client));
    client.on('error', () => client.destroy());

    const attempt = (i: number) => {
      if (client.destroyed) return;
      if (i >= candidates.length) {
        client.destroy();
        return;
      }
      const endpoint = candidates[(start + i) % candidates.length]!;
      const backend = connect({ host: endpoint.host, port: endpoint.port, allowHalfOpen: true });
      backend.setTimeout(this.connectTimeoutMs);
      const giveUp = () => {
        backend.destroy();
        attempt(i + 1);
      };
      backend.once('timeout', giveUp);
      backend.once('error', giveUp);
      backend.once('connect', () => {
        backend.setTimeout(0);
        backend.off('timeout', giveUp);
        backend.off('error', giveUp);
        backend.on('error', () => client.destroy());
        // A clean close has already ended the client through the pipe; destroying it here would drop
        // bytes still queued for it.
        backend.on('close', (hadError) => {
          if (hadError) client.destroy();
        });
        client.on('close', () => backend.destroy());
        client.pipe(backend);
        backend.pipe(client);
        client.resume();
      });
    };
    attempt(0);
  }
}
