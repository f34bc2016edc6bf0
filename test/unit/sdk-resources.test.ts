import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  add,
  binPack,
  contains,
  firstFit,
  pickPorts,
  portsResource,
  rangesOf,
  type Offer,
  type Placement,
  type Resources,
  type TaskSpec,
} from '../../frameworks/sdk/index.ts';

function offer(id: string, resources: Resources, attributes: Record<string, string> = {}): Offer {
  return { id, frameworkId: 'fw', agentId: `agent-${id}`, hostname: `host-${id}`, role: '*', resources, attributes };
}

function spec(taskId: string, resources: Resources, extra: Partial<TaskSpec> = {}): TaskSpec {
  return { taskId, resources, command: { value: 'true' }, ...extra };
}

function placedIds(placement: Placement): Record<string, string[]> {
  return Object.fromEntries(placement.launches.map(({ offer, tasks }) => [offer.id, tasks.map((task) => task.taskId)]));
}

/** The invariants every placement keeps, whatever the strategy. */
function checkPlacement(placement: Placement, pending: readonly TaskSpec[], offers: readonly Offer[]): void {
  const placed = new Set<string>();
  for (const { offer: o, tasks } of placement.launches) {
    expect(offers).toContain(o);
    expect(tasks.length).toBeGreaterThan(0);
    const ports: number[] = [];
    let used: Resources = {};
    for (const task of tasks) {
      used = add(used, task.resources);
      for (const [b, e] of rangesOf(task.resources, 'ports')) for (let p = b; p <= e; p++) ports.push(p);
      const source = pending.find((s) => s.taskId === task.taskId)!;
      expect(contains(task.resources, source.resources)).toBe(true);
      if (source.constraint) expect(source.constraint(o)).toBe(true);
      placed.add(task.taskId);
    }
    // Never over-commit an offer.
    expect(contains(o.resources, used)).toBe(true);
    // No two tasks on one agent share a port.
    expect(new Set(ports).size).toBe(ports.length);
  }
  // Every spec is either placed once or reported unplaced.
  const unplaced = placement.unplaced.map((s) => s.taskId);
  expect([...placed, ...unplaced].sort()).toEqual(pending.map((s) => s.taskId).sort());
  expect(placed.size + unplaced.length).toBe(pending.length);
}

describe('pickPorts / portsResource', () => {
  it('picks the lowest free ports across ranges', () => {
    expect(pickPorts({ ports: [[31005, 31006], [31000, 31001]] }, 3)).toEqual([31000, 31001, 31005]);
    expect(pickPorts({ ports: [[8080, 8080]] }, 1)).toEqual([8080]);
    expect(pickPorts({ cpus: 1 }, 0)).toEqual([]);
  });

  it('throws when the offer holds too few ports', () => {
    expect(() => pickPorts({ ports: [[1, 2]] }, 3)).toThrow(/needs 3 ports, the offer holds 2/);
    expect(() => pickPorts({ cpus: 1 }, 1)).toThrow(RangeError);
  });

  it('turns ports into a merged ports resource', () => {
    expect(portsResource([31002, 31000, 31001, 31010])).toEqual({
      ports: [
        [31000, 31002],
        [31010, 31010],
      ],
    });
    expect(portsResource([])).toEqual({});
  });
});

describe('firstFit', () => {
  it('places each task on the first offer it fits, in order', () => {
    const offers = [offer('a', { cpus: 2, mem: 256 }), offer('b', { cpus: 4, mem: 1024 })];
    const pending = [spec('t1', { cpus: 1, mem: 128 }), spec('t2', { cpus: 1, mem: 128 }), spec('t3', { cpus: 1, mem: 128 }), spec('big', { cpus: 8 })];
    const placement = firstFit(pending, offers);
    expect(placedIds(placement)).toEqual({ a: ['t1', 't2'], b: ['t3'] });
    expect(placement.unplaced.map((s) => s.taskId)).toEqual(['big']);
    checkPlacement(placement, pending, offers);
  });

  it('picks distinct ports per task, adds them to the resources and the environment', () => {
    const offers = [offer('a', { cpus: 4, ports: [[31000, 31002]] })];
    const pending = [
      spec('web', { cpus: 1 }, { portCount: 2, command: { value: 'serve', environment: { MODE: 'prod' } } }),
      spec('api', { cpus: 1 }, { portCount: 1 }),
      spec('extra', { cpus: 1 }, { portCount: 1 }),
    ];
    const placement = firstFit(pending, offers);
    const [web, api] = placement.launches[0]!.tasks;
    expect(web!.resources).toEqual({ cpus: 1, ports: [[31000, 31001]] });
    expect(web!.command.environment).toEqual({ MODE: 'prod', PORT0: '31000', PORT1: '31001', PORTS: '31000,31001' });
    expect(api!.resources).toEqual({ cpus: 1, ports: [[31002, 31002]] });
    expect(placement.unplaced.map((s) => s.taskId)).toEqual(['extra']);
    checkPlacement(placement, pending, offers);
  });

  it('keeps fixed ports and picks dynamic ones elsewhere', () => {
    const offers = [offer('a', { cpus: 1, ports: [[8080, 8082]] })];
    const pending = [spec('fixed', { ports: [[8080, 8080]] }, { portCount: 1 }), spec('clash', { ports: [[8080, 8080]] })];
    const placement = firstFit(pending, offers);
    expect(placement.launches[0]!.tasks[0]!.resources).toEqual({ ports: [[8080, 8081]] });
    expect(placement.unplaced.map((s) => s.taskId)).toEqual(['clash']);
  });

  it('honours constraints', () => {
    const offers = [offer('a', { cpus: 4 }, { zone: 'east' }), offer('b', { cpus: 4 }, { zone: 'west' })];
    const pending = [
      spec('west-only', { cpus: 1 }, { constraint: (o) => o.attributes.zone === 'west' }),
      spec('north-only', { cpus: 1 }, { constraint: (o) => o.attributes.zone === 'north' }),
    ];
    const placement = firstFit(pending, offers);
    expect(placedIds(placement)).toEqual({ b: ['west-only'] });
    expect(placement.unplaced.map((s) => s.taskId)).toEqual(['north-only']);
  });

  it('copies name, labels and kill policy onto the task', () => {
    const placement = firstFit([spec('t', { cpus: 1 }, { name: 'T', labels: { app: 'x' }, killPolicy: { gracePeriodMs: 100 } })], [offer('a', { cpus: 1 })]);
    expect(placement.launches[0]!.tasks[0]).toEqual({
      taskId: 't',
      name: 'T',
      labels: { app: 'x' },
      killPolicy: { gracePeriodMs: 100 },
      resources: { cpus: 1 },
      command: { value: 'true' },
    });
  });
});

