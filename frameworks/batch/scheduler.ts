/**
 * The batch scheduler: the stateful shell around the pure core (run-state, schedule, dependencies).
 * It implements `BatchApi` on the SDK driver and a Store, and nothing else knows its insides.
 *
 * One rule drives it: after anything happens (a status update, an API call, an offer, a timer) it
 * steps every run from the facts and applies the answer — launch these on the offers at hand, kill
 * those. Stepping is idempotent, so a duplicate update or a restart cannot make it act twice.
 *
 * Hazards handled here:
 *  - Nothing lost, nothing twice: an attempt is written to its run in the store BEFORE its task is
 *    launched. After a restart every open attempt is reconciled explicitly and nothing is launched
 *    until the master has answered for each; one it never heard of comes back UNKNOWN and is tried
 *    again (a lost attempt does not use up a retry).
 *  - Updates are acknowledged only once the run they changed is durable, and many are made durable
 *    in one write (group commit): acknowledging first could lose an update in a crash; writing once
 *    per update would cap a 500-task array at the store's fsync rate.
 *  - A schedule slot fires once: the run and the job's `lastSlotMs` are committed together, and a
 *    scheduled run's id comes from its slot.
 *  - No hoarding: the framework SUPPRESSes when no task can launch now and REVIVEs when one can;
 *    leftover offers are declined with a filter (a revive clears filters).
 *  - Serialisation: driver handlers and API calls run one at a time through one queue.
 */
import { randomBytes } from 'node:crypto';
import { pino, type Logger } from 'pino';
import {
  add,
  binPack,
  isTerminal,
  MasterRefusedError,
  MAX_FILE_READ_BYTES,
  ErrorCode,
  readTaskFile,
  scalar,
  SchedulerDriver,
  subtract,
  TaskFileError,
  type Offer,
  type Resources,
  type Store,
  type StoreWrite,
  type TaskInfo,
  type TaskSpec,
  type TaskStatus,
} from '../sdk/index.ts';
import type { FrameworkSchedulerOptions } from '../sdk/framework-options.ts';
import { startTimer, type Timer } from '../../master/timer.ts';
import { meetsConstraints, type PlacementTarget } from '../services/constraints.ts';
import {
  BatchError,
  type BatchApi,
  type BatchEvent,
  type JobView,
  type ListRunsOptions,
  type RunSummary,
  type RunTaskView,
  type RunView,
  type TaskLogChunk,
  type TaskLogRequest,
} from './batch-api.ts';
import { deleteJob, keys, loadBatchState, putJob, RunRecords, type StoredJob, type StoredRun } from './batch-store.ts';
import { evaluateDependencies, findDependencyCycle, type RunSummary as DependencyRunSummary } from './dependencies.ts';
import { taskPlan, type JobSpec } from './job-spec.ts';
import { applyRunEvent, createRun, isRunDone, parseTaskId, runCounts, stepRun, type Run, type RunTask } from './run-state.ts';
import { nextSlotAfter, planSchedule, runIdForSlot } from './schedule.ts';

/** The store holds the framework id, jobs and runs. */
export interface BatchSchedulerOptions extends FrameworkSchedulerOptions {
  /** @default 'batch' */
  name?: string;
  /** @default 30 */
  declineRefuseSeconds?: number;
  /** Ended runs kept per job: at most `runsPerJob`, none older than `maxAgeMs` (the latest is always kept). @default 20, 7 days */
  retention?: { runsPerJob?: number; maxAgeMs?: number };
  /** The clock, for tests of schedules (call `tick()` after moving it). @default Date.now */
  now?: () => number;
}

const ONE_WEEK_MS = 7 * 24 * 3600 * 1000;
/** Skipped schedule slots remembered per job, for people. */
const SKIPPED_KEPT = 10;
/** Offers declined while reconciling come back soon. */
const RECONCILING_REFUSE_SECONDS = 1;

/** The least time a job outlives its last run under ttlSecondsAfterFinished (see expiryOf). */
const MIN_TTL_SECONDS = 5;

export class BatchScheduler implements BatchApi {
  private readonly log: Logger;
  private readonly store: Store;
  private readonly now: () => number;
  private readonly declineRefuseSeconds: number;
  private readonly reconcileTimeoutMs: number;
  private readonly runsPerJob: number;
  private readonly maxRunAgeMs: number;
  private driverInstance: SchedulerDriver | undefined;
  private storedFrameworkId: string | undefined;

  private readonly jobs = new Map<string, StoredJob>();
  private readonly runs = new Map<string, StoredRun>();
  /** Why a queued run launches nothing yet (dependencies). */
  private readonly waiting = new Map<string, string>();
  /** job id → when it is deleted (ttlSecondsAfterFinished), for jobs whose runs have all ended. */
  private readonly expiries = new Map<string, number>();
  /** agent id → hostname and attributes, learnt from offers (constraints; hosts shown to people). */
  private readonly agents = new Map<string, PlacementTarget>();
  private readonly listeners = new Set<(event: BatchEvent) => void>();
  private seq = 0;

  // Group commit: what the next flush writes, the updates it then acknowledges, who waits for it.
  private readonly dirtyRuns = new Set<string>();
  private readonly dirtyJobs = new Set<string>();
  /** Runs to delete from the store, with their task counts (how many chunks they have). */
  private readonly deletedRuns = new Map<string, number>();
  private readonly records = new RunRecords();
  private readonly deletedJobs = new Set<string>();
  private pendingAcks: TaskStatus[] = [];
  private flushWaiters: { resolve: () => void; reject: (error: Error) => void }[] = [];
  private flushing = false;
  /** Runs whose summary changed since the last flush: announced once it is durable. */
  private readonly changedRuns = new Set<string>();

  private queue: Promise<unknown> = Promise.resolve();
  /** Attempts the master has not answered for since the last SUBSCRIBED; nothing launches until empty. */
  private unreconciled: Set<string> | undefined = new Set();
  private reconcileTimer: NodeJS.Timeout | undefined;
  private wakeTimer: Timer | undefined;
  private wakeAtMs: number | undefined;
  private planRequested = false;
  /** undefined after (re)subscribing: the master's view is unknown, so the next plan says it explicitly. */
  private suppressed: boolean | undefined;
  private closed = false;
  private started = false;

