import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { upgradeStrategySchema, type UpgradeStrategy } from '../../frameworks/services/app-definition.ts';
import { deploymentProgress, failDeployment, planDeployment, startDeployment, type Deployment, type DeploymentPlan } from '../../frameworks/services/deployment.ts';
import { instanceState, isServing, killOrder, type Instance, type InstanceState, type KillSelection } from '../../frameworks/services/instances.ts';
import { maximumTotal, minimumHealthy, rollingStep } from '../../frameworks/services/rolling-update.ts';

const strategy = (s: Partial<UpgradeStrategy> = {}): UpgradeStrategy => upgradeStrategySchema.parse(s);

/** A little cluster the tests drive: applies plans, moves instances through their states. */
class World {
  instances: Instance[] = [];
  private next = 0;
  constructor(public nowMs = 1_000_000) {}
  add(version: string, state: InstanceState, count = 1, startedAtMs = this.nowMs): Instance[] {
    // Instances added together start a millisecond apart, in id order, so kill selections are visible.
    const made = Array.from({ length: count }, (_, i) => ({ instanceId: `i${++this.next}`, version, state, startedAtMs: startedAtMs + i }));
    this.instances.push(...made);
    return made;
  }
  apply(plan: { launch: number; kill: string[] }, version: string): void {
    for (const instance of this.instances) if (plan.kill.includes(instance.instanceId)) instance.state = 'killing';
    this.add(version, 'staged', plan.launch);
  }
  /** Killed instances go away; staged ones of `version` reach `to`. */
  settle(version: string, to: InstanceState = 'ready'): void {
    this.instances = this.instances.filter((i) => i.state !== 'killing');
    for (const i of this.instances) if (i.version === version && (i.state === 'staged' || i.state === 'running')) i.state = to;
  }
  count(version: string, pred: (i: Instance) => boolean = () => true): number {
    return this.instances.filter((i) => i.version === version && pred(i)).length;
  }
  serving(): number {
    return this.instances.filter(isServing).length;
  }
  tick(ms: number): void {
    this.nowMs += ms;
  }
}

function step(world: World, target: string, n: number, s: UpgradeStrategy, killSelection: KillSelection = 'YOUNGEST_FIRST') {
  return rollingStep({ targetVersion: target, targetInstances: n, instances: world.instances, strategy: s, killSelection, inactiveAfterSeconds: 0, nowMs: world.nowMs });
}

describe('capacity bounds', () => {
  it('rounds minimum healthy up and the ceiling down, as Marathon does', () => {
    expect(minimumHealthy(4, 0.5)).toBe(2);
    expect(minimumHealthy(3, 0.5)).toBe(2);
    expect(minimumHealthy(10, 0.3)).toBe(3);
    expect(maximumTotal(4, 0.2)).toBe(4);
    expect(maximumTotal(10, 0.2)).toBe(12);
    expect(maximumTotal(3, 1)).toBe(6);
  });
});

