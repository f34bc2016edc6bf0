/**
 * SchedulerDriver: one framework's connection to the master, kept alive.
 *
 * What it does for the framework author (the Mesos driver's duties, made automatic):
 *  - dials the master and SUBSCRIBEs; after the first SUBSCRIBED it re-uses the framework id on
 *    every re-subscribe, so a reconnect is a framework failover, not a new framework;
 *  - reconnects with exponential backoff and jitter when the socket closes;
 *  - watches heartbeats: if nothing at all arrives for 3 × heartbeatIntervalMs the master is taken
 *    for dead (a half-open TCP connection never closes by itself) and the driver reconnects;
 *  - reconciles implicitly on every (re)subscribe, so the scheduler learns the truth about its
 *    tasks after any gap (Mesos' docs/reconciliation.md: "schedulers that never reconcile");
 *  - acknowledges a status update after the `update` handler returns — never before, so an update
 *    whose handler threw is re-sent by the agent and the scheduler cannot lose it;
 *  - declines every offer of a batch that the `offers` handler neither accepted nor declined, with a
 *    refuse filter, so no framework hoards resources (a known Mesos pain point);
 *  - runs handlers one event at a time, in arrival order, awaiting promises between them.
 */
import os from 'node:os';
import { pino, type Logger } from 'pino';
import {
  CloseCode,
  connectWs,
  describeZodError,
  Endpoint,
  ErrorCode,
  Inbound,
  PROTOCOL_VERSION,
  schedulerCallSchema,
  type Connection,
  type Filters,
  type FrameworkInfo,
  type Offer,
  type Operation,
  type SchedulerCall,
  type SchedulerEvent,
  type TaskInfo,
  type TaskStatus,
} from '../../master/protocol/index.ts';
import { DriverStoppedError, InvalidCallError, MasterRefusedError, NotConnectedError, type DriverState } from './errors.ts';

export interface SchedulerHandlers {
  /** Called after every SUBSCRIBED, the first and each re-subscribe after a reconnect. */
  subscribed?(frameworkId: string, driver: SchedulerDriver): void | Promise<void>;
  /** Offers not accepted or declined by the time this returns (or its promise settles) are declined. */
  offers?(offers: Offer[], driver: SchedulerDriver): void | Promise<void>;
  rescinded?(offerId: string, driver: SchedulerDriver): void | Promise<void>;
  /**
   * The driver acknowledges the update after this returns; throw to have it re-sent instead. With
   * `acknowledgements: 'explicit'` the scheduler calls `driver.acknowledge(status)` itself, later.
   */
  update?(status: TaskStatus, driver: SchedulerDriver): void | Promise<void>;
  /** An agent was lost; its tasks' fates arrive as status updates. */
  failure?(agentId: string, driver: SchedulerDriver): void | Promise<void>;
  /** A complaint from the master, or a refusal that stopped the driver (see MasterRefusedError). */
  error?(error: { code: string; message: string }, driver: SchedulerDriver): void | Promise<void>;
  /** A subscribed connection was lost; the driver is reconnecting unless the error was fatal. */
  disconnected?(reason: string, driver: SchedulerDriver): void | Promise<void>;
}

export interface SchedulerDriverOptions {
  /** The master's base URL; the driver dials `${master}${Endpoint.scheduler}`. @default 'ws://127.0.0.1:5050' */
  master?: string;
  /** Opens a connection to the master; overrides `master` (the in-memory testing harness uses it). */
  connect?: () => Promise<Connection<SchedulerEvent, SchedulerCall>>;
  /** Name, role, capabilities; `id` to resume a framework after a scheduler restart. `failoverTimeoutMs` @default 60_000 */
  framework: FrameworkInfo;
  handlers: SchedulerHandlers;
  /** Offers the handler neither accepted nor declined are declined with this filter. @default 5 */
  declineRefuseSeconds?: number;
  /** Backoff between reconnect attempts, doubled each failure, with jitter. @default { initialMs: 200, maxMs: 10_000 } */
  reconnect?: { initialMs: number; maxMs: number };
  /** How long to wait for SUBSCRIBED after the socket opens before trying again. @default 10_000 */
  subscribeTimeoutMs?: number;
  /** @default pino at level `process.env.AGORA_LOG_LEVEL ?? 'info'`, to stderr */
  logger?: Logger;
  /**
   * 'after-handler': each update is acknowledged once its handler returns. 'explicit': the scheduler
   * calls `acknowledge(status)` when it has made the update durable — so it can persist many updates
   * in one write (group commit) instead of making every update wait for its own. @default 'after-handler'
   */
  acknowledgements?: 'after-handler' | 'explicit';
}

