/**
 * A Connection is the one thing that crosses a socket: typed messages in, typed messages out.
 *
 * The master, the agent and the SDK only ever see this interface, so the same code runs over a
 * real WebSocket (WsConnection) or an in-process pipe (MemoryConnection, for the SDK's testing
 * harness). Both encode with msgpack and validate every inbound message, so the pipe is faithful.
 *
 * What the WebSocket flavour adds:
 *  - outbound batching: messages sent in one event-loop turn leave as one frame;
 *  - heartbeats: the side that accepted the socket pings; a peer that misses `maxMissedPings`
 *    pongs is terminated (close code 1006 reported as "heartbeat timeout");
 *  - a slow-consumer guard: a peer whose unsent backlog passes `maxBufferedBytes` is dropped
 *    rather than letting the master's memory grow without bound.
 */
import { WebSocket } from 'ws';
import type { z } from 'zod';
import { createPackr, createUnpackr, DecodeError, framesToMessages, validateMessage } from './codec.ts';
import { ErrorCode, type ErrorMessage } from './messages.ts';

export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011,
} as const;

export interface Connection<In, Out> {
  send(message: Out): void;
  /** Sends an ERROR message (both directions carry the same ERROR shape). */
  sendError(code: string, message: string): void;
  close(code: number, reason: string): void;
  readonly remote: string;
  readonly isOpen: boolean;
  /** Called for every valid inbound message. */
  onMessage: (message: In) => void;
  /** Called once, when the connection ends for any reason. */
  onClose: (code: number, reason: string) => void;
}

export interface InboundSpec<In> {
  schema: z.ZodType<In>;
  knownTypes: ReadonlySet<string>;
}

/** Shared inbound path: decode a frame, validate each message, answer bad ones with ERROR. */
abstract class BaseConnection<In extends { type: string }, Out extends { type: string }> {
  onMessage: (message: In) => void = () => {};
  onClose: (code: number, reason: string) => void = () => {};
  private readonly unpackr = createUnpackr();
  protected readonly packr = createPackr();
  private closed = false;

  constructor(protected readonly inbound: InboundSpec<In>) {}

  abstract send(message: Out): void;
  abstract close(code: number, reason: string): void;
  abstract get isOpen(): boolean;

  protected receiveFrame(data: Buffer): void {
    let decoded: unknown;
    try {
      decoded = this.unpackr.unpack(data);
    } catch (error) {
      this.sendError(ErrorCode.UNDECODABLE, `frame is not valid msgpack (${(error as Error).message}); send binary msgpack frames`);
      this.close(CloseCode.INVALID_PAYLOAD, 'undecodable frame');
      return;
    }
    for (const raw of framesToMessages(decoded)) {
      if (this.closed) return;
      let message: In;
      try {
        message = validateMessage(this.inbound.schema, this.inbound.knownTypes, raw);
      } catch (error) {
        if (!(error instanceof DecodeError)) throw error;
        this.sendError(error.code, error.message);
        continue;
      }
      this.onMessage(message);
    }
  }

  sendError(code: string, message: string): void {
    const error: ErrorMessage = { type: 'ERROR', code, message };
    this.send(error as unknown as Out);
  }

  protected closed_(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose(code, reason);
  }

  protected get isClosed(): boolean {
    return this.closed;
  }
}

export interface WsConnectionOptions<In> extends InboundSpec<In> {
  /** Ping the peer this often (set on the side that accepted the socket). */
  pingIntervalMs?: number;
  maxMissedPings?: number;
  /** On the dialling side: treat the connection as dead if no ping arrives for this long. */
  expectPingWithinMs?: number;
  /** @default 16 MiB */
  maxBufferedBytes?: number;
}

export class WsConnection<In extends { type: string }, Out extends { type: string }> extends BaseConnection<In, Out> implements Connection<In, Out> {
  private queue: Out[] = [];
  private flushScheduled = false;
  private missedPings = 0;
  private pingTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private closeReason: string | undefined;
  readonly remote: string;