describe('rollingStep: scaling', () => {
  it('scales up from nothing to the target in one step', () => {
    const world = new World();
    expect(step(world, 'v1', 5, strategy())).toEqual({ launch: 5, kill: [], done: false });
    expect(step(world, 'v1', 5, strategy({ maximumOverCapacity: 0 }))).toMatchObject({ launch: 5 });
  });

  it('scales up an existing app by the missing count and is done once all are ready', () => {
    const world = new World();
    world.add('v1', 'ready', 2);
    expect(step(world, 'v1', 2, strategy())).toEqual({ launch: 0, kill: [], done: true });
    const plan = step(world, 'v1', 5, strategy());
    expect(plan).toMatchObject({ launch: 3, kill: [] });
    world.apply(plan, 'v1');
    expect(step(world, 'v1', 5, strategy())).toMatchObject({ launch: 0, done: false });
    world.settle('v1');
    expect(step(world, 'v1', 5, strategy()).done).toBe(true);
  });

  it('scales down killing the youngest first (YOUNGEST_FIRST)', () => {
    const world = new World();
    for (let t = 1; t <= 5; t++) world.add('v1', 'ready', 1, t * 1000);
    expect(step(world, 'v1', 2, strategy(), 'YOUNGEST_FIRST').kill).toEqual(['i5', 'i4', 'i3']);
  });

  it('scales down killing the oldest first (OLDEST_FIRST)', () => {
    const world = new World();
    for (let t = 1; t <= 5; t++) world.add('v1', 'ready', 1, t * 1000);
    expect(step(world, 'v1', 2, strategy(), 'OLDEST_FIRST').kill).toEqual(['i1', 'i2', 'i3']);
  });

  it('scales down instances that do not serve before any that do, whatever the kill selection', () => {
    const world = new World();
    world.add('v1', 'ready', 1, 1000);
    world.add('v1', 'staged', 1, 500);
    world.add('v1', 'running', 1, 2000);
    world.add('v1', 'ready', 1, 3000);
    expect(step(world, 'v1', 2, strategy(), 'OLDEST_FIRST').kill).toEqual(['i2', 'i3']);
    expect(step(world, 'v1', 1, strategy(), 'OLDEST_FIRST').kill).toEqual(['i2', 'i3', 'i1']);
  });

  it('replaces a failed instance (self-healing is a scale-up)', () => {
    const world = new World();
    world.add('v1', 'ready', 3);
    world.instances.splice(1, 1);
    expect(step(world, 'v1', 3, strategy())).toMatchObject({ launch: 1, kill: [] });
  });

  it('does not launch while the backoff holds, and says when to look again', () => {
    const world = new World();
    const plan = rollingStep({
      targetVersion: 'v1', targetInstances: 2, instances: [], strategy: strategy(), killSelection: 'YOUNGEST_FIRST',
      inactiveAfterSeconds: 0, nowMs: 1000, launchNotBeforeMs: 5000,
    });
    expect(plan).toEqual({ launch: 0, kill: [], done: false, wakeAtMs: 5000 });
    void world;
  });
});

describe('rollingStep: unreachable instances', () => {
  it('waits inactiveAfterSeconds before replacing an unreachable instance, then kills and replaces it', () => {
    const instances: Instance[] = [
      { instanceId: 'a', version: 'v1', state: 'ready', startedAtMs: 0 },
      { instanceId: 'b', version: 'v1', state: 'unreachable', startedAtMs: 0, unreachableSinceMs: 10_000 },
    ];
    const base = { targetVersion: 'v1', targetInstances: 2, instances, strategy: strategy(), killSelection: 'YOUNGEST_FIRST' as const, inactiveAfterSeconds: 300 };
    expect(rollingStep({ ...base, nowMs: 20_000 })).toEqual({ launch: 0, kill: [], done: false, wakeAtMs: 310_000 });
    expect(rollingStep({ ...base, nowMs: 310_000 })).toEqual({ launch: 1, kill: ['b'], done: false });
  });
});

/** Runs a rolling update v1 → v2 to the end, recording the fewest serving instances seen and the most instances at once. */
function rollOut(n: number, s: UpgradeStrategy, newBecomes: InstanceState = 'ready') {
  const world = new World();
  world.add('v1', 'ready', n);
  let fewestServing = world.serving();
  let most = world.instances.length;
  const launches: number[] = [];
  const kills: number[] = [];
  for (let round = 0; round < 100; round++) {
    const plan = step(world, 'v2', n, s);
    if (plan.done) return { done: true, rounds: round, fewestServing, most, launches, kills };
    world.apply(plan, 'v2');
    launches.push(plan.launch);
    kills.push(plan.kill.length);
    fewestServing = Math.min(fewestServing, world.serving());
    most = Math.max(most, world.instances.length);
    world.settle('v2', newBecomes);
  }
  return { done: false, rounds: 100, fewestServing, most, launches, kills };
}