  constructor(private readonly options: BatchSchedulerOptions) {
    this.log = options.logger ?? pino({ name: 'agora-batch', level: process.env.AGORA_LOG_LEVEL ?? 'info' }, pino.destination(2));
    this.store = options.store;
    this.now = options.now ?? Date.now;
    this.declineRefuseSeconds = options.declineRefuseSeconds ?? 30;
    this.reconcileTimeoutMs = options.reconcileTimeoutMs ?? 5000;
    this.runsPerJob = Math.max(1, options.retention?.runsPerJob ?? 20);
    this.maxRunAgeMs = options.retention?.maxAgeMs ?? ONE_WEEK_MS;
  }

  get frameworkId(): string | undefined {
    return this.driverInstance?.frameworkId;
  }

  private get driver(): SchedulerDriver {
    if (!this.driverInstance) throw new Error('the batch scheduler is not started');
    return this.driverInstance;
  }

  private createDriver(frameworkId: string | undefined): SchedulerDriver {
    const options = this.options;
    return new SchedulerDriver({
      master: options.master,
      framework: {
        ...(frameworkId !== undefined && { id: frameworkId }),
        name: options.name ?? 'batch',
        role: options.role ?? '*',
        failoverTimeoutMs: options.failoverTimeoutMs ?? ONE_WEEK_MS,
      },
      declineRefuseSeconds: this.declineRefuseSeconds,
      acknowledgements: 'explicit',
      logger: this.log,
      ...(options.reconnect && { reconnect: options.reconnect }),
      handlers: {
        subscribed: (id) => this.serial(() => this.onSubscribed(id)),
        offers: (offers) => this.serial(() => this.onOffers(offers)),
        update: (status) => this.serial(() => this.onUpdate(status)),
        failure: () => this.requestPlan(),
        error: (error) => this.log.warn(error, `master error: ${error.message}`),
      },
    });
  }

  /** Loads the store, subscribes (resuming the stored framework id) and resolves with the framework id. */
  async start(): Promise<string> {
    if (this.started) throw new Error('the batch scheduler is already started');
    this.started = true;
    const state = await loadBatchState(this.store);
    for (const job of state.jobs) this.jobs.set(job.spec.id, job);
    for (const run of state.runs) {
      this.runs.set(run.run.id, run);
      this.records.loaded(run, state.taskChunkSizes.get(run.run.id));
      this.seq = Math.max(this.seq, run.seq + 1);
    }
    for (const job of this.jobs.values()) this.refreshExpiry(job.spec.id);
    this.storedFrameworkId = state.frameworkId;
    this.driverInstance = this.createDriver(state.frameworkId);
    this.log.info(
      { store: this.store.description, frameworkId: state.frameworkId, jobs: this.jobs.size, runs: this.runs.size },
      state.frameworkId ? 'resuming the batch framework' : 'starting the batch framework',
    );
    try {
      return await this.driver.start();
    } catch (error) {
      // The master removed the framework (failover timeout passed, or torn down): its tasks went
      // with it. Start over as a new framework; open attempts come back UNKNOWN and run again.
      if (!(error instanceof MasterRefusedError) || !state.frameworkId || !isRemovedFramework(error)) throw error;
      this.log.warn({ frameworkId: state.frameworkId }, `the master no longer knows framework ${state.frameworkId} (${error.message}); registering a new one`);
      this.driverInstance = this.createDriver(undefined);
      return await this.driver.start();
    }
  }

  /** Disconnects; the tasks keep running for the failover timeout (a restart resumes them). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconcileTimer);
    this.wakeTimer?.clear();
    await this.queue.catch(() => undefined);
    await this.flush().catch(() => undefined);
    await this.driverInstance?.stop();
    this.listeners.clear();
  }

  /** Re-evaluates schedules, timeouts and backoffs now (after moving a test clock). */
  tick(): Promise<void> {
    return this.serial(() => this.plan());
  }

  // -------------------------------------------------------------------------------------------
  // Serialisation and persistence

  private serial<T>(work: () => T | Promise<T>): Promise<T> {
    const next = this.queue.then(work);
    this.queue = next.catch((error: unknown) => this.log.error({ err: error }, `batch scheduler step failed: ${(error as Error).message}`));
    return next;
  }

  private requestPlan(): void {
    if (this.planRequested || this.closed) return;
    this.planRequested = true;
    // One turn first, so every update of a frame (it carries many) is in before the plan: each
    // plan walks every task of every active run, and a plan per update made big arrays quadratic.
    setImmediate(() => {
      void this.serial(() => {
        this.planRequested = false;
        this.planInBackground();
      });
    });
  }

  private markRun(stored: StoredRun): void {
    this.dirtyRuns.add(stored.run.id);
    this.changedRuns.add(stored.run.id);
  }

  /**
   * Resolves once everything changed before the call is in the store (and the updates it covers
   * acknowledged). Concurrent callers share writes: one commit carries every dirty run and job.
   */
  private flush(): Promise<void> {
    const done = new Promise<void>((resolve, reject) => this.flushWaiters.push({ resolve, reject }));
    this.flushSoon();
    return done;
  }

  /** Starts a flush if none is running, for callers that need not wait: no promise per update on the hot path. */
  private flushSoon(): void {
    if (!this.flushing) void this.flushLoop();
  }

