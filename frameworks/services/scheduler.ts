/**
 * The services scheduler: the stateful shell that keeps apps running. It implements `ServicesApi`
 * on the SDK driver and the pure core (planner, placement, backoff), and nothing else knows its
 * insides. One rule drives it: after anything happens (a status update, an API change, an offer, a
 * timer) it plans every app again from the facts — desired state in the store, task states from the
 * master — and applies the answer: launch N, kill these. Planning is idempotent, so a duplicate
 * update or a restart cannot make it do anything twice.
 *
 * Hazards handled here, each with its Mesos/Marathon reference:
 *  - Launch nothing twice: an instance record is committed to the store BEFORE its task is launched;
 *    after a restart every record is reconciled explicitly and nothing is planned until the master
 *    has answered for each (docs/reconciliation.md). A record the master never heard of comes back
 *    UNKNOWN and is dropped.
 *  - No hoarding, no offer loops: offers not needed are declined with a long filter; the framework
 *    SUPPRESSes when nothing is pending and REVIVEs (which also clears those filters) when demand
 *    appears or resources it holds are freed.
 *  - PARTITION_AWARE: an instance on an unreachable agent stays an instance until
 *    `inactiveAfterSeconds`; then it is replaced and killed, and killed again if its agent returns.
 *  - Serialisation: driver handlers and API calls run one at a time through one queue, so a plan
 *    never sees half of another's changes.
 *  - Nothing acknowledged before it is durable: status updates are applied in batches, each batch
 *    written in one commit and only then acknowledged (an unacknowledged update comes again).
 */
import { randomBytes } from 'node:crypto';
import { pino, type Logger } from 'pino';
import {
  contains,
  ErrorCode,
  isTerminal,
  MasterRefusedError,
  SchedulerDriver,
  subtract,
  type Offer,
  type Resources,
  type Store,
  type StoreWrite,
  type TaskInfo,
  type TaskState,
  type TaskStatus,
} from '../sdk/index.ts';
import type { FrameworkSchedulerOptions } from '../sdk/framework-options.ts';
import { Reason } from '../../master/protocol/messages.ts';
import type { AppDefinition, AppId } from './app-definition.ts';
import { appIdSchema } from './app-definition.ts';
import { assignHostPorts, parseTaskId, taskInfoFor } from './app-task.ts';
import { NO_BACKOFF, recordFailure, recordHealthy, type LaunchBackoff } from './backoff.ts';
import { chooseOffer, instancesPerHost, type PlacementTarget } from './constraints.ts';
import { deploymentProgress, failDeployment, planDeployment, startDeployment, type Deployment } from './deployment.ts';
import { instanceState, type Instance } from './instances.ts';
import { AppDefinitionError, validateAppDefinition } from './parse-app-definition.ts';
import { ReadinessProbe } from './readiness-probe.ts';
import { rollingStep } from './rolling-update.ts';
import { ServicesError, type AppStatus, type AppVersion, type DeploymentView, type Endpoint, type ServiceTask, type ServicesApi, type ServicesEvent } from './service-api.ts';
import { appKey, asDefinitionInput, deleteInstance, keys, loadState, putApp, putDeployment, putInstance, putVersion, type StoredApp, type StoredInstance } from './services-store.ts';

/** The store holds the framework id, apps, versions, deployments and instance records. */
export interface ServicesSchedulerOptions extends FrameworkSchedulerOptions {
  /** @default 'services' */
  name?: string;
  /** @default 120 */
  declineRefuseSeconds?: number;
  /** The services HTTP API's URL, given to every task as AGORA_SERVICES_API. */
  apiUrl?: string;
}

/** An instance as the scheduler tracks it: its durable record plus what the master last said. */
interface TrackedInstance {
  record: StoredInstance;
  taskState: TaskState;
  healthy: boolean | undefined;
  ready: boolean | undefined;
  unreachableSinceMs?: number;
  probe?: ReadinessProbe;
}

/** Finished deployments kept for `getDeployment` (a CLI waiting on one must see how it ended). */
const FINISHED_DEPLOYMENTS_KEPT = 50;
const ORPHAN_KILL_GRACE_MS = 3000;
/** How soon writes of status updates that failed are tried again when no new update comes first. */
const UNWRITTEN_RETRY_MS = 1000;
/** The filter on offers declined because the store failed to take the records of their launches. */
const STORE_FAILURE_REFUSE_SECONDS = 1;
const ONE_WEEK_MS = 7 * 24 * 3600 * 1000;

export class ServicesScheduler implements ServicesApi {
  private readonly log: Logger;
  private readonly store: Store;
  private driverInstance: SchedulerDriver | undefined;
  private readonly declineRefuseSeconds: number;
  private readonly reconcileTimeoutMs: number;

  private readonly apps = new Map<AppId, StoredApp>();
  private readonly versionsOf = new Map<AppId, Map<string, AppVersion>>();
  private readonly deployments = new Map<string, Deployment>();
  /** Every tracked instance by task id, and the same per app (planning looks at one app at a time). */
  private readonly instances = new Map<string, TrackedInstance>();
  private readonly byApp = new Map<AppId, Map<string, TrackedInstance>>();
  private readonly backoffs = new Map<AppId, LaunchBackoff>();
  /** Why an app's deployment is not launching (dependencies), for people. */
  private readonly waiting = new Map<AppId, string>();
  /** What the last plan wants launched: app → version and count. */
  private needs = new Map<AppId, { version: string; count: number }>();
  private readonly lastEndpoints = new Map<AppId, string>();
  private readonly lastDeploymentViews = new Map<string, string>();
  private readonly listeners = new Set<(event: ServicesEvent) => void>();

  private queue: Promise<unknown> = Promise.resolve();
  /** Status updates received and not yet applied: applied together, in one store write. */
  private pendingUpdates: TaskStatus[] = [];
  /** Writes of applied updates whose commit failed, by key: retried with the next batch (the agents resend those updates). */
  private unwrittenUpdates = new Map<string, StoreWrite>();
  /** Instances those updates changed: their task events go out once the writes are in. */
  private unannounced = new Set<TrackedInstance>();
  private retryTimer: NodeJS.Timeout | undefined;
  /** Apps whose endpoints may have changed since the last check. */
  private readonly endpointsToCheck = new Set<AppId>();
  /** Task ids the master has not answered for since the last SUBSCRIBED; nothing is planned until empty. */
  private unreconciled: Set<string> | undefined = new Set();
  private reconcileTimer: NodeJS.Timeout | undefined;
  private wakeTimer: NodeJS.Timeout | undefined;
  private planRequested = false;
  /** undefined after (re)subscribing: the master's view is unknown, so the next plan says it explicitly. */
  private suppressed: boolean | undefined;
  private resourcesFreed = false;
  private closed = false;
  private currentApiUrl: string | undefined;
  private started = false;

