import { describe, expect, it } from 'vitest';
import { History } from '../../master/cluster/records.ts';

describe('History (completed tasks and frameworks kept for /state)', () => {
  it('keeps the newest items up to its capacity, oldest first', () => {
    const h = new History<number>(3);
    for (let i = 1; i <= 7; i++) h.push(i);
    expect(h.toArray()).toEqual([5, 6, 7]);
  });

  it('finds the newest match first', () => {
    const h = new History<{ id: string; n: number }>(4);
    for (let n = 0; n < 6; n++) h.push({ id: n % 2 ? 'odd' : 'even', n });
    expect(h.find((x) => x.id === 'odd')?.n).toBe(5);
    expect(h.find((x) => x.id === 'even')?.n).toBe(4);
    expect(h.find((x) => x.n === 0)).toBeUndefined(); // dropped
  });

  it('works before it is full', () => {
    const h = new History<number>(10);
    h.push(1);
    h.push(2);
    expect(h.toArray()).toEqual([1, 2]);
    expect(h.find(() => true)).toBe(2);
  });
});

describe('History with a key', () => {
  it('finds the newest item per key in O(1), and forgets evicted ones', () => {
    const h = new History<{ id: string; n: number }>(2, (x) => x.id);
    h.push({ id: 'a', n: 1 });
    h.push({ id: 'a', n: 2 });
    expect(h.get('a')?.n).toBe(2);
    h.push({ id: 'b', n: 3 }); // evicts a/1, which is not the newest 'a'
    expect(h.get('a')?.n).toBe(2);
    h.push({ id: 'c', n: 4 }); // evicts a/2
    expect(h.get('a')).toBeUndefined();
    expect(h.get('c')?.n).toBe(4);
  });
});
