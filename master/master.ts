/**
 * The master: the composition root that wires the allocator and the cluster model to connections.
 *
 * It never touches sockets directly — it is handed Connections (WebSocket or in-memory) by
 * master/http/server.ts or by the SDK's testing harness. It keeps soft state, as Mesos does: what
 * it knows of agents, frameworks and tasks is rebuilt when they re-register after a master restart.
 *
 * Message handling is O(1) per message on the hot path (STATUS_UPDATE, ACKNOWLEDGE, ACCEPT):
 * everything is found through maps, and allocation runs batched, once per event-loop turn.
 */
import { randomUUID } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { Allocator } from './allocator/allocator.ts';
import { planLaunches } from './cluster/launch-validation.ts';
import {
  History,
  type AgentConnection,
  type AgentRecord,
  type FrameworkRecord,
  type OfferRecord,
  type SchedulerConnection,
  type TaskRecord,
} from './cluster/records.ts';
import { canTransition, unknownStateFor, unreachableStateFor } from './cluster/task-state.ts';
import { describeAgent, FileReads, TaskFileReadError } from './file-reads.ts';
import { buildState, type MasterStateJson } from './cluster/state-json.ts';
import { CloseCode } from './protocol/connection.ts';
import {
  ErrorCode,
  isTerminal,
  MAX_FILE_DATA_BYTES,
  MAX_FILE_READ_BYTES,
  PROTOCOL_VERSION,
  Reason,
  TASK_FILES,
  type AgentMessage,
  type AgentTask,
  type Filters,
  type MasterToAgent,
  type Offer,
  type SchedulerCall,
  type SchedulerEvent,
  type TaskFileName,
  type TaskInfo,
  type TaskState,
  type TaskStatus,
} from './protocol/messages.ts';
import { add, equals, type Resources } from './protocol/resources.ts';
import { startTimer, type Timer } from './timer.ts';

export interface MasterOptions {
  /** Unused offers are rescinded after this long. @default 60_000 */
  offerTimeoutMs?: number;
  /** Period of the full allocation cycle (event-driven cycles run in between). @default 1000 */
  allocationIntervalMs?: number;
  /** HEARTBEAT events to schedulers. @default 5000 */
  schedulerHeartbeatIntervalMs?: number;
  /** An agent whose socket dropped becomes UNREACHABLE if it has not re-registered within this. @default 10_000 */
  agentReregisterTimeoutMs?: number;
  /** How long a framework recovered from agents' reports (after a master restart) waits for its scheduler. @default 600_000 */
  recoveredFrameworkTimeoutMs?: number;
  /** Default refuse filter for DECLINE and for resources an ACCEPT leaves unused (Mesos: 5 s). */
  defaultRefuseSeconds?: number;
  /** Role weights for DRF. */
  weights?: Record<string, number>;
  /** Offers are made only of resources holding at least one of these. @default Mesos': cpus 0.01 or mem 32 */
  minAllocatable?: Resources[];
  /** Completed tasks kept for /state and reconciliation. @default 1000 */
  completedTaskHistory?: number;
  /** How long a read of a task's stdout/stderr waits for each answer from its agent. @default 10_000 */
  fileReadTimeoutMs?: number;
  logger?: Logger;
}

const DEFAULTS = {
  offerTimeoutMs: 60_000,
  allocationIntervalMs: 1000,
  schedulerHeartbeatIntervalMs: 5000,
  agentReregisterTimeoutMs: 10_000,
  recoveredFrameworkTimeoutMs: 600_000,
  defaultRefuseSeconds: 5,
  completedTaskHistory: 1000,
  fileReadTimeoutMs: 10_000,
};

/** Reads of task files in flight per agent connection (see FileReadsOptions.maxPerAgent). */
const MAX_FILE_READS_PER_AGENT = 16;

/** Part of a task's stdout or stderr, read through the master. */
export interface TaskFileRead {
  data: Buffer;
  /** The file's size when it was read (a running task's file grows). */
  size: number;
  /** Where `data` starts in the file. */
  offset: number;
  agentId: string;
}

export interface CompletedTask {
  frameworkId: string;
  agentId: string;
  taskId: string;
  name: string | undefined;
  state: TaskState;
  status: TaskStatus;
  resources: Resources;
  launchedAtMs: number;
}

export interface CompletedFramework {
  id: string;
  name: string;
  role: string;
  removedAtMs: number;
  reason: string;
}

export class Master {
  readonly id = randomUUID();
  readonly startedAtMs = Date.now();
  /** Reconciliation requests held while agents may still re-register after a master restart: framework → task → agent. */
  private readonly deferredReconciliations = new Map<string, Map<string, string | undefined>>();
  private deferredReconciliationTimer: Timer | undefined;
  readonly options: typeof DEFAULTS & MasterOptions;
  private readonly log: Logger;
  private readonly allocator: Allocator;
  readonly agents = new Map<string, AgentRecord>();
  readonly frameworks = new Map<string, FrameworkRecord>();
  readonly offers = new Map<string, OfferRecord>();
  /** Ended tasks, indexed by framework and task id (see completedKey). */
  readonly completedTasks: History<CompletedTask>;
  readonly completedFrameworks = new History<CompletedFramework>(100);
  private readonly pendingAllocation = new Set<string>();
  private allocationScheduled = false;
  private offerCounter = 0;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly fileReads: FileReads;
  private closed = false;

  constructor(options: MasterOptions = {}) {
    this.options = { ...DEFAULTS, ...stripUndefined(options) };
    this.log = options.logger ?? pino({ level: process.env.AGORA_LOG_LEVEL ?? 'info', name: 'master' });
    this.allocator = new Allocator({
      ...(options.weights ? { weights: options.weights } : {}),
      ...(options.minAllocatable ? { minAllocatable: options.minAllocatable } : {}),
    });
    this.completedTasks = new History(this.options.completedTaskHistory, (t) => completedKey(t.frameworkId, t.taskId));
    this.fileReads = new FileReads(this.id.slice(0, 8), { timeoutMs: this.options.fileReadTimeoutMs, maxPerAgent: MAX_FILE_READS_PER_AGENT, log: this.log });
    const cycle = setInterval(() => this.runAllocation(true), this.options.allocationIntervalMs);
    const heartbeat = setInterval(() => this.sendHeartbeats(), this.options.schedulerHeartbeatIntervalMs);
    cycle.unref();
    heartbeat.unref();
    this.timers.push(cycle, heartbeat);
  }