  constructor(private readonly options: ServicesSchedulerOptions) {
    this.log = options.logger ?? pino({ name: 'agora-services', level: process.env.AGORA_LOG_LEVEL ?? 'info' }, pino.destination(2));
    this.store = options.store;
    this.declineRefuseSeconds = options.declineRefuseSeconds ?? 120;
    this.reconcileTimeoutMs = options.reconcileTimeoutMs ?? 5000;
    this.currentApiUrl = options.apiUrl;
  }

  private createDriver(frameworkId: string | undefined): SchedulerDriver {
    const options = this.options;
    return new SchedulerDriver({
      master: options.master,
      framework: {
        ...(frameworkId !== undefined && { id: frameworkId }),
        name: options.name ?? 'services',
        role: options.role ?? '*',
        failoverTimeoutMs: options.failoverTimeoutMs ?? ONE_WEEK_MS,
        capabilities: ['PARTITION_AWARE'],
      },
      declineRefuseSeconds: this.declineRefuseSeconds,
      logger: this.log,
      ...(options.reconnect && { reconnect: options.reconnect }),
      // Updates are applied in batches and acknowledged once their batch is in the store.
      acknowledgements: 'explicit',
      handlers: {
        subscribed: (id) => this.serial(() => this.onSubscribed(id)),
        offers: (offers) => this.serial(() => this.onOffers(offers)),
        update: (status) => this.queueUpdate(status),
        failure: () => this.requestPlan(),
        error: (error) => this.log.warn(error, `master error: ${error.message}`),
      },
    });
  }

  private get driver(): SchedulerDriver {
    if (!this.driverInstance) throw new Error('the services scheduler is not started');
    return this.driverInstance;
  }

  /** The services HTTP API's URL, for AGORA_SERVICES_API in tasks launched from now on (the API usually starts after the scheduler). */
  set apiUrl(url: string | undefined) {
    this.currentApiUrl = url;
  }

  get apiUrl(): string | undefined {
    return this.currentApiUrl;
  }

  get frameworkId(): string | undefined {
    return this.driverInstance?.frameworkId;
  }

  /** Loads the store, subscribes (resuming the stored framework id) and resolves with the framework id. */
  async start(): Promise<string> {
    if (this.started) throw new Error('the services scheduler is already started');
    this.started = true;
    const state = await loadState(this.store);
    for (const app of state.apps) this.apps.set(app.app.id, app);
    for (const deployment of state.deployments) this.deployments.set(deployment.id, deployment);
    for (const entry of await this.store.list('versions/')) {
      const version = entry.value as AppVersion;
      const app = validateAppDefinition(asDefinitionInput(version.app), `store key ${entry.key}`);
      this.versionMap(app.id).set(version.version, { ...version, app });
    }
    for (const record of state.instances) {
      this.track({ record, taskState: 'STAGING', healthy: undefined, ready: undefined });
    }
    this.driverInstance = this.createDriver(state.frameworkId);
    this.log.info(
      { store: this.store.description, frameworkId: state.frameworkId, apps: this.apps.size, instances: this.instances.size },
      state.frameworkId ? 'resuming the services framework' : 'starting the services framework',
    );
    let frameworkId: string;
    try {
      frameworkId = await this.driver.start();
    } catch (error) {
      // The master removed the framework (its failover timeout passed, or it was torn down): its
      // tasks are gone with it. Start over as a new framework; the instance records come back
      // UNKNOWN from reconciliation and the apps are launched again.
      const goneCodes: readonly string[] = [ErrorCode.FRAMEWORK_REMOVED, ErrorCode.UNKNOWN_FRAMEWORK];
      const removed = error instanceof MasterRefusedError && goneCodes.includes(error.code);
      if (!removed || state.frameworkId === undefined || this.closed) throw error;
      this.log.warn({ frameworkId: state.frameworkId, code: (error as MasterRefusedError).code }, 'the master no longer knows the stored framework; registering a new one');
      this.driverInstance = this.createDriver(undefined);
      frameworkId = await this.driver.start();
    }
    if (frameworkId !== state.frameworkId) await this.store.put(keys.framework, { id: frameworkId });
    return frameworkId;
  }