describe('rollingStep: rolling updates', () => {
  it('minimumHealthCapacity 1, maximumOverCapacity 1: starts every new instance first, kills old as new ones are ready', () => {
    const run = rollOut(4, strategy({ minimumHealthCapacity: 1, maximumOverCapacity: 1 }));
    expect(run).toMatchObject({ done: true, fewestServing: 4, most: 8 });
    expect(run.launches[0]).toBe(4);
    expect(run.kills[0]).toBe(0);
  });

  it('minimumHealthCapacity 1, maximumOverCapacity 0.2 (10 instances): two extra at a time, never fewer than 10 serving', () => {
    const run = rollOut(10, strategy({ minimumHealthCapacity: 1, maximumOverCapacity: 0.2 }));
    expect(run).toMatchObject({ done: true, fewestServing: 10, most: 12 });
    expect(run.launches[0]).toBe(2);
  });

  it('minimumHealthCapacity 1, maximumOverCapacity 0: kills one old instance to make room (Marathon), one at a time', () => {
    const run = rollOut(4, strategy({ minimumHealthCapacity: 1, maximumOverCapacity: 0 }));
    expect(run).toMatchObject({ done: true, fewestServing: 3, most: 4 });
    expect(Math.max(...run.kills)).toBe(1);
    expect(Math.max(...run.launches)).toBe(1);
  });

  it('minimumHealthCapacity 0.5, maximumOverCapacity 0: kills half at once, refills, then the rest', () => {
    const world = new World();
    world.add('v1', 'ready', 4);
    const s = strategy({ minimumHealthCapacity: 0.5, maximumOverCapacity: 0 });
    const first = step(world, 'v2', 4, s);
    expect(first).toMatchObject({ launch: 0, kill: ['i4', 'i3'] }); // YOUNGEST_FIRST
    world.apply(first, 'v2');
    expect(step(world, 'v2', 4, s)).toMatchObject({ launch: 0, kill: [] }); // the killed ones still hold their room
    world.settle('v2');
    const second = step(world, 'v2', 4, s);
    expect(second).toMatchObject({ launch: 2, kill: [] });
    expect(rollOut(4, s)).toMatchObject({ done: true, fewestServing: 2, most: 4 });
  });

  it('minimumHealthCapacity 0.5, maximumOverCapacity 1: kills half and starts every new instance at once', () => {
    const world = new World();
    world.add('v1', 'ready', 4);
    const plan = step(world, 'v2', 4, strategy({ minimumHealthCapacity: 0.5, maximumOverCapacity: 1 }));
    expect(plan.launch).toBe(4);
    expect(plan.kill).toHaveLength(2);
    expect(rollOut(4, strategy({ minimumHealthCapacity: 0.5, maximumOverCapacity: 1 }))).toMatchObject({ done: true, fewestServing: 2 });
  });

  it('minimumHealthCapacity 0, maximumOverCapacity 0: stops every old instance first, then starts the new ones', () => {
    const world = new World();
    world.add('v1', 'ready', 3);
    const s = strategy({ minimumHealthCapacity: 0, maximumOverCapacity: 0 });
    expect(step(world, 'v2', 3, s)).toMatchObject({ launch: 0, kill: ['i3', 'i2', 'i1'] });
    expect(rollOut(3, s)).toMatchObject({ done: true, fewestServing: 0, most: 3 });
  });

  it('minimumHealthCapacity 0, maximumOverCapacity 1: replaces everything in one step', () => {
    const world = new World();
    world.add('v1', 'ready', 3);
    expect(step(world, 'v2', 3, strategy({ minimumHealthCapacity: 0, maximumOverCapacity: 1 }))).toMatchObject({ launch: 3, kill: ['i3', 'i2', 'i1'] });
  });

  it('kills old instances that do not serve at once, keeping the serving ones', () => {
    const world = new World();
    world.add('v1', 'ready', 2);
    world.add('v1', 'running', 1);
    expect(step(world, 'v2', 3, strategy())).toMatchObject({ launch: 3, kill: ['i3'] });
  });

  it('changes version and count together: 2 old → 4 new', () => {
    expect(rollOut(4, strategy())).toMatchObject({ done: true });
    const world = new World();
    world.add('v1', 'ready', 2);
    expect(step(world, 'v2', 4, strategy({ minimumHealthCapacity: 1, maximumOverCapacity: 0.5 }))).toMatchObject({ launch: 4, kill: [] });
  });

  it('never finishes while a new version does not get healthy, and keeps the old ones serving', () => {
    const run = rollOut(4, strategy({ minimumHealthCapacity: 1, maximumOverCapacity: 1 }), 'running');
    expect(run).toMatchObject({ done: false, fewestServing: 4 });
  });
});

