import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  add,
  contains,
  equals,
  formatResources,
  isEmpty,
  normalize,
  normalizeRanges,
  parseAttributes,
  parseResources,
  rangeCount,
  ResourceParseError,
  roundScalar,
  shortfall,
  subtract,
  type Range,
  type Resources,
} from '../../master/protocol/resources.ts';

describe('parseResources / formatResources', () => {
  it('parses scalars, ranges and sets', () => {
    expect(parseResources('cpus:4;mem:8192;ports:[31000-32000,8080];zones:{b,a}')).toEqual({
      cpus: 4,
      mem: 8192,
      ports: [
        [8080, 8080],
        [31000, 32000],
      ],
      zones: ['a', 'b'],
    });
  });

  it('tolerates whitespace and empty parts, merges ranges, dedupes sets, rounds scalars', () => {
    expect(parseResources(' cpus : 1.23456 ; ; ports:[ 10-12 , 13 , 20 ]; tags:{x, x ,y};')).toEqual({
      cpus: 1.235,
      ports: [
        [10, 13],
        [20, 20],
      ],
      tags: ['x', 'y'],
    });
  });

  it('drops empty values (zero scalars, empty ranges and sets)', () => {
    expect(parseResources('cpus:0;ports:[];zones:{}')).toEqual({});
    expect(parseResources('')).toEqual({});
  });

  it('round-trips through formatResources', () => {
    for (const text of ['cpus:4;mem:8192;ports:[8080,31000-32000];zones:{a,b}', 'gpus:1', 'cpus:0.5;disk:100']) {
      expect(formatResources(parseResources(text))).toBe(text);
      expect(parseResources(formatResources(parseResources(text)))).toEqual(parseResources(text));
    }
  });

  it.each([
    ['cpus', /"cpus" is not NAME:VALUE/],
    [':4', /":4" is not NAME:VALUE/],
    ['1cpu:4', /"1cpu" is not a valid resource name/],
    ['cpus:1;cpus:2', /resource "cpus" is given twice/],
    ['cpus:', /"cpus:": expected a non-negative number/],
    ['cpus:-1', /"cpus:-1": expected a non-negative number/],
    ['mem:lots', /"mem:lots": expected a non-negative number/],
    ['cpus:Infinity', /expected a non-negative number/],
    ['ports:[1-2', /"ports:\[1-2": ranges must be closed with \]/],
    ['ports:[a-b]', /"ports": "a-b" is not a range/],
    ['ports:[5-3]', /"ports": range 5-3 ends before it begins/],
    ['zones:{a,b', /"zones:\{a,b": sets must be closed with \}/],
  ])('rejects %j with a message naming the bad part', (text, message) => {
    let thrown: unknown;
    try {
      parseResources(text);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ResourceParseError);
    expect((thrown as Error).message).toMatch(message);
    expect((thrown as ResourceParseError).input).toBe(text);
  });
});

describe('parseAttributes', () => {
  it('parses NAME:VALUE pairs', () => {
    expect(parseAttributes('rack:r1; zone : a;')).toEqual({ rack: 'r1', zone: 'a' });
  });
  it('rejects malformed attributes by name', () => {
    expect(() => parseAttributes('rack')).toThrow(/attribute "rack" is not NAME:VALUE/);
    expect(() => parseAttributes('9rack:x')).toThrow(/"9rack" is not a valid attribute name/);
  });
});