  /** Stops planning and disconnects; the tasks keep running for the failover timeout. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    if (this.reconcileTimer) clearTimeout(this.reconcileTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const instance of this.instances.values()) instance.probe?.stop();
    await this.driverInstance?.stop();
    await this.queue.catch(() => undefined);
  }

  // ---------------------------------------------------------------------------------------------
  // ServicesApi

  async listApps(): Promise<AppStatus[]> {
    return [...this.apps.keys()].sort().map((id) => this.appStatus(id)!);
  }

  async getApp(appId: string): Promise<AppStatus | undefined> {
    const id = this.parseAppId(appId);
    return id === undefined ? undefined : this.appStatus(id);
  }

  putApp(input: AppDefinition, options: { force?: boolean } = {}): Promise<DeploymentView> {
    return this.serial(async () => {
      const app = this.validate(input);
      const current = this.apps.get(app.id);
      const stopped = this.stopRunningDeployment(app.id, options.force, 'superseded by a new app definition');
      const nowMs = Date.now();
      const sameConfig = current !== undefined && !current.deleting && sameConfiguration(current.app, app);
      // A change of `instances` alone scales without restarting anything (Marathon keeps the version's config).
      const version = sameConfig ? current.version : this.newVersion(app.id, nowMs);
      return this.deploy(app, version, { nowMs, stopped, isNewVersion: !sameConfig });
    });
  }

  deleteApp(appId: string, options: { force?: boolean } = {}): Promise<DeploymentView> {
    return this.serial(async () => {
      const current = this.requireApp(appId);
      const stopped = this.stopRunningDeployment(current.app.id, options.force, 'superseded by a delete');
      const nowMs = Date.now();
      const deployment = this.newDeployment(current.app.id, current, { version: current.version, instances: 0 }, nowMs);
      const stored: StoredApp = { ...current, deleting: true };
      await this.store.commit([putApp(stored), putDeployment(deployment), ...stopped.map(putDeployment)]);
      this.apps.set(stored.app.id, stored);
      this.recordDeployments([...stopped, deployment]);
      this.requestPlan();
      return this.view(deployment);
    });
  }

  scale(appId: string, instances: number, options: { force?: boolean } = {}): Promise<DeploymentView> {
    if (!Number.isSafeInteger(instances) || instances < 0) {
      return Promise.reject(new ServicesError('INVALID', `instances must be a whole number, 0 or more; got ${String(instances)}`, [{ field: 'instances', message: 'must be a whole number, 0 or more' }]));
    }
    return this.serial(async () => {
      const current = this.requireApp(appId);
      const stopped = this.stopRunningDeployment(current.app.id, options.force, `superseded by a scale to ${instances}`);
      return this.deploy({ ...current.app, instances }, current.version, { nowMs: Date.now(), stopped, isNewVersion: false });
    });
  }

  restart(appId: string, options: { force?: boolean } = {}): Promise<DeploymentView> {
    return this.serial(async () => {
      const current = this.requireApp(appId);
      const stopped = this.stopRunningDeployment(current.app.id, options.force, 'superseded by a restart');
      const nowMs = Date.now();
      return this.deploy(current.app, this.newVersion(current.app.id, nowMs), { nowMs, stopped, isNewVersion: true });
    });
  }

  rollback(appId: string, toVersion?: string, options: { force?: boolean } = {}): Promise<DeploymentView> {
    return this.serial(async () => {
      const current = this.requireApp(appId);
      const versions = [...(this.versionOf(current.app.id)?.values() ?? [])].sort((a, b) => a.createdAtMs - b.createdAtMs);
      let target: AppVersion | undefined;
      if (toVersion !== undefined) {
        target = versions.find((v) => v.version === toVersion);
        if (!target) throw new ServicesError('NOT_FOUND', `app ${current.app.id} has no version ${toVersion}; known: ${versions.map((v) => v.version).join(', ')}`);
      } else {
        target = versions.filter((v) => v.version !== current.version && v.createdAtMs <= (this.versionOf(current.app.id)?.get(current.version)?.createdAtMs ?? Infinity)).at(-1);
        if (!target) throw new ServicesError('NOT_FOUND', `app ${current.app.id} has no version before ${current.version} to roll back to`);
      }
      const stopped = this.stopRunningDeployment(current.app.id, options.force, `superseded by a rollback to ${target.version}`);
      return this.deploy({ ...target.app, instances: current.app.instances }, target.version, { nowMs: Date.now(), stopped, isNewVersion: false });
    });
  }

  async versions(appId: string): Promise<AppVersion[]> {
    const current = this.requireApp(appId);
    return [...(this.versionOf(current.app.id)?.values() ?? [])].sort((a, b) => a.createdAtMs - b.createdAtMs);
  }

  async listDeployments(): Promise<DeploymentView[]> {
    return [...this.deployments.values()].sort((a, b) => a.startedAtMs - b.startedAtMs).map((d) => this.view(d));
  }

  async getDeployment(deploymentId: string): Promise<DeploymentView | undefined> {
    const deployment = this.deployments.get(deploymentId);
    return deployment && this.view(deployment);
  }

  cancelDeployment(deploymentId: string, options: { force?: boolean } = {}): Promise<void> {
    return this.serial(async () => {
      const deployment = this.deployments.get(deploymentId);
      if (!deployment) throw new ServicesError('NOT_FOUND', `no deployment ${deploymentId}`);
      if (deployment.state !== 'running') throw new ServicesError('CONFLICT', `deployment ${deploymentId} already ${deployment.state}`);
      const nowMs = Date.now();
      const reason = options.force ? 'cancelled (forced: stopped where it was)' : 'cancelled: reverting to the version before';
      const plan = failDeployment({ deployment, instances: this.plannerInstances(deployment.appId), nowMs, reason, revert: !options.force });
      await this.finishFailed(plan.deployment, plan.revert);
      this.requestPlan();
    });
  }

  async tasks(appId?: string): Promise<ServiceTask[]> {
    const id = appId === undefined ? undefined : this.parseAppId(appId);
    if (appId !== undefined && id === undefined) return [];
    const tracked = id === undefined ? [...this.instances.values()] : [...(this.byApp.get(id)?.values() ?? [])];
    return tracked.map((t) => this.serviceTask(t));
  }

  async endpoints(appId: string): Promise<Endpoint[]> {
    const current = this.requireApp(appId);
    return this.endpointsOf(current.app.id);
  }

  subscribe(listener: (event: ServicesEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---------------------------------------------------------------------------------------------
  // Changes → deployments

  private validate(input: AppDefinition): AppDefinition {
    let app: AppDefinition;
    try {
      app = validateAppDefinition(asDefinitionInput(input));
    } catch (error) {
      if (error instanceof AppDefinitionError) throw new ServicesError('INVALID', error.message, error.problems);
      throw error;
    }
    const role = this.options.role ?? '*';
    if (app.role !== '*' && app.role !== role) {
      // One framework, one role (Mesos without MULTI_ROLE): say so rather than run it under another role's share.
      const message = `${app.role} is not this services framework's role (${role}); run a services framework with --role ${app.role} for it, or leave role out`;
      throw new ServicesError('INVALID', `invalid app definition:\n  role: ${message}`, [{ field: 'role', message }]);
    }
    if (app.servicePort !== undefined) {
      const holder = [...this.apps.values()].find((a) => a.app.id !== app.id && !a.deleting && a.app.servicePort === app.servicePort);
      if (holder) {
        throw new ServicesError('INVALID', `invalid app definition:\n  servicePort: ${app.servicePort} is already the service port of ${holder.app.id}`, [
          { field: 'servicePort', message: `${app.servicePort} is already the service port of ${holder.app.id}` },
        ]);
      }
    }
    const cycle = this.dependencyCycle(app);
    if (cycle) {
      throw new ServicesError('INVALID', `invalid app definition:\n  dependencies: would make a cycle: ${cycle.join(' → ')}`, [
        { field: 'dependencies', message: `would make a cycle: ${cycle.join(' → ')}` },
      ]);
    }
    return app;
  }

  private dependencyCycle(app: AppDefinition): AppId[] | undefined {
    const dependenciesOf = (id: AppId): readonly AppId[] => (id === app.id ? app.dependencies : (this.apps.get(id)?.app.dependencies ?? []));
    const walk = (id: AppId, path: AppId[]): AppId[] | undefined => {
      for (const next of dependenciesOf(id)) {
        if (next === app.id) return [...path, next];
        if (path.includes(next)) continue;
        const found = walk(next, [...path, next]);
        if (found) return found;
      }
      return undefined;
    };
    return walk(app.id, [app.id]);
  }

  /** Ends the app's running deployment (without revert) when forced; otherwise a CONFLICT. */
  private stopRunningDeployment(appId: AppId, force: boolean | undefined, reason: string): Deployment[] {
    const running = this.runningDeployment(appId);
    if (!running) return [];
    if (!force) {
      throw new ServicesError('CONFLICT', `app ${appId} has a deployment in progress (${running.id}); wait for it, cancel it, or pass force`, { deploymentId: running.id });
    }
    return [failDeployment({ deployment: running, instances: this.plannerInstances(appId), nowMs: Date.now(), reason, revert: false }).deployment];
  }