  // -------------------------------------------------------------------------------------------
  // Connections

  acceptScheduler(conn: SchedulerConnection): void {
    let framework: FrameworkRecord | undefined;
    conn.onMessage = (call: SchedulerCall) => {
      if (call.type === 'SUBSCRIBE') {
        if (framework) {
          conn.sendError(ErrorCode.ALREADY_SUBSCRIBED, `this connection is already subscribed as framework ${framework.id}; open a new connection to subscribe again`);
          return;
        }
        framework = this.subscribe(conn, call);
        return;
      }
      if (!framework || framework.conn !== conn) {
        conn.sendError(ErrorCode.NOT_SUBSCRIBED, `${call.type} before SUBSCRIBE: send SUBSCRIBE first and wait for SUBSCRIBED`);
        return;
      }
      this.handleSchedulerCall(framework, call);
    };
    conn.onClose = (code, reason) => {
      if (framework && framework.conn === conn) this.schedulerDisconnected(framework, `${reason} (${code})`);
    };
  }

  acceptAgent(conn: AgentConnection): void {
    let agent: AgentRecord | undefined;
    conn.onMessage = (message: AgentMessage) => {
      switch (message.type) {
        case 'REGISTER':
          if (agent && agent.conn === conn) {
            conn.sendError(ErrorCode.ALREADY_SUBSCRIBED, `this connection is already registered as agent ${agent.id}`);
            return;
          }
          agent = this.registerAgent(conn, message);
          return;
        case 'STATUS_UPDATE':
          if (!agent || agent.conn !== conn) {
            conn.sendError(ErrorCode.NOT_REGISTERED, 'STATUS_UPDATE before REGISTER: register first');
            return;
          }
          this.statusUpdate(agent, message.status);
          return;
        case 'FILE_DATA':
          if (!agent) {
            conn.sendError(ErrorCode.NOT_REGISTERED, 'FILE_DATA before REGISTER: register first');
            return;
          }
          this.fileReads.answer(conn, agent.id, message);
          return;
        case 'ERROR':
          this.log.warn({ agentId: agent?.id, code: message.code }, `agent reported an error: ${message.message}`);
          // An agent from before READ_FILE existed refuses it by name; its reads would only time out.
          if (agent && message.code === ErrorCode.UNKNOWN_TYPE && message.message.includes('"READ_FILE"')) this.fileReads.agentUnsupported(conn, agent);
          return;
      }
    };
    conn.onClose = (code, reason) => {
      if (agent) this.fileReads.connectionClosed(conn, agent, reason);
      if (agent && agent.conn === conn) this.agentDisconnected(agent, reason, code);
    };
  }

  // -------------------------------------------------------------------------------------------
  // Schedulers

  private subscribe(conn: SchedulerConnection, call: Extract<SchedulerCall, { type: 'SUBSCRIBE' }>): FrameworkRecord | undefined {
    if (call.protocolVersion !== PROTOCOL_VERSION) {
      conn.sendError(ErrorCode.PROTOCOL_VERSION, `protocol version ${call.protocolVersion} is not supported; this master speaks version ${PROTOCOL_VERSION}`);
      conn.close(CloseCode.POLICY_VIOLATION, 'unsupported protocol version');
      return undefined;
    }
    const info = call.framework;
    const now = Date.now();
    let framework = info.id ? this.frameworks.get(info.id) : undefined;
    if (info.id && !framework && this.completedFrameworks.find((f) => f.id === info.id)) {
      conn.sendError(ErrorCode.FRAMEWORK_REMOVED, `framework ${info.id} was removed (torn down or its failover timeout passed); subscribe without an id to start a new one`);
      conn.close(CloseCode.POLICY_VIOLATION, 'framework removed');
      return undefined;
    }
    if (framework) {
      // Failover: a scheduler (maybe a new instance) resumes an existing framework.
      const old = framework.conn;
      if (old && old !== conn) {
        framework.conn = undefined;
        old.sendError(ErrorCode.FAILED_OVER, `framework ${framework.id} was taken over by a newer subscription`);
        old.close(CloseCode.POLICY_VIOLATION, 'framework failed over');
      }
      framework.failoverTimer?.clear();
      framework.failoverTimer = undefined;
      // Mesos' failoverFramework: offers made to the old connection are taken back.
      for (const offer of [...framework.offers]) this.rescindOffer(offer, false);
      const role = info.role ?? '*';
      if (role !== framework.role) this.moveToRole(framework, role);
      framework.info = { ...info, id: framework.id };
      framework.partitionAware = (info.capabilities ?? []).includes('PARTITION_AWARE');
      framework.conn = conn;
      framework.status = 'ACTIVE';
      this.allocator.activateFramework(framework.id);
      this.allocator.revive(framework.id);
      this.log.info({ frameworkId: framework.id, name: info.name }, 'framework re-subscribed');
    } else {
      const id = info.id ?? randomUUID();
      const role = info.role ?? '*';
      framework = {
        id,
        info: { ...info, id },
        role,
        partitionAware: (info.capabilities ?? []).includes('PARTITION_AWARE'),
        status: 'ACTIVE',
        conn,
        registeredAtMs: now,
        failoverTimer: undefined,
        tasks: new Map(),
        offers: new Set(),
      };
      this.frameworks.set(id, framework);
      this.allocator.addFramework(id, role, true);
      this.log.info({ frameworkId: id, name: info.name, role }, 'framework subscribed');
    }
    conn.send({ type: 'SUBSCRIBED', frameworkId: framework.id, heartbeatIntervalMs: this.options.schedulerHeartbeatIntervalMs, masterId: this.id });
    // Updates the scheduler missed while away: the agent's (which it would retry too, but not at
    // once) and the master's own (agent lost, task dropped), which nobody else would repeat.
    for (const task of framework.tasks.values()) {
      if (task.unacknowledged) conn.send({ type: 'UPDATE', status: task.unacknowledged });
      else if (task.statusUndelivered) {
        conn.send({ type: 'UPDATE', status: task.status });
        task.statusUndelivered = false;
        if (isTerminal(task.state)) this.completeTask(framework, task);
      }
    }
    this.requestAllocation();
    return framework;
  }