describe('planDeployment', () => {
  function deploy(world: World, s: UpgradeStrategy, n = 3): Deployment {
    return startDeployment({ id: 'd1', appId: '/web', from: { version: 'v1', instances: n }, to: { version: 'v2', instances: n }, instances: world.instances, nowMs: world.nowMs });
  }
  const plan = (world: World, deployment: Deployment, s: UpgradeStrategy, extra: { launchNotBeforeMs?: number } = {}): DeploymentPlan =>
    planDeployment({ deployment, instances: world.instances, strategy: s, killSelection: 'YOUNGEST_FIRST', inactiveAfterSeconds: 0, nowMs: world.nowMs, ...extra });

  it('reports progress counts: new started / healthy / ready and old killed', () => {
    const world = new World();
    world.add('v1', 'ready', 3);
    const s = strategy();
    let deployment = deploy(world, s);
    expect(deploymentProgress(deployment, world.instances)).toEqual({ target: 3, newStarted: 0, newHealthy: 0, newReady: 0, oldRunning: 3, oldKilled: 0 });
    let p = plan(world, deployment, s);
    world.apply(p, 'v2');
    deployment = p.deployment;
    world.instances.find((i) => i.version === 'v2')!.state = 'healthy';
    world.instances.filter((i) => i.version === 'v2')[1]!.state = 'ready';
    p = plan(world, deployment, s);
    expect(p.progress).toEqual({ target: 3, newStarted: 3, newHealthy: 2, newReady: 1, oldRunning: 3, oldKilled: 0 });
    world.apply(p, 'v2');
    // Two new instances serve, so two old ones may go while 3 (minimumHealthCapacity 1) keep serving.
    expect(p.kill).toHaveLength(2);
    expect(deploymentProgress(deployment, world.instances)).toMatchObject({ oldRunning: 1, oldKilled: 2 });
  });

  it('succeeds when the new version is fully ready and the old one gone', () => {
    const world = new World();
    world.add('v1', 'ready', 3);
    const s = strategy();
    let deployment = deploy(world, s);
    for (let round = 0; round < 10 && deployment.state === 'running'; round++) {
      const p = plan(world, deployment, s);
      deployment = p.deployment;
      world.apply(p, 'v2');
      world.settle('v2');
      world.tick(1000);
    }
    expect(deployment).toMatchObject({ state: 'succeeded', finishedAtMs: expect.any(Number) });
    expect(world.count('v2', (i) => i.state === 'ready')).toBe(3);
    expect(world.count('v1')).toBe(0);
  });

  it('fails at the progress deadline when the new version never gets healthy, and reverts with autoRevert', () => {
    const world = new World();
    world.add('v1', 'ready', 3);
    const s = strategy({ progressDeadlineSeconds: 60, autoRevert: true });
    let deployment = deploy(world, s);
    let p = plan(world, deployment, s);
    expect(p.wakeAtMs).toBe(world.nowMs + 60_000);
    world.apply(p, 'v2');
    world.settle('v2', 'running'); // started, health check never passes
    deployment = p.deployment;
    world.tick(59_000);
    p = plan(world, deployment, s);
    expect(p.deployment.state).toBe('running');
    world.tick(1_000);
    p = plan(world, p.deployment, s);
    expect(p.deployment).toMatchObject({ state: 'failed', reason: 'no progress for 60 s (progressDeadlineSeconds): 0 of 3 new instances ready, 3 started, 3 old still running' });
    expect(p).toMatchObject({ launch: 0, kill: [] });
    const revert = p.revert!;
    expect(revert).toMatchObject({ id: 'd1-revert', revertOf: 'd1', from: { version: 'v2' }, to: { version: 'v1', instances: 3 }, state: 'running' });
    // The revert kills the never-healthy new instances and keeps all old ones serving.
    const back = plan(world, revert, s);
    expect(back.launch).toBe(0);
    expect(back.kill.sort()).toEqual(world.instances.filter((i) => i.version === 'v2').map((i) => i.instanceId).sort());
    world.apply(back, 'v1');
    world.settle('v1');
    expect(world.serving()).toBe(3);
    expect(plan(world, back.deployment, s).deployment.state).toBe('succeeded');
  });

  it('fails without a revert when autoRevert is off, and never reverts a revert', () => {
    const world = new World();
    world.add('v1', 'ready', 1);
    const s = strategy({ progressDeadlineSeconds: 10 });
    const deployment = deploy(world, s, 1);
    world.tick(10_000);
    expect(plan(world, deployment, s)).toMatchObject({ deployment: { state: 'failed' } });
    expect(plan(world, deployment, s).revert).toBeUndefined();
    const revert = startDeployment({ id: 'r', appId: '/web', from: { version: 'v2', instances: 1 }, to: { version: 'v1', instances: 1 }, instances: [], nowMs: world.nowMs, revertOf: 'd1' });
    world.tick(10_000);
    expect(plan(world, revert, strategy({ progressDeadlineSeconds: 10, autoRevert: true })).revert).toBeUndefined();
  });

  it('moves the deadline with every bit of progress', () => {
    const world = new World();
    world.add('v1', 'ready', 2);
    const s = strategy({ progressDeadlineSeconds: 60, minimumHealthCapacity: 1, maximumOverCapacity: 0 });
    let deployment = deploy(world, s, 2);
    for (let round = 0; round < 12 && deployment.state === 'running'; round++) {
      world.tick(50_000); // slow, but each round makes progress within the deadline
      const p = plan(world, deployment, s);
      deployment = p.deployment;
      world.apply(p, 'v2');
      world.settle('v2');
    }
    expect(deployment.state).toBe('succeeded');
  });

  it('a cancel is a failDeployment with revert; force is one without', () => {
    const world = new World();
    world.add('v1', 'ready', 2);
    const deployment = deploy(world, strategy(), 2);
    expect(failDeployment({ deployment, instances: world.instances, nowMs: 5, reason: 'cancelled by an operator', revert: true }).revert?.to.version).toBe('v1');
    expect(failDeployment({ deployment, instances: world.instances, nowMs: 5, reason: 'stopped (force)', revert: false })).toMatchObject({ deployment: { state: 'failed', reason: 'stopped (force)' } });
  });

  it('does nothing for a deployment that has ended', () => {
    const world = new World();
    const deployment = { ...deploy(world, strategy(), 2), state: 'succeeded' as const };
    expect(plan(world, deployment, strategy())).toMatchObject({ launch: 0, kill: [] });
  });
});

