/**
 * READ_FILE / FILE_DATA round trips between the master and its agents: the request ids, the
 * timeouts, and failing fast when the agent that was asked goes away. The master's HTTP edge reads
 * a task's stdout/stderr through this (Mesos' /files/read); the agent needs no inbound port.
 *
 * A late, unknown or misrouted FILE_DATA is logged and dropped: nothing an agent sends can make a
 * request resolve twice or throw on the event loop.
 */
import type { Logger } from 'pino';
import type { AgentConnection } from './cluster/records.ts';
import type { AgentMessage, TaskFileName } from './protocol/messages.ts';

/** What went wrong, independent of HTTP; the HTTP edge maps each kind to a status code. */
export type TaskFileErrorKind =
  /** The request itself is wrong (bad file name, offset or length). */
  | 'INVALID'
  /** No such framework or task, or its sandbox (or file) is gone. */
  | 'NOT_FOUND'
  /** The task's agent is not connected (it may come back), or has too many reads in flight. */
  | 'UNAVAILABLE'
  /** The agent did not answer in time. */
  | 'TIMEOUT'
  /** The agent runs an Agora that does not know READ_FILE. */
  | 'UNSUPPORTED'
  /** The agent could not read the file, or answered nonsense. */
  | 'FAILED';

export class TaskFileReadError extends Error {
  override name = 'TaskFileReadError';
  constructor(
    readonly kind: TaskFileErrorKind,
    message: string,
  ) {
    super(message);
  }
}

export interface FileReadRequest {
  frameworkId: string;
  taskId: string;
  file: TaskFileName;
  offset: number;
  length: number;
}

export interface FileReadAgent {
  id: string;
  hostname: string;
  conn: AgentConnection;
}

type FileData = Extract<AgentMessage, { type: 'FILE_DATA' }>;

interface PendingRead {
  requestId: string;
  agentId: string;
  /** The connection the READ_FILE went out on: only its answer counts, and its close fails the read. */
  conn: AgentConnection;
  request: FileReadRequest;
  resolve: (answer: { data: Buffer; size: number }) => void;
  reject: (error: TaskFileReadError) => void;
  timer: NodeJS.Timeout;
}

export interface FileReadsOptions {
  timeoutMs: number;
  /**
   * Reads in flight per agent. Each answer is up to half a MiB, so this bounds what one agent
   * queues on its socket (its slow-consumer limit is 16 MiB) and what the master holds for it.
   */
  maxPerAgent: number;
  log: Logger;
}

export class FileReads {
  private readonly pending = new Map<string, PendingRead>();
  private readonly byConn = new Map<AgentConnection, Set<PendingRead>>();
  private counter = 0;

  constructor(
    private readonly idPrefix: string,
    private readonly options: FileReadsOptions,
  ) {}

  /** Sends one READ_FILE and waits for its FILE_DATA. */
  ask(agent: FileReadAgent, request: FileReadRequest): Promise<{ data: Buffer; size: number }> {
    const inFlight = this.byConn.get(agent.conn);
    if (inFlight && inFlight.size >= this.options.maxPerAgent) {
      return Promise.reject(
        new TaskFileReadError('UNAVAILABLE', `agent ${describeAgent(agent)} already has ${inFlight.size} file reads in flight; try again in a moment`),
      );
    }
    const requestId = `${this.idPrefix}-R${++this.counter}`;
    return new Promise((resolve, reject) => {
      const read: PendingRead = {
        requestId,
        agentId: agent.id,
        conn: agent.conn,
        request,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.settle(read)?.reject(
            new TaskFileReadError(
              'TIMEOUT',
              `agent ${describeAgent(agent)} did not answer a read of the ${request.file} of task ${request.taskId} within ${this.options.timeoutMs} ms; it may be overloaded, try again`,
            ),
          );
        }, this.options.timeoutMs),
      };
      read.timer.unref();
      this.pending.set(requestId, read);
      let set = this.byConn.get(agent.conn);
      if (!set) this.byConn.set(agent.conn, (set = new Set()));
      set.add(read);
      agent.conn.send({ type: 'READ_FILE', requestId, ...request });
    });
  }

  /** A FILE_DATA from an agent, on the connection it arrived on. */
  answer(conn: AgentConnection, agentId: string, message: FileData): void {
    const read = this.pending.get(message.requestId);
    if (!read || read.conn !== conn) {
      // Too late (timed out), or not ours: the HTTP client has had its answer already.
      this.options.log.info({ agentId, requestId: message.requestId }, 'ignoring a FILE_DATA for a request that is not pending (it timed out, or was never sent to this agent)');
      return;
    }
    this.settle(read);
    const { taskId, file, offset, length } = read.request;
    if (message.error) {
      const kind = message.error.code === 'NOT_FOUND' ? 'NOT_FOUND' : message.error.code === 'INVALID' ? 'INVALID' : 'FAILED';
      read.reject(new TaskFileReadError(kind, message.error.message));
      return;
    }
    const data = message.data ?? new Uint8Array(0);
    if (data.length > length) {
      read.reject(new TaskFileReadError('FAILED', `agent ${agentId} answered a ${length}-byte read of the ${file} of task ${taskId} with ${data.length} bytes; the agent is faulty`));
      return;
    }
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.length);
    read.resolve({ data: bytes, size: message.size ?? offset + bytes.length });
  }

  /**
   * An agent's connection closed: the reads sent on it will never be answered (an agent answers on
   * the connection that asked). Reads on a newer connection of the same agent are not affected.
   */
  connectionClosed(conn: AgentConnection, agent: { id: string; hostname: string }, reason: string): void {
    this.failAll(
      conn,
      () => new TaskFileReadError('UNAVAILABLE', `agent ${describeAgent(agent)} disconnected before answering (${reason}); it may come back — try again once it has re-registered`),
    );
  }

  /** The agent said it does not know READ_FILE (an ERROR UNKNOWN_TYPE naming it). */
  agentUnsupported(conn: AgentConnection, agent: { id: string; hostname: string }): void {
    this.failAll(
      conn,
      () => new TaskFileReadError('UNSUPPORTED', `agent ${describeAgent(agent)} runs an older Agora that cannot serve task files; upgrade that agent`),
    );
  }

  close(): void {
    for (const conn of [...this.byConn.keys()]) this.failAll(conn, () => new TaskFileReadError('UNAVAILABLE', 'the master is shutting down; try again against the new leader'));
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  private failAll(conn: AgentConnection, error: () => TaskFileReadError): void {
    for (const read of [...(this.byConn.get(conn) ?? [])]) this.settle(read)?.reject(error());
  }

  /** Removes a read from the books; returns it only the first time, so it settles once. */
  private settle(read: PendingRead): PendingRead | undefined {
    if (this.pending.get(read.requestId) !== read) return undefined;
    clearTimeout(read.timer);
    this.pending.delete(read.requestId);
    const set = this.byConn.get(read.conn);
    set?.delete(read);
    if (set?.size === 0) this.byConn.delete(read.conn);
    return read;
  }
}

export function describeAgent(agent: { id: string; hostname: string }): string {
  return `${agent.id} (${agent.hostname})`;
}