  /** Moves a framework to another role in the allocator, keeping what its tasks use. */
  private moveToRole(framework: FrameworkRecord, role: string): void {
    this.allocator.removeFramework(framework.id);
    this.allocator.addFramework(framework.id, role, false);
    for (const task of framework.tasks.values()) {
      if (task.holdsResources) this.allocator.recordUse(framework.id, task.agentId, task.info.resources);
    }
    framework.role = role;
  }

  private handleSchedulerCall(framework: FrameworkRecord, call: SchedulerCall): void {
    switch (call.type) {
      case 'SUBSCRIBE':
        return; // handled in acceptScheduler
      case 'TEARDOWN':
        this.log.info({ frameworkId: framework.id }, 'framework asked for teardown');
        framework.conn?.close(CloseCode.NORMAL, 'framework torn down');
        this.removeFramework(framework, 'torn down by its scheduler');
        return;
      case 'ACCEPT':
        this.accept(framework, call.offerIds, call.operations, call.filters);
        return;
      case 'DECLINE':
        this.decline(framework, call.offerIds, call.filters);
        return;
      case 'REVIVE':
          this.allocator.revive(framework.id);
        this.requestAllocation();
        return;
      case 'SUPPRESS':
        this.allocator.suppress(framework.id);
        return;
      case 'KILL':
        this.kill(framework, call.taskId, call.agentId, call.killPolicy);
        return;
      case 'ACKNOWLEDGE':
        this.acknowledge(framework, call.agentId, call.taskId, call.uuid);
        return;
      case 'RECONCILE':
        this.reconcile(framework, call.tasks);
        return;
    }
  }

  private takeOffers(framework: FrameworkRecord, offerIds: readonly string[]): { taken: OfferRecord[]; problems: string[] } {
    const taken: OfferRecord[] = [];
    const problems: string[] = [];
    for (const offerId of offerIds) {
      const offer = this.offers.get(offerId);
      if (!offer) problems.push(`offer ${offerId} is not outstanding (already accepted, declined, rescinded or never made)`);
      else if (offer.frameworkId !== framework.id) problems.push(`offer ${offerId} was made to another framework`);
      else if (taken.includes(offer)) problems.push(`offer ${offerId} is named twice`);
      else taken.push(offer);
    }
    const agentIds = new Set(taken.map((o) => o.agentId));
    if (agentIds.size > 1) problems.push(`offers ${offerIds.join(', ')} are on different agents; one ACCEPT may only combine offers from one agent`);
    for (const offer of taken) this.removeOffer(offer);
    return { taken, problems };
  }

  private accept(framework: FrameworkRecord, offerIds: string[], operations: Extract<SchedulerCall, { type: 'ACCEPT' }>['operations'], filters: Filters | undefined): void {
    const { taken, problems } = this.takeOffers(framework, offerIds);
    const refuseSeconds = filters?.refuseSeconds ?? this.options.defaultRefuseSeconds;
    if (problems.length > 0) {
      // Mesos: with any invalid offer, nothing launches; the valid offers go back without a filter.
      for (const offer of taken) this.allocator.recover(framework.id, offer.agentId, offer.resources, undefined, Date.now());
      const message = `ACCEPT rejected: ${problems.join('; ')}`;
      framework.conn?.sendError(ErrorCode.INVALID_OFFER, message);
      for (const op of operations) {
        for (const task of op.tasks) this.sendMasterUpdate(framework, task.taskId, undefined, 'DROPPED', Reason.INVALID_OFFERS, message);
      }
      if (taken.length > 0) this.requestAllocation(taken[0]!.agentId);
      return;
    }
    const agentId = taken[0]!.agentId;
    const agent = this.agents.get(agentId)!;
    const plan = planLaunches(
      taken.map((o) => o.resources),
      operations,
      (taskId) => {
        const existing = framework.tasks.get(taskId);
        return existing !== undefined && !isTerminal(existing.state);
      },
    );
    for (const { task, message } of plan.rejected) {
      framework.conn?.sendError(ErrorCode.INVALID_TASK, message);
      this.sendMasterUpdate(framework, task.taskId, agentId, 'ERROR', Reason.TASK_INVALID, message);
    }
    const now = Date.now();
    for (const info of plan.launches) this.launch(framework, agent, info, now);
    this.allocator.recover(framework.id, agentId, plan.unused, refuseSeconds, now);
  }

  private launch(framework: FrameworkRecord, agent: AgentRecord, info: TaskInfo, now: number): void {
    const status: TaskStatus = { taskId: info.taskId, frameworkId: framework.id, agentId: agent.id, state: 'STAGING', source: 'MASTER', timestampMs: now };
    const previous = framework.tasks.get(info.taskId);
    if (previous) this.completeTask(framework, previous); // a terminal task awaiting its ack, relaunched under the same id
    const task: TaskRecord = { frameworkId: framework.id, agentId: agent.id, info, state: 'STAGING', status, unacknowledged: undefined, holdsResources: true, killPending: false, statusUndelivered: false, launchedAtMs: now };
    framework.tasks.set(info.taskId, task);
    agent.tasks.add(task);
    agent.conn?.send({ type: 'RUN_TASK', frameworkId: framework.id, task: info });
  }

