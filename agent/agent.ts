/**
 * The agent: the composition root that wires a containerizer, the status update manager and the
 * checkpoint store to one connection to the master.
 *
 * ```ts
 * const agent = new Agent({ master: 'ws://127.0.0.1:5050', workDir: '.agora/agent' });
 * await agent.start();             // recovers checkpointed tasks, then dials (and redials) the master
 * const id = await agent.registered();
 * await agent.stop();              // tasks keep running; a restarted agent re-adopts them
 * ```
 *
 * Mesos semantics throughout: the agent re-registers with the tasks it still runs after every
 * reconnect, status updates are at-least-once and in order per task, and a restarted agent
 * recovers its tasks from its work dir.
 */
import { mkdirSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { Endpoint, Inbound } from '../master/protocol/index.ts';
import { CloseCode, connectWs, type Connection } from '../master/protocol/connection.ts';
import {
  isTerminal,
  PROTOCOL_VERSION,
  Reason,
  type AgentMessage,
  type AgentTask,
  type FileErrorCode,
  type KillPolicy,
  type MasterToAgent,
  type TaskInfo,
  type TaskState,
} from '../master/protocol/messages.ts';
import { formatResources, type Resources } from '../master/protocol/resources.ts';
import { CheckpointStore, type StoredStatus } from './checkpoint.ts';
import type { Container, ContainerStatus, Containerizer, LaunchSpec } from './containerizers/containerizer.ts';
import { ProcessContainerizer } from './containerizers/process.ts';
import { HealthChecker } from './health/health-checker.ts';
import { resolveHealthCheck } from './health/health-check-config.ts';
import { LOOPBACK, probeFor } from './health/probes.ts';
import { readSandboxFile } from './file-reader.ts';
import { agentResources } from './resources.ts';
import { collectSandboxes, DEFAULT_SANDBOX_RETENTION_MS, sandboxPath } from './sandbox.ts';
import { StatusUpdateManager } from './status-updates.ts';

export interface AgentOptions {
  /** Master base URL, e.g. ws://127.0.0.1:5050 (the agent dials `${master}${Endpoint.agent}`). */
  master?: string;
  /** Overrides `master`: how to open a connection (the SDK's in-memory harness passes MemoryConnection pairs). */
  connect?: () => Promise<Connection<MasterToAgent, AgentMessage>>;
  workDir: string;
  /** Overrides detected resources per name (e.g. {cpus: 4} keeps detected mem). */
  resources?: Resources;
  attributes?: Record<string, string>;
  /** @default os.hostname() */
  hostname?: string;
  /** @default new ProcessContainerizer() */
  containerizer?: Containerizer;
  /** @default true. false keeps tasks and status updates in memory only (benchmarks with 1,000 simulated agents, the in-memory harness). */
  checkpoint?: boolean;
  /** @default pino at level process.env.AGORA_LOG_LEVEL ?? 'info', to stderr */
  logger?: Logger;
  /** Reconnect backoff. @default {initialMs: 200, maxMs: 10_000} */
  reconnect?: { initialMs: number; maxMs: number };
  /** Resend backoff for unacknowledged status updates. @default {initialMs: 1000, maxMs: 30_000} */
  statusUpdateRetry?: { initialMs: number; maxMs: number };
  /** Sandboxes of ended tasks untouched this long are removed (on start, then hourly). @default 7 days */
  sandboxRetentionMs?: number;
  /** The master pings every ~1 s; a connection with no ping for this long is treated as dead. @default 15_000 */
  masterTimeoutMs?: number;
  /** Where HTTP and TCP health checks dial the task's ports; a loopback address of this host. @default '127.0.0.1' */
  healthCheckHost?: string;
}

/** Default kill grace period, as Mesos' command executor (3 s). */
export const DEFAULT_GRACE_PERIOD_MS = 3000;
const SANDBOX_GC_INTERVAL_MS = 60 * 60 * 1000;
/** Tasks whose sandbox and checkpoint are being created at once. */
const MAX_PREPARING = 8;

let defaultLogger: Logger | undefined;
function getDefaultLogger(): Logger {
  defaultLogger ??= pino({ name: 'agent', level: process.env.AGORA_LOG_LEVEL ?? 'info' }, pino.destination({ dest: 2, sync: true }));
  return defaultLogger;
}

interface TaskRecord {
  frameworkId: string;
  task: TaskInfo;
  state: TaskState;
  sandbox: string;
  container: Container | undefined;
  /** A kill that arrived before the container existed. */
  killRequested?: boolean;
  /** Runs the task's health check while it is RUNNING. */
  health?: HealthChecker;
  /** The agent has asked the container to end; its health no longer matters. */
  killing?: boolean;
  /** Set when the health check asked for the kill: the terminal update's message, naming the last failure. */
  healthKill?: string;
  /** Resolved when the task reaches a terminal state (for stop({killTasks})). */
  ended: Promise<void>;
  end: () => void;
}

function taskKey(frameworkId: string, taskId: string): string {
  return `${frameworkId}/${taskId}`;
}

export class Agent {
  readonly resources: Resources;
  private id: string | undefined;
  private readonly workDir: string;
  private readonly log: Logger;
  private readonly containerizer: Containerizer;
  private readonly store: CheckpointStore | undefined;
  private readonly updates: StatusUpdateManager;
  private readonly tasks = new Map<string, TaskRecord>();
  private readonly prepareQueue: TaskRecord[] = [];
  private preparing = 0;
  private readonly hostname: string;

  private connection: Connection<MasterToAgent, AgentMessage> | undefined;
  private isRegistered = false;
  private stopping = false;
  private detached = false;
  private started = false;
  private reconnectAttempt = 0;
  private wake: (() => void) | undefined;
  private sleepTimer: NodeJS.Timeout | undefined;
  private gcTimer: NodeJS.Timeout | undefined;
  private keepAlive: NodeJS.Timeout | undefined;
  private loop: Promise<void> | undefined;
  private stopPromise: Promise<void> | undefined;
  private killing: Promise<void> | undefined;
  private resolveRegistered!: (agentId: string) => void;
  private readonly registeredPromise: Promise<string>;

  constructor(private readonly options: AgentOptions) {
    if (!options.master && !options.connect) throw new TypeError('AgentOptions needs `master` (a ws:// URL) or `connect`');
    this.workDir = path.resolve(options.workDir);
    this.log = options.logger ?? getDefaultLogger();
    this.resources = agentResources(this.workDir, options.resources);
    this.hostname = options.hostname ?? os.hostname();
    this.containerizer = options.containerizer ?? new ProcessContainerizer();
    this.store = options.checkpoint === false ? undefined : new CheckpointStore(path.join(this.workDir, 'meta'));
    this.updates = new StatusUpdateManager({
      checkpoint: this.store,
      send: (status) => this.sendUpdate(status),
      onAcknowledged: (status) => this.acknowledged(status),
      ...(options.statusUpdateRetry ? { retry: options.statusUpdateRetry } : {}),
    });
    this.registeredPromise = new Promise((resolve) => (this.resolveRegistered = resolve));
  }

  private get usesSandbox(): boolean {
    return this.containerizer.usesSandbox !== false;
  }

  get agentId(): string | undefined {
    return this.id;
  }

  /** Resolves with the agent id at the first REGISTERED. */
  registered(): Promise<string> {
    return this.registeredPromise;
  }

  /** Recovers checkpointed tasks, then starts the connect loop; does not wait for the master. */
  async start(): Promise<void> {
    if (this.started) throw new Error('agent already started');
    this.started = true;
    if (this.usesSandbox) mkdirSync(path.join(this.workDir, 'sandboxes'), { recursive: true });
    const limits = (await this.containerizer.init?.({ workDir: this.workDir })) ?? { enforced: false, detail: `the ${this.containerizer.name} containerizer does not enforce limits` };
    this.log.info(
      { containerizer: this.containerizer.name, resources: formatResources(this.resources), limitsEnforced: limits.enforced, workDir: this.workDir },
      `agent starting: ${this.containerizer.name} containerizer, resources ${formatResources(this.resources)}`,
    );
    if (limits.enforced) this.log.info(`resource limits are enforced: ${limits.detail}`);
    else if (this.containerizer.name === 'simulated') this.log.debug(`resource limits are not enforced: ${limits.detail}`);
    else this.log.warn(`resource limits are not enforced: ${limits.detail}`);

    this.id = this.store?.readAgentId();
    this.recover();
    if (this.usesSandbox) {
      this.collectSandboxes();
      this.gcTimer = setInterval(() => this.collectSandboxes(), SANDBOX_GC_INTERVAL_MS);
      this.gcTimer.unref();
    }
    // A started agent lives until stop(): its tasks' handles are unref'd (so a stopped agent can
    // leave them running) and an in-memory connection holds nothing open.
    this.keepAlive = setInterval(() => {}, 1 << 30);
    this.loop = this.connectLoop();
  }

  /**
   * Closes the socket; with `killTasks`, kills every task first and waits for them to end. Safe to
   * call more than once: a later call with `killTasks` still kills the tasks (a signal handler may
   * have begun a plain stop before the dev cluster asked for its tasks to go).
   */
  async stop(options: { killTasks?: boolean } = {}): Promise<void> {
    this.stopping = true;
    if (this.gcTimer) clearInterval(this.gcTimer);
    if (options.killTasks) this.killing ??= this.killAll();
    // Any stop waits for a kill in progress, so the socket stays up for the terminal updates.
    if (this.killing) await this.killing;
    this.stopPromise ??= this.shutdown();
    await this.stopPromise;
  }

  private async killAll(): Promise<void> {
    const running = [...this.tasks.values()].filter((record) => !isTerminal(record.state));
    for (const record of running) this.kill(record);
    await Promise.all(running.map((record) => record.ended));
    // Give the terminal updates a moment to be acknowledged; unacked ones are resent after a restart.
    const deadline = Date.now() + 1000;
    while (this.isRegistered && this.updates.pendingCount > 0 && Date.now() < deadline) await delay(20);
  }

  private async shutdown(): Promise<void> {
    // From here on the agent no longer watches its tasks (they keep running): what happens to them
    // next is for the agent that recovers this work dir to find out, as after a real restart.
    this.detached = true;
    for (const record of this.tasks.values()) record.health?.stop();
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.updates.stop();
    if (this.sleepTimer) clearTimeout(this.sleepTimer);
    this.wake?.();
    this.connection?.close(CloseCode.GOING_AWAY, 'agent stopping');
    await this.loop;
    await this.containerizer.close?.();
    this.store?.close();
    this.log.info({ agentId: this.id }, 'agent stopped');
  }

  // -------------------------------------------------------------------------------------------
  // Connection

  private dial(): Promise<Connection<MasterToAgent, AgentMessage>> {
    if (this.options.connect) return this.options.connect();
    const url = `${this.options.master!.replace(/\/+$/, '')}${Endpoint.agent}`;
    return connectWs<MasterToAgent, AgentMessage>(url, { ...Inbound.masterToAgent, expectPingWithinMs: this.options.masterTimeoutMs ?? 15_000 });
  }

  private async connectLoop(): Promise<void> {
    while (!this.stopping) {
      let connection: Connection<MasterToAgent, AgentMessage>;
      try {
        connection = await this.dial();
      } catch (error) {
        this.log.warn({ err: (error as Error).message }, 'cannot reach the master; retrying');
        await this.backoff();
        continue;
      }
      if (this.stopping) {
        connection.close(CloseCode.GOING_AWAY, 'agent stopping');
        return;
      }
      await this.serve(connection);
      if (!this.stopping) await this.backoff();
    }
  }

  /** Runs one connection until it closes. */
  private serve(connection: Connection<MasterToAgent, AgentMessage>): Promise<void> {
    return new Promise((resolve) => {
      this.connection = connection;
      connection.onMessage = (message) => this.handle(message, connection);
      connection.onClose = (code, reason) => {
        this.connection = undefined;
        this.isRegistered = false;
        this.updates.pause();
        if (!this.stopping) this.log.warn({ code, reason }, `disconnected from the master: ${reason}`);
        resolve();
      };
      const tasks: AgentTask[] = [];
      for (const record of this.tasks.values()) {
        if (!isTerminal(record.state)) tasks.push({ frameworkId: record.frameworkId, task: record.task, state: record.state });
      }
      connection.send({
        type: 'REGISTER',
        protocolVersion: PROTOCOL_VERSION,
        ...(this.id ? { agentId: this.id } : {}),
        hostname: this.hostname,
        resources: this.resources,
        attributes: this.options.attributes ?? {},
        tasks,
      });
      this.log.debug({ remote: connection.remote, tasks: tasks.length }, 'connected; registering');
    });
  }

  /** Exponential backoff with jitter (half fixed, half random) so a restarted master is not stampeded. */
  private backoff(): Promise<void> {
    const { initialMs, maxMs } = this.options.reconnect ?? { initialMs: 200, maxMs: 10_000 };
    const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(this.reconnectAttempt, 30));
    this.reconnectAttempt++;
    const ms = ceiling / 2 + Math.random() * (ceiling / 2);
    return new Promise((resolve) => {
      this.wake = resolve;
      this.sleepTimer = setTimeout(resolve, ms);
    });
  }

  private handle(message: MasterToAgent, connection: Connection<MasterToAgent, AgentMessage>): void {
    switch (message.type) {
      case 'REGISTERED':
        this.onRegistered(message.agentId, message.masterId);
        return;
      case 'RUN_TASK':
        this.runTask(message.frameworkId, message.task);
        return;
      case 'KILL_TASK':
        this.killTask(message.frameworkId, message.taskId, message.killPolicy);
        return;
      case 'ACKNOWLEDGE_UPDATE':
        if (!this.updates.acknowledge(message.frameworkId, message.taskId, message.uuid)) {
          this.log.debug({ frameworkId: message.frameworkId, taskId: message.taskId, uuid: message.uuid }, 'ignoring an acknowledgement for an update that is not pending');
        }
        return;
      case 'SHUTDOWN_FRAMEWORK':
        this.shutdownFramework(message.frameworkId);
        return;
      case 'READ_FILE':
        this.readFile(message, connection);
        return;
      case 'ERROR':
        this.log.error({ code: message.code }, `the master reported an error: ${message.code}: ${message.message}`);
        return;
    }
  }

  private onRegistered(agentId: string, masterId: string): void {
    if (agentId !== this.id) {
      if (this.id) this.log.warn({ previous: this.id, agentId }, 'the master gave this agent a new id');
      this.id = agentId;
      this.store?.writeAgentId(agentId);
    }
    this.isRegistered = true;
    this.reconnectAttempt = 0;
    this.log.info({ agentId, masterId }, 'registered with the master');
    this.resolveRegistered(agentId);
    this.updates.resume();
  }

  private sendUpdate(status: StoredStatus): void {
    const connection = this.connection;
    if (!connection || !this.id) return;
    const { refusal: _local, ...sent } = status;
    connection.send({ type: 'STATUS_UPDATE', status: { ...sent, agentId: this.id } });
  }

  /**
   * Answers READ_FILE from the task's sandbox: a running task's, or an ended one's until its sandbox
   * is garbage-collected (the agent forgets ended tasks, but their sandboxes stay where
   * sandboxPath puts them). The answer goes back on the connection that asked, never a newer one,
   * whose master would not know the request id.
   */
  private readFile(request: Extract<MasterToAgent, { type: 'READ_FILE' }>, connection: Connection<MasterToAgent, AgentMessage>): void {
    const { requestId, frameworkId, taskId, file, offset, length } = request;
    const reply = (answer: { data: Uint8Array; size: number } | { error: { code: FileErrorCode; message: string } }) => {
      if (connection.isOpen) connection.send({ type: 'FILE_DATA', requestId, ...answer });
    };
    if (!this.usesSandbox) {
      reply({ error: { code: 'NOT_FOUND', message: `this agent's ${this.containerizer.name} containerizer keeps no sandboxes, so task ${taskId} has no ${file}` } });
      return;
    }
    const record = this.tasks.get(taskKey(frameworkId, taskId));
    readSandboxFile({
      sandboxesRoot: path.join(this.workDir, 'sandboxes'),
      sandbox: record?.sandbox ?? sandboxPath(this.workDir, frameworkId, taskId),
      taskId,
      file,
      offset,
      length,
      starting: record !== undefined && (record.state === 'STAGING' || record.state === 'STARTING'),
    })
      .then((result) => {
        if ('error' in result) this.log.debug({ frameworkId, taskId, file, code: result.error.code }, `cannot serve a file read: ${result.error.message}`);
        reply(result);
      })
      .catch((error: unknown) => reply({ error: { code: 'FAILED', message: `reading the ${file} of task ${taskId} failed: ${(error as Error).message}` } }));
  }

  // -------------------------------------------------------------------------------------------
  // Tasks

  private newRecord(frameworkId: string, task: TaskInfo, state: TaskState): TaskRecord {
    let end!: () => void;
    const ended = new Promise<void>((resolve) => (end = resolve));
    return { frameworkId, task, state, sandbox: sandboxPath(this.workDir, frameworkId, task.taskId), container: undefined, ended, end };
  }

  private runTask(frameworkId: string, task: TaskInfo): void {
    const key = taskKey(frameworkId, task.taskId);
    const existing = this.tasks.get(key);
    if (existing) {
      this.agentUpdate(frameworkId, task.taskId, 'FAILED', Reason.TASK_INVALID, `task ${task.taskId} of framework ${frameworkId} is already on this agent (${existing.state}); task ids must be unique within a framework`, { refusal: true });
      return;
    }
    const record = this.newRecord(frameworkId, task, 'STAGING');
    this.tasks.set(key, record);
    this.prepareQueue.push(record);
    this.pumpPrepare();
  }

  /**
   * Creating a directory can cost more than the spawn on a busy disk, so each task's sandbox is
   * made on the thread pool while the agent spawns others. A window keeps that work in launch
   * order: queueing all of a burst's mkdirs at once would hold back every spawn until the last of
   * them is done. The task is checkpointed before it is launched, as Mesos does.
   */
  private pumpPrepare(): void {
    while (this.preparing < MAX_PREPARING) {
      const record = this.prepareQueue.shift();
      if (!record) return;
      const failed = (error: Error) => this.onStatus(record, { state: 'FAILED', reason: Reason.LAUNCH_FAILED, message: `cannot create the sandbox ${record.sandbox} or the task's checkpoint: ${error.message}` }, 'AGENT');
      try {
        this.store?.createTask({ frameworkId: record.frameworkId, task: record.task, sandbox: record.sandbox });
      } catch (error) {
        failed(error as Error);
        continue;
      }
      this.preparing++;
      (this.usesSandbox ? mkdir(record.sandbox, { recursive: true }) : Promise.resolve(undefined))
        .then(() => this.launch(record), failed)
        .finally(() => {
          this.preparing--;
          this.pumpPrepare();
        });
    }
  }

  private launch(record: TaskRecord): void {
    if (isTerminal(record.state)) return;
    if (this.detached) {
      // Stopped before it started: never start it; a kill asked for meanwhile is satisfied.
      if (record.killRequested) {
        record.state = 'KILLED';
        record.end();
      }
      return;
    }
    if (record.killRequested) {
      this.onStatus(record, { state: 'KILLED', reason: Reason.TASK_KILLED, message: 'killed by the agent before it started' }, 'AGENT');
      return;
    }
    if (record.task.healthCheck) {
      // A check that cannot work would only get the task killed later for no fault of its own.
      const resolved = resolveHealthCheck(record.task, record.task.healthCheck);
      if (!resolved.ok) {
        this.onStatus(record, { state: 'ERROR', reason: Reason.TASK_INVALID, message: `invalid health check: ${resolved.error}` }, 'AGENT');
        return;
      }
    }
    const spec: LaunchSpec = { frameworkId: record.frameworkId, task: record.task, sandbox: record.sandbox };
    const container = this.containerizer.launch(spec, (status) => this.onStatus(record, status, 'EXECUTOR'));
    if (!isTerminal(record.state)) record.container = container;
  }

  private killTask(frameworkId: string, taskId: string, killPolicy: KillPolicy | undefined): void {
    const record = this.tasks.get(taskKey(frameworkId, taskId));
    if (!record) {
      this.agentUpdate(frameworkId, taskId, 'LOST', undefined, `cannot kill task ${taskId} of framework ${frameworkId}: this agent does not know it`);
      return;
    }
    if (isTerminal(record.state)) return; // its terminal update is already on its way
    this.kill(record, killPolicy);
  }

  private kill(record: TaskRecord, killPolicy?: KillPolicy): void {
    const gracePeriodMs = killPolicy?.gracePeriodMs ?? record.task.killPolicy?.gracePeriodMs ?? DEFAULT_GRACE_PERIOD_MS;
    this.log.info({ frameworkId: record.frameworkId, taskId: record.task.taskId, gracePeriodMs }, 'killing task');
    // A task being killed is no longer checked: a failure during its kill grace period is no news.
    record.killing = true;
    record.health?.stop();
    if (record.container) record.container.kill(gracePeriodMs);
    else record.killRequested = true; // its sandbox is still being made; launch() sees this
  }

  private shutdownFramework(frameworkId: string): void {
    let n = 0;
    for (const record of this.tasks.values()) {
      if (record.frameworkId === frameworkId && !isTerminal(record.state)) {
        this.kill(record);
        n++;
      }
    }
    this.log.info({ frameworkId, tasks: n }, 'shutting down framework');
  }

  /** A status from the containerizer (source EXECUTOR) or the agent itself (source AGENT). */
  private onStatus(record: TaskRecord, status: ContainerStatus, source: 'AGENT' | 'EXECUTOR'): void {
    if (isTerminal(record.state)) return;
    if (this.detached) {
      // Stopped: no more updates or checkpoints (the next agent on this work dir recovers the task),
      // but a kill asked for during the stop still needs to know the task ended.
      if (isTerminal(status.state)) {
        record.state = status.state;
        record.end();
      }
      return;
    }
    record.state = status.state;
    let healthy: boolean | undefined;
    if (isTerminal(status.state)) {
      record.container = undefined;
      record.health?.stop();
      record.end();
      if (record.healthKill !== undefined) {
        // Mesos: a task killed for failing its health check ends KILLED, unhealthy, with that reason.
        healthy = false;
        if (status.state === 'KILLED') {
          status = { ...status, reason: Reason.TASK_HEALTH_CHECK_FAILED, message: record.healthKill };
        }
      }
    }
    this.log.debug({ frameworkId: record.frameworkId, taskId: record.task.taskId, state: status.state, message: status.message }, 'task status');
    const store = this.store;
    // The container's checkpoint (pid, start time) goes to disk with the RUNNING update, in one write.
    const checkpointTask =
      status.state === 'RUNNING' && store
        ? (stored: StoredStatus) => store.writeContainer(record.frameworkId, record.task.taskId, status.checkpoint, stored)
        : undefined;
    this.updates.update(
      {
        taskId: record.task.taskId,
        frameworkId: record.frameworkId,
        state: status.state,
        ...(status.reason !== undefined ? { reason: status.reason } : {}),
        ...(status.message !== undefined ? { message: status.message } : {}),
        ...(status.exitCode !== undefined ? { exitCode: status.exitCode } : {}),
        ...(healthy !== undefined ? { healthy } : {}),
        source,
        timestampMs: Date.now(),
      },
      checkpointTask,
    );
    if (status.state === 'RUNNING' && source === 'EXECUTOR') this.startHealthCheck(record);
  }

  /**
   * Starts the task's health check (at RUNNING, or on re-adopting it after a restart). Health goes
   * to the scheduler as RUNNING updates carrying `healthy`, through the status update manager, so
   * they are as reliable and ordered as any other update.
   */
  private startHealthCheck(record: TaskRecord): void {
    const check = record.task.healthCheck;
    if (!check || record.health || record.killing) return;
    const resolved = resolveHealthCheck(record.task, check);
    if (!resolved.ok) {
      // Refused at launch; a task recovered from an older agent may still carry one.
      this.log.warn({ frameworkId: record.frameworkId, taskId: record.task.taskId }, `not health checking the task: ${resolved.error}`);
      return;
    }
    const { frameworkId } = record;
    const { taskId } = record.task;
    const probe = probeFor(resolved.check.target, () => record.container, this.containerizer.name, this.options.healthCheckHost ?? LOOPBACK);
    record.health = new HealthChecker({
      policy: resolved.check.policy,
      probe,
      onHealthChanged: (healthy, message) => {
        if (isTerminal(record.state) || this.detached) return;
        this.log.info({ frameworkId, taskId, healthy, message }, healthy ? 'task is healthy' : 'task is unhealthy');
        this.updates.update({
          taskId,
          frameworkId,
          state: 'RUNNING',
          healthy,
          ...(message !== undefined ? { message } : {}),
          source: 'EXECUTOR',
          timestampMs: Date.now(),
        });
      },
      onFailed: (message, failures) => {
        if (isTerminal(record.state) || this.detached) return;
        this.log.warn({ frameworkId, taskId, failures }, `killing the task: ${failures} consecutive failed health checks; the last: ${message}`);
        record.healthKill = failures === 1 ? `killed after a failed health check: ${message}` : `killed after ${failures} failed health checks in a row; the last: ${message}`;
        this.kill(record);
      },
    });
    record.health.start();
  }

  /** An update about a task id the agent has no running record for (refused launch, unknown kill). */
  private agentUpdate(frameworkId: string, taskId: string, state: TaskState, reason: string | undefined, message: string, mark: Pick<StoredStatus, 'refusal'> = {}): void {
    this.log.warn({ frameworkId, taskId, state, reason }, message);
    this.updates.update({ taskId, frameworkId, state, ...(reason ? { reason } : {}), message, source: 'AGENT', timestampMs: Date.now(), ...mark });
  }

  /** Once a task's terminal update is acknowledged and nothing else is pending, the agent forgets it. */
  private acknowledged(status: StoredStatus): void {
    if (!isTerminal(status.state)) return;
    const key = taskKey(status.frameworkId, status.taskId);
    const record = this.tasks.get(key);
    if (record && !isTerminal(record.state)) return; // an ack for a refused duplicate; the task runs on
    if (this.updates.pending(status.frameworkId, status.taskId).length > 0) return;
    this.tasks.delete(key);
    this.store?.removeTask(status.frameworkId, status.taskId);
  }

  /** Re-adopts tasks that survived an agent restart; reports the ones that ended while it was down. */
  private recover(): void {
    if (!this.store) return;
    let adopted = 0;
    let lost = 0;
    for (const saved of this.store.readAll()) {
      const unacked = saved.updates.filter((update) => !saved.acknowledged.has(update.uuid));
      this.updates.recover(unacked);
      if (!saved.info) {
        if (unacked.length === 0) this.store.removeTask(saved.frameworkId, saved.taskId);
        continue;
      }
      // A refused duplicate launch shares the task's id (and so its records) but is not its state.
      const lastState = saved.updates.findLast((update) => !update.refusal)?.state ?? 'STAGING';
      const record = this.newRecord(saved.frameworkId, saved.info.task, lastState);
      record.sandbox = saved.info.sandbox;
      if (isTerminal(lastState)) {
        record.end();
        if (unacked.length === 0) this.store.removeTask(saved.frameworkId, saved.taskId);
        else this.tasks.set(taskKey(saved.frameworkId, saved.taskId), record);
        continue;
      }
      this.tasks.set(taskKey(saved.frameworkId, saved.taskId), record);
      const spec: LaunchSpec = { frameworkId: saved.frameworkId, task: saved.info.task, sandbox: saved.info.sandbox };
      const container = this.containerizer.recover?.(spec, saved.info.container, (status) => this.onStatus(record, status, 'EXECUTOR'));
      if (container) {
        record.container = container;
        record.state = 'RUNNING';
        // Checks start over (delay, grace) as for a fresh task: what the old agent saw is gone with it.
        this.startHealthCheck(record);
        adopted++;
      } else {
        lost++;
        this.onStatus(record, { state: 'FAILED', reason: Reason.AGENT_RESTARTED, message: 'the task ended while the agent was down; its exit status is unknown' }, 'AGENT');
      }
    }
    if (adopted + lost > 0) this.log.info({ adopted, endedWhileDown: lost }, `recovered ${adopted} running task(s); ${lost} ended while the agent was down`);
  }

  private collectSandboxes(): void {
    const retentionMs = this.options.sandboxRetentionMs ?? DEFAULT_SANDBOX_RETENTION_MS;
    collectSandboxes(this.workDir, retentionMs, (frameworkId, taskId) => this.tasks.has(taskKey(frameworkId, taskId)))
      .then((removed) => {
        if (removed.length > 0) this.log.info({ removed: removed.length }, `removed ${removed.length} sandbox(es) older than ${Math.round(retentionMs / 3_600_000)} h`);
      })
      .catch((error: unknown) => this.log.warn({ err: (error as Error).message }, 'sandbox cleanup failed'));
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
