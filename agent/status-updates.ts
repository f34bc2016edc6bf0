/**
 * Reliable status updates (Mesos' task status update manager).
 *
 * One in-order stream per task. Each update gets a uuid and is kept until an ACKNOWLEDGE_UPDATE
 * with that uuid arrives. Only the head of a stream is in flight, so a scheduler sees a task's
 * updates in order; the head is resent with backoff while connected, and every head is resent at
 * once on (re-)registration. With a checkpoint store, updates and acks are appended to disk before
 * anything is sent, so a restarted agent resends what was never acknowledged.
 */
import { randomUUID } from 'node:crypto';
import type { CheckpointStore, StoredStatus } from './checkpoint.ts';

export interface StatusUpdateManagerOptions {
  /** Sends one update (the agent adds its id). Called only between `resume()` and `pause()`. */
  send: (status: StoredStatus) => void;
  checkpoint?: CheckpointStore | undefined;
  /** Backoff between resends of an unacknowledged head. @default {initialMs: 1000, maxMs: 30_000} */
  retry?: { initialMs: number; maxMs: number };
  /** Called after an update is acknowledged and dropped from its stream. */
  onAcknowledged?: (status: StoredStatus) => void;
}

interface Stream {
  queue: StoredStatus[];
  timer: NodeJS.Timeout | undefined;
  backoffMs: number;
}

export class StatusUpdateManager {
  private readonly streams = new Map<string, Stream>();
  private connected = false;
  private readonly initialMs: number;
  private readonly maxMs: number;

  constructor(private readonly options: StatusUpdateManagerOptions) {
    this.initialMs = options.retry?.initialMs ?? 1000;
    this.maxMs = options.retry?.maxMs ?? 30_000;
  }

  /**
   * Adds an update to its task's stream (checkpointed first) and sends it if it is the head.
   * `checkpoint` replaces the default append, so the agent can write the task's own record and its
   * RUNNING update in one write.
   */
  update(status: Omit<StoredStatus, 'uuid'>, checkpoint?: (stored: StoredStatus) => void): StoredStatus {
    const stored: StoredStatus = { ...status, uuid: randomUUID() };
    if (checkpoint) checkpoint(stored);
    else this.options.checkpoint?.appendUpdate(stored);
    this.enqueue(stored);
    return stored;
  }

  /** Restores the unacknowledged updates of one task from a checkpoint (not written again). */
  recover(updates: readonly StoredStatus[]): void {
    for (const status of updates) this.enqueue(status);
  }

  private enqueue(status: StoredStatus): void {
    const key = streamKey(status.frameworkId, status.taskId);
    let stream = this.streams.get(key);
    if (!stream) {
      stream = { queue: [], timer: undefined, backoffMs: this.initialMs };
      this.streams.set(key, stream);
    }
    stream.queue.push(status);
    if (stream.queue.length === 1 && this.connected) this.sendHead(stream);
  }

  /**
   * Handles ACKNOWLEDGE_UPDATE. Returns false for an ack that does not match the head of the
   * task's stream (a duplicate, or for an update this agent no longer holds); those are ignored.
   */
  acknowledge(frameworkId: string, taskId: string, uuid: string): boolean {
    const key = streamKey(frameworkId, taskId);
    const stream = this.streams.get(key);
    const head = stream?.queue[0];
    if (!stream || !head || head.uuid !== uuid) return false;
    this.options.checkpoint?.appendAck(frameworkId, taskId, uuid);
    stream.queue.shift();
    if (stream.timer) clearTimeout(stream.timer);
    stream.timer = undefined;
    stream.backoffMs = this.initialMs;
    if (stream.queue.length === 0) this.streams.delete(key);
    else if (this.connected) this.sendHead(stream);
    this.options.onAcknowledged?.(head);
    return true;
  }

  /** Connected and registered: send every stream's head now, then retry each with backoff. */
  resume(): void {
    this.connected = true;
    for (const stream of this.streams.values()) {
      if (stream.timer) clearTimeout(stream.timer);
      stream.backoffMs = this.initialMs;
      this.sendHead(stream);
    }
  }

  /** Disconnected: stop resending until the next `resume()`. */
  pause(): void {
    this.connected = false;
    for (const stream of this.streams.values()) {
      if (stream.timer) clearTimeout(stream.timer);
      stream.timer = undefined;
    }
  }

  stop(): void {
    this.pause();
  }

  /** Unacknowledged updates of one task, oldest first. */
  pending(frameworkId: string, taskId: string): readonly StoredStatus[] {
    return this.streams.get(streamKey(frameworkId, taskId))?.queue ?? [];
  }

  /** Number of unacknowledged updates across all tasks. */
  get pendingCount(): number {
    let n = 0;
    for (const stream of this.streams.values()) n += stream.queue.length;
    return n;
  }

  private sendHead(stream: Stream): void {
    const head = stream.queue[0];
    if (!head) return;
    this.options.send(head);
    const delay = stream.backoffMs;
    stream.backoffMs = Math.min(this.maxMs, stream.backoffMs * 2);
    stream.timer = setTimeout(() => {
      stream.timer = undefined;
      if (this.connected && stream.queue[0] === head) this.sendHead(stream);
    }, delay);
    stream.timer.unref();
  }
}

function streamKey(frameworkId: string, taskId: string): string {
  return `${frameworkId}/${taskId}`;
}