/** Master error codes after which re-subscribing cannot succeed. */
const FATAL_ERROR_CODES: ReadonlySet<string> = new Set([ErrorCode.FRAMEWORK_REMOVED, ErrorCode.FAILED_OVER, ErrorCode.UNKNOWN_FRAMEWORK]);

/** Close code the driver uses when it drops a connection itself (the 4000s are for applications). */
const CLOSE_HEARTBEAT_TIMEOUT = 4000;

export const DEFAULT_FAILOVER_TIMEOUT_MS = 60_000;
export const DEFAULT_DECLINE_REFUSE_SECONDS = 5;

export class SchedulerDriver {
  private readonly handlers: SchedulerHandlers;
  private readonly log: Logger;
  private readonly connectToMaster: () => Promise<Connection<SchedulerEvent, SchedulerCall>>;
  private readonly declineRefuseSeconds: number;
  private readonly backoff: { initialMs: number; maxMs: number };
  private readonly subscribeTimeoutMs: number;

  private currentState: DriverState = 'idle';
  private conn: Connection<SchedulerEvent, SchedulerCall> | undefined;
  /** Bumped whenever the current connection is abandoned; callbacks of older connections are ignored. */
  private generation = 0;
  private id: string | undefined;
  private reconnectAttempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private heartbeatIntervalMs = 0;
  /** Handler invocations, chained so each starts after the previous one settles. */
  private events: Promise<void> = Promise.resolve();
  /** Offers received on the current connection and not yet accepted, declined or rescinded. */
  private readonly outstandingOffers = new Set<string>();
  /** The update whose handler is running, so an explicit acknowledge inside it is not repeated. */
  private updateInProgress: { uuid: string; acknowledged: boolean } | undefined;
  private userStopped = false;
  private startPromise: Promise<string> | undefined;
  private settleStart: { resolve: (id: string) => void; reject: (error: Error) => void } | undefined;

  constructor(private readonly options: SchedulerDriverOptions) {
    this.handlers = options.handlers;
    this.log =
      options.logger ?? pino({ name: 'agora-scheduler', level: process.env.AGORA_LOG_LEVEL ?? 'info' }, pino.destination(2));
    this.declineRefuseSeconds = options.declineRefuseSeconds ?? DEFAULT_DECLINE_REFUSE_SECONDS;
    this.backoff = options.reconnect ?? { initialMs: 200, maxMs: 10_000 };
    this.subscribeTimeoutMs = options.subscribeTimeoutMs ?? 10_000;
    this.id = options.framework.id;
    if (options.connect) {
      this.connectToMaster = options.connect;
    } else {
      const url = `${(options.master ?? 'ws://127.0.0.1:5050').replace(/\/+$/, '')}${Endpoint.scheduler}`;
      this.connectToMaster = () => connectWs<SchedulerEvent, SchedulerCall>(url, Inbound.schedulerEvents);
    }
  }

  /** The framework id, once the master has assigned it (or the one given to resume). */
  get frameworkId(): string | undefined {
    return this.id;
  }

  get state(): DriverState {
    return this.currentState;
  }

  /**
   * Connects and subscribes. Resolves with the framework id at the first SUBSCRIBED; keeps retrying
   * while the master is unreachable; rejects with MasterRefusedError if the master refuses the
   * subscription, or DriverStoppedError if `stop()` comes first.
   */
  start(): Promise<string> {
    if (this.startPromise) return this.startPromise;
    if (this.currentState === 'stopped') return Promise.reject(new DriverStoppedError());
    this.startPromise = new Promise<string>((resolve, reject) => {
      this.settleStart = { resolve, reject };
    });
    void this.dial();
    return this.startPromise;
  }

