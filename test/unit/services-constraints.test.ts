import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Constraint } from '../../frameworks/services/app-definition.ts';
import { chooseOffer, meetsConstraints, unmetConstraint, type PlacementTarget } from '../../frameworks/services/constraints.ts';

const at = (hostname: string, attributes: Record<string, string> = {}): PlacementTarget => ({ hostname, attributes });
const c = (field: string, operator: Constraint['operator'], value?: string): Constraint => (value === undefined ? { field, operator } : { field, operator, value });

describe('constraints', () => {
  it('UNIQUE refuses a hostname or attribute value already used', () => {
    const placed = [at('a', { rack: 'r1' })];
    expect(meetsConstraints([c('hostname', 'UNIQUE')], at('a'), placed)).toBe(false);
    expect(meetsConstraints([c('hostname', 'UNIQUE')], at('b'), placed)).toBe(true);
    expect(meetsConstraints([c('rack', 'UNIQUE')], at('b', { rack: 'r1' }), placed)).toBe(false);
    expect(meetsConstraints([c('rack', 'UNIQUE')], at('b'), placed)).toBe(false); // no rack attribute
  });

  it('CLUSTER keeps instances on one value: the given one, or the first instance\'s', () => {
    expect(meetsConstraints([c('zone', 'CLUSTER', 'a')], at('h', { zone: 'a' }), [])).toBe(true);
    expect(meetsConstraints([c('zone', 'CLUSTER', 'a')], at('h', { zone: 'b' }), [])).toBe(false);
    expect(meetsConstraints([c('zone', 'CLUSTER')], at('h', { zone: 'b' }), [])).toBe(true);
    expect(meetsConstraints([c('zone', 'CLUSTER')], at('h', { zone: 'b' }), [at('g', { zone: 'a' })])).toBe(false);
    expect(meetsConstraints([c('zone', 'CLUSTER')], at('h', { zone: 'a' }), [at('g', { zone: 'a' })])).toBe(true);
  });

  it('LIKE and UNLIKE match the whole value; UNLIKE accepts an agent without the attribute', () => {
    expect(meetsConstraints([c('rack', 'LIKE', 'r[12]')], at('h', { rack: 'r1' }), [])).toBe(true);
    expect(meetsConstraints([c('rack', 'LIKE', 'r[12]')], at('h', { rack: 'r12' }), [])).toBe(false);
    expect(meetsConstraints([c('rack', 'LIKE', 'r.*')], at('h'), [])).toBe(false);
    expect(meetsConstraints([c('hostname', 'UNLIKE', 'db-.*')], at('db-1'), [])).toBe(false);
    expect(meetsConstraints([c('hostname', 'UNLIKE', 'db-.*')], at('web-db-1'), [])).toBe(true);
    expect(meetsConstraints([c('gpu', 'UNLIKE', 'true')], at('h'), [])).toBe(true);
  });

  it('MAX_PER caps the instances per value; IS wants an exact value', () => {
    const placed = [at('a', { rack: 'r1' }), at('b', { rack: 'r1' })];
    expect(meetsConstraints([c('rack', 'MAX_PER', '2')], at('c', { rack: 'r1' }), placed)).toBe(false);
    expect(meetsConstraints([c('rack', 'MAX_PER', '3')], at('c', { rack: 'r1' }), placed)).toBe(true);
    expect(meetsConstraints([c('zone', 'IS', 'a')], at('c', { zone: 'a' }), [])).toBe(true);
    expect(meetsConstraints([c('zone', 'IS', 'a')], at('c', { zone: 'ab' }), [])).toBe(false);
  });

  it('GROUP_BY with a group count waits for unseen groups, then keeps the groups even', () => {
    const groupBy3 = [c('zone', 'GROUP_BY', '3')];
    const placed = [at('h1', { zone: 'a' })];
    expect(meetsConstraints(groupBy3, at('h2', { zone: 'a' }), placed)).toBe(false);
    expect(meetsConstraints(groupBy3, at('h2', { zone: 'b' }), placed)).toBe(true);
    const three = [at('1', { zone: 'a' }), at('2', { zone: 'b' }), at('3', { zone: 'c' })];
    expect(meetsConstraints(groupBy3, at('4', { zone: 'a' }), three)).toBe(true);
    expect(meetsConstraints(groupBy3, at('5', { zone: 'a' }), [...three, at('4', { zone: 'a' })])).toBe(false);
    // Without a count only the groups seen so far are known.
    expect(meetsConstraints([c('zone', 'GROUP_BY')], at('h2', { zone: 'a' }), placed)).toBe(true);
  });

  it('names the constraint an offer breaks', () => {
    const constraints = [c('hostname', 'UNLIKE', 'x'), c('hostname', 'UNIQUE')];
    expect(unmetConstraint(constraints, at('a'), [at('a')])).toEqual(c('hostname', 'UNIQUE'));
  });
});