  private async deploy(app: AppDefinition, version: string, how: { nowMs: number; stopped: Deployment[]; isNewVersion: boolean }): Promise<DeploymentView> {
    const { nowMs, stopped } = how;
    const current = this.apps.get(app.id);
    const existing = this.versionOf(app.id)?.get(version);
    const versionRecord: AppVersion = { version, createdAtMs: existing?.createdAtMs ?? nowMs, app };
    const deployment = this.newDeployment(app.id, current?.deleting ? undefined : current, { version, instances: app.instances }, nowMs);
    const stored: StoredApp = { app, version };
    await this.store.commit([putApp(stored), putVersion(versionRecord), putDeployment(deployment), ...stopped.map(putDeployment)]);
    this.apps.set(app.id, stored);
    this.versionMap(app.id).set(version, versionRecord);
    if (how.isNewVersion) this.backoffs.delete(app.id); // a new version starts with a clean slate (Marathon resets the delay)
    this.emit({ type: 'app_changed', appId: app.id, version });
    this.recordDeployments([...stopped, deployment]);
    this.requestPlan();
    return this.view(deployment);
  }

  private newDeployment(appId: AppId, current: StoredApp | undefined, to: { version: string; instances: number }, nowMs: number): Deployment {
    const id = `${appKey(appId)}-${nowMs.toString(36)}-${randomBytes(3).toString('hex')}`;
    return startDeployment({
      id,
      appId,
      to,
      instances: this.plannerInstances(appId),
      nowMs,
      ...(current && { from: { version: current.version, instances: current.app.instances } }),
    });
  }

  /** Versions are ISO timestamps (Marathon's), unique per app. */
  private newVersion(appId: AppId, nowMs: number): string {
    const taken = this.versionOf(appId);
    let ms = nowMs;
    while (taken?.has(new Date(ms).toISOString())) ms++;
    return new Date(ms).toISOString();
  }

  private recordDeployments(changed: Deployment[]): void {
    for (const deployment of changed) {
      this.deployments.set(deployment.id, deployment);
      this.emitDeployment(deployment);
    }
  }

  /** A `deployment` event, unless its view (progress included) is the one last sent. */
  private emitDeployment(deployment: Deployment): void {
    const view = this.view(deployment);
    // Bookkeeping fields alone (a waiting deployment's deadline moving along) are no news.
    const text = JSON.stringify({ ...view, lastProgressAtMs: 0, bestDistance: 0 });
    if (this.lastDeploymentViews.get(deployment.id) === text) return;
    if (deployment.state === 'running') this.lastDeploymentViews.set(deployment.id, text);
    else this.lastDeploymentViews.delete(deployment.id);
    this.emit({ type: 'deployment', deployment: view });
  }

  /** Writes a failed deployment and, with a revert, the app back at the old version and the revert deployment. */
  private async finishFailed(failed: Deployment, revert: Deployment | undefined): Promise<void> {
    const writes: StoreWrite[] = [putDeployment(failed), ...this.pruneWrites()];
    let restored: StoredApp | undefined;
    if (revert) {
      const current = this.apps.get(failed.appId);
      const old = this.versionOf(failed.appId)?.get(revert.to.version);
      if (current && old) {
        restored = { app: { ...old.app, instances: revert.to.instances }, version: old.version };
        writes.push(putApp(restored), putDeployment(revert));
      } else {
        revert = undefined;
      }
    }
    await this.store.commit(writes);
    this.log.warn({ deploymentId: failed.id, appId: failed.appId, reason: failed.reason, revert: revert?.id }, `deployment ${failed.id} failed: ${failed.reason}`);
    if (restored) {
      this.apps.set(restored.app.id, restored);
      this.emit({ type: 'app_changed', appId: restored.app.id, version: restored.version });
    }
    this.recordDeployments(revert ? [failed, revert] : [failed]);
  }

  /** Deletes the oldest finished deployments beyond FINISHED_DEPLOYMENTS_KEPT. */
  private pruneWrites(): StoreWrite[] {
    const finished = [...this.deployments.values()].filter((d) => d.state !== 'running').sort((a, b) => (a.finishedAtMs ?? 0) - (b.finishedAtMs ?? 0));
    const excess = finished.slice(0, Math.max(0, finished.length - FINISHED_DEPLOYMENTS_KEPT + 1));
    for (const d of excess) this.deployments.delete(d.id);
    return excess.map((d) => ({ op: 'delete', key: keys.deployment(d.id) }));
  }

  // ---------------------------------------------------------------------------------------------
  // Planning

  /** Plans soon (batched: many updates in a burst cost one plan). */
  private requestPlan(): void {
    if (this.planRequested || this.closed) return;
    this.planRequested = true;
    setImmediate(() => {
      this.planRequested = false;
      if (!this.closed) void this.serial(() => this.planAll()).catch((error: unknown) => this.log.error({ err: error }, 'planning failed'));
    });
  }

