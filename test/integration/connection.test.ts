/**
 * The WebSocket edge on its own: heartbeats, the slow-consumer guard and frame limits, over real
 * loopback sockets.
 */
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { connectWs, Inbound, MAX_PAYLOAD_BYTES, WsConnection, type Offer, type SchedulerCall, type SchedulerEvent } from '../../master/protocol/index.ts';
import { waitFor } from './helpers.ts';

const servers: WebSocketServer[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) {
    for (const c of s.clients) c.terminate();
    s.close();
  }
});

/** A server whose accepted sockets become master-side scheduler connections with the given options. */
async function server(options: { pingIntervalMs?: number; maxMissedPings?: number; maxBufferedBytes?: number }): Promise<{ url: string; accepted: Promise<WsConnection<SchedulerCall, SchedulerEvent>> }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false, maxPayload: MAX_PAYLOAD_BYTES });
  servers.push(wss);
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const accepted = new Promise<WsConnection<SchedulerCall, SchedulerEvent>>((resolve) =>
    wss.once('connection', (ws) => resolve(new WsConnection<SchedulerCall, SchedulerEvent>(ws, { ...Inbound.schedulerCalls, ...options }))),
  );
  return { url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, accepted };
}

function closed(conn: { onClose: (code: number, reason: string) => void }): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => (conn.onClose = (code, reason) => resolve({ code, reason })));
}

function offer(i: number, attributes: Record<string, string> = {}): Offer {
  return { id: `o${i}`, frameworkId: 'f', agentId: `a${i}`, hostname: `h${i}`, role: '*', resources: { cpus: 1 }, attributes };
}

describe('WsConnection', () => {
  it('terminates a peer that stops answering pings', async () => {
    const { url, accepted } = await server({ pingIntervalMs: 50, maxMissedPings: 2 });
    const peer = new WebSocket(url, { autoPong: false });
    peer.on('error', () => {});
    const conn = await accepted;
    const { reason } = await closed(conn);
    expect(reason).toMatch(/heartbeat timeout: no pong for 2 pings/);
    peer.terminate();
  });

  it('keeps a peer that answers pings', async () => {
    const { url, accepted } = await server({ pingIntervalMs: 30, maxMissedPings: 2 });
    const peer = new WebSocket(url);
    const conn = await accepted;
    await new Promise((r) => setTimeout(r, 300)); // ten ping intervals
    expect(conn.isOpen).toBe(true);
    peer.terminate();
  });

  it('drops the master on the dialling side when no ping arrives in time', async () => {
    const { url } = await server({}); // this server never pings
    const conn = await connectWs<SchedulerEvent, SchedulerCall>(url, { ...Inbound.schedulerEvents, expectPingWithinMs: 100 });
    expect((await closed(conn)).reason).toMatch(/no ping from the master for 100 ms/);
  });

  it('drops a slow consumer instead of buffering without bound', async () => {
    const { url, accepted } = await server({ maxBufferedBytes: 256 * 1024 });
    const peer = new WebSocket(url);
    await new Promise((r) => peer.once('open', r));
    // The peer stops reading: its socket is paused, so the kernel buffers fill and ws starts queueing.
    (peer as unknown as { _socket: { pause(): void } })._socket.pause();
    const conn = await accepted;
    const ended = closed(conn);
    const big = Array.from({ length: 400 }, (_, i) => offer(i, { note: 'x'.repeat(400) }));
    const pump = setInterval(() => {
      for (let i = 0; i < 20; i++) conn.send({ type: 'OFFERS', offers: big });
    }, 5);
    const { reason } = await ended;
    clearInterval(pump);
    expect(reason).toMatch(/slow consumer/);
    peer.terminate();
  });

  it('splits a turn\'s batch into frames under the limit, losing nothing', async () => {
    const { url, accepted } = await server({});
    const client = await connectWs<SchedulerEvent, SchedulerCall>(url, Inbound.schedulerEvents);
    const received: SchedulerEvent[] = [];
    client.onMessage = (m) => received.push(m);
    const conn = await accepted;
    // 600 offers of ~4 KiB each, sent in one turn: ~2.4 MiB, more than two frames' worth.
    for (let i = 0; i < 600; i++) conn.send({ type: 'OFFERS', offers: [offer(i, { note: 'y'.repeat(4000) })] });
    await waitFor(() => received.length === 600, 'all 600 messages');
    expect(received.map((m) => (m.type === 'OFFERS' ? m.offers[0]!.id : '')).slice(0, 3)).toEqual(['o0', 'o1', 'o2']);
    expect(new Set(received.map((m) => (m.type === 'OFFERS' ? m.offers[0]!.id : ''))).size).toBe(600);
    client.close(1000, 'done');
  });

  it('splits one OFFERS event that is larger than a frame into several', async () => {
    const { url, accepted } = await server({});
    const client = await connectWs<SchedulerEvent, SchedulerCall>(url, Inbound.schedulerEvents);
    const offers: Offer[] = [];
    client.onMessage = (m) => {
      if (m.type === 'OFFERS') offers.push(...m.offers);
    };
    const conn = await accepted;
    conn.send({ type: 'OFFERS', offers: Array.from({ length: 3 }, (_, i) => offer(i, { note: 'z'.repeat(400_000) })) });
    await waitFor(() => offers.length === 3, 'the three offers');
    expect(conn.isOpen).toBe(true);
    client.close(1000, 'done');
  });

  it('closes with 1011 rather than crashing when a single message cannot fit a frame', async () => {
    const { url, accepted } = await server({});
    const client = await connectWs<SchedulerEvent, SchedulerCall>(url, Inbound.schedulerEvents);
    const conn = await accepted;
    const ended = closed(conn);
    const clientEnded = closed(client);
    conn.send({ type: 'ERROR', code: 'X', message: 'm'.repeat(2 * MAX_PAYLOAD_BYTES) });
    const { reason } = await ended;
    expect(reason).toMatch(/exceeds the 1048576-byte frame limit/);
    expect((await clientEnded).code).toBe(1011);
  });
});