describe('binPack', () => {
  it('packs tighter than first-fit: the small task takes the small offer, leaving room for the big one', () => {
    const offers = [offer('large', { cpus: 4, mem: 4096 }), offer('small', { cpus: 2, mem: 2048 })];
    const pending = [spec('small-task', { cpus: 2, mem: 2048 }), spec('large-task', { cpus: 4, mem: 4096 })];
    const ff = firstFit(pending, offers);
    const bp = binPack(pending, offers);
    expect(ff.unplaced.map((s) => s.taskId)).toEqual(['large-task']);
    expect(bp.unplaced).toEqual([]);
    expect(placedIds(bp)).toEqual({ large: ['large-task'], small: ['small-task'] });
    checkPlacement(bp, pending, offers);
  });

  it('fills the most-used offer first, leaving whole offers free', () => {
    const offers = [offer('empty', { cpus: 8, mem: 8192 }), offer('busy', { cpus: 2, mem: 2048 })];
    const pending = [spec('t1', { cpus: 1, mem: 1024 }), spec('t2', { cpus: 1, mem: 1024 })];
    expect(placedIds(binPack(pending, offers))).toEqual({ busy: ['t1', 't2'] });
    expect(placedIds(firstFit(pending, offers))).toEqual({ empty: ['t1', 't2'] });
  });

  it('reports unplaced specs in their original order and honours constraints', () => {
    const offers = [offer('a', { cpus: 1 }, { rack: 'r1' })];
    const pending = [
      spec('elsewhere', { cpus: 0.1 }, { constraint: (o) => o.attributes.rack === 'r2' }),
      spec('fits', { cpus: 1 }),
      spec('too-big', { cpus: 2 }),
    ];
    const placement = binPack(pending, offers);
    expect(placedIds(placement)).toEqual({ a: ['fits'] });
    expect(placement.unplaced.map((s) => s.taskId)).toEqual(['elsewhere', 'too-big']);
  });
});

describe('placement properties', () => {
  const offerArb = fc
    .record({
      cpus: fc.integer({ min: 0, max: 16 }),
      mem: fc.integer({ min: 0, max: 8 }).map((n) => n * 256),
      portsStart: fc.integer({ min: 31000, max: 31100 }),
      portsLen: fc.integer({ min: -1, max: 6 }),
      zone: fc.constantFrom('a', 'b'),
    })
    .map(({ cpus, mem, portsStart, portsLen, zone }): Omit<Offer, 'id'> => {
      const resources: Resources = { cpus, mem };
      if (portsLen >= 0) resources.ports = [[portsStart, portsStart + portsLen]];
      return { frameworkId: 'fw', agentId: 'x', hostname: 'h', role: '*', resources, attributes: { zone } };
    });
  const specArb = fc
    .record({
      cpus: fc.integer({ min: 0, max: 40 }).map((n) => n / 10),
      mem: fc.integer({ min: 0, max: 8 }).map((n) => n * 128),
      portCount: fc.integer({ min: 0, max: 3 }),
      zone: fc.option(fc.constantFrom('a', 'b'), { nil: undefined }),
    })
    .map(({ cpus, mem, portCount, zone }): Omit<TaskSpec, 'taskId'> => {
      const s: Omit<TaskSpec, 'taskId'> = { resources: { cpus, mem }, portCount, command: { value: 'true' } };
      if (zone) s.constraint = (o) => o.attributes.zone === zone;
      return s;
    });
  const problemArb = fc.record({ offers: fc.array(offerArb, { maxLength: 6 }), specs: fc.array(specArb, { maxLength: 25 }) }).map(({ offers, specs }) => ({
    offers: offers.map((o, i): Offer => ({ ...o, id: `o${i}`, agentId: `agent-${i}` })),
    specs: specs.map((s, i): TaskSpec => ({ ...s, taskId: `t${i}` })),
  }));

  it('firstFit never over-commits an offer, never repeats a port, and accounts for every spec', () => {
    fc.assert(fc.property(problemArb, ({ offers, specs }) => checkPlacement(firstFit(specs, offers), specs, offers)));
  });

  it('binPack never over-commits an offer, never repeats a port, and accounts for every spec', () => {
    fc.assert(fc.property(problemArb, ({ offers, specs }) => checkPlacement(binPack(specs, offers), specs, offers)));
  });
});
