/**
 * One step of bringing an app's instances to a target (version, count), with Marathon's upgrade
 * semantics (TaskReplaceActor). Pure: the caller feeds the current instances and the time, applies
 * the answer (launch N, kill these), and calls again on every status change or at `wakeAtMs`.
 *
 *   minHealthy = ceil(instances × minimumHealthCapacity)   serving instances never drop below this
 *   maxTotal   = floor(instances × (1 + maximumOverCapacity)) never more instances than this
 *
 * Old instances that do not serve are killed at once; serving ones only while the serving count
 * stays at or above minHealthy. New ones start in whatever room maxTotal leaves (an instance being
 * killed still takes room: its resources are held until it is gone). Scale-up, scale-down and
 * self-healing are the same computation with no old version present.
 */
import type { UpgradeStrategy } from './app-definition.ts';
import { isServing, killOrder, type Instance, type KillSelection } from './instances.ts';

export interface RollingInput {
  targetVersion: string;
  targetInstances: number;
  instances: readonly Instance[];
  strategy: Pick<UpgradeStrategy, 'minimumHealthCapacity' | 'maximumOverCapacity'>;
  killSelection: KillSelection;
  /** An unreachable instance is given up on (killed and replaced) after this long. */
  inactiveAfterSeconds: number;
  /** Crash-loop backoff: no launch before this time. */
  launchNotBeforeMs?: number;
  nowMs: number;
}

export interface RollingStep {
  /** How many new instances of the target version to launch now. */
  launch: number;
  /** Instance ids to kill now. */
  kill: string[];
  /** The target is reached: exactly targetInstances of the target version, all ready, nothing else left. */
  done: boolean;
  /** Plan again at this time even if nothing changes (an unreachable timeout, the backoff ending). */
  wakeAtMs?: number;
}

export function minimumHealthy(instances: number, minimumHealthCapacity: number): number {
  return Math.ceil(instances * minimumHealthCapacity - 1e-9);
}

export function maximumTotal(instances: number, maximumOverCapacity: number): number {
  return Math.floor(instances * (1 + maximumOverCapacity) + 1e-9);
}

export function rollingStep(input: RollingInput): RollingStep {
  const { targetVersion, targetInstances: n, nowMs } = input;
  const minHealthy = minimumHealthy(n, input.strategy.minimumHealthCapacity);
  const maxTotal = maximumTotal(n, input.strategy.maximumOverCapacity);
  const inactiveAfterMs = input.inactiveAfterSeconds * 1000;
  const wake: number[] = [];

  const kill: Instance[] = [];
  let killing = 0;
  const oldLive: Instance[] = [];
  const newLive: Instance[] = [];
  for (const instance of input.instances) {
    if (instance.state === 'killing') {
      killing++;
    } else if (instance.state === 'unreachable' && nowMs - (instance.unreachableSinceMs ?? nowMs) >= inactiveAfterMs) {
      // Inactive: replace it, and kill it so it stops if its agent comes back (Marathon's unreachableStrategy).
      kill.push(instance);
    } else {
      if (instance.state === 'unreachable') wake.push((instance.unreachableSinceMs ?? nowMs) + inactiveAfterMs);
      (instance.version === targetVersion ? newLive : oldLive).push(instance);
    }
  }

  // Too many of the target version (scale-down): kill the excess.
  const excessNew = killOrder(newLive, input.killSelection).slice(0, Math.max(0, newLive.length - n));
  kill.push(...excessNew);
  const keptNew = newLive.filter((i) => !excessNew.includes(i));

  // Old instances: those not serving go at once; serving ones while enough others serve.
  let serving = keptNew.filter(isServing).length + oldLive.filter(isServing).length;
  const oldKills: Instance[] = [];
  for (const old of killOrder(oldLive, input.killSelection)) {
    if (!isServing(old)) oldKills.push(old);
    else if (serving - 1 >= minHealthy) {
      oldKills.push(old);
      serving--;
    }
  }
  const oldLeft = oldLive.length - oldKills.length;

  // Launch into the room the ceiling leaves; what is killed now still occupies it until gone.
  const occupied = oldLive.length + keptNew.length + killing + excessNew.length;
  let launch = Math.max(0, Math.min(n - keptNew.length, maxTotal - occupied));
  if (launch > 0 && input.launchNotBeforeMs !== undefined && nowMs < input.launchNotBeforeMs) {
    wake.push(input.launchNotBeforeMs);
    launch = 0;
  }

  // Marathon's escape hatch: when minHealthy leaves no room to start a new instance before an old
  // one goes (e.g. minimumHealthCapacity 1 with maximumOverCapacity 0), kill one old instance once
  // nothing else is in flight — the only way a rolling update can move.
  const inFlight = killing > 0 || keptNew.some((i) => i.state !== 'ready') || kill.length > 0 || oldKills.length > 0;
  if (launch === 0 && oldLeft > 0 && !inFlight && keptNew.length < n && maxTotal - occupied <= 0) {
    const [first] = killOrder(
      oldLive.filter((i) => !oldKills.includes(i)),
      input.killSelection,
    );
    oldKills.push(first!);
  }
  kill.push(...oldKills);

  const done = oldLive.length === 0 && killing === 0 && kill.length === 0 && keptNew.length === n && keptNew.every((i) => i.state === 'ready');
  const step: RollingStep = { launch, kill: kill.map((i) => i.instanceId), done };
  if (wake.length > 0) step.wakeAtMs = Math.min(...wake);
  return step;
}