  private async flushLoop(): Promise<void> {
    this.flushing = true;
    try {
      while (this.flushWaiters.length > 0 || this.dirtyRuns.size + this.dirtyJobs.size + this.deletedRuns.size + this.deletedJobs.size > 0 || this.pendingAcks.length > 0) {
        // One turn of the event loop first, so the rest of what already arrived (a frame carries
        // many updates) joins this commit instead of each burst costing two: a commit rewrites
        // every dirty run whole, so fewer of them is less CPU per task.
        await new Promise<void>((resolve) => setImmediate(resolve));
        const waiters = this.flushWaiters.splice(0);
        const acks = this.pendingAcks.splice(0);
        const runIds = [...this.dirtyRuns];
        const jobIds = [...this.dirtyJobs];
        const goneRuns = [...this.deletedRuns];
        const goneJobs = [...this.deletedJobs];
        const announce = [...this.changedRuns];
        this.dirtyRuns.clear();
        this.dirtyJobs.clear();
        this.deletedRuns.clear();
        this.deletedJobs.clear();
        this.changedRuns.clear();
        const writes: StoreWrite[] = [];
        const written: (() => void)[] = [];
        for (const id of runIds) {
          const stored = this.runs.get(id);
          if (!stored) continue;
          const { writes: forRun, committed } = this.records.writesFor(stored);
          writes.push(...forRun);
          written.push(committed);
        }
        for (const id of jobIds) {
          const job = this.jobs.get(id);
          if (job) writes.push(putJob(job));
        }
        for (const [id, tasks] of goneRuns) if (!this.runs.has(id)) writes.push(...this.records.deletesFor(id, tasks));
        for (const id of goneJobs) if (!this.jobs.has(id)) writes.push(deleteJob(id));
        try {
          if (writes.length > 0) await this.store.commit(writes);
        } catch (error) {
          // Keep them dirty for the next try; the unacknowledged updates come again from the agents.
          for (const id of runIds) this.dirtyRuns.add(id);
          for (const id of jobIds) this.dirtyJobs.add(id);
          for (const [id, tasks] of goneRuns) this.deletedRuns.set(id, tasks);
          for (const id of goneJobs) this.deletedJobs.add(id);
          for (const id of announce) this.changedRuns.add(id);
          const failure = new BatchError('UNAVAILABLE', `cannot write to the ${this.store.description}: ${(error as Error).message}`);
          this.log.error({ err: error }, failure.message);
          for (const waiter of waiters) waiter.reject(failure);
          if (waiters.length === 0) break; // nobody is waiting: try again on the next change, not in a hot loop
          continue;
        }
        for (const remember of written) remember();
        for (const status of acks) this.driverInstance?.acknowledge(status);
        // The connection writes them on the next turn: announce after that, so whoever hears that a
        // run ended and then asks the master finds its tasks' last updates acknowledged.
        if (acks.length > 0) await new Promise<void>((resolve) => setImmediate(resolve));
        for (const id of announce) {
          const stored = this.runs.get(id);
          if (stored) this.emit({ type: 'run', run: this.summaryOf(stored) });
        }
        for (const waiter of waiters) waiter.resolve();
      }
    } finally {
      this.flushing = false;
    }
  }

