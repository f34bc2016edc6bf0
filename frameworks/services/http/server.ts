/**
 * The services framework's REST API (Marathon-shaped, JSON) and its event streams, over node:http.
 *
 * App ids are paths, so `/v1/apps/shop/web` names the app `/shop/web`. As in Marathon, a trailing
 * `versions`, `endpoints`, `scale`, `restart` or `rollback` names a sub-resource, not part of the id.
 * Lists come wrapped (`{apps: […]}`), single objects bare; every change answers with the
 * deployment that carries it out. Errors are `{error, …}` with a status a client can branch on:
 * 400 unreadable body, 404 no such thing, 409 conflicting deployment, 413 body too big,
 * 422 invalid (with `problems: [{field, message}]` for app definitions).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { AppDefinitionError, validateAppDefinition } from '../parse-app-definition.ts';
import { ServicesError, type ServicesApi, type ServicesEvent } from '../service-api.ts';
import { HttpError, MAX_BODY_BYTES, parseBody, readBody } from '../../sdk/http/body.ts';
import { SseStream } from '../../sdk/http/sse.ts';

export interface ServicesHttpOptions {
  api: ServicesApi;
  /** @default '127.0.0.1' */
  host?: string;
  /** 0 picks a free port. @default 5051 */
  port?: number;
  /** Comment lines on idle event streams. @default 15000 */
  heartbeatMs?: number;
  /** @default 1 MiB */
  maxBodyBytes?: number;
  logger?: Logger;
}