  private async planAll(): Promise<void> {
    if (this.closed || this.unreconciled !== undefined) return;
    const nowMs = Date.now();
    const needs = new Map<AppId, { version: string; count: number }>();
    const kills: { instance: TrackedInstance; app: AppDefinition | undefined }[] = [];
    let wakeAtMs = Infinity;

    for (const stored of [...this.apps.values()]) {
      const appId = stored.app.id;
      const instances = this.plannerInstances(appId);
      const backoff = this.backoffs.get(appId);
      const notBefore = backoff && backoff.launchNotBeforeMs > nowMs ? { launchNotBeforeMs: backoff.launchNotBeforeMs } : {};
      let running = this.runningDeployment(appId);
      let launch = 0;
      let kill: string[] = [];
      let version = stored.version;
      if (running) {
        const target = this.definition(appId, running.to.version) ?? stored.app;
        const wait = running.to.instances > 0 ? this.dependencyWait(target) : undefined;
        if (wait !== undefined) {
          // Waiting on another app is not this deployment's fault: its deadline does not run meanwhile.
          running = { ...running, lastProgressAtMs: nowMs };
          this.deployments.set(running.id, running);
          this.waiting.set(appId, wait);
        } else {
          this.waiting.delete(appId);
        }
        const plan = planDeployment({
          deployment: running,
          instances,
          strategy: target.upgradeStrategy,
          killSelection: target.killSelection,
          inactiveAfterSeconds: target.unreachableStrategy.inactiveAfterSeconds,
          nowMs,
          ...notBefore,
        });
        if (plan.deployment.state === 'succeeded') {
          this.waiting.delete(appId);
          await this.finishSucceeded(plan.deployment);
        } else if (plan.deployment.state === 'failed') {
          this.waiting.delete(appId);
          await this.finishFailed(plan.deployment, plan.revert);
          this.requestPlan(); // the revert starts on the next pass
          continue;
        } else {
          if (JSON.stringify(plan.deployment) !== JSON.stringify(running)) {
            await this.store.commit([putDeployment(plan.deployment)]);
            this.deployments.set(plan.deployment.id, plan.deployment);
          }
          // Progress (instances started, healthy, killed) changes without the record changing.
          this.emitDeployment(plan.deployment);
          launch = wait === undefined ? plan.launch : 0;
          kill = wait === undefined ? plan.kill : [];
          version = running.to.version;
          if (plan.wakeAtMs !== undefined) wakeAtMs = Math.min(wakeAtMs, plan.wakeAtMs);
        }
      }
      if (!this.runningDeployment(appId) && this.apps.has(appId)) {
        // Self-healing: keep `instances` of the app alive; instances of an older version left by a
        // forced stop count as the current one (Marathon leaves them until the next deployment).
        const current = this.apps.get(appId)!;
        const step = rollingStep({
          targetVersion: current.version,
          targetInstances: current.app.instances,
          instances: instances.map((i) => ({ ...i, version: current.version })),
          strategy: current.app.upgradeStrategy,
          killSelection: current.app.killSelection,
          inactiveAfterSeconds: current.app.unreachableStrategy.inactiveAfterSeconds,
          nowMs,
          ...notBefore,
        });
        launch = step.launch;
        kill = step.kill;
        version = current.version;
        if (step.wakeAtMs !== undefined) wakeAtMs = Math.min(wakeAtMs, step.wakeAtMs);
      }
      if (launch > 0) needs.set(appId, { version, count: launch });
      for (const instanceId of kill) {
        const instance = this.instances.get(this.taskIdOf(appId, instanceId));
        if (instance) kills.push({ instance, app: this.apps.get(appId)?.app });
      }
    }

    // Tasks of apps that no longer exist.
    for (const [appId, ofApp] of this.byApp) {
      if (this.apps.has(appId)) continue;
      for (const instance of ofApp.values()) if (!instance.record.killRequested) kills.push({ instance, app: undefined });
    }
    await this.kill(kills);

    const grew = [...needs].some(([appId, need]) => need.count > (this.needs.get(appId)?.count ?? 0));
    this.needs = needs;
    const demand = needs.size > 0;
    if (demand && (this.suppressed !== false || grew || this.resourcesFreed)) {
      this.call(() => this.driver.revive());
      this.suppressed = false;
    } else if (!demand && this.suppressed !== true) {
      this.call(() => this.driver.suppress());
      this.suppressed = true;
    }
    this.resourcesFreed = false;

    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    if (Number.isFinite(wakeAtMs)) {
      this.wakeTimer = setTimeout(() => this.requestPlan(), Math.max(0, wakeAtMs - Date.now()) + 5);
      this.wakeTimer.unref();
    }
  }

  private async finishSucceeded(deployment: Deployment): Promise<void> {
    const stored = this.apps.get(deployment.appId);
    const writes: StoreWrite[] = [putDeployment(deployment), ...this.pruneWrites()];
    const removing = stored?.deleting === true;
    if (removing) {
      writes.push({ op: 'delete', key: keys.app(deployment.appId) });
      for (const version of this.versionOf(deployment.appId)?.keys() ?? []) writes.push({ op: 'delete', key: keys.version(deployment.appId, version) });
    }
    await this.store.commit(writes);
    this.log.info({ deploymentId: deployment.id, appId: deployment.appId }, `deployment ${deployment.id} succeeded`);
    if (removing) {
      this.apps.delete(deployment.appId);
      this.versionsOf.delete(deployment.appId);
      this.backoffs.delete(deployment.appId);
      this.emit({ type: 'app_changed', appId: deployment.appId, version: undefined });
    }
    this.recordDeployments([deployment]);
    this.checkEndpoints(deployment.appId);
    this.requestPlan(); // apps that depend on this one may go now
  }

  /** Why `app` may not launch yet: a dependency that is missing, or not all healthy and ready. */
  private dependencyWait(app: AppDefinition): string | undefined {
    for (const dependencyId of app.dependencies) {
      const dependency = this.apps.get(dependencyId);
      if (!dependency || dependency.deleting) return `waiting for dependency ${dependencyId}: it does not exist`;
      const ready = this.plannerInstances(dependencyId).filter((i) => i.state === 'ready' && i.version === dependency.version).length;
      if (ready < dependency.app.instances || this.runningDeployment(dependencyId)) {
        return `waiting for dependency ${dependencyId}: ${ready} of ${dependency.app.instances} instances healthy and ready${this.runningDeployment(dependencyId) ? ', deployment in progress' : ''}`;
      }
    }
    return undefined;
  }

  private async kill(kills: { instance: TrackedInstance; app: AppDefinition | undefined }[]): Promise<void> {
    const fresh = kills.filter((k) => !k.instance.record.killRequested);
    if (fresh.length > 0) {
      for (const { instance } of fresh) instance.record = { ...instance.record, killRequested: true };
      await this.store.commit(fresh.map(({ instance }) => putInstance(instance.record)));
    }
    for (const { instance, app } of kills) {
      instance.probe?.stop();
      this.sendKill(instance, app);
      this.emit({ type: 'task', task: this.serviceTask(instance) });
    }
    for (const { instance } of kills) this.checkEndpointsSoon(instance.record.appId);
  }

  private sendKill(instance: TrackedInstance, app: AppDefinition | undefined): void {
    const gracePeriodMs = app ? Math.round(app.killGracePeriodSeconds * 1000) : ORPHAN_KILL_GRACE_MS;
    this.log.info({ taskId: instance.record.taskId, agentId: instance.record.agentId }, 'killing');
    this.call(() => this.driver.kill(instance.record.taskId, { agentId: instance.record.agentId, gracePeriodMs }));
  }

  // ---------------------------------------------------------------------------------------------
  // Driver events