  constructor(
    private readonly ws: WebSocket,
    private readonly options: WsConnectionOptions<In>,
    remote?: string,
  ) {
    super(options);
    this.remote = remote ?? 'unknown';
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data, isBinary) => {
      this.missedPings = 0;
      if (!isBinary) {
        this.sendError(ErrorCode.UNDECODABLE, 'text frames are not accepted; send binary msgpack frames');
        this.close(CloseCode.INVALID_PAYLOAD, 'text frame');
        return;
      }
      this.receiveFrame(Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data));
    });
    ws.on('pong', () => {
      this.missedPings = 0;
    });
    ws.on('ping', () => this.armWatchdog());
    ws.on('close', (code, reason) => {
      this.stopTimers();
      this.closed_(code, this.closeReason ?? (reason.toString() || closeCodeText(code)));
    });
    ws.on('error', () => {
      // 'close' follows every 'error'; the reason is reported there.
    });
    if (options.pingIntervalMs) {
      const maxMissed = options.maxMissedPings ?? 3;
      this.pingTimer = setInterval(() => {
        if (this.missedPings >= maxMissed) {
          this.closeReason = `heartbeat timeout: no pong for ${maxMissed} pings`;
          this.ws.terminate();
          return;
        }
        this.missedPings++;
        if (this.ws.readyState === WebSocket.OPEN) this.ws.ping();
      }, options.pingIntervalMs);
      this.pingTimer.unref();
    }
    this.armWatchdog();
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN && !this.isClosed;
  }

  send(message: Out): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.queue.push(message);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0 || this.ws.readyState !== WebSocket.OPEN) return;
    this.sendBatch(batch);
    if (this.ws.bufferedAmount > (this.options.maxBufferedBytes ?? 16 * 1024 * 1024)) {
      this.closeReason = `slow consumer: more than ${this.ws.bufferedAmount} bytes waiting to be sent`;
      this.ws.terminate();
    }
  }

  /** Sends a batch as one frame, halving it until each frame fits the peer's payload limit. */
  private sendBatch(batch: Out[]): void {
    const frame = this.packr.pack(batch.length === 1 ? batch[0] : batch);
    if (frame.length <= MAX_PAYLOAD_BYTES) {
      this.ws.send(frame);
      return;
    }
    if (batch.length === 1) {
      const parts = splitMessage(batch[0]!);
      if (parts) {
        for (const part of parts) this.sendBatch([part]);
        return;
      }
      // The peer would close the socket over it anyway; closing here says why, and nothing is
      // thrown on the event loop (which would take the whole process down).
      this.closeReason = `a ${batch[0]!.type} message of ${frame.length} bytes exceeds the ${MAX_PAYLOAD_BYTES}-byte frame limit`;
      this.ws.close(CloseCode.INTERNAL, 'message too big to send');
      return;
    }
    const half = Math.ceil(batch.length / 2);
    this.sendBatch(batch.slice(0, half));
    this.sendBatch(batch.slice(half));
  }

  close(code: number, reason: string): void {
    this.closeReason ??= reason;
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      // Let queued messages (often the ERROR explaining the close) leave first.
      if (this.queue.length > 0) this.flush();
      this.ws.close(code, reason.slice(0, 120));
      const forceTimer = setTimeout(() => this.ws.terminate(), 2000);
      forceTimer.unref();
    }
  }

  /** Forcibly drops the socket without a close handshake, as a crashed peer would. */
  terminate(): void {
    this.ws.terminate();
  }

  private armWatchdog(): void {
    const limit = this.options.expectPingWithinMs;
    if (!limit) return;
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      this.closeReason = `heartbeat timeout: no ping from the master for ${limit} ms`;
      this.ws.terminate();
    }, limit);
    this.watchdog.unref();
  }

  private stopTimers(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    if (this.watchdog) clearTimeout(this.watchdog);
  }
}

/**
 * Splits a message that is too big for one frame into smaller ones of the same meaning, where the
 * protocol allows: a list of offers can go out as several OFFERS events.
 */
function splitMessage<T extends { type: string }>(message: T): T[] | undefined {
  const offers = (message as { offers?: unknown }).offers;
  if (message.type !== 'OFFERS' || !Array.isArray(offers) || offers.length < 2) return undefined;
  const half = Math.ceil(offers.length / 2);
  return [{ ...message, offers: offers.slice(0, half) }, { ...message, offers: offers.slice(half) }];
}

function closeCodeText(code: number): string {
  switch (code) {
    case 1000:
      return 'closed normally';
    case 1001:
      return 'going away';
    case 1006:
      return 'connection lost';
    case 1007:
      return 'invalid payload';
    case 1008:
      return 'policy violation';
    case 1009:
      return 'message too big';
    default:
      return `closed with code ${code}`;
  }
}

/** Frame size limit on every socket: large enough for thousands of offers, small enough to bound memory. */
export const MAX_PAYLOAD_BYTES = 1024 * 1024;

export class ConnectError extends Error {
  override name = 'ConnectError';
  constructor(
    readonly url: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Dials a WebSocket endpoint and resolves once it is open. */
export function connectWs<In extends { type: string }, Out extends { type: string }>(
  url: string,
  options: WsConnectionOptions<In> & { timeoutMs?: number },
): Promise<WsConnection<In, Out>> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: MAX_PAYLOAD_BYTES, handshakeTimeout: options.timeoutMs ?? 5000 });
    const fail = (error: Error) => {
      ws.removeAllListeners();
      ws.on('error', () => {});
      ws.terminate();
      reject(new ConnectError(url, `cannot connect to ${url}: ${error.message}`, { cause: error }));
    };
    ws.once('error', fail);
    ws.once('unexpected-response', (_req, res) => fail(new Error(`HTTP ${res.statusCode} (is this an Agora master?)`)));
    ws.once('open', () => {
      ws.off('error', fail);
      resolve(new WsConnection<In, Out>(ws, options, url));
    });
  });
}

/**
 * An in-process pipe with the same behaviour as a socket: frames are msgpack-encoded, delivered on
 * a later turn, decoded and validated. Used by the SDK's testing harness.
 */
export class MemoryConnection<In extends { type: string }, Out extends { type: string }> extends BaseConnection<In, Out> implements Connection<In, Out> {
  peer: MemoryConnection<{ type: string }, { type: string }> | undefined;
  readonly remote = 'memory';
  private open = true;

  get isOpen(): boolean {
    return this.open;
  }

  send(message: Out): void {
    if (!this.open || !this.peer) return;
    const frame = this.packr.pack(message);
    const peer = this.peer;
    setImmediate(() => {
      if (peer.open) peer.receiveFrame(frame);
    });
  }

  close(code: number, reason: string): void {
    if (!this.open) return;
    this.open = false;
    const peer = this.peer;
    setImmediate(() => {
      this.closed_(code, reason);
      if (peer && peer.open) {
        peer.open = false;
        peer.closed_(code, reason);
      }
    });
  }

  static pair<A extends { type: string }, B extends { type: string }>(
    aInbound: InboundSpec<A>,
    bInbound: InboundSpec<B>,
  ): [MemoryConnection<A, B>, MemoryConnection<B, A>] {
    const a = new MemoryConnection<A, B>(aInbound);
    const b = new MemoryConnection<B, A>(bInbound);
    a.peer = b as unknown as MemoryConnection<{ type: string }, { type: string }>;
    b.peer = a as unknown as MemoryConnection<{ type: string }, { type: string }>;
    return [a, b];
  }
}