describe('chooseOffer (default spread)', () => {
  it('prefers the agent running the fewest instances, keeping the caller\'s order on ties', () => {
    const offers = [at('a'), at('b'), at('c')];
    expect(chooseOffer([], offers, [at('a'), at('b')])).toBe(offers[2]);
    expect(chooseOffer([], offers, [at('a')])).toBe(offers[1]);
    expect(chooseOffer([], offers, [])).toBe(offers[0]);
  });

  it('returns undefined when no offer meets the constraints', () => {
    expect(chooseOffer([c('hostname', 'UNIQUE')], [at('a')], [at('a')])).toBeUndefined();
  });
});

describe('constraint properties', () => {
  const hosts = ['h1', 'h2', 'h3', 'h4', 'h5'];
  const zoneOf = (h: string): string => (h === 'h1' || h === 'h2' ? 'a' : h === 'h3' || h === 'h4' ? 'b' : 'c');
  const offerArb = fc.constantFrom(...hosts).map((h) => at(h, { zone: zoneOf(h) }));
  /** Greedy placement over rounds of random offers, as a scheduler does. */
  function place(constraints: Constraint[], rounds: PlacementTarget[][], want: number): PlacementTarget[] {
    const placed: PlacementTarget[] = [];
    for (const offers of rounds) {
      if (placed.length >= want) break;
      const chosen = chooseOffer(constraints, offers, placed);
      if (chosen) placed.push(chosen);
    }
    return placed;
  }
  const roundsArb = fc.array(fc.array(offerArb, { minLength: 1, maxLength: 5 }), { maxLength: 40 });

  it('UNIQUE hostname never places two instances on one host', () => {
    fc.assert(
      fc.property(roundsArb, fc.integer({ min: 1, max: 10 }), (rounds, want) => {
        const placed = place([c('hostname', 'UNIQUE')], rounds, want);
        expect(new Set(placed.map((p) => p.hostname)).size).toBe(placed.length);
      }),
    );
  });

  it('MAX_PER never exceeds its cap for any value', () => {
    fc.assert(
      fc.property(roundsArb, fc.integer({ min: 1, max: 3 }), (rounds, cap) => {
        const placed = place([c('zone', 'MAX_PER', String(cap))], rounds, 20);
        for (const zone of ['a', 'b', 'c']) expect(placed.filter((p) => p.attributes.zone === zone).length).toBeLessThanOrEqual(cap);
      }),
    );
  });

  it('GROUP_BY with the group count keeps every group within one instance of the others', () => {
    fc.assert(
      fc.property(roundsArb, (rounds) => {
        const placed = place([c('zone', 'GROUP_BY', '3')], rounds, 30);
        const counts = ['a', 'b', 'c'].map((z) => placed.filter((p) => p.attributes.zone === z).length);
        expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
      }),
    );
  });

  it('with no constraints, every offer is acceptable and the spread stays within one per host when all hosts offer', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 20 }), (want) => {
        const allHosts = hosts.map((h) => at(h));
        const placed = place([], Array.from({ length: want }, () => allHosts), want);
        const counts = hosts.map((h) => placed.filter((p) => p.hostname === h).length);
        expect(placed).toHaveLength(want);
        expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
      }),
    );
  });
});