  /**
   * Closes the connection and stops reconnecting. With `teardown` the master first removes the
   * framework and kills all its tasks; without it the tasks keep running for failoverTimeoutMs, so a
   * new scheduler can resume the framework with its id. Safe to call from inside a handler.
   */
  async stop(options: { teardown?: boolean } = {}): Promise<void> {
    if (this.currentState === 'stopped') return;
    const conn = this.conn;
    const wasSubscribed = this.currentState === 'subscribed';
    this.userStopped = true;
    this.abandonConnection();
    this.currentState = 'stopped';
    this.rejectStart(new DriverStoppedError());
    if (options.teardown) {
      if (wasSubscribed && conn) {
        conn.send({ type: 'TEARDOWN' });
        this.log.info({ frameworkId: this.id }, 'framework torn down');
      } else {
        this.log.warn(
          { frameworkId: this.id },
          'cannot tear down while disconnected from the master; the framework is removed after its failover timeout',
        );
      }
    }
    if (!conn || !conn.isOpen) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 3000);
      timer.unref();
      conn.onClose = () => {
        clearTimeout(timer);
        resolve();
      };
      conn.close(CloseCode.NORMAL, options.teardown ? 'framework torn down' : 'scheduler stopped');
    });
  }

  // -------------------------------------------------------------------------------------------
  // Calls

  /** Accepts offers with operations; resources of the offers that the operations leave unused are declined by the master. */
  accept(offerIds: string[], operations: Operation[], filters?: Filters): void {
    if (offerIds.length === 0) throw new InvalidCallError('ACCEPT', 'accept needs at least one offer id');
    this.send(filters ? { type: 'ACCEPT', offerIds, operations, filters } : { type: 'ACCEPT', offerIds, operations });
    for (const id of offerIds) this.outstandingOffers.delete(id);
  }

  /** Launches tasks on one or more offers (all from the same agent). With no tasks the offers are declined. */
  launch(offers: Offer | Offer[], tasks: TaskInfo[], filters?: Filters): void {
    const offerIds = (Array.isArray(offers) ? offers : [offers]).map((offer) => offer.id);
    if (tasks.length === 0) {
      this.decline(offerIds, filters?.refuseSeconds);
      return;
    }
    this.accept(offerIds, [{ type: 'LAUNCH', tasks }], filters);
  }

  /** Declines offers; the master withholds their resources from this framework for `refuseSeconds`. */
  decline(offerIds: string | string[], refuseSeconds: number = this.declineRefuseSeconds): void {
    const ids = Array.isArray(offerIds) ? offerIds : [offerIds];
    if (ids.length === 0) return;
    this.send({ type: 'DECLINE', offerIds: ids, filters: { refuseSeconds } });
    for (const id of ids) this.outstandingOffers.delete(id);
  }

  /** Kills a task; its end arrives as a KILLED (or other terminal) status update. */
  kill(taskId: string, options: { agentId?: string; gracePeriodMs?: number } = {}): void {
    const call: Extract<SchedulerCall, { type: 'KILL' }> = { type: 'KILL', taskId };
    if (options.agentId !== undefined) call.agentId = options.agentId;
    if (options.gracePeriodMs !== undefined) call.killPolicy = { gracePeriodMs: options.gracePeriodMs };
    this.send(call);
  }

  /** Clears this framework's refuse filters and asks for offers again (undoes suppress). */
  revive(): void {
    this.send({ type: 'REVIVE' });
  }

  /** Asks the master to stop sending offers until `revive()`. */
  suppress(): void {
    this.send({ type: 'SUPPRESS' });
  }

  /**
   * Acknowledges a status update. The driver does this by itself after the `update` handler
   * returns, so call it only for updates handled outside that handler. Statuses without a uuid
   * (from the master, e.g. reconciliation) need none and are ignored; while disconnected the
   * acknowledgement is dropped — the agent re-sends the update after the scheduler re-subscribes.
   */
  acknowledge(status: TaskStatus): void {
    if (status.uuid === undefined || status.agentId === undefined) return;
    if (this.updateInProgress?.uuid === status.uuid) this.updateInProgress.acknowledged = true;
    if (this.currentState !== 'subscribed' || !this.conn) {
      this.log.debug({ taskId: status.taskId, uuid: status.uuid }, 'acknowledgement dropped while disconnected');
      return;
    }
    this.send({ type: 'ACKNOWLEDGE', agentId: status.agentId, taskId: status.taskId, uuid: status.uuid });
  }

  /** Asks for the latest state of these tasks, or of every task of the framework when given none. */
  reconcile(tasks: { taskId: string; agentId?: string }[] = []): void {
    this.send({ type: 'RECONCILE', tasks });
  }

  private send(call: SchedulerCall): void {
    if (this.currentState !== 'subscribed' || !this.conn) throw new NotConnectedError(call.type, this.currentState);
    const checked = schedulerCallSchema.safeParse(call);
    if (!checked.success) throw new InvalidCallError(call.type, describeZodError(checked.error, call.type));
    this.conn.send(call);
  }

  // -------------------------------------------------------------------------------------------
  // Connection lifecycle

  private async dial(): Promise<void> {
    if (this.currentState === 'stopped') return;
    this.currentState = 'connecting';
    const generation = ++this.generation;
    let conn: Connection<SchedulerEvent, SchedulerCall>;
    try {
      conn = await this.connectToMaster();
    } catch (error) {
      if (generation !== this.generation || this.isStopped()) return;
      this.log.warn({ err: error }, `cannot reach the master: ${(error as Error).message}`);
      this.scheduleReconnect();
      return;
    }
    if (generation !== this.generation || this.isStopped()) {
      conn.close(CloseCode.NORMAL, 'scheduler stopped');
      return;
    }
    this.conn = conn;
    this.currentState = 'subscribing';
    conn.onMessage = (event) => {
      if (generation === this.generation) this.receive(event, generation);
    };
    conn.onClose = (code, reason) => {
      if (generation === this.generation) this.connectionLost(code, reason);
    };
    conn.send({ type: 'SUBSCRIBE', protocolVersion: PROTOCOL_VERSION, framework: this.frameworkInfo() });
    this.armWatchdog();
  }

  /** A method, not a field read, so the compiler does not narrow it across awaits. */
  private isStopped(): boolean {
    return this.currentState === 'stopped';
  }

  private frameworkInfo(): FrameworkInfo {
    const framework: FrameworkInfo = {
      ...this.options.framework,
      failoverTimeoutMs: this.options.framework.failoverTimeoutMs ?? DEFAULT_FAILOVER_TIMEOUT_MS,
      hostname: this.options.framework.hostname ?? os.hostname(),
    };
    if (this.id !== undefined) framework.id = this.id;
    return framework;
  }

  private scheduleReconnect(): void {
    const base = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** this.reconnectAttempt);
    this.reconnectAttempt = Math.min(this.reconnectAttempt + 1, 30);
    // "Equal jitter": at least half the backoff, so a crowd of schedulers that lost the same master
    // spreads out instead of reconnecting in lockstep.
    const delayMs = Math.round(base / 2 + (Math.random() * base) / 2);
    this.log.info({ delayMs }, 'reconnecting to the master');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.dial();
    }, delayMs);
  }

  /** Restarts the liveness timer: any message from the master proves it alive. */
  private armWatchdog(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    const subscribed = this.currentState === 'subscribed';
    const limitMs = subscribed ? 3 * this.heartbeatIntervalMs : this.subscribeTimeoutMs;
    if (!(limitMs > 0)) return;
    this.watchdog = setTimeout(() => {
      this.watchdog = undefined;
      const reason = subscribed
        ? `heartbeat timeout: nothing from the master for ${limitMs} ms (3 heartbeat intervals)`
        : `subscribe timeout: no answer to SUBSCRIBE within ${limitMs} ms`;
      this.log.warn(reason);
      const conn = this.conn;
      // Don't wait for a close handshake a dead peer will never answer: abandon the connection now.
      this.connectionLost(1006, reason);
      conn?.close(CLOSE_HEARTBEAT_TIMEOUT, reason.slice(0, 100));
    }, limitMs);
    this.watchdog.unref();
  }

  private abandonConnection(): void {
    this.generation++;
    this.conn = undefined;
    this.outstandingOffers.clear();
    if (this.watchdog) clearTimeout(this.watchdog);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.watchdog = undefined;
    this.reconnectTimer = undefined;
  }

  private connectionLost(code: number, reason: string): void {
    if (this.currentState === 'stopped') return;
    const wasSubscribed = this.currentState === 'subscribed';
    this.abandonConnection();
    if (code === CloseCode.POLICY_VIOLATION) {
      // The master closes with 1008 only when it will not take this scheduler back.
      this.refused('CLOSED_BY_MASTER', reason || 'closed with 1008 (policy violation)', wasSubscribed);
      return;
    }
    this.currentState = 'connecting';
    this.log.warn({ code, reason, frameworkId: this.id }, `lost the connection to the master: ${reason}`);
    if (wasSubscribed) this.enqueue('disconnected', () => this.handlers.disconnected?.(reason, this));
    this.scheduleReconnect();
  }

  /** The master will not take this scheduler (back): stop for good and say why. */
  private refused(code: string, message: string, wasSubscribed: boolean): void {
    const conn = this.conn;
    this.abandonConnection();
    this.currentState = 'stopped';
    conn?.close(CloseCode.NORMAL, 'refused by the master');
    const error = new MasterRefusedError(code, message, this.id);
    this.log.error({ code, frameworkId: this.id }, error.message);
    this.rejectStart(error);
    this.enqueue('error', () => this.handlers.error?.({ code, message }, this));
    if (wasSubscribed) this.enqueue('disconnected', () => this.handlers.disconnected?.(error.message, this));
  }

  private rejectStart(error: Error): void {
    const settle = this.settleStart;
    this.settleStart = undefined;
    settle?.reject(error);
  }

  // -------------------------------------------------------------------------------------------
  // Events

  private receive(event: SchedulerEvent, generation: number): void {
    switch (event.type) {
      case 'SUBSCRIBED': {
        if (this.id !== undefined && this.id !== event.frameworkId) {
          this.log.warn({ requested: this.id, assigned: event.frameworkId }, 'the master assigned a different framework id');
        }
        this.id = event.frameworkId;
        this.currentState = 'subscribed';
        this.heartbeatIntervalMs = event.heartbeatIntervalMs;
        this.reconnectAttempt = 0;
        this.armWatchdog();
        this.log.info({ frameworkId: event.frameworkId, masterId: event.masterId }, 'subscribed');
        // Implicit reconciliation: learn every task's state after any gap.
        this.send({ type: 'RECONCILE', tasks: [] });
        const settle = this.settleStart;
        this.settleStart = undefined;
        settle?.resolve(event.frameworkId);
        const frameworkId = event.frameworkId;
        this.enqueue('subscribed', () => this.handlers.subscribed?.(frameworkId, this));
        return;
      }
      case 'HEARTBEAT':
        this.armWatchdog();
        return;
      case 'ERROR': {
        this.armWatchdog();
        // Before SUBSCRIBED the only call on this connection is SUBSCRIBE, so an ERROR is its refusal.
        if (this.currentState === 'subscribing' || FATAL_ERROR_CODES.has(event.code)) {
          this.refused(event.code, event.message, this.currentState === 'subscribed');
          return;
        }
        this.log.warn({ code: event.code }, `the master reports an error: ${event.message}`);
        const error = { code: event.code, message: event.message };
        this.enqueue('error', () => this.handlers.error?.(error, this));
        return;
      }
      case 'OFFERS': {
        this.armWatchdog();
        for (const offer of event.offers) this.outstandingOffers.add(offer.id);
        const offers = event.offers;
        this.enqueue('offers', async () => {
          // Offers die with the connection that carried them.
          if (generation !== this.generation) return;
          try {
            await this.handlers.offers?.(offers, this);
          } finally {
            this.declineLeftovers(offers, generation);
          }
        });
        return;
      }
      case 'RESCIND': {
        this.armWatchdog();
        this.outstandingOffers.delete(event.offerId);
        const offerId = event.offerId;
        this.enqueue('rescinded', () => this.handlers.rescinded?.(offerId, this));
        return;
      }
      case 'UPDATE': {
        this.armWatchdog();
        const status = event.status;
        this.enqueue('update', () => this.handleUpdate(status));
        return;
      }
      case 'FAILURE': {
        this.armWatchdog();
        const agentId = event.agentId;
        this.enqueue('failure', () => this.handlers.failure?.(agentId, this));
        return;
      }
      default: {
        const unexpected: never = event;
        this.log.warn({ event: unexpected }, 'ignoring an unexpected event');
      }
    }
  }

  private async handleUpdate(status: TaskStatus): Promise<void> {
    const tracked = status.uuid !== undefined ? { uuid: status.uuid, acknowledged: false } : undefined;
    this.updateInProgress = tracked;
    try {
      // A throw propagates to enqueue(), which logs it; the update stays unacknowledged and comes again.
      await this.handlers.update?.(status, this);
    } finally {
      this.updateInProgress = undefined;
    }
    if (tracked && !tracked.acknowledged && this.options.acknowledgements !== 'explicit') this.acknowledge(status);
  }

  private declineLeftovers(offers: Offer[], generation: number): void {
    if (generation !== this.generation || this.currentState !== 'subscribed') return;
    const leftovers = offers.map((offer) => offer.id).filter((id) => this.outstandingOffers.has(id));
    if (leftovers.length === 0) return;
    this.log.debug({ offerIds: leftovers }, 'declining offers the handler left unused');
    this.decline(leftovers, this.declineRefuseSeconds);
  }

  private enqueue(handler: keyof SchedulerHandlers, run: () => void | Promise<void>): void {
    this.events = this.events.then(async () => {
      if (this.userStopped) return;
      try {
        await run();
      } catch (error) {
        this.log.error({ err: error, handler }, `the ${handler} handler threw: ${(error as Error)?.message ?? String(error)}`);
      }
    });
  }
}