describe('arithmetic', () => {
  it('adds and subtracts scalars without drift', () => {
    let r: Resources = { cpus: 1 };
    for (let i = 0; i < 10; i++) r = add(r, { cpus: 0.1 });
    expect(r.cpus).toBe(2);
    for (let i = 0; i < 10; i++) r = subtract(r, { cpus: 0.1 });
    expect(r.cpus).toBe(1);
    expect(roundScalar(0.1 + 0.2)).toBe(0.3);
  });

  it('subtracting to zero drops the key, and never goes negative', () => {
    expect(subtract({ cpus: 1, mem: 10 }, { cpus: 1 })).toEqual({ mem: 10 });
    expect(subtract({ cpus: 1 }, { cpus: 5 })).toEqual({});
    expect(subtract({ cpus: 1 }, { mem: 5 })).toEqual({ cpus: 1 });
  });

  it('adds, subtracts and contains ranges', () => {
    const a: Resources = { ports: [[31000, 31010]] };
    expect(add(a, { ports: [[31011, 31020]] })).toEqual({ ports: [[31000, 31020]] });
    expect(subtract(a, { ports: [[31003, 31004]] })).toEqual({
      ports: [
        [31000, 31002],
        [31005, 31010],
      ],
    });
    expect(subtract(a, { ports: [[30000, 40000]] })).toEqual({});
    expect(contains(a, { ports: [[31000, 31000]] })).toBe(true);
    expect(contains(a, { ports: [[31010, 31011]] })).toBe(false);
    expect(normalizeRanges([[5, 6], [1, 2], [3, 4], [10, 12]])).toEqual([
      [1, 6],
      [10, 12],
    ]);
    expect(rangeCount([[1, 6], [10, 12]])).toBe(9);
  });

  it('adds, subtracts and contains sets', () => {
    const a: Resources = { zones: ['a', 'b'] };
    expect(add(a, { zones: ['c', 'a'] })).toEqual({ zones: ['a', 'b', 'c'] });
    expect(subtract(a, { zones: ['a'] })).toEqual({ zones: ['b'] });
    expect(subtract(a, { zones: ['a', 'b'] })).toEqual({});
    expect(contains(a, { zones: ['b'] })).toBe(true);
    expect(contains(a, { zones: ['c'] })).toBe(false);
  });

  it('contains over scalars, missing keys and empty values', () => {
    expect(contains({ cpus: 2, mem: 100 }, { cpus: 2 })).toBe(true);
    expect(contains({ cpus: 2 }, { cpus: 2.001 })).toBe(false);
    expect(contains({ cpus: 2 }, { mem: 1 })).toBe(false);
    expect(contains({ cpus: 2 }, { mem: 0, ports: [] })).toBe(true);
    expect(contains({}, {})).toBe(true);
  });

  it('refuses to combine a resource of different kinds', () => {
    expect(() => add({ ports: [[1, 2]] }, { ports: 3 })).toThrow(/"ports" is a ranges in one set and a scalar in the other/);
    expect(contains({ ports: 3 }, { ports: [[1, 2]] })).toBe(false);
  });

  it('does not mutate its inputs', () => {
    const a: Resources = { cpus: 1, ports: [[1, 10]], zones: ['a'] };
    const snapshot = structuredClone(a);
    add(a, { cpus: 1, ports: [[11, 12]], zones: ['b'] });
    subtract(a, { cpus: 1, ports: [[2, 3]], zones: ['a'] });
    normalize(a);
    expect(a).toEqual(snapshot);
  });

  it('describes a shortfall', () => {
    expect(shortfall({ cpus: 1, ports: [[1, 2]] }, { cpus: 2, mem: 5, ports: [[3, 3]] })).toBe(
      'cpus: needs 2, has 1; mem: needs 5, has 0; ports: needs [3], has [1-2]',
    );
    expect(shortfall({ cpus: 4 }, { cpus: 2 })).toBe('');
  });

  it('treats empty sets as empty', () => {
    expect(isEmpty({ cpus: 0, ports: [], zones: [] })).toBe(true);
    expect(isEmpty({ cpus: 0.001 })).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

const scalarArb = fc.integer({ min: 0, max: 100_000 }).map((n) => n / 1000);
const rangesArb = fc
  .array(
    fc.tuple(fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 0, max: 50 })).map(([b, len]): Range => [b, b + len]),
    { maxLength: 5 },
  )
  .map(normalizeRanges);
const setArb = fc.uniqueArray(fc.constantFrom('a', 'b', 'c', 'd', 'e'), { maxLength: 5 });
const resourcesArb: fc.Arbitrary<Resources> = fc
  .record(
    { cpus: scalarArb, mem: scalarArb, ports: rangesArb, zones: setArb },
    { requiredKeys: [] },
  )
  .map((r) => normalize(r as Resources));

/** b ⊆ a, built by taking a part of each of a's values. */
const pairWithSubsetArb = resourcesArb.chain((a) =>
  fc
    .record({
      cpusShare: fc.double({ min: 0, max: 1, noNaN: true }),
      memShare: fc.double({ min: 0, max: 1, noNaN: true }),
      keepRange: fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
      keepItem: fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
    })
    .map(({ cpusShare, memShare, keepRange, keepItem }) => {
      const b: Resources = {};
      if (typeof a.cpus === 'number') b.cpus = Math.floor(a.cpus * cpusShare * 1000) / 1000;
      if (typeof a.mem === 'number') b.mem = Math.floor(a.mem * memShare * 1000) / 1000;
      if (Array.isArray(a.ports)) b.ports = (a.ports as Range[]).filter((_, i) => keepRange[i]);
      if (Array.isArray(a.zones)) b.zones = (a.zones as string[]).filter((_, i) => keepItem[i]);
      return { a, b: normalize(b) };
    }),
);

describe('resource properties', () => {
  it('a − b + b ⊇ a when b ⊆ a (and equals a)', () => {
    fc.assert(
      fc.property(pairWithSubsetArb, ({ a, b }) => {
        expect(contains(a, b)).toBe(true);
        const roundTrip = add(subtract(a, b), b);
        expect(contains(roundTrip, a)).toBe(true);
        expect(equals(roundTrip, a)).toBe(true);
      }),
    );
  });

  it('a + b contains a and b', () => {
    fc.assert(
      fc.property(resourcesArb, resourcesArb, (a, b) => {
        expect(contains(add(a, b), a)).toBe(true);
        expect(contains(add(a, b), b)).toBe(true);
      }),
    );
  });

  it('subtract never yields a negative or empty value, and a − b ⊆ a', () => {
    fc.assert(
      fc.property(resourcesArb, resourcesArb, (a, b) => {
        const diff = subtract(a, b);
        for (const value of Object.values(diff)) {
          if (typeof value === 'number') expect(value).toBeGreaterThan(0);
          else expect(value.length).toBeGreaterThan(0);
        }
        expect(contains(a, diff)).toBe(true);
      }),
    );
  });

  it('normalize is idempotent', () => {
    const rawArb = fc.record(
      {
        cpus: fc.double({ min: 0, max: 100, noNaN: true }),
        ports: fc.array(fc.tuple(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 10 })).map(([b, l]): Range => [b, b + l])),
        zones: fc.array(fc.constantFrom('x', 'y', 'z')),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(rawArb, (raw) => {
        const once = normalize(raw as Resources);
        expect(normalize(once)).toEqual(once);
      }),
    );
  });

  it('parse(format(r)) = r for normalized resources', () => {
    fc.assert(
      fc.property(resourcesArb, (r) => {
        expect(parseResources(formatResources(r))).toEqual(r);
      }),
    );
  });
});
