/**
 * What the frameworks' JSON APIs (services, batch) share on the server side: a node:http server
 * that listens and closes with its event streams, requests split into path segments, method and
 * route refusals, JSON answers, and thrown errors turned into statuses. Each framework routes its
 * own paths and says how its own errors answer.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { HttpError } from './body.ts';
import type { SseStreams } from './sse.ts';

/** One request, its path split into decoded segments (`/v1/apps/web` is `['v1', 'apps', 'web']`). */
export interface ApiRequest {
  method: string;
  segments: string[];
  query: URLSearchParams;
  req: IncomingMessage;
  res: ServerResponse;
}

/** How an error answers: its status, its JSON body (`{error, …}`) and any headers. */
export interface ErrorAnswer {
  status: number;
  body: Record<string, unknown>;
  headers?: Record<string, string>;
}

export interface ApiServerOptions {
  /** Names the API in the log line of an unexpected error, e.g. 'services API'. */
  name: string;
  host: string;
  port: number;
  handle(request: ApiRequest): Promise<void>;
  /**
   * The answer to an error the framework knows (its API's refusals, invalid definitions);
   * undefined for any other, which is a 500 and logged. An HttpError answers with its own status.
   */
  answerError(error: unknown): ErrorAnswer | undefined;
  /** Ended when the server closes. */
  streams?: SseStreams;
  logger?: Logger | undefined;
}

export interface ApiServer {
  /** http://host:port */
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const server = createServer((req, res) => {
    dispatch(options, req, res).catch((error: unknown) => sendError(options, req, res, error));
  });
  // A client that sends garbage gets a 400 from node itself; it must never reach 'error' on the server.
  server.on('clientError', (_error, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  const port = await listen(server, options.host, options.port);
  return {
    port,
    url: `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`,
    async close() {
      options.streams?.closeAll();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Listens on host:port and resolves with the port it got (port 0 picks a free one); rejects if it cannot listen. */
export async function listen(server: Server, host: string, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  return typeof address === 'object' && address ? address.port : port;
}

async function dispatch(options: ApiServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let url: URL;
  try {
    url = new URL(req.url ?? '/', 'http://api');
  } catch {
    throw new HttpError(400, `cannot read the request path ${JSON.stringify(req.url)}`);
  }
  let segments: string[];
  try {
    segments = url.pathname.split('/').filter((s) => s !== '').map(decodeURIComponent);
  } catch {
    throw new HttpError(400, `the path ${url.pathname} has a bad percent-encoding`);
  }
  await options.handle({ method: req.method ?? 'GET', segments, query: url.searchParams, req, res });
}

/** Runs `handler` if the request's method is one of `methods`; otherwise 405 with an `allow` header. */
export async function only(r: ApiRequest, methods: string[], handler: () => void | Promise<void>): Promise<void> {
  if (!methods.includes(r.method)) {
    r.res.setHeader('allow', methods.join(', '));
    throw new HttpError(405, `${r.method} is not supported on /${r.segments.join('/')}; use ${methods.join(' or ')}`);
  }
  return handler();
}

/** 404 listing the API's routes, so a person who guessed a path sees the real ones. */
export function notFound(r: ApiRequest, routes: readonly string[]): never {
  throw new HttpError(404, `no route ${r.method} /${r.segments.join('/')}`, { routes });
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** How long an over-limit body is drained before its connection is cut. */
const LINGER_MS = 2000;

function sendError(options: ApiServerOptions, req: IncomingMessage, res: ServerResponse, error: unknown): void {
  const answer: ErrorAnswer = error instanceof HttpError ? { status: error.status, body: { error: error.message, ...error.extra } } : (options.answerError(error) ?? internalError(options, req, error));
  if (res.headersSent) {
    res.destroy();
    return;
  }
  for (const [name, value] of Object.entries(answer.headers ?? {})) res.setHeader(name, value);
  // A body cut off by the size limit is still arriving. Answer and close, but read and discard
  // the rest for a while (a lingering close): a socket closed with unread bytes sends a reset,
  // which can make the client lose the 413 it was sent.
  if (answer.status === 413) {
    res.setHeader('connection', 'close');
    req.resume();
    res.on('finish', () => setTimeout(() => req.destroy(), LINGER_MS).unref());
  }
  sendJson(res, answer.status, answer.body);
}

function internalError(options: ApiServerOptions, req: IncomingMessage, error: unknown): ErrorAnswer {
  options.logger?.error({ err: error, method: req.method, url: req.url }, `${options.name} request failed`);
  return { status: 500, body: { error: `internal error: ${(error as Error)?.message ?? String(error)}` } };
}