  private decline(framework: FrameworkRecord, offerIds: string[], filters: Filters | undefined): void {
    const { taken, problems } = this.takeOffers(framework, offerIds);
    const now = Date.now();
    const refuseSeconds = filters?.refuseSeconds ?? this.options.defaultRefuseSeconds;
    for (const offer of taken) this.allocator.recover(framework.id, offer.agentId, offer.resources, refuseSeconds, now);
    if (problems.length > 0) framework.conn?.sendError(ErrorCode.INVALID_OFFER, `DECLINE: ${problems.join('; ')}`);
  }

  private kill(framework: FrameworkRecord, taskId: string, agentId: string | undefined, killPolicy: { gracePeriodMs: number } | undefined): void {
    const task = framework.tasks.get(taskId);
    if (!task) {
      const completed = this.completedTasks.get(completedKey(framework.id, taskId));
      if (completed) framework.conn?.send({ type: 'UPDATE', status: { ...completed.status, uuid: undefined, source: 'MASTER', reason: Reason.RECONCILIATION } });
      else this.sendMasterUpdate(framework, taskId, agentId, unknownStateFor(framework.partitionAware), Reason.RECONCILIATION, `KILL of unknown task ${taskId}`);
      return;
    }
    if (isTerminal(task.state)) {
      framework.conn?.send({ type: 'UPDATE', status: { ...task.status, uuid: undefined, source: 'MASTER', reason: Reason.RECONCILIATION } });
      return;
    }
    const agent = this.agents.get(task.agentId);
    if (agent?.conn && agent.status === 'ACTIVE') {
      agent.conn.send({ type: 'KILL_TASK', frameworkId: framework.id, taskId, ...(killPolicy ? { killPolicy } : {}) });
    } else {
      // The agent is away; the kill is re-sent when it re-registers (see registerAgent).
      this.log.info({ taskId, agentId: task.agentId }, 'kill requested for a task on an agent that is not connected; it will be killed when the agent re-registers');
      task.killPending = true;
    }
  }

  private acknowledge(framework: FrameworkRecord, agentId: string, taskId: string, uuid: string): void {
    const task = framework.tasks.get(taskId);
    if (task && task.unacknowledged?.uuid === uuid) {
      task.unacknowledged = undefined;
      if (isTerminal(task.state)) this.completeTask(framework, task);
    }
    // Routed by the agent the scheduler names (Mesos): after a task id is reused elsewhere, an ack
    // for the old incarnation still reaches the agent that sent it.
    this.agents.get(agentId)?.conn?.send({ type: 'ACKNOWLEDGE_UPDATE', frameworkId: framework.id, taskId, uuid });
  }

  /** `holdUnknown`: while agents may still re-register after a restart, hold answers about tasks on agents not seen yet. */
  private reconcile(framework: FrameworkRecord, tasks: { taskId: string; agentId?: string | undefined }[], holdUnknown = true): void {
    const conn = framework.conn;
    if (!conn) return;
    const now = Date.now();
    const recovering = holdUnknown && now < this.startedAtMs + this.options.agentReregisterTimeoutMs;
    if (tasks.length === 0) {
      for (const task of framework.tasks.values()) conn.send({ type: 'UPDATE', status: this.reconciledStatus(task, now) });
      return;
    }
    for (const { taskId, agentId } of tasks) {
      const task = framework.tasks.get(taskId);
      if (task) {
        conn.send({ type: 'UPDATE', status: this.reconciledStatus(task, now) });
        continue;
      }
      const completed = this.completedTasks.get(completedKey(framework.id, taskId));
      if (completed) {
        conn.send({ type: 'UPDATE', status: { ...completed.status, uuid: undefined, source: 'MASTER', reason: Reason.RECONCILIATION, timestampMs: now } });
        continue;
      }
      const agent = agentId ? this.agents.get(agentId) : undefined;
      if (!agent && recovering) {
        // Just (re)started, this master has not heard from every agent yet: "unknown" would make
        // the scheduler relaunch a task that is running fine. Mesos holds the answer until the
        // agent re-registers or the re-registration timeout passes; so do we.
        this.deferReconciliation(framework.id, taskId, agentId);
        continue;
      }
      const state = agent?.status === 'UNREACHABLE' ? unreachableStateFor(framework.partitionAware) : unknownStateFor(framework.partitionAware);
      this.sendMasterUpdate(framework, taskId, agentId, state, Reason.RECONCILIATION, 'the master does not know this task');
    }
  }

  private deferReconciliation(frameworkId: string, taskId: string, agentId: string | undefined): void {
    let tasks = this.deferredReconciliations.get(frameworkId);
    if (!tasks) this.deferredReconciliations.set(frameworkId, (tasks = new Map()));
    tasks.set(taskId, agentId);
    this.deferredReconciliationTimer ??= startTimer(this.startedAtMs + this.options.agentReregisterTimeoutMs - Date.now(), () => {
      this.deferredReconciliationTimer = undefined;
      this.answerDeferredReconciliations(() => true);
    });
  }

  /** Answers the held reconciliation requests `which` selects (now that their agent is back, or time is up). */
  private answerDeferredReconciliations(which: (taskId: string, agentId: string | undefined, framework: FrameworkRecord) => boolean): void {
    for (const [frameworkId, tasks] of this.deferredReconciliations) {
      const framework = this.frameworks.get(frameworkId);
      const answer: { taskId: string; agentId?: string }[] = [];
      for (const [taskId, agentId] of tasks) {
        if (framework && !which(taskId, agentId, framework)) continue;
        tasks.delete(taskId);
        answer.push({ taskId, ...(agentId !== undefined && { agentId }) });
      }
      if (tasks.size === 0) this.deferredReconciliations.delete(frameworkId);
      // Past the window now (or the agent is back), so these are answered, not held again.
      if (framework && answer.length > 0) this.reconcile(framework, answer, false);
    }
  }

  private reconciledStatus(task: TaskRecord, now: number): TaskStatus {
    return { ...task.status, uuid: undefined, source: 'MASTER', reason: Reason.RECONCILIATION, timestampMs: now };
  }