  private emit(event: BatchEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        this.log.warn({ err: error }, 'a batch event listener threw');
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Driver events

  private async onSubscribed(frameworkId: string): Promise<void> {
    if (this.storedFrameworkId !== frameworkId) {
      await this.store.put(keys.framework, { id: frameworkId });
      this.storedFrameworkId = frameworkId;
    }
    this.suppressed = undefined;
    const open: { taskId: string; agentId?: string }[] = [];
    for (const stored of this.runs.values()) {
      for (const task of stored.run.tasks) {
        const attempt = task.state === 'active' ? task.attempts.at(-1) : undefined;
        if (attempt && attempt.outcome === undefined) open.push({ taskId: attempt.taskId, ...(attempt.agentId !== undefined && { agentId: attempt.agentId }) });
      }
    }
    this.unreconciled = new Set(open.map((t) => t.taskId));
    clearTimeout(this.reconcileTimer);
    if (open.length > 0) {
      this.log.info({ tasks: open.length }, 'reconciling open attempts before launching anything');
      this.driver.reconcile(open);
      this.reconcileTimer = setTimeout(() => {
        if (this.unreconciled && this.unreconciled.size > 0) this.log.warn({ unanswered: this.unreconciled.size }, 'reconciliation timed out; carrying on');
        this.unreconciled = undefined;
        this.requestPlan();
      }, this.reconcileTimeoutMs);
      this.reconcileTimer.unref();
    } else {
      this.unreconciled = undefined;
    }
    await this.plan();
  }

  private onUpdate(status: TaskStatus): void {
    if (this.unreconciled?.delete(status.taskId) && this.unreconciled.size === 0) {
      this.unreconciled = undefined;
      clearTimeout(this.reconcileTimer);
      this.log.info('reconciliation complete');
    }
    const parsed = parseTaskId(status.taskId);
    const stored = parsed ? this.runs.get(parsed.runId) : undefined;
    if (!stored) {
      // Not ours any more (its run was deleted): make sure it does not keep running.
      if (!isTerminal(status.state) && status.state !== 'UNKNOWN') this.driver.kill(status.taskId, status.agentId !== undefined ? { agentId: status.agentId } : {});
      this.driver.acknowledge(status);
      return;
    }
    const before = stored.run;
    const after = applyRunEvent(before, {
      type: 'status',
      taskId: status.taskId,
      state: status.state,
      atMs: this.now(),
      ...(status.exitCode !== undefined && { exitCode: status.exitCode }),
      ...(status.agentId !== undefined && { agentId: status.agentId }),
      ...(status.message !== undefined && { message: status.message }),
    });
    if (after !== before) {
      stored.run = after;
      this.markRun(stored);
      const task = after.tasks.find((t) => t.index === parsed!.index);
      if (task) this.emit({ type: 'task', runId: after.id, jobId: after.jobId, task: this.taskView(task) });
      if (isRunDone(after)) this.runEnded(stored);
    }
    if (status.uuid !== undefined) this.pendingAcks.push(status);
    this.flushSoon();
    if (isTerminal(status.state) || status.state === 'UNKNOWN') this.requestPlan();
  }

  private async onOffers(offers: Offer[]): Promise<void> {
    for (const offer of offers) this.agents.set(offer.agentId, { hostname: offer.hostname, attributes: offer.attributes });
    if (this.unreconciled) {
      this.driver.decline(offers.map((o) => o.id), RECONCILING_REFUSE_SECONDS);
      return;
    }
    const now = this.now();
    const remaining = new Map(offers.map((offer) => [offer.id, offer]));
    const launches = new Map<string, { offer: Offer; tasks: TaskInfo[] }>();
    const launched: { stored: StoredRun; taskId: string }[] = [];
    for (const stored of this.launchOrder()) {
      if (remaining.size === 0) break;
      const step = stepRun(stored.run, now);
      if (step.launch.length === 0) continue;
      const placed = this.placementsOf(stored.run);
      // A 100,000-task array without a throttle asks for every task at once; build specs only for
      // as many as these offers could hold.
      const room = roomFor(stored.spec, [...remaining.values()]);
      const specs = step.launch.slice(0, room).map((request) => this.taskSpecFor(stored, request.index, request.attempt, request.taskId, placed));
      // Constraints such as UNIQUE depend on where the previous task went: place those one by one.
      const batches = stored.spec.constraints.length > 0 ? specs.map((spec) => [spec]) : [specs];
      for (const batch of batches) {
        const placement = binPack(batch, [...remaining.values()]);
        for (const { offer, tasks } of placement.launches) {
          const entry = launches.get(offer.id) ?? { offer: offers.find((o) => o.id === offer.id)!, tasks: [] };
          const used = tasks.reduce<Resources>((sum, task) => add(sum, task.resources), {});
          remaining.set(offer.id, { ...offer, resources: subtract(offer.resources, used) });
          for (const task of tasks) {
            entry.tasks.push(this.withContainer(stored.spec, task));
            stored.run = applyRunEvent(stored.run, { type: 'launched', taskId: task.taskId, agentId: offer.agentId, atMs: now });
            launched.push({ stored, taskId: task.taskId });
            placed.push({ hostname: offer.hostname, attributes: offer.attributes });
          }
          launches.set(offer.id, entry);
          this.markRun(stored);
        }
      }
    }
    if (launches.size === 0) return; // the driver declines them all with the usual filter
    try {
      await this.flush(); // write-ahead: the attempts are on record before any task exists
    } catch (error) {
      for (const { stored, taskId } of launched) {
        stored.run = applyRunEvent(stored.run, { type: 'status', taskId, state: 'DROPPED', atMs: this.now(), message: `not launched: ${(error as Error).message}` });
        this.markRun(stored);
      }
      return;
    }
    for (const { offer, tasks } of launches.values()) this.driver.launch(offer, tasks);
    this.log.debug({ tasks: launched.length, offers: launches.size }, 'launched');
    this.planInBackground();
  }

  /** Runs that may launch, by priority (higher first), then submission order. */
  private launchOrder(): StoredRun[] {
    const ready: StoredRun[] = [];
    for (const stored of this.runs.values()) {
      const { run } = stored;
      if (isRunDone(run) || run.cancelRequestedAtMs !== undefined) continue;
      if (run.state === 'queued' && this.waiting.has(run.id)) continue;
      ready.push(stored);
    }
    return ready.sort((a, b) => b.spec.priority - a.spec.priority || a.seq - b.seq);
  }

  /** Where a run's live attempts are, for constraints such as UNIQUE hostname. */
  private placementsOf(run: Run): PlacementTarget[] {
    const placed: PlacementTarget[] = [];
    for (const task of run.tasks) {
      const agentId = task.state === 'active' ? task.attempts.at(-1)?.agentId : undefined;
      const agent = agentId !== undefined ? this.agents.get(agentId) : undefined;
      if (agent) placed.push(agent);
    }
    return placed;
  }

  private taskSpecFor(stored: StoredRun, index: number, attempt: number, taskId: string, placed: readonly PlacementTarget[]): TaskSpec {
    const { spec, run } = stored;
    const environment: Record<string, string> = {
      ...spec.env,
      AGORA_JOB_ID: spec.id,
      AGORA_RUN_ID: run.id,
      AGORA_TASK_INDEX: String(index),
      AGORA_TASK_ATTEMPT: String(attempt),
      AGORA_TASK_COUNT: String(run.tasks.length),
    };
    const command: TaskInfo['command'] =
      spec.cmd !== undefined
        ? { value: spec.cmd, shell: true, environment }
        : { value: spec.args![0]!, shell: false, arguments: spec.args!.slice(1), environment };
    const resources: Resources = { cpus: spec.cpus, mem: spec.mem, ...(spec.disk > 0 && { disk: spec.disk }) };
    return {
      taskId,
      name: `${spec.id}[${index}]`,
      resources,
      command,
      killPolicy: { gracePeriodMs: Math.round(spec.killGracePeriodSeconds * 1000) },
      ...(Object.keys(spec.labels).length > 0 && { labels: { ...spec.labels } }),
      ...(spec.constraints.length > 0 && {
        constraint: (offer: Offer) => meetsConstraints(spec.constraints, { hostname: offer.hostname, attributes: offer.attributes }, placed),
      }),
    };
  }

  private withContainer(spec: JobSpec, task: TaskInfo): TaskInfo {
    if (!spec.container) return task;
    const { docker, volumes } = spec.container;
    return {
      ...task,
      container: {
        type: 'DOCKER',
        docker: { image: docker.image, network: docker.network, ...(docker.forcePull && { forcePull: true }) },
        ...(volumes.length > 0 && { volumes }),
      },
    };
  }

  // -------------------------------------------------------------------------------------------
  // Planning: schedules, dependencies, kills, suppress/revive, the next wake-up

  /** Steps every run and acts on it, then waits until what that changed is in the store (API calls and ticks: their callers see it durable). */
  private async plan(): Promise<void> {
    if (this.planNow()) await this.flush().catch(() => undefined);
  }

  /**
   * The same without waiting for the store: the flush loop commits the changes. For the hot paths
   * (after each task that ends, after each launch): waiting there would hold up the driver's next
   * event for a whole commit, so each commit would carry about one update and the store's commit
   * latency would cap the throughput. Nothing depends on these changes being durable first: acks
   * go out after the commit that holds their update, and launches after their write-ahead commit.
   */
  private planInBackground(): void {
    if (this.planNow()) this.flushSoon();
  }

  /** Returns whether it left changes to commit. */
  private planNow(): boolean {
    if (this.closed || !this.driverInstance) return false;
    const now = this.now();
    const wakes: number[] = [];
    this.fireSchedules(now, wakes);
    this.expireJobs(now, wakes);
    let launchable = 0;
    for (const stored of [...this.runs.values()]) {
      if (isRunDone(stored.run)) continue;
      if (stored.run.state === 'queued' && !this.dependenciesAllow(stored, now)) continue;
      const step = stepRun(stored.run, now);
      if (step.run !== stored.run) {
        stored.run = step.run;
        this.markRun(stored);
      }
      for (const kill of step.kill) {
        this.log.info({ taskId: kill.taskId, reason: kill.reason }, kill.reason === 'timeout' ? 'killing a task past its timeout' : 'killing a task of a cancelled run');
        this.killTask(kill.taskId, kill.agentId, stored.spec);
      }
      launchable += step.launch.length;
      if (step.wakeAtMs !== undefined) wakes.push(step.wakeAtMs);
    }
    this.offerDemand(launchable > 0 && this.unreconciled === undefined);
    this.armWake(wakes, now);
    return this.dirtyRuns.size + this.dirtyJobs.size + this.deletedRuns.size + this.deletedJobs.size > 0;
  }

  /** When the job is to be deleted: ttlSecondsAfterFinished after its last run ended, if all have. */
  private expiryOf(jobId: string): number | undefined {
    const spec = this.jobs.get(jobId)?.spec;
    if (spec?.ttlSecondsAfterFinished === undefined || spec.schedule) return undefined;
    const runs = this.runsOf(jobId);
    if (runs.length === 0 || runs.some((r) => !isRunDone(r.run))) return undefined;
    const finishedMs = Math.max(...runs.map((r) => r.run.finishedAtMs ?? r.run.createdAtMs));
    // Even with 0, a few seconds: whoever waits for the run (agora job run --wait) sees how it ended.
    return finishedMs + Math.max(spec.ttlSecondsAfterFinished, MIN_TTL_SECONDS) * 1000;
  }

  private refreshExpiry(jobId: string): void {
    const at = this.expiryOf(jobId);
    if (at === undefined) this.expiries.delete(jobId);
    else this.expiries.set(jobId, at);
  }

  /** Deletes the jobs past their ttlSecondsAfterFinished, with their runs; one others depend on stays. */
  private expireJobs(now: number, wakes: number[]): void {
    for (const [jobId, atMs] of this.expiries) {
      if (atMs > now) {
        wakes.push(atMs);
        continue;
      }
      if (this.runsOf(jobId).some((r) => this.dirtyRuns.has(r.run.id) || this.changedRuns.has(r.run.id))) {
        wakes.push(now + 100); // its runs' ends are not committed and announced yet
        continue;
      }
      this.expiries.delete(jobId);
      if (!this.jobs.has(jobId) || this.expiryOf(jobId) === undefined) continue;
      const dependents = this.dependentsOf(jobId);
      if (dependents.length > 0) {
        // Deleting it would leave their dependencies naming nothing; it goes once they let go of it.
        this.log.info({ jobId, dependents }, `job ${jobId} is past its ttlSecondsAfterFinished but kept: ${dependents.join(', ')} depend on it`);
        continue;
      }
      this.removeJob(jobId, now);
      this.emit({ type: 'job_changed', jobId, job: undefined });
      this.log.info({ jobId }, `job ${jobId} deleted: its ttlSecondsAfterFinished passed`);
    }
  }

  private dependentsOf(jobId: string): string[] {
    return [...this.jobs.values()].filter((job) => job.spec.dependencies.some((d) => d.job === jobId)).map((job) => job.spec.id);
  }

  private killTask(taskId: string, agentId: string | undefined, spec: JobSpec): void {
    try {
      this.driver.kill(taskId, { ...(agentId !== undefined && { agentId }), gracePeriodMs: Math.round(spec.killGracePeriodSeconds * 1000) });
    } catch (error) {
      this.log.debug({ err: error, taskId }, 'kill not sent (disconnected); it is asked again later');
    }
  }

  private offerDemand(wanted: boolean): void {
    if (this.driver.state !== 'subscribed') return;
    if (wanted && this.suppressed !== false) {
      this.driver.revive();
      this.suppressed = false;
    } else if (!wanted && this.suppressed !== true) {
      this.driver.suppress();
      this.suppressed = true;
    }
  }

  private armWake(wakes: number[], now: number): void {
    const at = wakes.reduce<number | undefined>((min, w) => (min === undefined || w < min ? w : min), undefined);
    if (at === this.wakeAtMs && this.wakeTimer) return;
    this.wakeTimer?.clear();
    this.wakeTimer = undefined;
    this.wakeAtMs = at;
    if (at === undefined || this.closed) return;
    this.wakeTimer = startTimer(Math.max(0, at - now) + 5, () => {
      this.wakeTimer = undefined;
      this.wakeAtMs = undefined;
      this.requestPlan();
    });
  }

  /** Fires due schedule slots: one run per slot, committed with the job's lastSlotMs. */
  private fireSchedules(now: number, wakes: number[]): void {
    for (const job of this.jobs.values()) {
      const schedule = job.spec.schedule;
      if (!schedule) continue;
      const activeRunIds = this.runsOf(job.spec.id)
        .filter((r) => !isRunDone(r.run))
        .map((r) => r.run.id);
      const decision = planSchedule({ schedule, lastSlotMs: job.lastSlotMs ?? job.createdAtMs, activeRunIds, nowMs: now });
      if (decision.nextSlotMs !== undefined) wakes.push(decision.nextSlotMs);
      if (decision.lastSlotMs === job.lastSlotMs && !decision.fire && decision.skipped.length === 0) continue;
      job.lastSlotMs = decision.lastSlotMs;
      if (decision.skipped.length > 0) {
        job.skipped = [...(job.skipped ?? []), ...decision.skipped].slice(-SKIPPED_KEPT);
        for (const skipped of decision.skipped) {
          this.log.warn({ jobId: job.spec.id, ...skipped }, `schedule slot(s) of ${job.spec.id} skipped: ${skipped.reason}`);
          this.emit({ type: 'schedule_skipped', jobId: job.spec.id, skipped });
        }
      }
      this.dirtyJobs.add(job.spec.id);
      if (decision.fire) {
        for (const runId of decision.fire.cancelRunIds) {
          const active = this.runs.get(runId);
          if (!active) continue;
          active.run = applyRunEvent(active.run, { type: 'cancel', atMs: now, reason: `replaced by the run for the slot at ${new Date(decision.fire.slotMs).toISOString()} (concurrencyPolicy REPLACE)` });
          this.markRun(active);
        }
        const runId = runIdForSlot(job.spec.id, decision.fire.slotMs);
        if (!this.runs.has(runId)) {
          const stored = this.newRun(job.spec, runId, now, 'schedule', decision.fire.slotMs);
          this.log.info({ jobId: job.spec.id, runId }, 'schedule fired');
          this.markRun(stored);
        }
      }
    }
  }

  /** Whether a queued run's dependencies let it start; ends it if they never can. */
  private dependenciesAllow(stored: StoredRun, now: number): boolean {
    const { spec, run } = stored;
    if (spec.dependencies.length === 0) return true;
    const verdict = evaluateDependencies(spec.dependencies, (jobId) => this.latestRunOf(jobId), stored.slotMs !== undefined ? { notBeforeMs: stored.slotMs } : {});
    if (verdict.verdict === 'ready') {
      if (this.waiting.delete(run.id)) this.changedRuns.add(run.id);
      return true;
    }
    if (verdict.verdict === 'waiting') {
      const reason = verdict.results.filter((r) => r.status !== 'satisfied').map((r) => r.reason).join('; ');
      if (this.waiting.get(run.id) !== reason) {
        this.waiting.set(run.id, reason);
        this.changedRuns.add(run.id);
        this.flushSoon();
      }
      return false;
    }
    const reason = verdict.results.filter((r) => r.status === 'unsatisfiable').map((r) => r.reason).join('; ');
    this.waiting.delete(run.id);
    stored.run = applyRunEvent(run, { type: 'abandon', atMs: now, reason: `dependency never satisfied: ${reason}` });
    this.markRun(stored);
    this.runEnded(stored);
    return false;
  }

  private latestRunOf(jobId: string): DependencyRunSummary | undefined | 'unknown-job' {
    if (!this.jobs.has(jobId)) return 'unknown-job';
    let latest: StoredRun | undefined;
    for (const stored of this.runsOf(jobId)) if (!latest || stored.run.createdAtMs > latest.run.createdAtMs || (stored.run.createdAtMs === latest.run.createdAtMs && stored.seq > latest.seq)) latest = stored;
    return latest ? { id: latest.run.id, state: latest.run.state, createdAtMs: latest.run.createdAtMs } : undefined;
  }

  private runsOf(jobId: string): StoredRun[] {
    return [...this.runs.values()].filter((r) => r.run.jobId === jobId);
  }

  /** A run ended: others may depend on it, old runs of its job may go, and the job may expire. */
  private runEnded(stored: StoredRun): void {
    const { run } = stored;
    this.log.info({ runId: run.id, state: run.state, reason: run.reason }, `run ${run.id} ${run.state}`);
    this.prune(run.jobId);
    this.refreshExpiry(run.jobId);
    this.requestPlan();
  }

  /**
   * Retention: ended runs beyond the count or age limits go (the latest of a job is always kept).
   * A deleted job's runs follow the same rule, so whoever follows a run sees how it ended.
   */
  private prune(jobId: string): void {
    const now = this.now();
    const ended = this.runsOf(jobId)
      .filter((r) => isRunDone(r.run))
      .sort((a, b) => b.run.createdAtMs - a.run.createdAtMs || b.seq - a.seq);
    ended.forEach((stored, position) => {
      const tooMany = position >= this.runsPerJob;
      const tooOld = position > 0 && now - (stored.run.finishedAtMs ?? stored.run.createdAtMs) > this.maxRunAgeMs;
      if (!tooMany && !tooOld) return;
      this.forgetRun(stored.run.id);
    });
  }

  private forgetRun(runId: string): void {
    const tasks = this.runs.get(runId)?.run.tasks.length ?? 0;
    this.runs.delete(runId);
    this.waiting.delete(runId);
    this.dirtyRuns.delete(runId);
    this.changedRuns.delete(runId);
    this.deletedRuns.set(runId, tasks);
  }

  private newRun(spec: JobSpec, runId: string, now: number, trigger: StoredRun['trigger'], slotMs?: number): StoredRun {
    const { indices, maxRunning } = taskPlan(spec);
    const run = createRun({ id: runId, jobId: spec.id, indices, maxRunning, retries: spec.retries, nowMs: now, ...(spec.timeoutSeconds !== undefined && { timeoutSeconds: spec.timeoutSeconds }) });
    const stored: StoredRun = { run, spec, trigger, seq: this.seq++, ...(slotMs !== undefined && { slotMs }) };
    this.runs.set(runId, stored);
    this.expiries.delete(spec.id);
    return stored;
  }

  // -------------------------------------------------------------------------------------------
  // BatchApi

  listJobs(): Promise<JobView[]> {
    return Promise.resolve([...this.jobs.values()].sort((a, b) => (a.spec.id < b.spec.id ? -1 : 1)).map((job) => this.jobView(job)));
  }

  getJob(jobId: string): Promise<JobView | undefined> {
    const job = this.jobs.get(jobId);
    return Promise.resolve(job && this.jobView(job));
  }

  putJob(spec: JobSpec): Promise<{ job: JobView; created: boolean }> {
    return this.serial(async () => {
      this.checkRole(spec);
      this.checkDependencies(spec);
      const now = this.now();
      const existing = this.jobs.get(spec.id);
      const job: StoredJob = existing
        ? { ...existing, spec, updatedAtMs: now, ...(spec.schedule && existing.lastSlotMs === undefined && { lastSlotMs: now }) }
        : { spec, createdAtMs: now, updatedAtMs: now, ...(spec.schedule && { lastSlotMs: now }) };
      this.jobs.set(spec.id, job);
      this.dirtyJobs.add(spec.id);
      this.refreshExpiry(spec.id);
      // Jobs it no longer depends on may be past their ttl, waiting only for it to let go.
      for (const dependency of existing?.spec.dependencies ?? []) this.refreshExpiry(dependency.job);
      await this.flush();
      const view = this.jobView(job);
      this.emit({ type: 'job_changed', jobId: spec.id, job: view });
      this.log.info({ jobId: spec.id }, existing ? 'job updated' : 'job created');
      await this.plan();
      return { job: view, created: !existing };
    });
  }

  private checkRole(spec: JobSpec): void {
    const role = this.options.role ?? '*';
    if (spec.role === '*' || spec.role === role) return;
    // One framework, one role (Mesos without MULTI_ROLE): say so rather than run it under another role's share.
    const message = `${spec.role} is not this batch framework's role (${role}); run a batch framework with --role ${spec.role} for it, or leave role out`;
    throw new BatchError('INVALID', `role: ${message}`, { problems: [{ field: 'role', message }] });
  }

  private checkDependencies(spec: JobSpec): void {
    spec.dependencies.forEach((dependency, i) => {
      if (!this.jobs.has(dependency.job)) {
        throw new BatchError('INVALID', `dependencies[${i}].job: there is no job ${dependency.job}; create it first`, { problems: [{ field: `dependencies[${i}].job`, message: `there is no job ${dependency.job}; create it first` }] });
      }
    });
    const graph = new Map([...this.jobs.values()].map((job) => [job.spec.id, job.spec.dependencies] as const));
    graph.set(spec.id, spec.dependencies);
    const cycle = findDependencyCycle(graph);
    if (cycle) {
      const message = `these dependencies would form a cycle, and every job in it would wait forever: ${cycle.join(' → ')}`;
      throw new BatchError('INVALID', `dependencies: ${message}`, { problems: [{ field: 'dependencies', message }] });
    }
  }

  deleteJob(jobId: string, options: { force?: boolean } = {}): Promise<void> {
    return this.serial(async () => {
      if (!this.jobs.has(jobId)) throw new BatchError('NOT_FOUND', `there is no job ${jobId}; \`agora job list\` shows the jobs`);
      const dependents = this.dependentsOf(jobId);
      if (dependents.length > 0) throw new BatchError('CONFLICT', `jobs ${dependents.join(', ')} depend on ${jobId}; change or delete them first`);
      const active = this.runsOf(jobId).filter((r) => !isRunDone(r.run));
      if (active.length > 0 && !options.force) {
        throw new BatchError('CONFLICT', `job ${jobId} has ${active.length} run(s) still going (${active.map((r) => r.run.id).join(', ')}); cancel them or delete with force`);
      }
      this.removeJob(jobId, this.now());
      await this.plan();
      await this.flush();
      this.emit({ type: 'job_changed', jobId, job: undefined });
      this.log.info({ jobId }, 'job deleted');
    });
  }

  /**
   * Deletes the job: its active runs are cancelled, its history goes. Runs this cancelled stay until
   * retention takes them, so whoever follows one sees how it ended.
   */
  private removeJob(jobId: string, now: number): void {
    const spec = this.jobs.get(jobId)?.spec;
    const runs = this.runsOf(jobId);
    for (const stored of runs) {
      if (isRunDone(stored.run)) {
        this.forgetRun(stored.run.id);
        continue;
      }
      stored.run = applyRunEvent(stored.run, { type: 'cancel', atMs: now, reason: `job ${jobId} was deleted` });
      this.markRun(stored);
    }
    this.jobs.delete(jobId);
    this.dirtyJobs.delete(jobId);
    this.deletedJobs.add(jobId);
    this.expiries.delete(jobId);
    // Jobs it depended on may be past their ttl, kept only while it needed them.
    for (const dependency of spec?.dependencies ?? []) this.refreshExpiry(dependency.job);
  }

  triggerRun(jobId: string): Promise<RunSummary> {
    return this.serial(async () => {
      const job = this.jobs.get(jobId);
      if (!job) throw new BatchError('NOT_FOUND', `there is no job ${jobId}; submit it first (\`agora job submit FILE\`)`);
      const now = this.now();
      const runId = `${jobId}-${stamp(now)}-${randomBytes(2).toString('hex')}`;
      const stored = this.newRun(job.spec, runId, now, 'api');
      this.markRun(stored);
      await this.flush();
      this.log.info({ jobId, runId, tasks: stored.run.tasks.length }, 'run triggered');
      await this.plan();
      return this.summaryOf(stored);
    });
  }

  listRuns(options: ListRunsOptions = {}): Promise<RunSummary[]> {
    const limit = options.limit ?? 100;
    const runs = [...this.runs.values()]
      .filter((r) => (options.jobId === undefined || r.run.jobId === options.jobId) && (!options.active || !isRunDone(r.run)))
      .sort((a, b) => b.run.createdAtMs - a.run.createdAtMs || b.seq - a.seq)
      .slice(0, limit);
    return Promise.resolve(runs.map((r) => this.summaryOf(r)));
  }

  getRun(runId: string): Promise<RunView | undefined> {
    const stored = this.runs.get(runId);
    return Promise.resolve(stored && { ...this.summaryOf(stored), taskList: stored.run.tasks.map((t) => this.taskView(t)) });
  }

  getTask(runId: string, index: number): Promise<RunTaskView | undefined> {
    const task = this.runs.get(runId)?.run.tasks.find((t) => t.index === index);
    return Promise.resolve(task && this.taskView(task));
  }

  cancelRun(runId: string): Promise<RunSummary> {
    return this.serial(async () => {
      const stored = this.runs.get(runId);
      if (!stored) throw new BatchError('NOT_FOUND', `there is no run ${runId}; \`agora job runs\` lists them`);
      if (isRunDone(stored.run)) throw new BatchError('CONFLICT', `run ${runId} already ended (${stored.run.state})`);
      stored.run = applyRunEvent(stored.run, { type: 'cancel', atMs: this.now(), reason: 'cancelled by request' });
      this.markRun(stored);
      if (isRunDone(stored.run)) this.runEnded(stored);
      await this.plan();
      await this.flush();
      this.log.info({ runId }, 'run cancelled');
      return this.summaryOf(stored);
    });
  }

  async taskLog(runId: string, index: number, request: TaskLogRequest = {}): Promise<TaskLogChunk> {
    const stored = this.runs.get(runId);
    if (!stored) throw new BatchError('NOT_FOUND', `there is no run ${runId}; \`agora job runs\` lists them`);
    const task = stored.run.tasks.find((t) => t.index === index);
    if (!task) throw new BatchError('NOT_FOUND', `run ${runId} has no task ${index}; its tasks are ${describeIndices(stored.run.tasks)}`);
    const attempt = request.attempt === undefined ? task.attempts.at(-1) : task.attempts.find((a) => a.attempt === request.attempt);
    if (!attempt) {
      throw new BatchError(
        'NOT_FOUND',
        request.attempt === undefined ? `task ${index} of run ${runId} has not been launched yet` : `task ${index} of run ${runId} has no attempt ${request.attempt} (it has ${task.attempts.length})`,
      );
    }
    const frameworkId = this.frameworkId;
    if (!frameworkId) throw new BatchError('UNAVAILABLE', 'the batch framework is not registered with the master yet; try again shortly');
    const file = request.file ?? 'stdout';
    try {
      const chunk = await readTaskFile(this.options.master, frameworkId, attempt.taskId, file, {
        ...(request.offset !== undefined && { offset: request.offset }),
        ...(request.length !== undefined && { length: Math.min(Math.max(1, request.length), MAX_FILE_READ_BYTES) }),
      });
      return { runId, index, attempt: attempt.attempt, taskId: attempt.taskId, file, offset: chunk.offset, data: chunk.data, size: chunk.size, ended: attempt.outcome !== undefined };
    } catch (error) {
      if (error instanceof TaskFileError) {
        // The master's own words, without its internal URL.
        throw new BatchError(error.status === 404 ? 'NOT_FOUND' : error.status === 400 ? 'INVALID' : 'UNAVAILABLE', `${file} of task ${index} (attempt ${attempt.attempt}) of run ${runId}: ${error.reason}`);
      }
      throw new BatchError('UNAVAILABLE', `cannot read ${file} of task ${index} of run ${runId}: ${(error as Error).message}`);
    }
  }

  subscribe(listener: (event: BatchEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // -------------------------------------------------------------------------------------------
  // Views

  private summaryOf(stored: StoredRun): RunSummary {
    const { run, spec } = stored;
    const waiting = this.waiting.get(run.id);
    return {
      id: run.id,
      jobId: run.jobId,
      state: run.state,
      trigger: stored.trigger,
      ...(stored.slotMs !== undefined && { slotMs: stored.slotMs }),
      priority: spec.priority,
      createdAtMs: run.createdAtMs,
      ...(run.startedAtMs !== undefined && { startedAtMs: run.startedAtMs }),
      ...(run.finishedAtMs !== undefined && { finishedAtMs: run.finishedAtMs }),
      ...(run.reason !== undefined && { reason: run.reason }),
      ...(waiting !== undefined && !isRunDone(run) && { waiting }),
      counts: runCounts(run),
      tasks: run.tasks.length,
    };
  }

  private taskView(task: RunTask): RunTaskView {
    return {
      index: task.index,
      state: task.state,
      attempts: task.attempts.map(({ kill: _kill, ...attempt }) => {
        const host = attempt.agentId !== undefined ? this.agents.get(attempt.agentId)?.hostname : undefined;
        return host !== undefined ? { ...attempt, host } : attempt;
      }),
    };
  }

  private jobView(job: StoredJob): JobView {
    const runs = this.runsOf(job.spec.id);
    const latest = runs.reduce<StoredRun | undefined>((best, r) => (!best || r.run.createdAtMs > best.run.createdAtMs || (r.run.createdAtMs === best.run.createdAtMs && r.seq > best.seq) ? r : best), undefined);
    const schedule = job.spec.schedule;
    const lastSlotMs = job.lastSlotMs ?? job.createdAtMs;
    const nextSlotMs = schedule && schedule.enabled ? nextSlotAfter(schedule, Math.max(lastSlotMs, this.now())) : undefined;
    return {
      spec: job.spec,
      createdAtMs: job.createdAtMs,
      updatedAtMs: job.updatedAtMs,
      ...(schedule && { schedule: { lastSlotMs, skipped: job.skipped ?? [], ...(nextSlotMs !== undefined && { nextSlotMs }) } }),
      ...(latest && { latestRun: this.summaryOf(latest) }),
      activeRuns: runs.filter((r) => !isRunDone(r.run)).length,
      ...(this.expiries.has(job.spec.id) && { expiresAtMs: this.expiries.get(job.spec.id)! }),
    };
  }
}

/** An upper bound on how many tasks of the spec the offers can hold, by cpus and mem. */
function roomFor(spec: Pick<JobSpec, 'cpus' | 'mem'>, offers: readonly Offer[]): number {
  let cpus = 0;
  let mem = 0;
  for (const offer of offers) {
    cpus += scalar(offer.resources, 'cpus');
    mem += scalar(offer.resources, 'mem');
  }
  return Math.floor(Math.min(cpus / spec.cpus, mem / spec.mem) + 1e-9);
}

function isRemovedFramework(error: MasterRefusedError): boolean {
  return error.code === ErrorCode.FRAMEWORK_REMOVED || error.code === ErrorCode.UNKNOWN_FRAMEWORK;
}

/** `20261123t030512` */
function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, '').toLowerCase();
}

function describeIndices(tasks: readonly RunTask[]): string {
  if (tasks.length === 0) return 'none';
  const first = tasks[0]!.index;
  const last = tasks.at(-1)!.index;
  return tasks.length === last - first + 1 ? `${first}-${last}` : `${tasks.length} indices from ${first} to ${last}`;
}
