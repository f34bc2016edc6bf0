import { describe, expect, it } from 'vitest';
import { Allocator, UnknownFrameworkError, type OfferDecision } from '../../master/allocator/allocator.ts';
import { ClusterTotals, DrfSorter } from '../../master/allocator/drf-sorter.ts';
import { equals, isEmpty, parseResources, type Resources } from '../../master/protocol/resources.ts';

const AGENT = parseResources('cpus:2;mem:1024;disk:4096;ports:[31000-32000]');

function cluster(agents: number, total: Resources = AGENT, allocator = new Allocator()): Allocator {
  for (let i = 0; i < agents; i++) allocator.addAgent(`a${i}`, total);
  return allocator;
}

function countBy(offers: OfferDecision[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const offer of offers) counts[offer.frameworkId] = (counts[offer.frameworkId] ?? 0) + 1;
  return counts;
}

describe('DrfSorter', () => {
  it('orders clients by dominant share divided by weight, ties by name', () => {
    const totals = new ClusterTotals();
    totals.add({ cpus: 10, mem: 100 });
    const sorter = new DrfSorter(totals);
    sorter.add('b');
    sorter.add('a');
    sorter.add('c', 2);
    expect(sorter.sorted().map((c) => c.name)).toEqual(['a', 'b', 'c']);
    sorter.allocate('a', { cpus: 1 }); // a: 0.1
    sorter.allocate('b', { mem: 20 }); // b: 0.2
    sorter.allocate('c', { cpus: 3 }); // c: 0.3 / 2 = 0.15
    expect(sorter.sorted().map((c) => c.name)).toEqual(['a', 'c', 'b']);
    sorter.allocate('b', { mem: 20 }, -1);
    expect(sorter.sorted().map((c) => c.name)).toEqual(['b', 'a', 'c']);
  });

  it('re-sorts every client when the cluster total changes', () => {
    const totals = new ClusterTotals();
    totals.add({ cpus: 10, mem: 100 });
    const sorter = new DrfSorter(totals);
    sorter.add('cpu-heavy');
    sorter.add('mem-heavy');
    sorter.allocate('cpu-heavy', { cpus: 5 }); // 0.5
    sorter.allocate('mem-heavy', { mem: 40 }); // 0.4
    expect(sorter.sorted().map((c) => c.name)).toEqual(['mem-heavy', 'cpu-heavy']);
    totals.add({ cpus: 90 }); // cpu-heavy: 0.05
    expect(sorter.sorted().map((c) => c.name)).toEqual(['cpu-heavy', 'mem-heavy']);
  });

  it('leaves inactive clients out of the order but keeps their allocation', () => {
    const totals = new ClusterTotals();
    totals.add({ cpus: 10 });
    const sorter = new DrfSorter(totals);
    sorter.add('a');
    sorter.add('b', 1, false);
    sorter.allocate('b', { cpus: 2 });
    expect(sorter.sorted().map((c) => c.name)).toEqual(['a']);
    expect(sorter.share('b')).toBeCloseTo(0.2);
    sorter.activate('b');
    sorter.allocate('a', { cpus: 5 });
    expect(sorter.sorted().map((c) => c.name)).toEqual(['b', 'a']);
  });
});