  private schedulerDisconnected(framework: FrameworkRecord, reason: string): void {
    framework.conn = undefined;
    framework.status = 'DISCONNECTED';
    this.allocator.deactivateFramework(framework.id);
    for (const offer of [...framework.offers]) this.rescindOffer(offer, false);
    const timeoutMs = framework.info.failoverTimeoutMs ?? 0;
    this.log.info({ frameworkId: framework.id, reason, failoverTimeoutMs: timeoutMs }, 'scheduler disconnected');
    if (this.closed) return;
    framework.failoverTimer = startTimer(timeoutMs, () => {
      framework.failoverTimer = undefined;
      this.removeFramework(framework, `its scheduler did not re-subscribe within its failover timeout (${timeoutMs} ms)`);
    });
  }

  /** Removes a framework: its offers are rescinded and every task it has is killed. */
  private removeFramework(framework: FrameworkRecord, reason: string): void {
    if (!this.frameworks.has(framework.id)) return;
    this.log.info({ frameworkId: framework.id, reason }, 'removing framework');
    framework.failoverTimer?.clear();
    for (const offer of [...framework.offers]) this.rescindOffer(offer, false);
    const agentsWithTasks = new Set<string>();
    const now = Date.now();
    for (const task of [...framework.tasks.values()]) {
      if (!isTerminal(task.state)) {
        agentsWithTasks.add(task.agentId);
        task.state = 'KILLED';
        task.status = { ...task.status, state: 'KILLED', source: 'MASTER', reason: Reason.FRAMEWORK_REMOVED, message: `framework removed: ${reason}`, uuid: undefined, timestampMs: now };
      }
      this.completeTask(framework, task);
    }
    for (const agentId of agentsWithTasks) this.agents.get(agentId)?.conn?.send({ type: 'SHUTDOWN_FRAMEWORK', frameworkId: framework.id });
    this.allocator.removeFramework(framework.id);
    this.frameworks.delete(framework.id);
    this.completedFrameworks.push({ id: framework.id, name: framework.info.name, role: framework.role, removedAtMs: now, reason });
    if (framework.conn) {
      framework.conn.sendError(ErrorCode.FRAMEWORK_REMOVED, `framework ${framework.id} was removed: ${reason}`);
      framework.conn.close(CloseCode.NORMAL, 'framework removed');
      framework.conn = undefined;
    }
    this.requestAllocation();
  }

  // -------------------------------------------------------------------------------------------
  // Agents

  private registerAgent(conn: AgentConnection, message: Extract<AgentMessage, { type: 'REGISTER' }>): AgentRecord | undefined {
    if (message.protocolVersion !== PROTOCOL_VERSION) {
      conn.sendError(ErrorCode.PROTOCOL_VERSION, `protocol version ${message.protocolVersion} is not supported; this master speaks version ${PROTOCOL_VERSION}`);
      conn.close(CloseCode.POLICY_VIOLATION, 'unsupported protocol version');
      return undefined;
    }
    const now = Date.now();
    let agent = message.agentId ? this.agents.get(message.agentId) : undefined;
    if (agent) {
      const old = agent.conn;
      if (old && old !== conn) {
        agent.conn = undefined;
        old.close(CloseCode.POLICY_VIOLATION, 'replaced by a newer connection from the same agent');
      }
      agent.unreachableTimer?.clear();
      agent.unreachableTimer = undefined;
      const wasUnreachable = agent.status === 'UNREACHABLE';
      for (const offer of [...agent.offers]) this.rescindOffer(offer, true);
      agent.conn = conn;
      agent.status = 'ACTIVE';
      agent.hostname = message.hostname;
      agent.attributes = message.attributes;
      if (wasUnreachable) {
        agent.total = message.resources;
        this.allocator.addAgent(agent.id, agent.total);
      } else if (!equals(agent.total, message.resources)) {
        // Restarted with other resources: the allocator starts over from the new total and the
        // tasks still holding resources there.
        agent.total = message.resources;
        this.allocator.removeAgent(agent.id);
        this.allocator.addAgent(agent.id, agent.total);
        for (const task of agent.tasks) if (task.holdsResources) this.allocator.recordUse(task.frameworkId, agent.id, task.info.resources);
      } else {
        this.allocator.activateAgent(agent.id);
      }
      this.log.info({ agentId: agent.id, hostname: agent.hostname, tasks: message.tasks.length }, 're-registered agent');
    } else {
      const id = message.agentId ?? randomUUID();
      agent = {
        id,
        hostname: message.hostname,
        total: message.resources,
        attributes: message.attributes,
        status: 'ACTIVE',
        conn,
        registeredAtMs: now,
        unreachableTimer: undefined,
        tasks: new Set(),
        offers: new Set(),
      };
      this.agents.set(id, agent);
      this.allocator.addAgent(id, agent.total);
      this.log.info({ agentId: id, hostname: agent.hostname, recovered: message.agentId !== undefined }, 'registered agent');
    }
    conn.send({ type: 'REGISTERED', agentId: agent.id, masterId: this.id });
    this.reconcileAgentTasks(agent, message.tasks, now);
    // Held reconciliation requests this agent can now answer: its tasks, and those it did not bring back.
    const agentId = agent.id;
    this.answerDeferredReconciliations((taskId, heldAgentId, framework) => heldAgentId === agentId || framework.tasks.has(taskId));
    this.requestAllocation(agent.id);
    return agent;
  }

