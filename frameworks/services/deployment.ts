/**
 * A deployment: one change to an app (create, update, scale, restart, revert) carried out by rolling
 * steps until it is done, or fails at its progress deadline. Marathon deployments can hang forever
 * waiting for a version that never gets healthy; ours fail after `progressDeadlineSeconds` without
 * progress and, with `autoRevert`, hand back a deployment to the previous version.
 *
 * Pure: the record is plain data the scheduler stores; `planDeployment` takes the time as input.
 */
import type { UpgradeStrategy } from './app-definition.ts';
import { isServing, type Instance, type KillSelection } from './instances.ts';
import { rollingStep } from './rolling-update.ts';

export type DeploymentState = 'running' | 'succeeded' | 'failed';

export interface Deployment {
  id: string;
  appId: string;
  /** The version being replaced and its instance count; undefined for a new app. */
  from?: { version: string; instances: number };
  to: { version: string; instances: number };
  state: DeploymentState;
  /** Why it failed, for people. */
  reason?: string;
  /** The id of the failed deployment this one reverts (a revert is never reverted itself). */
  revertOf?: string;
  startedAtMs: number;
  finishedAtMs?: number;
  /** The last time the deployment got closer to done. */
  lastProgressAtMs: number;
  /** The smallest distance to done seen so far (see `distanceToDone`). */
  bestDistance: number;
  /** Instances not of the target version when it started, to count how many were killed. */
  oldAtStart: number;
}

/** What `agora app deploy` shows while it waits. */
export interface DeploymentProgress {
  target: number;
  newStarted: number;
  newHealthy: number;
  newReady: number;
  oldRunning: number;
  oldKilled: number;
}

export interface StartDeploymentOptions {
  id: string;
  appId: string;
  from?: { version: string; instances: number };
  to: { version: string; instances: number };
  instances: readonly Instance[];
  nowMs: number;
  revertOf?: string;
}

export function startDeployment(options: StartDeploymentOptions): Deployment {
  const { id, appId, from, to, instances, nowMs, revertOf } = options;
  const deployment: Deployment = {
    id,
    appId,
    to,
    state: 'running',
    startedAtMs: nowMs,
    lastProgressAtMs: nowMs,
    bestDistance: Infinity,
    oldAtStart: instances.filter((i) => i.version !== to.version && i.state !== 'killing').length,
  };
  if (from) deployment.from = from;
  if (revertOf !== undefined) deployment.revertOf = revertOf;
  deployment.bestDistance = distanceToDone(deployment, instances);
  return deployment;
}

export function deploymentProgress(deployment: Deployment, instances: readonly Instance[]): DeploymentProgress {
  const fresh = instances.filter((i) => i.version === deployment.to.version && i.state !== 'killing');
  const oldRunning = instances.filter((i) => i.version !== deployment.to.version && i.state !== 'killing').length;
  return {
    target: deployment.to.instances,
    newStarted: fresh.length,
    newHealthy: fresh.filter(isServing).length,
    newReady: fresh.filter((i) => i.state === 'ready').length,
    oldRunning,
    oldKilled: Math.max(0, deployment.oldAtStart - oldRunning),
  };
}

/**
 * How far the instances are from the target: missing ready instances of the new version, plus
 * instances that must still go. Any decrease is progress, whatever kind of change this is.
 */
export function distanceToDone(deployment: Deployment, instances: readonly Instance[]): number {
  const p = deploymentProgress(deployment, instances);
  return Math.max(0, p.target - p.newReady) + Math.max(0, p.newStarted - p.target) + p.oldRunning;
}

export interface PlanDeploymentInput {
  deployment: Deployment;
  instances: readonly Instance[];
  /** The target version's strategy. */
  strategy: UpgradeStrategy;
  killSelection: KillSelection;
  inactiveAfterSeconds: number;
  /** Crash-loop backoff: no launch before this time. */
  launchNotBeforeMs?: number;
  nowMs: number;
}

export interface DeploymentPlan {
  /** The record to store (progress time, state). Store it before acting on the plan. */
  deployment: Deployment;
  launch: number;
  kill: string[];
  progress: DeploymentProgress;
  /** Plan again at this time if nothing else happens first (deadline, unreachable timeout, backoff). */
  wakeAtMs?: number;
  /** Present when the deployment just failed with autoRevert: start this deployment next. */
  revert?: Deployment;
}

export function planDeployment(input: PlanDeploymentInput): DeploymentPlan {
  const { instances, nowMs, strategy } = input;
  let deployment = input.deployment;
  const progress = deploymentProgress(deployment, instances);
  if (deployment.state !== 'running') return { deployment, launch: 0, kill: [], progress };

  const distance = distanceToDone(deployment, instances);
  if (distance < deployment.bestDistance) deployment = { ...deployment, bestDistance: distance, lastProgressAtMs: nowMs };

  const step = rollingStep({
    targetVersion: deployment.to.version,
    targetInstances: deployment.to.instances,
    instances,
    strategy,
    killSelection: input.killSelection,
    inactiveAfterSeconds: input.inactiveAfterSeconds,
    nowMs,
    ...(input.launchNotBeforeMs !== undefined && { launchNotBeforeMs: input.launchNotBeforeMs }),
  });
  if (step.done) {
    return { deployment: { ...deployment, state: 'succeeded', finishedAtMs: nowMs }, launch: 0, kill: [], progress };
  }

  const deadlineMs = deployment.lastProgressAtMs + strategy.progressDeadlineSeconds * 1000;
  if (nowMs >= deadlineMs) {
    const reason =
      `no progress for ${strategy.progressDeadlineSeconds} s (progressDeadlineSeconds): ` +
      `${progress.newReady} of ${progress.target} new instances ready, ${progress.newStarted} started, ${progress.oldRunning} old still running`;
    return failDeployment({ deployment, instances, nowMs, reason, revert: strategy.autoRevert, progress });
  }
  const plan: DeploymentPlan = { deployment, launch: step.launch, kill: step.kill, progress, wakeAtMs: Math.min(deadlineMs, step.wakeAtMs ?? Infinity) };
  return plan;
}

/**
 * Ends a running deployment as failed, stopping its steps where they are. With `revert` (auto
 * revert at the deadline, or an operator's cancel) and a version to go back to, also returns the
 * deployment that restores it; a revert is not reverted again.
 */
export function failDeployment(args: {
  deployment: Deployment;
  instances: readonly Instance[];
  nowMs: number;
  reason: string;
  revert: boolean;
  progress?: DeploymentProgress;
}): DeploymentPlan {
  const { deployment, instances, nowMs, reason } = args;
  const failed: Deployment = { ...deployment, state: 'failed', reason, finishedAtMs: nowMs };
  const plan: DeploymentPlan = { deployment: failed, launch: 0, kill: [], progress: args.progress ?? deploymentProgress(deployment, instances) };
  if (args.revert && deployment.from && deployment.revertOf === undefined) {
    plan.revert = startDeployment({
      id: `${deployment.id}-revert`,
      appId: deployment.appId,
      from: deployment.to,
      to: deployment.from,
      instances,
      nowMs,
      revertOf: deployment.id,
    });
  }
  return plan;
}