  private async onSubscribed(frameworkId: string): Promise<void> {
    this.log.info({ frameworkId }, 'subscribed');
    this.suppressed = undefined;
    // Ask explicitly about every instance we know of: the master answers each, UNKNOWN for a task
    // it never received (launched by a scheduler that died first), so no record is left guessing.
    this.unreconciled = new Set(this.instances.keys());
    const tasks = [...this.instances.values()].map((t) => ({ taskId: t.record.taskId, agentId: t.record.agentId }));
    if (tasks.length > 0) this.call(() => this.driver.reconcile(tasks));
    if (this.reconcileTimer) clearTimeout(this.reconcileTimer);
    this.reconcileTimer = setTimeout(() => {
      if (this.unreconciled && this.unreconciled.size > 0) {
        this.log.warn({ tasks: [...this.unreconciled] }, 'reconciliation incomplete; planning anyway');
      }
      this.unreconciled = undefined;
      this.requestPlan();
    }, this.reconcileTimeoutMs);
    this.reconcileTimer.unref();
    this.maybeReconciled();
  }

  private maybeReconciled(): void {
    if (this.unreconciled && this.unreconciled.size === 0) {
      this.unreconciled = undefined;
      if (this.reconcileTimer) clearTimeout(this.reconcileTimer);
      this.log.info({ instances: this.instances.size }, 'reconciled');
      // Kills sent while disconnected were lost: send them again.
      for (const instance of this.instances.values()) {
        if (instance.record.killRequested) this.sendKill(instance, this.apps.get(instance.record.appId)?.app);
      }
      this.requestPlan();
    }
  }

  /**
   * Group commit for status updates. Applying one update is cheap, but planning every app and
   * writing the store after each of them costs O(instances) per update: a thousand kills meant a
   * thousand plans and a thousand synced writes. Updates that arrive together (a frame carries
   * many) are applied together, written in one commit, then acknowledged and announced; then one
   * plan. An update is acknowledged only once what it changed is durable, as before.
   */
  private queueUpdate(status: TaskStatus): void {
    this.pendingUpdates.push(status);
    if (this.pendingUpdates.length > 1 || this.closed) return;
    // One turn first, so the rest of what already arrived joins this batch.
    setImmediate(() => this.runApplyUpdates());
  }

  private runApplyUpdates(): void {
    void this.serial(() => this.applyUpdates()).catch((error: unknown) => this.log.error({ err: error }, `status updates not written (tried again shortly; they stay unacknowledged until then): ${(error as Error).message}`));
  }