describe('Allocator', () => {
  it('offers the whole of an agent to one framework', () => {
    const allocator = cluster(1);
    allocator.addFramework('f1', 'r');
    allocator.addFramework('f2', 'r');
    const offers = allocator.allocate(0);
    expect(offers).toHaveLength(1);
    expect(offers[0]).toMatchObject({ agentId: 'a0', role: 'r' });
    expect(equals(offers[0]!.resources, AGENT)).toBe(true);
    expect(isEmpty(allocator.available('a0'))).toBe(true);
    expect(equals(allocator.allocated(offers[0]!.frameworkId, 'a0'), AGENT)).toBe(true);
    expect(allocator.allocate(0)).toEqual([]);
  });

  it('balances two frameworks on identical agents by DRF', () => {
    const allocator = cluster(10);
    allocator.addFramework('f1', 'r');
    allocator.addFramework('f2', 'r');
    expect(countBy(allocator.allocate(0))).toEqual({ f1: 5, f2: 5 });
    expect(allocator.dominantShare('f1')).toBeCloseTo(0.5);
  });

  it('offers the next agent to the framework with the lower dominant share', () => {
    const allocator = cluster(1, parseResources('cpus:10;mem:1000'));
    allocator.addFramework('cpu-user', 'r');
    allocator.addFramework('mem-user', 'r');
    allocator.recordUse('cpu-user', 'a0', { cpus: 6 }); // share 0.6
    allocator.recordUse('mem-user', 'a0', { mem: 300 }); // share 0.3
    const offers = allocator.allocate(0);
    expect(offers.map((o) => o.frameworkId)).toEqual(['mem-user']);
    expect(equals(offers[0]!.resources, { cpus: 4, mem: 700 })).toBe(true);
  });

  it('gives a role with weight 2 about twice the share of a role with weight 1', () => {
    const allocator = cluster(30, AGENT, new Allocator({ weights: { heavy: 2 } }));
    allocator.addFramework('h', 'heavy');
    allocator.addFramework('l', 'light');
    expect(countBy(allocator.allocate(0))).toEqual({ h: 20, l: 10 });
    expect(allocator.roleShare('heavy') / allocator.roleShare('light')).toBeCloseTo(2);
  });

  it('applies a weight set later to the following allocations', () => {
    const allocator = cluster(30);
    allocator.addFramework('h', 'heavy');
    allocator.addFramework('l', 'light');
    allocator.setWeight('heavy', 3);
    const counts = countBy(allocator.allocate(0));
    expect(counts.h! + counts.l!).toBe(30);
    expect(counts.h).toBeGreaterThanOrEqual(22);
    expect(counts.h).toBeLessThanOrEqual(23);
  });

  it('sorts roles first, then frameworks within a role', () => {
    const allocator = cluster(20);
    allocator.addFramework('a1', 'a');
    allocator.addFramework('a2', 'a');
    allocator.addFramework('a3', 'a');
    allocator.addFramework('b1', 'b');
    // Role a and role b each get half, however many frameworks a has.
    expect(countBy(allocator.allocate(0))).toEqual({ a1: 4, a2: 3, a3: 3, b1: 10 });
    expect(allocator.roleShare('a')).toBeCloseTo(0.5);
    expect(allocator.roleShare('b')).toBeCloseTo(0.5);
  });

  it('withholds declined resources from that framework until refuseSeconds pass', () => {
    const allocator = cluster(1);
    allocator.addFramework('f1', 'r');
    allocator.addFramework('f2', 'r');
    allocator.suppress('f2');
    const [offer] = allocator.allocate(0);
    expect(offer!.frameworkId).toBe('f1');
    allocator.recover('f1', 'a0', offer!.resources, 5, 1000);
    expect(allocator.nextFilterExpiryMs()).toBe(6000);
    expect(allocator.allocate(1000)).toEqual([]);
    expect(allocator.allocate(5999)).toEqual([]);
    expect(allocator.allocate(6000).map((o) => o.frameworkId)).toEqual(['f1']);
    expect(allocator.nextFilterExpiryMs()).toBeUndefined();
  });

  it('offers declined resources to another framework meanwhile', () => {
    const allocator = cluster(1);
    allocator.addFramework('f1', 'r');
    allocator.addFramework('f2', 'r');
    const [offer] = allocator.allocate(0);
    allocator.recover(offer!.frameworkId, 'a0', offer!.resources, 5, 0);
    const [next] = allocator.allocate(1);
    expect(next!.frameworkId).not.toBe(offer!.frameworkId);
  });

  it('still offers a filtered framework a larger set than it refused', () => {
    const allocator = cluster(1);
    allocator.addFramework('f1', 'r');
    const [offer] = allocator.allocate(0);
    allocator.recover('f1', 'a0', { cpus: 1, mem: 512 }, undefined, 0); // a task finished: not a refusal
    const [partial] = allocator.allocate(0);
    expect(equals(partial!.resources, { cpus: 1, mem: 512 })).toBe(true);
    allocator.recover('f1', 'a0', partial!.resources, 60, 0); // declined {cpus:1, mem:512}
    expect(allocator.allocate(1)).toEqual([]);
    allocator.recover('f1', 'a0', offer!.resources, undefined, 1); // everything else freed
    const [whole] = allocator.allocate(2);
    expect(whole!.frameworkId).toBe('f1');
    expect(equals(whole!.resources, AGENT)).toBe(true);
  });

  it('keeps a filter for its whole duration even when a shorter one is added later', () => {
    const allocator = cluster(1);
    allocator.addFramework('f1', 'r');
    const [offer] = allocator.allocate(0);
    allocator.recover('f1', 'a0', offer!.resources, 60, 0);
    allocator.recover('f1', 'a0', offer!.resources, 1, 0);
    expect(allocator.allocate(2000)).toEqual([]);
    expect(allocator.allocate(60_000)).toHaveLength(1);
  });

  it('sends no offers to a suppressed framework until it revives', () => {
    const allocator = cluster(2);
    allocator.addFramework('f1', 'r');
    allocator.suppress('f1');
    expect(allocator.allocate(0)).toEqual([]);
    allocator.revive('f1');
    expect(allocator.allocate(0)).toHaveLength(2);
  });

  it('clears refuse filters on revive', () => {
    const allocator = cluster(1);
    allocator.addFramework('f1', 'r');
    const [offer] = allocator.allocate(0);
    allocator.recover('f1', 'a0', offer!.resources, 3600, 0);
    expect(allocator.allocate(1)).toEqual([]);
    allocator.revive('f1');
    expect(allocator.nextFilterExpiryMs()).toBeUndefined();
    expect(allocator.allocate(2).map((o) => o.frameworkId)).toEqual(['f1']);
  });

  it('offers nothing on an inactive agent and keeps its allocations', () => {
    const allocator = cluster(2);
    allocator.addFramework('f1', 'r');
    allocator.recordUse('f1', 'a0', { cpus: 1 });
    allocator.deactivateAgent('a0');
    allocator.deactivateAgent('a1');
    expect(allocator.allocate(0)).toEqual([]);
    expect(allocator.allocated('f1', 'a0')).toEqual({ cpus: 1 });
    allocator.activateAgent('a1');
    expect(allocator.allocate(0).map((o) => o.agentId)).toEqual(['a1']);
  });

  it('offers nothing to an inactive framework', () => {
    const allocator = cluster(2);
    allocator.addFramework('f1', 'r', false);
    expect(allocator.allocate(0)).toEqual([]);
    allocator.activateFramework('f1');
    expect(allocator.allocate(0)).toHaveLength(2);
    allocator.recover('f1', 'a0', AGENT, undefined, 0);
    allocator.deactivateFramework('f1');
    expect(allocator.allocate(0)).toEqual([]);
  });

  it('offers an agent only when its available resources contain a minimum allocatable set', () => {
    const allocator = cluster(1, { cpus: 1, mem: 64 });
    allocator.addFramework('f1', 'r');
    allocator.addFramework('f2', 'r', false);
    allocator.recordUse('f2', 'a0', { cpus: 0.995, mem: 40 }); // leaves cpus 0.005, mem 24
    expect(allocator.allocate(0)).toEqual([]);
    allocator.recover('f2', 'a0', { mem: 8 }, undefined, 0); // mem 32 reaches the default minimum
    expect(allocator.allocate(0)).toHaveLength(1);

    const custom = cluster(1, { cpus: 1, gpus: 1 }, new Allocator({ minAllocatable: [{ gpus: 1 }] }));
    custom.addFramework('f1', 'r');
    custom.recordUse('f1', 'a0', { gpus: 1 });
    expect(custom.allocate(0)).toEqual([]);
  });

  it('releases everything a removed framework held, and drops its filters', () => {
    const allocator = cluster(4);
    allocator.addFramework('f1', 'r');
    allocator.addFramework('f2', 'r');
    allocator.suppress('f2');
    const offers = allocator.allocate(0);
    expect(offers).toHaveLength(4);
    allocator.recover('f1', 'a0', AGENT, 3600, 0);
    expect(allocator.nextFilterExpiryMs()).toBe(3_600_000);
    allocator.removeFramework('f1');
    expect(allocator.nextFilterExpiryMs()).toBeUndefined();
    expect(allocator.dominantShare('f1')).toBe(0);
    expect(allocator.roleShare('r')).toBe(0);
    for (let i = 0; i < 4; i++) expect(equals(allocator.available(`a${i}`), AGENT)).toBe(true);
    allocator.revive('f2');
    expect(countBy(allocator.allocate(0))).toEqual({ f2: 4 });
  });

  it('drops the allocations on a removed agent from the shares', () => {
    const allocator = cluster(2);
    allocator.addFramework('f1', 'r');
    allocator.allocate(0);
    expect(allocator.dominantShare('f1')).toBeCloseTo(1);
    allocator.removeAgent('a0');
    expect(allocator.dominantShare('f1')).toBeCloseTo(1);
    expect(equals(allocator.allocated('f1'), AGENT)).toBe(true);
    allocator.addAgent('a2', AGENT);
    expect(allocator.dominantShare('f1')).toBeCloseTo(0.5);
  });

  it('counts recorded use toward shares', () => {
    const allocator = cluster(4);
    allocator.addFramework('f1', 'r');
    allocator.addFramework('f2', 'r');
    allocator.recordUse('f1', 'a0', AGENT);
    allocator.recordUse('f1', 'a1', AGENT);
    expect(allocator.dominantShare('f1')).toBeCloseTo(0.5);
    expect(countBy(allocator.allocate(0))).toEqual({ f2: 2 });
  });

  it('recovers only what the framework holds, and ignores a framework or agent already gone', () => {
    const allocator = cluster(1);
    allocator.addFramework('f1', 'r');
    allocator.recordUse('f1', 'a0', { cpus: 1 });
    allocator.recover('f1', 'a0', { cpus: 2, mem: 100 }, undefined, 0);
    expect(equals(allocator.available('a0'), AGENT)).toBe(true);
    expect(() => allocator.recover('gone', 'a0', AGENT, 5, 0)).not.toThrow();
    expect(() => allocator.recover('f1', 'gone', AGENT, 5, 0)).not.toThrow();
    expect(() => allocator.recordUse('gone', 'a0', AGENT)).toThrow(UnknownFrameworkError);
  });

  it('counts agents with newly available resources as dirty until a cycle covers them', () => {
    const allocator = cluster(3);
    expect(allocator.dirtyAgentCount).toBe(3);
    allocator.addFramework('f1', 'r');
    allocator.allocate(0, ['a0']);
    expect(allocator.dirtyAgentCount).toBe(2);
    allocator.allocate(0);
    expect(allocator.dirtyAgentCount).toBe(0);
    allocator.recover('f1', 'a1', { cpus: 1 }, undefined, 0);
    expect(allocator.dirtyAgentCount).toBe(1);
  });

  it('varies which agent is considered first from cycle to cycle', () => {
    const allocator = cluster(20);
    allocator.addFramework('f1', 'r');
    const firsts = new Set<string>();
    for (let cycle = 0; cycle < 10; cycle++) {
      const offers = allocator.allocate(cycle);
      firsts.add(offers[0]!.agentId);
      for (const offer of offers) allocator.recover('f1', offer.agentId, offer.resources, undefined, cycle);
    }
    expect(firsts.size).toBeGreaterThan(1);
  });
});