describe('instances', () => {
  it('derives the planner state from task facts', () => {
    const base = { healthy: undefined, hasHealthCheck: false, ready: undefined, hasReadinessCheck: false };
    expect(instanceState({ ...base, taskState: 'STAGING' })).toBe('staged');
    expect(instanceState({ ...base, taskState: 'RUNNING' })).toBe('ready');
    expect(instanceState({ ...base, taskState: 'RUNNING', hasHealthCheck: true })).toBe('running');
    expect(instanceState({ ...base, taskState: 'RUNNING', hasHealthCheck: true, healthy: true, hasReadinessCheck: true })).toBe('healthy');
    expect(instanceState({ ...base, taskState: 'RUNNING', hasHealthCheck: true, healthy: true, hasReadinessCheck: true, ready: true })).toBe('ready');
    expect(instanceState({ ...base, taskState: 'KILLING' })).toBe('killing');
    expect(instanceState({ ...base, taskState: 'UNREACHABLE' })).toBe('unreachable');
  });

  it('orders kills: least serving first, then by kill selection, then by id', () => {
    const mk = (instanceId: string, state: InstanceState, startedAtMs: number): Instance => ({ instanceId, version: 'v', state, startedAtMs });
    const all = [mk('a', 'ready', 1), mk('b', 'ready', 2), mk('c', 'running', 3), mk('d', 'ready', 2)];
    expect(killOrder(all, 'YOUNGEST_FIRST').map((i) => i.instanceId)).toEqual(['c', 'b', 'd', 'a']);
    expect(killOrder(all, 'OLDEST_FIRST').map((i) => i.instanceId)).toEqual(['c', 'a', 'b', 'd']);
  });
});