export interface ServicesHttp {
  /** http://host:port */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** What a 404 lists, so a person who guessed a path sees the real ones. */
export const ROUTES = [
  'GET    /health',
  'GET    /v1/apps',
  'POST   /v1/apps                       (JSON or YAML app definition)',
  'GET    /v1/apps/{id}',
  'PUT    /v1/apps/{id}[?force=true]     (create or update)',
  'DELETE /v1/apps/{id}[?force=true]',
  'GET    /v1/apps/{id}/versions',
  'POST   /v1/apps/{id}/scale[?force=true]     {"instances": N}',
  'POST   /v1/apps/{id}/restart[?force=true]',
  'POST   /v1/apps/{id}/rollback[?force=true]  {"version": "…"} (optional)',
  'GET    /v1/apps/{id}/endpoints[?watch=true]',
  'GET    /v1/apps/{id}/endpoints/events  (server-sent events)',
  'GET    /v1/deployments',
  'GET    /v1/deployments/{id}',
  'DELETE /v1/deployments/{id}[?force=true]  (cancel = revert; force = stop without revert)',
  'GET    /v1/tasks[?app={id}]',
  'GET    /v1/events                      (server-sent events)',
];

export async function startServicesHttp(options: ServicesHttpOptions): Promise<ServicesHttp> {
  const host = options.host ?? '127.0.0.1';
  const streams = new Set<SseStream>();
  const context: Context = { api: options.api, heartbeatMs: options.heartbeatMs ?? 15_000, maxBodyBytes: options.maxBodyBytes ?? MAX_BODY_BYTES, streams, logger: options.logger };
  const server = createServer((req, res) => {
    handle(context, req, res).catch((error: unknown) => sendError(context, req, res, error));
  });
  // A client that sends garbage gets a 400 from node itself; it must never reach 'error' on the server.
  server.on('clientError', (_error, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 5051, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : (options.port ?? 5051);
  return {
    port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    async close() {
      for (const stream of streams) stream.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface Context {
  api: ServicesApi;
  heartbeatMs: number;
  maxBodyBytes: number;
  streams: Set<SseStream>;
  logger: Logger | undefined;
}

interface Request {
  method: string;
  segments: string[];
  query: URLSearchParams;
  req: IncomingMessage;
  res: ServerResponse;
}

const APP_ACTIONS = new Set(['scale', 'restart', 'rollback']);

async function handle(ctx: Context, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://services');
  let segments: string[];
  try {
    segments = url.pathname.split('/').filter((s) => s !== '').map(decodeURIComponent);
  } catch {
    throw new HttpError(400, `the path ${url.pathname} has a bad percent-encoding`);
  }
  const r: Request = { method: req.method ?? 'GET', segments, query: url.searchParams, req, res };
  const [first, second, ...rest] = segments;

  if (first === 'health' && second === undefined) return only(r, ['GET'], () => sendJson(res, 200, { status: 'ok' }));
  if (first !== 'v1') return notFound(r);
  switch (second) {
    case 'apps':
      return routeApps(ctx, r, rest);
    case 'deployments':
      return routeDeployments(ctx, r, rest);
    case 'tasks':
      if (rest.length > 0) return notFound(r);
      return only(r, ['GET'], async () => {
        const app = r.query.get('app');
        const tasks = await ctx.api.tasks(app ? normalizeAppId(app) : undefined);
        sendJson(res, 200, { tasks });
      });
    case 'events':
      if (rest.length > 0) return notFound(r);
      return only(r, ['GET'], () => streamEvents(ctx, r, () => true));
    default:
      return notFound(r);
  }
}

async function routeApps(ctx: Context, r: Request, path: string[]): Promise<void> {
  const { api } = ctx;
  const { res } = r;
  if (path.length === 0) {
    return only(r, ['GET', 'POST'], async () => {
      if (r.method === 'GET') return sendJson(res, 200, { apps: await api.listApps() });
      const app = await readAppDefinition(ctx, r, undefined);
      if (await api.getApp(app.id)) throw new HttpError(409, `the app ${app.id} already exists; change it with PUT /v1/apps${app.id}`);
      const deployment = await api.putApp(app, forceOf(r));
      res.setHeader('location', `/v1/apps${app.id}`);
      sendJson(res, 201, deployment);
    });
  }

  const last = path[path.length - 1]!;
  const beforeLast = path[path.length - 2];
  if (last === 'events' && beforeLast === 'endpoints' && path.length > 2) {
    return only(r, ['GET'], () => streamEndpoints(ctx, r, appIdOf(path.slice(0, -2))));
  }
  if (last === 'endpoints' && path.length > 1) {
    const appId = appIdOf(path.slice(0, -1));
    return only(r, ['GET'], async () => {
      if (isTrue(r.query.get('watch'))) return streamEndpoints(ctx, r, appId);
      sendJson(res, 200, { appId, endpoints: await api.endpoints(appId) });
    });
  }
  if (last === 'versions' && path.length > 1) {
    const appId = appIdOf(path.slice(0, -1));
    return only(r, ['GET'], async () => sendJson(res, 200, { appId, versions: await api.versions(appId) }));
  }
  if (APP_ACTIONS.has(last) && path.length > 1 && r.method === 'POST') {
    const appId = appIdOf(path.slice(0, -1));
    const body = parseBody(await readBody(r.req, ctx.maxBodyBytes), r.req.headers['content-type']);
    if (body !== undefined && (typeof body !== 'object' || body === null || Array.isArray(body))) {
      throw new HttpError(400, `the body of ${last} must be a JSON object`);
    }
    const fields = (body ?? {}) as Record<string, unknown>;
    let deployment;
    if (last === 'scale') {
      const instances = fields.instances;
      if (typeof instances !== 'number' || !Number.isInteger(instances) || instances < 0) {
        throw new HttpError(422, 'scale needs {"instances": N} with N a whole number, 0 or more', {
          problems: [{ field: 'instances', message: instances === undefined ? 'is required' : 'must be a whole number, 0 or more' }],
        });
      }
      deployment = await api.scale(appId, instances, forceOf(r));
    } else if (last === 'restart') {
      deployment = await api.restart(appId, forceOf(r));
    } else {
      const version = fields.version;
      if (version !== undefined && typeof version !== 'string') {
        throw new HttpError(422, 'rollback takes {"version": "…"} as a string, or no body for the previous version', {
          problems: [{ field: 'version', message: 'must be a string (see GET /v1/apps/{id}/versions)' }],
        });
      }
      deployment = await api.rollback(appId, version, forceOf(r));
    }
    return sendJson(res, 200, deployment);
  }

  const appId = appIdOf(path);
  return only(r, ['GET', 'PUT', 'DELETE'], async () => {
    if (r.method === 'GET') {
      const status = await api.getApp(appId);
      if (!status) throw new ServicesError('NOT_FOUND', `no app ${appId}; GET /v1/apps lists them`);
      return sendJson(res, 200, status);
    }
    if (r.method === 'PUT') {
      const app = await readAppDefinition(ctx, r, appId);
      return sendJson(res, 200, await api.putApp(app, forceOf(r)));
    }
    return sendJson(res, 200, await api.deleteApp(appId, forceOf(r)));
  });
}

async function routeDeployments(ctx: Context, r: Request, path: string[]): Promise<void> {
  const { api } = ctx;
  const { res } = r;
  if (path.length === 0) return only(r, ['GET'], async () => sendJson(res, 200, { deployments: await api.listDeployments() }));
  if (path.length > 1) return notFound(r);
  const id = path[0]!;
  return only(r, ['GET', 'DELETE'], async () => {
    if (r.method === 'GET') {
      const deployment = await api.getDeployment(id);
      if (!deployment) throw new ServicesError('NOT_FOUND', `no deployment ${id}; GET /v1/deployments lists the ones in progress`);
      return sendJson(res, 200, deployment);
    }
    const force = forceOf(r).force === true;
    await api.cancelDeployment(id, { force });
    sendJson(res, 200, { deploymentId: id, cancelled: true, reverted: !force });
  });
}

/** Reads an app definition body; with `pathId` (PUT), the body's id may be left out but must match. */
async function readAppDefinition(ctx: Context, r: Request, pathId: string | undefined) {
  const data = parseBody(await readBody(r.req, ctx.maxBodyBytes), r.req.headers['content-type']);
  if (data === undefined) throw new HttpError(400, 'the body is empty; send an app definition as JSON or YAML');
  if (pathId !== undefined && typeof data === 'object' && data !== null && !Array.isArray(data)) {
    const fields = data as Record<string, unknown>;
    if (fields.id === undefined) {
      fields.id = pathId;
    } else if (typeof fields.id === 'string' && normalizeAppId(fields.id) !== pathId) {
      throw new HttpError(422, `the body's id ${fields.id} does not match the path's ${pathId}`, {
        problems: [{ field: 'id', message: `must be ${pathId} (the id in the path) or left out` }],
      });
    }
  }
  return validateAppDefinition(data);
}

function streamEvents(ctx: Context, r: Request, accept: (event: ServicesEvent) => boolean): void {
  const types = r.query.get('type')?.split(',').filter(Boolean);
  const stream = openStream(ctx, r);
  const unsubscribe = ctx.api.subscribe((event) => {
    if (accept(event) && (!types || types.includes(event.type))) stream.send(event.type, event);
  });
  stream.onClose(unsubscribe);
}

/**
 * The app's endpoints now, then each change. Subscribes before reading the current endpoints and
 * holds events until they are sent, so no change falls between the snapshot and the stream.
 */
async function streamEndpoints(ctx: Context, r: Request, appId: string): Promise<void> {
  const held: ServicesEvent[] = [];
  let stream: SseStream | undefined;
  const unsubscribe = ctx.api.subscribe((event) => {
    if (event.type !== 'endpoints' || event.appId !== appId) return;
    if (stream) stream.send('endpoints', event);
    else held.push(event);
  });
  let endpoints;
  try {
    endpoints = await ctx.api.endpoints(appId);
  } catch (error) {
    unsubscribe();
    throw error;
  }
  stream = openStream(ctx, r);
  stream.onClose(unsubscribe);
  stream.send('endpoints', { type: 'endpoints', appId, endpoints });
  for (const event of held) stream.send('endpoints', event);
}

function openStream(ctx: Context, r: Request): SseStream {
  const stream = new SseStream(r.res, ctx.heartbeatMs);
  ctx.streams.add(stream);
  stream.onClose(() => ctx.streams.delete(stream));
  return stream;
}

async function only(r: Request, methods: string[], handler: () => void | Promise<void>): Promise<void> {
  if (!methods.includes(r.method)) {
    r.res.setHeader('allow', methods.join(', '));
    throw new HttpError(405, `${r.method} is not supported on /${r.segments.join('/')}; use ${methods.join(' or ')}`);
  }
  return handler();
}

function notFound(r: Request): never {
  throw new HttpError(404, `no route ${r.method} /${r.segments.join('/')}`, { routes: ROUTES });
}

function appIdOf(segments: string[]): string {
  return `/${segments.join('/')}`;
}

function normalizeAppId(id: string): string {
  const trimmed = id.replace(/\/+$/, '');
  return trimmed.startsWith('/') ? trimmed : `/${trimmed}`;
}

function isTrue(value: string | null): boolean {
  return value === '' || value === 'true' || value === '1';
}

function forceOf(r: Request): { force?: boolean } {
  return isTrue(r.query.get('force')) ? { force: true } : {};
}

/** How long an over-limit body is drained before its connection is cut. */
const LINGER_MS = 2000;

const STATUS_OF_CODE = { NOT_FOUND: 404, CONFLICT: 409, INVALID: 422 } as const;

function sendError(ctx: Context, req: IncomingMessage, res: ServerResponse, error: unknown): void {
  let status: number;
  let body: Record<string, unknown>;
  if (error instanceof HttpError) {
    status = error.status;
    body = { error: error.message, ...error.extra };
  } else if (error instanceof AppDefinitionError) {
    status = 422;
    body = { error: 'invalid app definition; fix the fields named in problems', problems: error.problems };
  } else if (error instanceof ServicesError) {
    status = STATUS_OF_CODE[error.code];
    body = { error: error.message, code: error.code, ...(error.details !== undefined && { details: error.details }) };
  } else {
    status = 500;
    body = { error: `internal error: ${(error as Error)?.message ?? String(error)}` };
    ctx.logger?.error({ err: error, method: req.method, url: req.url }, 'services API request failed');
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  // A body cut off by the size limit is still arriving. Answer and close, but read and discard
  // the rest for a while (a lingering close): a socket closed with unread bytes sends a reset,
  // which can make the client lose the 413 it was sent.
  if (status === 413) {
    res.setHeader('connection', 'close');
    req.resume();
    res.on('finish', () => setTimeout(() => req.destroy(), LINGER_MS).unref());
  }
  sendJson(res, status, body);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
