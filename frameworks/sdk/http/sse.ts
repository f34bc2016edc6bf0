/**
 * Server-sent events: one stream per client, with comment heartbeats so proxies and clients can
 * tell a quiet stream from a dead one. A client too slow to keep up is cut off (it reconnects)
 * rather than letting its backlog grow without bound. A server keeps its streams in SseStreams so
 * closing it ends them; streamHeld opens one with a snapshot first. Used by the services and batch APIs.
 */
import type { ServerResponse } from 'node:http';

/** Unsent bytes a stream may hold before the client is dropped. */
const MAX_BACKLOG_BYTES = 8 * 1024 * 1024;

export class SseStream {
  private readonly heartbeat: NodeJS.Timeout;
  private closed = false;
  private readonly onCloseListeners: Array<() => void> = [];

  constructor(
    private readonly res: ServerResponse,
    heartbeatMs: number,
  ) {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    // Flushes the headers so the client knows it is subscribed, and asks it to reconnect after 1 s.
    res.write('retry: 1000\n: connected\n\n');
    this.heartbeat = setInterval(() => this.write(': heartbeat\n\n'), heartbeatMs);
    this.heartbeat.unref();
    res.on('close', () => this.close());
    // The client may have gone while the stream's first data was being read: 'close' has fired already.
    if (res.destroyed || res.socket === null || res.socket.destroyed) this.close();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  send(event: string, data: unknown): void {
    this.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  onClose(listener: () => void): void {
    if (this.closed) listener();
    else this.onCloseListeners.push(listener);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    if (!this.res.writableEnded) this.res.end();
    for (const listener of this.onCloseListeners.splice(0)) listener();
  }

  private write(text: string): void {
    if (this.closed) return;
    if (this.res.writableLength > MAX_BACKLOG_BYTES) {
      this.res.destroy();
      this.close();
      return;
    }
    this.res.write(text);
  }
}

/** The open streams of one server, so closing the server ends them all. */
export class SseStreams {
  private readonly open = new Set<SseStream>();

  constructor(private readonly heartbeatMs: number) {}

  /** Answers the request with a new stream (status 200 and the event-stream headers). */
  start(res: ServerResponse): SseStream {
    const stream = new SseStream(res, this.heartbeatMs);
    this.open.add(stream);
    stream.onClose(() => this.open.delete(stream));
    return stream;
  }

  closeAll(): void {
    for (const stream of this.open) stream.close();
  }
}

/** Where a stream's events come from: each is sent under its `type`. */
export interface HeldEventSource<E extends { type: string }> {
  /** Returns the unsubscribe. */
  subscribe(listener: (event: E) => void): () => void;
  /** The events the stream opens with (the state now); reading them may throw (a 404), and then no stream opens. */
  snapshot(): Promise<readonly E[]>;
  /** How an event travels; as it is by default. */
  toWire?(event: E): unknown;
}

/**
 * Streams the snapshot's events, then each new one. Subscribes before reading the snapshot and
 * holds events until it is sent, so no change falls between the snapshot and the stream.
 */
export async function streamHeld<E extends { type: string }>(streams: SseStreams, res: ServerResponse, source: HeldEventSource<E>): Promise<void> {
  const held: E[] = [];
  let stream: SseStream | undefined;
  const send = (event: E) => stream!.send(event.type, source.toWire ? source.toWire(event) : event);
  const unsubscribe = source.subscribe((event) => {
    if (stream) send(event);
    else held.push(event);
  });
  let snapshot: readonly E[];
  try {
    snapshot = await source.snapshot();
  } catch (error) {
    unsubscribe();
    throw error;
  }
  stream = streams.start(res);
  stream.onClose(unsubscribe);
  for (const event of snapshot) send(event);
  for (const event of held) send(event);
}
