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
import type { Logger } from 'pino';
import { AppDefinitionError, validateAppDefinition } from '../parse-app-definition.ts';
import { ServicesError, type ServicesApi, type ServicesEvent } from '../service-api.ts';
import { HttpError, MAX_BODY_BYTES, readParsedBody } from '../../sdk/http/body.ts';
import { notFound, only, sendJson, startApiServer, type ApiRequest, type ApiServer, type ErrorAnswer } from '../../sdk/http/server-kit.ts';
import { SseStreams, streamHeld } from '../../sdk/http/sse.ts';

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

export type ServicesHttp = ApiServer;

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
  const streams = new SseStreams(options.heartbeatMs ?? 15_000);
  const context: Context = { api: options.api, maxBodyBytes: options.maxBodyBytes ?? MAX_BODY_BYTES, streams };
  return startApiServer({
    name: 'services API',
    host: options.host ?? '127.0.0.1',
    port: options.port ?? 5051,
    handle: (r) => handle(context, r),
    answerError,
    streams,
    logger: options.logger,
  });
}

interface Context {
  api: ServicesApi;
  maxBodyBytes: number;
  streams: SseStreams;
}

const APP_ACTIONS = new Set(['scale', 'restart', 'rollback']);

async function handle(ctx: Context, r: ApiRequest): Promise<void> {
  const { res } = r;
  const [first, second, ...rest] = r.segments;

  if (first === 'health' && second === undefined) return only(r, ['GET'], () => sendJson(res, 200, { status: 'ok' }));
  if (first !== 'v1') return notFound(r, ROUTES);
  switch (second) {
    case 'apps':
      return routeApps(ctx, r, rest);
    case 'deployments':
      return routeDeployments(ctx, r, rest);
    case 'tasks':
      if (rest.length > 0) return notFound(r, ROUTES);
      return only(r, ['GET'], async () => {
        const app = r.query.get('app');
        const tasks = await ctx.api.tasks(app ? normalizeAppId(app) : undefined);
        sendJson(res, 200, { tasks });
      });
    case 'events':
      if (rest.length > 0) return notFound(r, ROUTES);
      return only(r, ['GET'], () => streamEvents(ctx, r, () => true));
    default:
      return notFound(r, ROUTES);
  }
}

async function routeApps(ctx: Context, r: ApiRequest, path: string[]): Promise<void> {
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
    const body = await readParsedBody(r.req, ctx.maxBodyBytes);
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

async function routeDeployments(ctx: Context, r: ApiRequest, path: string[]): Promise<void> {
  const { api } = ctx;
  const { res } = r;
  if (path.length === 0) return only(r, ['GET'], async () => sendJson(res, 200, { deployments: await api.listDeployments() }));
  if (path.length > 1) return notFound(r, ROUTES);
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
async function readAppDefinition(ctx: Context, r: ApiRequest, pathId: string | undefined) {
  const data = await readParsedBody(r.req, ctx.maxBodyBytes);
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

function streamEvents(ctx: Context, r: ApiRequest, accept: (event: ServicesEvent) => boolean): void {
  const types = r.query.get('type')?.split(',').filter(Boolean);
  const stream = ctx.streams.start(r.res);
  const unsubscribe = ctx.api.subscribe((event) => {
    if (accept(event) && (!types || types.includes(event.type))) stream.send(event.type, event);
  });
  stream.onClose(unsubscribe);
}

/** The app's endpoints now, then each change. */
function streamEndpoints(ctx: Context, r: ApiRequest, appId: string): Promise<void> {
  return streamHeld<ServicesEvent>(ctx.streams, r.res, {
    subscribe: (listener) =>
      ctx.api.subscribe((event) => {
        if (event.type === 'endpoints' && event.appId === appId) listener(event);
      }),
    snapshot: async () => [{ type: 'endpoints', appId, endpoints: await ctx.api.endpoints(appId) }],
  });
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

function forceOf(r: ApiRequest): { force?: boolean } {
  return isTrue(r.query.get('force')) ? { force: true } : {};
}

const STATUS_OF_CODE = { NOT_FOUND: 404, CONFLICT: 409, INVALID: 422 } as const;

function answerError(error: unknown): ErrorAnswer | undefined {
  if (error instanceof AppDefinitionError) {
    return { status: 422, body: { error: 'invalid app definition; fix the fields named in problems', problems: error.problems } };
  }
  if (error instanceof ServicesError) {
    return { status: STATUS_OF_CODE[error.code], body: { error: error.message, code: error.code, ...(error.details !== undefined && { details: error.details }) } };
  }
  return undefined;
}