  private async applyUpdates(): Promise<void> {
    const batch = this.pendingUpdates.splice(0);
    if (this.closed || (batch.length === 0 && this.unwrittenUpdates.size === 0)) return;
    const nowMs = Date.now();
    const writes = new Map(this.unwrittenUpdates);
    const changed = new Set(this.unannounced);
    try {
      for (const status of batch) {
        const instance = this.applyUpdate(status, nowMs, writes);
        if (instance) changed.add(instance);
      }
      if (writes.size > 0) await this.store.commit([...writes.values()]);
    } catch (error) {
      // The updates stay unacknowledged and come again, but by then the instances they ended are
      // no longer tracked: their writes and announcements are kept for the next batch, and a retry
      // is due even if no update comes (reconciliation answers are never resent).
      this.unwrittenUpdates = writes;
      this.unannounced = changed;
      if (!this.retryTimer) {
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.runApplyUpdates();
        }, UNWRITTEN_RETRY_MS);
        this.retryTimer.unref();
      }
      // What ended has ended, written or not: it must leave the endpoints (traffic) at once.
      this.afterUpdates(changed);
      throw error;
    }
    this.unwrittenUpdates.clear();
    this.unannounced.clear();
    for (const status of batch) this.call(() => this.driver.acknowledge(status));
    for (const instance of changed) this.emit({ type: 'task', task: this.serviceTask(instance) });
    this.afterUpdates(changed);
  }

  private afterUpdates(changed: ReadonlySet<TrackedInstance>): void {
    for (const instance of changed) this.checkEndpointsSoon(instance.record.appId);
    if (this.unreconciled) this.maybeReconciled();
    else this.requestPlan();
  }

  /** Applies one update to the tracked instance it is about; returns that instance (undefined if none). */
  private applyUpdate(status: TaskStatus, nowMs: number, writes: Map<string, StoreWrite>): TrackedInstance | undefined {
    this.unreconciled?.delete(status.taskId);
    const instance = this.instances.get(status.taskId);
    if (!instance) {
      if (!isTerminal(status.state) && status.state !== 'UNKNOWN' && parseTaskId(status.taskId)) {
        // Not ours any more (its record is gone): an instance replaced while its agent was away, say.
        this.log.info({ taskId: status.taskId, state: status.state }, 'killing a task with no instance record');
        this.call(() => this.driver.kill(status.taskId, { ...(status.agentId !== undefined && { agentId: status.agentId }), gracePeriodMs: ORPHAN_KILL_GRACE_MS }));
      }
      return undefined;
    }
    const { appId } = instance.record;
    const app = this.apps.get(appId)?.app;
    // UNKNOWN: the master has no such task (never launched, or long forgotten). Nothing runs; drop it.
    if (isTerminal(status.state) || status.state === 'UNKNOWN') {
      this.untrack(instance);
      instance.probe?.stop();
      const write = deleteInstance(instance.record);
      writes.set(write.key, write);
      instance.taskState = status.state;
      const unexpected = !instance.record.killRequested && status.state !== 'UNKNOWN';
      if (unexpected && app) {
        const backoff = recordFailure(this.backoffs.get(appId) ?? NO_BACKOFF, app.backoff, nowMs);
        this.backoffs.set(appId, backoff);
        this.log.warn(
          { taskId: status.taskId, state: status.state, reason: status.reason, message: status.message, nextLaunchInMs: backoff.launchNotBeforeMs - nowMs },
          `instance ${status.taskId} ended ${status.state}${status.reason === Reason.TASK_HEALTH_CHECK_FAILED ? ' (health check failed)' : ''}`,
        );
      }
      this.resourcesFreed = true;
      const running = instance.record.killRequested ? this.runningDeployment(appId) : undefined;
      if (running) {
        // A kill the deployment asked for has completed: that is progress, though distanceToDone
        // stopped counting the instance when the kill was sent (a slow SIGTERM must not look stuck).
        this.deployments.set(running.id, { ...running, lastProgressAtMs: nowMs });
      }
    } else {
      instance.taskState = status.state;
      if (status.healthy !== undefined) instance.healthy = status.healthy;
      if (status.state === 'UNREACHABLE') instance.unreachableSinceMs ??= nowMs;
      else delete instance.unreachableSinceMs;
      if (instance.record.killRequested && status.state !== 'KILLING' && status.state !== 'UNREACHABLE') {
        // Given up on (e.g. replaced while its agent was away) and still running: it must not serve next to its replacement.
        this.sendKill(instance, app);
      }
      const plannerState = this.stateOf(instance);
      if (app && (plannerState === 'healthy' || plannerState === 'ready')) {
        this.backoffs.set(appId, recordHealthy(this.backoffs.get(appId) ?? NO_BACKOFF, nowMs));
      }
      this.maybeProbeReadiness(instance);
    }
    return instance;
  }

  private async onOffers(offers: Offer[]): Promise<void> {
    if (this.unreconciled !== undefined) {
      // Until the master has answered for every instance, a launch could duplicate one.
      this.call(() => this.driver.decline(offers.map((o) => o.id), 1));
      return;
    }
    await this.planAll();
    const left = new Map(offers.map((offer) => [offer.id, { offer, resources: offer.resources as Resources }]));
    const launches = new Map<string, TaskInfo[]>();
    const records: StoredInstance[] = [];
    const nowMs = Date.now();

    for (const [appId, need] of this.needs) {
      const base = this.definition(appId, need.version);
      const stored = this.apps.get(appId);
      if (!base || !stored) continue;
      const app: AppDefinition = { ...base, instances: stored.app.instances };
      const placed: PlacementTarget[] = this.liveInstances(appId).map((t) => ({ hostname: t.record.hostname, attributes: t.record.attributes }));
      const perHost = instancesPerHost(placed);
      const demand: Resources = { cpus: app.cpus, mem: app.mem, ...(app.disk > 0 && { disk: app.disk }) };
      const fits = (resources: Resources) => contains(resources, demand) && assignHostPorts(app, resources) !== undefined;
      // Offers that can take one more instance; only the one just placed on changes, so only it is looked at again.
      let candidates = [...left.values()].filter(({ resources }) => fits(resources)).map((c) => ({ ...c, hostname: c.offer.hostname, attributes: c.offer.attributes }));
      let launched = 0;
      while (launched < need.count) {
        const chosen = chooseOffer(app.constraints, candidates, placed, perHost);
        if (!chosen) break;
        const ports = assignHostPorts(app, chosen.resources)!;
        const instanceId = `${nowMs.toString(36)}-${randomBytes(3).toString('hex')}`;
        const task = taskInfoFor(app, instanceId, ports, { version: need.version });
        task.command.environment = { ...task.command.environment, ...this.discoveryEnvironment(app, instanceId, chosen.offer.hostname) };
        chosen.resources = subtract(chosen.resources, task.resources);
        left.set(chosen.offer.id, { offer: chosen.offer, resources: chosen.resources });
        const onOffer = launches.get(chosen.offer.id);
        if (onOffer) onOffer.push(task);
        else launches.set(chosen.offer.id, [task]);
        records.push({
          instanceId,
          appId,
          taskId: task.taskId,
          version: need.version,
          agentId: chosen.offer.agentId,
          hostname: chosen.offer.hostname,
          attributes: { ...chosen.offer.attributes },
          ports,
          startedAtMs: nowMs,
        });
        placed.push({ hostname: chosen.offer.hostname, attributes: chosen.offer.attributes });
        perHost.set(chosen.offer.hostname, (perHost.get(chosen.offer.hostname) ?? 0) + 1);
        if (!fits(chosen.resources)) candidates = candidates.filter((c) => c !== chosen);
        launched++;
      }
      if (launched < need.count) this.log.debug({ appId, wanted: need.count, launched }, 'offers could not take every instance');
    }

    if (records.length > 0) {
      // Write-ahead: the records are durable before any task exists (see the module comment).
      try {
        await this.store.commit(records.map(putInstance));
      } catch (error) {
        // Nothing launches; the offers go back with a short filter (not the long one for offers we
        // do not need), so the launches are tried again soon after the store recovers.
        this.call(() => this.driver.decline(offers.map((o) => o.id), STORE_FAILURE_REFUSE_SECONDS));
        throw error;
      }
      for (const record of records) {
        this.track({ record, taskState: 'STAGING', healthy: undefined, ready: undefined });
      }
    }
    for (const [offerId, tasks] of launches) {
      const offer = left.get(offerId)!.offer;
      this.log.info({ agentId: offer.agentId, tasks: tasks.map((t) => t.taskId) }, 'launching');
      this.call(() => this.driver.launch(offer, tasks));
    }
    for (const record of records) this.emit({ type: 'task', task: this.serviceTask(this.instances.get(record.taskId)!) });
    const unused = offers.filter((o) => !launches.has(o.id)).map((o) => o.id);
    if (unused.length > 0) this.call(() => this.driver.decline(unused, this.declineRefuseSeconds));
    if (records.length > 0) this.requestPlan();
  }

  /**
   * Variables that let a task find the rest: its own identity, the services API, and the
   * endpoints of each dependency as they were at launch (dependencies are healthy and ready by then).
   */
  private discoveryEnvironment(app: AppDefinition, instanceId: string, hostname: string): Record<string, string> {
    const env: Record<string, string> = { AGORA_INSTANCE_ID: instanceId, AGORA_HOST: hostname };
    if (this.currentApiUrl !== undefined) env.AGORA_SERVICES_API = this.currentApiUrl;
    for (const dependencyId of app.dependencies) {
      const endpoints = this.endpointsOf(dependencyId);
      env[`AGORA_ENDPOINTS_${appKey(dependencyId).toUpperCase().replace(/[^A-Z0-9]/g, '_')}`] = endpoints.map((e) => `${e.host}:${e.port}`).join(',');
    }
    return env;
  }

  // ---------------------------------------------------------------------------------------------
  // Instances

  private liveInstances(appId: AppId): TrackedInstance[] {
    return [...(this.byApp.get(appId)?.values() ?? [])].filter((t) => !this.isAbandoned(t));
  }

  private track(t: TrackedInstance): void {
    this.instances.set(t.record.taskId, t);
    let ofApp = this.byApp.get(t.record.appId);
    if (!ofApp) this.byApp.set(t.record.appId, (ofApp = new Map()));
    ofApp.set(t.record.taskId, t);
  }

  private untrack(t: TrackedInstance): void {
    this.instances.delete(t.record.taskId);
    const ofApp = this.byApp.get(t.record.appId);
    ofApp?.delete(t.record.taskId);
    if (ofApp?.size === 0) this.byApp.delete(t.record.appId);
  }

  /** Given up on while unreachable: its resources went with its agent, so it neither counts nor takes room. */
  private isAbandoned(t: TrackedInstance): boolean {
    return t.record.killRequested === true && (t.taskState === 'UNREACHABLE' || t.taskState === 'UNKNOWN');
  }

  /**
   * The app's live instances as the planner sees them. Healthy but not yet ready is not in the
   * endpoints, so for planning it must not count as serving either (otherwise a rollout could kill
   * an old instance for a new one that takes no traffic yet); `asReported` keeps it healthy, for
   * the progress people read ("healthy 1/3 · ready 0/3").
   */
  private plannerInstances(appId: AppId, asReported = false): Instance[] {
    return this.liveInstances(appId).map((t) => {
      const state = this.stateOf(t);
      const instance: Instance = { instanceId: t.record.instanceId, version: t.record.version, state: state === 'healthy' && !asReported ? 'running' : state, startedAtMs: t.record.startedAtMs };
      if (t.unreachableSinceMs !== undefined) instance.unreachableSinceMs = t.unreachableSinceMs;
      return instance;
    });
  }

  private stateOf(t: TrackedInstance): Instance['state'] {
    if (t.record.killRequested) return 'killing';
    const app = this.definition(t.record.appId, t.record.version);
    return instanceState({
      taskState: t.taskState,
      healthy: t.healthy,
      hasHealthCheck: (app?.healthChecks.length ?? 0) > 0,
      ready: t.ready,
      hasReadinessCheck: app?.readinessCheck !== undefined,
    });
  }

  private maybeProbeReadiness(t: TrackedInstance): void {
    const app = this.definition(t.record.appId, t.record.version);
    const check = app?.readinessCheck;
    if (!app || !check || t.probe || t.ready || this.stateOf(t) !== 'healthy') return;
    const url = ReadinessProbe.urlFor(app, check, t.record.hostname, t.record.ports);
    if (!url) return;
    t.probe = new ReadinessProbe(url, check, () => {
      t.ready = true;
      if (!this.instances.has(t.record.taskId)) return;
      this.emit({ type: 'task', task: this.serviceTask(t) });
      this.checkEndpointsSoon(t.record.appId);
      this.requestPlan();
    });
    t.probe.start();
  }

  private serviceTask(t: TrackedInstance): ServiceTask {
    const state = this.stateOf(t);
    return {
      taskId: t.record.taskId,
      instanceId: t.record.instanceId,
      appId: t.record.appId,
      version: t.record.version,
      state: t.taskState,
      healthy: t.healthy,
      ready: state === 'ready' ? true : state === 'healthy' ? false : t.ready,
      agentId: t.record.agentId,
      host: t.record.hostname,
      ports: [...t.record.ports],
      startedAtMs: t.record.startedAtMs,
    };
  }

  private endpointsOf(appId: AppId): Endpoint[] {
    return this.liveInstances(appId)
      .filter((t) => t.taskState === 'RUNNING' && this.stateOf(t) === 'ready' && t.record.ports.length > 0)
      .sort((a, b) => (a.record.taskId < b.record.taskId ? -1 : 1))
      .map((t) => ({ taskId: t.record.taskId, host: t.record.hostname, port: t.record.ports[0]!, ports: [...t.record.ports] }));
  }

  /** Checks the app's endpoints on the next turn: a burst of changes costs one check (each is O(instances)). */
  private checkEndpointsSoon(appId: AppId): void {
    if (this.endpointsToCheck.size === 0) {
      setImmediate(() => {
        const apps = [...this.endpointsToCheck];
        this.endpointsToCheck.clear();
        if (!this.closed) for (const id of apps) this.checkEndpoints(id);
      });
    }
    this.endpointsToCheck.add(appId);
  }

  private checkEndpoints(appId: AppId): void {
    const endpoints = this.apps.has(appId) ? this.endpointsOf(appId) : [];
    const text = JSON.stringify(endpoints);
    if ((this.lastEndpoints.get(appId) ?? '[]') === text) return;
    this.lastEndpoints.set(appId, text);
    this.emit({ type: 'endpoints', appId, endpoints });
  }

  // ---------------------------------------------------------------------------------------------
  // Small helpers

  private appStatus(appId: AppId): AppStatus | undefined {
    const stored = this.apps.get(appId);
    if (!stored) return undefined;
    const running = this.runningDeployment(appId);
    return {
      app: stored.app,
      version: stored.version,
      tasks: [...(this.byApp.get(appId)?.values() ?? [])].map((t) => this.serviceTask(t)),
      deployment: running && this.view(running),
    };
  }

  private view(deployment: Deployment): DeploymentView {
    const view: DeploymentView = { ...deployment, progress: deploymentProgress(deployment, this.plannerInstances(deployment.appId, true)) };
    const waiting = deployment.state === 'running' ? this.waiting.get(deployment.appId) : undefined;
    if (waiting !== undefined) view.waiting = waiting;
    return view;
  }

  private runningDeployment(appId: AppId): Deployment | undefined {
    for (const deployment of this.deployments.values()) if (deployment.appId === appId && deployment.state === 'running') return deployment;
    return undefined;
  }

  private definition(appId: AppId, version: string): AppDefinition | undefined {
    const stored = this.apps.get(appId);
    if (stored && stored.version === version) return stored.app;
    return this.versionOf(appId)?.get(version)?.app;
  }

  private versionOf(appId: AppId): Map<string, AppVersion> | undefined {
    return this.versionsOf.get(appId);
  }

  private versionMap(appId: AppId): Map<string, AppVersion> {
    let map = this.versionsOf.get(appId);
    if (!map) this.versionsOf.set(appId, (map = new Map()));
    return map;
  }

  private taskIdOf(appId: AppId, instanceId: string): string {
    return `${appKey(appId)}.${instanceId}`;
  }

  private parseAppId(appId: string): AppId | undefined {
    const parsed = appIdSchema.safeParse(appId);
    return parsed.success ? parsed.data : undefined;
  }

  private requireApp(appId: string): StoredApp {
    const id = this.parseAppId(appId);
    const stored = id === undefined ? undefined : this.apps.get(id);
    if (!stored) throw new ServicesError('NOT_FOUND', `no app ${appId}`);
    return stored;
  }

  /** Runs `fn` after every earlier queued operation has settled. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** A driver call that may find the connection down: the next (re)subscribe plans and reconciles again. */
  private call(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.log.debug({ err: error }, `driver call skipped: ${(error as Error).message}`);
    }
  }

  private emit(event: ServicesEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        this.log.warn({ err: error }, 'a services event listener threw');
      }
    }
  }
}

/** Same app but for `instances`: a scale, which keeps the running instances. */
function sameConfiguration(a: AppDefinition, b: AppDefinition): boolean {
  return JSON.stringify({ ...a, instances: 0 }) === JSON.stringify({ ...b, instances: 0 });
}