  /**
   * Brings the master's view of an agent's tasks in line with what the agent reports on
   * (re-)registration. The agent is the source of truth for what runs there.
   */
  private reconcileAgentTasks(agent: AgentRecord, reported: AgentTask[], now: number): void {
    const reportedKeys = new Set<string>();
    for (const { frameworkId, task: info, state } of reported) {
      reportedKeys.add(`${frameworkId}\u0000${info.taskId}`);
      let framework = this.frameworks.get(frameworkId);
      if (!framework) {
        if (this.completedFrameworks.find((f) => f.id === frameworkId)) {
          agent.conn?.send({ type: 'SHUTDOWN_FRAMEWORK', frameworkId });
          continue;
        }
        framework = this.recoverFramework(frameworkId, now);
      }
      let task = framework.tasks.get(info.taskId);
      const ended = this.completedTasks.get(completedKey(frameworkId, info.taskId));
      if ((task && task.agentId !== agent.id) || (!task && ended?.agentId === agent.id)) {
        // A copy the master already counts as ended (a non-partition-aware framework was told LOST)
        // or whose id now belongs to a relaunch elsewhere: Mesos kills it rather than adopt it.
        agent.conn?.send({ type: 'KILL_TASK', frameworkId, taskId: info.taskId });
        continue;
      }
      if (!task) {
        task = { frameworkId, agentId: agent.id, info, state, status: { taskId: info.taskId, frameworkId, agentId: agent.id, state, source: 'MASTER', timestampMs: now }, unacknowledged: undefined, holdsResources: false, killPending: false, statusUndelivered: false, launchedAtMs: now };
        framework.tasks.set(info.taskId, task);
      }
      agent.tasks.add(task);
      if (!task.holdsResources && !isTerminal(state)) {
        this.allocator.recordUse(frameworkId, agent.id, info.resources);
        task.holdsResources = true;
      }
      if (task.state !== state && canTransition(task.state, state, 'AGENT')) {
        const wasAway = task.state === 'UNREACHABLE' || task.state === 'LOST' || task.state === 'UNKNOWN';
        task.state = state;
        task.status = { ...task.status, state, source: 'MASTER', reason: Reason.AGENT_REREGISTERED, message: 'the agent re-registered and still runs this task', uuid: undefined, timestampMs: now };
        if (wasAway) framework.conn?.send({ type: 'UPDATE', status: task.status });
      }
      if (task.killPending) {
        task.killPending = false;
        agent.conn?.send({ type: 'KILL_TASK', frameworkId, taskId: info.taskId });
      }
    }
    // Tasks the master launched there that the agent does not have. A STAGING one was lost with the
    // old socket (RUN_TASK never arrived: REGISTER is the first thing on the new one), so it will
    // never start. A task that ran and ended while the agent was away is not listed either, but its
    // terminal update is still in the agent's status stream and arrives next, so it is left alone.
    for (const task of [...agent.tasks]) {
      if (reportedKeys.has(`${task.frameworkId}\u0000${task.info.taskId}`) || task.state !== 'STAGING') continue;
      const framework = this.frameworks.get(task.frameworkId);
      if (!framework) continue;
      this.masterTransition(framework, task, framework.partitionAware ? 'DROPPED' : 'LOST', Reason.AGENT_REREGISTERED, 'the agent re-registered without this task: it never received it');
    }
  }

  /** A framework known only from an agent's report (the master restarted): kept until its scheduler returns. */
  private recoverFramework(frameworkId: string, now: number): FrameworkRecord {
    const framework: FrameworkRecord = {
      id: frameworkId,
      info: { id: frameworkId, name: '(recovered, awaiting its scheduler)', failoverTimeoutMs: this.options.recoveredFrameworkTimeoutMs },
      role: '*',
      partitionAware: true,
      status: 'DISCONNECTED',
      conn: undefined,
      registeredAtMs: now,
      failoverTimer: undefined,
      tasks: new Map(),
      offers: new Set(),
    };
    this.frameworks.set(frameworkId, framework);
    this.allocator.addFramework(frameworkId, '*', false);
    framework.failoverTimer = startTimer(this.options.recoveredFrameworkTimeoutMs, () => this.removeFramework(framework, 'recovered from agent reports, but its scheduler never re-subscribed'));
    return framework;
  }

  private statusUpdate(agent: AgentRecord, status: TaskStatus & { uuid: string }): void {
    let framework = this.frameworks.get(status.frameworkId);
    if (!framework) {
      if (this.completedFrameworks.find((f) => f.id === status.frameworkId)) {
        // The framework is gone for good; acknowledge for it so the agent's stream drains.
        agent.conn?.send({ type: 'ACKNOWLEDGE_UPDATE', frameworkId: status.frameworkId, taskId: status.taskId, uuid: status.uuid });
        return;
      }
      // Not known yet (the master restarted): keep the update for its scheduler, unacknowledged.
      framework = this.recoverFramework(status.frameworkId, Date.now());
    }
    let task = framework.tasks.get(status.taskId);
    const ended = this.completedTasks.get(completedKey(framework.id, status.taskId));
    if (ended && ended.agentId === agent.id && ended.status.uuid === status.uuid) {
      // A retry of an update the master already settled (an earlier incarnation's end).
      agent.conn?.send({ type: 'ACKNOWLEDGE_UPDATE', frameworkId: framework.id, taskId: status.taskId, uuid: status.uuid });
      return;
    }
    if (!task || task.agentId !== agent.id) {
      if (task || ended) {
        // From a copy the master no longer tracks here (its id was reused elsewhere, or it was
        // settled as LOST): nothing for the scheduler.
        agent.conn?.send({ type: 'ACKNOWLEDGE_UPDATE', frameworkId: framework.id, taskId: status.taskId, uuid: status.uuid });
        return;
      }
      task = { frameworkId: framework.id, agentId: agent.id, info: { taskId: status.taskId, resources: {}, command: { value: '?' } }, state: status.state, status, unacknowledged: undefined, holdsResources: false, killPending: false, statusUndelivered: false, launchedAtMs: Date.now() };
      framework.tasks.set(status.taskId, task);
      agent.tasks.add(task);
    }
    if (canTransition(task.state, status.state, status.source)) {
      task.state = status.state;
      task.status = status;
    }
    task.unacknowledged = status;
    if (isTerminal(status.state)) this.releaseTaskResources(task);
    framework.conn?.send({ type: 'UPDATE', status });
  }

  private agentDisconnected(agent: AgentRecord, reason: string, code: number): void {
    agent.conn = undefined;
    if (agent.status !== 'ACTIVE') return;
    agent.status = 'DISCONNECTED';
    this.allocator.deactivateAgent(agent.id);
    for (const offer of [...agent.offers]) this.rescindOffer(offer, true);
    if (this.closed) return;
    // A socket that died of missed pings has used up its grace already.
    const graceMs = reason.startsWith('heartbeat timeout') ? 0 : this.options.agentReregisterTimeoutMs;
    this.log.warn({ agentId: agent.id, hostname: agent.hostname, reason, code, graceMs }, 'agent disconnected');
    agent.unreachableTimer = startTimer(graceMs, () => this.markUnreachable(agent));
  }

