/**
 * Server-sent events: one stream per client, with comment heartbeats so proxies and clients can
 * tell a quiet stream from a dead one. A client too slow to keep up is cut off (it reconnects)
 * rather than letting its backlog grow without bound. Used by the services and batch APIs.
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