describe('rollingStep properties', () => {
  const strategyArb = fc.record({
    minimumHealthCapacity: fc.constantFrom(0, 0.25, 0.5, 0.9, 1),
    maximumOverCapacity: fc.constantFrom(0, 0.2, 0.5, 1),
  });
  /** Each round: plan, apply, then some random subset of instances moves on (killed ones vanish, new ones get healthy or not). */
  const scenarioArb = fc.record({
    n: fc.integer({ min: 1, max: 8 }),
    old: fc.integer({ min: 0, max: 10 }),
    s: strategyArb,
    killSelection: fc.constantFrom<KillSelection>('YOUNGEST_FIRST', 'OLDEST_FIRST'),
    moves: fc.array(fc.array(fc.tuple(fc.nat(20), fc.constantFrom<InstanceState | 'gone'>('gone', 'running', 'healthy', 'ready')), { maxLength: 6 }), { minLength: 1, maxLength: 25 }),
  });

  it('never launches past the over-capacity ceiling, and never kills below the minimum healthy while the old version serves', () => {
    fc.assert(
      fc.property(scenarioArb, ({ n, old, s, killSelection, moves }) => {
        const world = new World();
        world.add('v1', 'ready', old);
        const minHealthy = minimumHealthy(n, s.minimumHealthCapacity);
        const maxTotal = maximumTotal(n, s.maximumOverCapacity);
        for (const round of moves) {
          const before = { total: world.instances.length, serving: world.serving() };
          const plan = step(world, 'v2', n, strategy(s), killSelection);
          world.apply(plan, 'v2');
          // Ceiling: launches only ever fill up to it (an app already above it launches nothing).
          if (plan.launch > 0) expect(world.instances.length).toBeLessThanOrEqual(maxTotal);
          // Floor: kills never take the serving count below min(before, minHealthy) — except Marathon's
          // one-instance escape hatch, possible only when the ceiling leaves no room above the floor.
          if (maxTotal > minHealthy) expect(world.serving()).toBeGreaterThanOrEqual(Math.min(before.serving, minHealthy));
          else expect(world.serving()).toBeGreaterThanOrEqual(Math.min(before.serving, minHealthy) - 1);
          for (const [index, to] of round) {
            const instance = world.instances[index % Math.max(1, world.instances.length)];
            if (!instance) continue;
            if (to === 'gone' && instance.state === 'killing') world.instances.splice(world.instances.indexOf(instance), 1);
            else if (to !== 'gone' && instance.state !== 'killing' && instance.version === 'v2') instance.state = to;
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('always completes a rolling update whose new version gets healthy', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), strategyArb, (n, s) => {
        const run = rollOut(n, strategy(s));
        expect(run.done).toBe(true);
        expect(run.most).toBeLessThanOrEqual(Math.max(n, maximumTotal(n, s.maximumOverCapacity)));
      }),
      { numRuns: 200 },
    );
  });
});