  private markUnreachable(agent: AgentRecord): void {
    agent.unreachableTimer = undefined;
    if (agent.status !== 'DISCONNECTED') return;
    this.log.warn({ agentId: agent.id, hostname: agent.hostname }, 'agent unreachable');
    agent.status = 'UNREACHABLE';
    this.allocator.removeAgent(agent.id);
    const affected = new Set<FrameworkRecord>();
    for (const task of agent.tasks) {
      task.holdsResources = false;
      if (isTerminal(task.state)) continue;
      const framework = this.frameworks.get(task.frameworkId);
      if (!framework) continue;
      affected.add(framework);
      this.masterTransition(framework, task, unreachableStateFor(framework.partitionAware), Reason.AGENT_UNREACHABLE, `agent ${agent.hostname} (${agent.id}) is unreachable`);
    }
    for (const framework of this.frameworks.values()) framework.conn?.send({ type: 'FAILURE', agentId: agent.id });
  }

  /** A state change the master decides (agent lost, task gone); sent without a uuid, like Mesos. */
  private masterTransition(framework: FrameworkRecord, task: TaskRecord, state: TaskState, reason: string, message: string): void {
    task.state = state;
    task.status = { taskId: task.info.taskId, frameworkId: framework.id, agentId: task.agentId, state, reason, message, source: 'MASTER', timestampMs: Date.now() };
    task.statusUndelivered = !framework.conn;
    if (framework.conn) framework.conn.send({ type: 'UPDATE', status: task.status });
    // The master's own updates need no acknowledgement, so a terminal one ends the task now, unless
    // the scheduler has yet to hear it (then it ends when re-sent on re-subscribe... or reconciled).
    if (isTerminal(state) && !task.statusUndelivered) this.completeTask(framework, task);
    else if (isTerminal(state)) this.releaseTaskResources(task);
  }

  private releaseTaskResources(task: TaskRecord): void {
    if (!task.holdsResources) return;
    task.holdsResources = false;
    const agent = this.agents.get(task.agentId);
    if (agent && agent.status !== 'UNREACHABLE') {
      this.allocator.recover(task.frameworkId, task.agentId, task.info.resources, undefined, Date.now());
      this.requestAllocation(task.agentId);
    }
  }

  /** Moves an ended task out of the live maps into the history. */
  private completeTask(framework: FrameworkRecord, task: TaskRecord): void {
    this.releaseTaskResources(task);
    this.forgetTask(task);
    if (framework.tasks.get(task.info.taskId) === task) framework.tasks.delete(task.info.taskId);
    this.completedTasks.push({
      frameworkId: task.frameworkId,
      agentId: task.agentId,
      taskId: task.info.taskId,
      name: task.info.name,
      state: task.state,
      status: task.status,
      resources: task.info.resources,
      launchedAtMs: task.launchedAtMs,
    });
  }

  private forgetTask(task: TaskRecord): void {
    this.releaseTaskResources(task);
    this.agents.get(task.agentId)?.tasks.delete(task);
    const framework = this.frameworks.get(task.frameworkId);
    if (framework?.tasks.get(task.info.taskId) === task) framework.tasks.delete(task.info.taskId);
  }

  private sendMasterUpdate(framework: FrameworkRecord, taskId: string, agentId: string | undefined, state: TaskState, reason: string, message: string): void {
    framework.conn?.send({
      type: 'UPDATE',
      status: { taskId, frameworkId: framework.id, ...(agentId ? { agentId } : {}), state, reason, message, source: 'MASTER', timestampMs: Date.now() },
    });
  }

  // -------------------------------------------------------------------------------------------
  // Task files

