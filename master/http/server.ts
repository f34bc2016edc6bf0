/**
 * The master's network edge: one HTTP server for the operator API (GET /health, GET /state, and
 * tasks' stdout/stderr, see task-files.ts) and the two WebSocket endpoints.
 *
 * WebSockets are accepted through the HTTP `upgrade` event (ws `noServer`), so one port serves
 * everything and unknown paths are refused before any WebSocket is made.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { Master, type MasterOptions } from '../master.ts';
import { Endpoint, Inbound, MAX_PAYLOAD_BYTES, WsConnection } from '../protocol/index.ts';
import type { AgentMessage, MasterToAgent, SchedulerCall, SchedulerEvent } from '../protocol/messages.ts';
import { isTaskFilePath, serveTaskFile, TASK_FILE_ROUTE } from './task-files.ts';

export interface MasterServerOptions extends MasterOptions {
  host?: string;
  /** 0 picks a free port. @default 5050 */
  port?: number;
  /** ws ping interval for agents and schedulers. @default 1000 */
  pingIntervalMs?: number;
  /** Missed pongs before a peer is dropped. @default 5 */
  maxMissedPings?: number;
}

export interface MasterServer {
  master: Master;
  /** http://host:port */
  url: string;
  /** ws://host:port — what agents and schedulers dial. */
  wsUrl: string;
  port: number;
  close(): Promise<void>;
}

export async function startMasterServer(options: MasterServerOptions = {}): Promise<MasterServer> {
  const master = new Master(options);
  const host = options.host ?? '127.0.0.1';
  const heartbeat = { pingIntervalMs: options.pingIntervalMs ?? 1000, maxMissedPings: options.maxMissedPings ?? 5 };
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: MAX_PAYLOAD_BYTES });

  const server = createServer((req, res) => handleHttp(master, req, res));
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== Endpoint.agent && path !== Endpoint.scheduler) {
      socket.end(`HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno WebSocket endpoint at ${path}; use ${Endpoint.scheduler} or ${Endpoint.agent}\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
      if (path === Endpoint.agent) {
        master.acceptAgent(new WsConnection<AgentMessage, MasterToAgent>(ws, { ...Inbound.agentMessages, ...heartbeat }, remote));
      } else {
        master.acceptScheduler(new WsConnection<SchedulerCall, SchedulerEvent>(ws, { ...Inbound.schedulerCalls, ...heartbeat }, remote));
      }
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 5050, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : (options.port ?? 5050);
  const hostForUrl = host.includes(':') ? `[${host}]` : host;
  return {
    master,
    port,
    url: `http://${hostForUrl}:${port}`,
    wsUrl: `ws://${hostForUrl}:${port}`,
    async close() {
      await master.close();
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function handleHttp(master: Master, req: IncomingMessage, res: ServerResponse): void {
  const [path = '/', rawQuery = ''] = (req.url ?? '/').split('?', 2);
  if (req.method !== 'GET') return sendJson(res, 405, { error: `${req.method} is not supported here; use GET` });
  if (isTaskFilePath(path)) {
    // Ids are decoded per path segment there, so the path is passed on still encoded.
    serveTaskFile(master, path, new URLSearchParams(rawQuery), res).catch((error: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: `reading a task file failed inside the master: ${(error as Error).message}` });
    });
    return;
  }
  switch (path) {
    case '/health':
      return sendJson(res, 200, { status: 'ok', masterId: master.id });
    case '/state':
      return sendJson(res, 200, master.state());
    default:
      return sendJson(res, 404, { error: `no such endpoint ${path}; try /state, /health or ${TASK_FILE_ROUTE}` });
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
