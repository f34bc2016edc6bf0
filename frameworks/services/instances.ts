/**
 * An app's instances as the deployment planner sees them: a version, a lifecycle state and when it
 * started. The scheduler derives the state from task status updates with `instanceState`.
 */
import type { TaskState } from '../sdk/index.ts';

/**
 * staged      launched, not yet running
 * running     running; not (yet) passing its health check
 * healthy     passing its health check, or running and the app has none (Marathon counts those as healthy)
 * ready       healthy and passing its readiness check, or healthy and the app has none
 * killing     a kill was sent; it still holds its resources until its agent reports it gone
 * unreachable its agent stopped answering (since `unreachableSinceMs`)
 */
export const INSTANCE_STATES = ['staged', 'running', 'healthy', 'ready', 'killing', 'unreachable'] as const;
export type InstanceState = (typeof INSTANCE_STATES)[number];

export interface Instance {
  instanceId: string;
  /** The app version it runs. */
  version: string;
  state: InstanceState;
  startedAtMs: number;
  /** Set when state is `unreachable`. */
  unreachableSinceMs?: number;
}

export type KillSelection = 'YOUNGEST_FIRST' | 'OLDEST_FIRST';

/** Counts toward minimumHealthCapacity: it serves traffic. */
export function isServing(instance: Instance): boolean {
  return instance.state === 'healthy' || instance.state === 'ready';
}

export interface InstanceFacts {
  taskState: TaskState;
  /** The last health check result the agent reported; undefined before the first. */
  healthy: boolean | undefined;
  hasHealthCheck: boolean;
  /** The last readiness check result; undefined before the first. */
  ready: boolean | undefined;
  hasReadinessCheck: boolean;
}

/** The planner state of a live (non-terminal) task. Terminal tasks are not instances any more. */
export function instanceState(facts: InstanceFacts): InstanceState {
  switch (facts.taskState) {
    case 'STAGING':
    case 'STARTING':
      return 'staged';
    case 'KILLING':
      return 'killing';
    case 'UNREACHABLE':
    case 'UNKNOWN':
      return 'unreachable';
    default: {
      const healthy = facts.hasHealthCheck ? facts.healthy === true : true;
      if (!healthy) return 'running';
      return !facts.hasReadinessCheck || facts.ready === true ? 'ready' : 'healthy';
    }
  }
}

/**
 * Which instances to kill first: those serving least (unreachable, staged, running, healthy, then
 * ready), then by kill selection (Marathon's YOUNGEST_FIRST default keeps the instances that have
 * proven themselves), then by id so the order is deterministic.
 */
export function killOrder(instances: readonly Instance[], selection: KillSelection): Instance[] {
  const rank: Record<InstanceState, number> = { unreachable: 0, staged: 1, running: 2, healthy: 3, ready: 4, killing: -1 };
  return [...instances].sort(
    (a, b) =>
      rank[a.state] - rank[b.state] ||
      (selection === 'YOUNGEST_FIRST' ? b.startedAtMs - a.startedAtMs : a.startedAtMs - b.startedAtMs) ||
      (a.instanceId < b.instanceId ? -1 : a.instanceId > b.instanceId ? 1 : 0),
  );
}