  /**
   * Reads part of a task's stdout or stderr from its agent's sandbox (Mesos' /files/read): of a
   * live task, or of an ended one the master still remembers, as long as the agent keeps its
   * sandbox. Asks the agent in pieces of MAX_FILE_DATA_BYTES; stops early at the end of the file.
   * Throws a TaskFileReadError whose kind says what went wrong.
   */
  async readTaskFile(frameworkId: string, taskId: string, file: TaskFileName, offset: number, length: number): Promise<TaskFileRead> {
    if (!(TASK_FILES as readonly string[]).includes(file)) throw new TaskFileReadError('INVALID', `unknown file "${file}"; a task has ${TASK_FILES.join(' and ')}`);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new TaskFileReadError('INVALID', `offset must be a whole number of bytes, 0 or more; got ${offset}`);
    if (!Number.isSafeInteger(length) || length < 1 || length > MAX_FILE_READ_BYTES) {
      throw new TaskFileReadError('INVALID', `length must be a whole number of bytes from 1 to ${MAX_FILE_READ_BYTES} (1 MiB); got ${length}`);
    }
    const agentId = this.agentOfTask(frameworkId, taskId);
    const agent = this.agents.get(agentId);
    if (!agent) throw new TaskFileReadError('NOT_FOUND', `task ${taskId} ran on agent ${agentId}, which this master does not know (it has not re-registered since the master started)`);
    const pieces: Buffer[] = [];
    let got = 0;
    let size = 0;
    while (got < length) {
      const conn = agent.conn;
      if (!conn || agent.status !== 'ACTIVE') {
        const how = agent.status === 'UNREACHABLE' ? 'is unreachable' : 'is not connected to the master';
        throw new TaskFileReadError('UNAVAILABLE', `agent ${describeAgent(agent)}, which has the sandbox of task ${taskId}, ${how}; it may come back — try again once it has re-registered`);
      }
      const want = Math.min(length - got, MAX_FILE_DATA_BYTES);
      const piece = await this.fileReads.ask({ id: agent.id, hostname: agent.hostname, conn }, { frameworkId, taskId, file, offset: offset + got, length: want });
      pieces.push(piece.data);
      got += piece.data.length;
      size = piece.size;
      if (piece.data.length < want) break; // the end of the file
    }
    return { data: pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces), size, offset, agentId };
  }

  /** The agent a task runs or ran on, from the live tasks or the completed-task history. */
  private agentOfTask(frameworkId: string, taskId: string): string {
    const framework = this.frameworks.get(frameworkId);
    const live = framework?.tasks.get(taskId);
    if (live) return live.agentId;
    const ended = this.completedTasks.get(completedKey(frameworkId, taskId));
    if (ended) return ended.agentId;
    if (!framework && !this.completedFrameworks.find((f) => f.id === frameworkId)) {
      throw new TaskFileReadError('NOT_FOUND', `unknown framework ${frameworkId}; GET /state lists the frameworks this master knows`);
    }
    throw new TaskFileReadError(
      'NOT_FOUND',
      `framework ${frameworkId} has no task ${taskId} (the master remembers live tasks and the last ${this.options.completedTaskHistory} ended ones)`,
    );
  }

  // -------------------------------------------------------------------------------------------
  // Allocation and offers

  /** Asks for an allocation cycle soon, over one agent or all; requests in one turn are batched. */
  requestAllocation(agentId?: string): void {
    if (this.closed) return;
    if (agentId) this.pendingAllocation.add(agentId);
    else for (const id of this.agents.keys()) this.pendingAllocation.add(id);
    if (this.allocationScheduled) return;
    this.allocationScheduled = true;
    setImmediate(() => this.runAllocation(false));
  }

  private runAllocation(full: boolean): void {
    if (this.closed) return;
    let agentIds: Iterable<string> | undefined;
    if (!full) {
      this.allocationScheduled = false;
      if (this.pendingAllocation.size === 0) return;
      agentIds = [...this.pendingAllocation];
    }
    this.pendingAllocation.clear();
    const now = Date.now();
    const decisions = this.allocator.allocate(now, agentIds);
    if (decisions.length === 0) return;
    const byFramework = new Map<FrameworkRecord, Offer[]>();
    for (const decision of decisions) {
      const framework = this.frameworks.get(decision.frameworkId);
      const agent = this.agents.get(decision.agentId);
      if (!framework?.conn || !agent) {
        this.allocator.recover(decision.frameworkId, decision.agentId, decision.resources, undefined, now);
        continue;
      }
      const offer: OfferRecord = {
        id: `${this.id.slice(0, 8)}-O${++this.offerCounter}`,
        frameworkId: framework.id,
        agentId: agent.id,
        resources: decision.resources,
        createdAtMs: now,
        timer: undefined,
      };
      offer.timer = startTimer(this.options.offerTimeoutMs, () => this.rescindOffer(offer, true));
      this.offers.set(offer.id, offer);
      framework.offers.add(offer);
      agent.offers.add(offer);
      let list = byFramework.get(framework);
      if (!list) byFramework.set(framework, (list = []));
      list.push({ id: offer.id, frameworkId: framework.id, agentId: agent.id, hostname: agent.hostname, role: decision.role, resources: decision.resources, attributes: agent.attributes });
    }
    for (const [framework, offers] of byFramework) framework.conn?.send({ type: 'OFFERS', offers });
  }

  private removeOffer(offer: OfferRecord): void {
    offer.timer?.clear();
    this.offers.delete(offer.id);
    this.frameworks.get(offer.frameworkId)?.offers.delete(offer);
    this.agents.get(offer.agentId)?.offers.delete(offer);
  }

  /** Takes an offer back (timeout, agent lost, framework gone) and returns its resources. */
  private rescindOffer(offer: OfferRecord, notify: boolean): void {
    if (!this.offers.has(offer.id)) return;
    this.removeOffer(offer);
    const agent = this.agents.get(offer.agentId);
    if (agent && agent.status !== 'UNREACHABLE') this.allocator.recover(offer.frameworkId, offer.agentId, offer.resources, undefined, Date.now());
    if (notify) this.frameworks.get(offer.frameworkId)?.conn?.send({ type: 'RESCIND', offerId: offer.id });
    this.requestAllocation(offer.agentId);
  }

  private sendHeartbeats(): void {
    for (const framework of this.frameworks.values()) framework.conn?.send({ type: 'HEARTBEAT' });
  }

  // -------------------------------------------------------------------------------------------

  /** Resources in use by live tasks, per agent. */
  usedOn(agent: AgentRecord): Resources {
    let used: Resources = {};
    for (const task of agent.tasks) if (task.holdsResources) used = add(used, task.info.resources);
    return used;
  }

  offeredOn(agent: AgentRecord): Resources {
    let offered: Resources = {};
    for (const offer of agent.offers) offered = add(offered, offer.resources);
    return offered;
  }

  dominantShare(frameworkId: string): number {
    return this.allocator.dominantShare(frameworkId);
  }

  isSuppressed(frameworkId: string): boolean {
    return this.allocator.isSuppressed(frameworkId);
  }

  state(): MasterStateJson {
    return buildState(this);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.fileReads.close();
    this.deferredReconciliationTimer?.clear();
    for (const timer of this.timers) clearInterval(timer);
    for (const offer of this.offers.values()) offer.timer?.clear();
    for (const framework of this.frameworks.values()) {
      framework.failoverTimer?.clear();
      framework.conn?.close(CloseCode.GOING_AWAY, 'master shutting down');
    }
    for (const agent of this.agents.values()) {
      agent.unreachableTimer?.clear();
      agent.conn?.close(CloseCode.GOING_AWAY, 'master shutting down');
    }
  }
}

function completedKey(frameworkId: string, taskId: string): string {
  return `${frameworkId}\u0000${taskId}`;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  const out: Partial<T> = {};
  for (const key of Object.keys(value) as (keyof T)[]) if (value[key] !== undefined) out[key] = value[key];
  return out;
}

export type { MasterStateJson };
export type { SchedulerEvent, MasterToAgent };
