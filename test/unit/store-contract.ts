/**
 * The Store contract, as a suite any implementation runs: `storeContract('file store', openFresh)`.
 * Each test opens a fresh, empty store and closes it afterwards.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidKeyError, InvalidValueError, StoreClosedError, VersionConflictError, type Store, type StoreWrite } from '../../frameworks/sdk/store/index.ts';

export function storeContract(name: string, openFresh: () => Promise<Store>, options: { propertyRuns?: number } = {}): void {
  describe(`${name}: the Store contract`, () => {
    const opened: Store[] = [];
    async function fresh(): Promise<Store> {
      const store = await openFresh();
      opened.push(store);
      return store;
    }
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close()));
    });

    it('returns undefined for a key never written', async () => {
      const store = await fresh();
      expect(await store.get('apps/none')).toBeUndefined();
    });

    it('stores JSON values and bumps the version on every put, starting at 1', async () => {
      const store = await fresh();
      const value = { id: '/shop/web', instances: 3, env: { GREETING: 'héllo ✓' }, ports: [0, 8080], labels: null, ok: true };
      expect(await store.put('apps/shop/web', value)).toBe(1);
      expect(await store.get('apps/shop/web')).toEqual({ key: 'apps/shop/web', value, version: 1 });
      expect(await store.put('apps/shop/web', { ...value, instances: 5 })).toBe(2);
      expect(await store.get('apps/shop/web')).toMatchObject({ value: { instances: 5 }, version: 2 });
    });

    it('stores scalars, strings and arrays as values', async () => {
      const store = await fresh();
      for (const [i, value] of [0, 'text', [1, 'two', { three: 3 }], null, false].entries()) {
        await store.put(`scalars/${i}`, value);
        expect((await store.get(`scalars/${i}`))?.value).toEqual(value);
      }
    });

    it('hands out copies: mutating a value read or written does not change what is stored', async () => {
      const store = await fresh();
      const written = { list: [1, 2] };
      await store.put('k', written);
      written.list.push(3);
      const read = (await store.get('k'))!.value as { list: number[] };
      read.list.push(4);
      expect((await store.get('k'))!.value).toEqual({ list: [1, 2] });
    });

    it('applies a put with expectedVersion only when the version matches (0 = absent)', async () => {
      const store = await fresh();
      expect(await store.put('leader', 'a', { expectedVersion: 0 })).toBe(1);
      const conflict = await store.put('leader', 'b', { expectedVersion: 0 }).catch((e: unknown) => e);
      expect(conflict).toBeInstanceOf(VersionConflictError);
      expect(conflict).toMatchObject({ key: 'leader', expectedVersion: 0, actualVersion: 1 });
      await expect(store.put('leader', 'b', { expectedVersion: 2 })).rejects.toThrow(/version 1.*expected version 2.*nothing was written/);
      expect(await store.put('leader', 'c', { expectedVersion: 1 })).toBe(2);
      expect((await store.get('leader'))!.value).toBe('c');
    });

    it('deletes a key, says whether it existed, and restarts its version at 1 when written again', async () => {
      const store = await fresh();
      await store.put('a', 1);
      await store.put('a', 2);
      expect(await store.delete('a')).toBe(true);
      expect(await store.get('a')).toBeUndefined();
      expect(await store.delete('a')).toBe(false);
      expect(await store.put('a', 3)).toBe(1);
    });

    it('refuses a delete whose expectedVersion does not match and keeps the key', async () => {
      const store = await fresh();
      await store.put('a', 1);
      await expect(store.delete('a', { expectedVersion: 7 })).rejects.toBeInstanceOf(VersionConflictError);
      expect((await store.get('a'))!.value).toBe(1);
      expect(await store.delete('a', { expectedVersion: 1 })).toBe(true);
    });

    it('lists the entries under a prefix, sorted by key', async () => {
      const store = await fresh();
      for (const key of ['apps/b', 'apps/a/x', 'apps/a', 'appsx', 'deployments/1', 'apps/c']) await store.put(key, key.length);
      expect((await store.list('apps/')).map((e) => e.key)).toEqual(['apps/a', 'apps/a/x', 'apps/b', 'apps/c']);
      expect((await store.list('apps')).map((e) => e.key)).toEqual(['apps/a', 'apps/a/x', 'apps/b', 'apps/c', 'appsx']);
      expect((await store.list('')).length).toBe(6);
      expect(await store.list('nothing/')).toEqual([]);
      expect((await store.list('deployments/'))[0]).toEqual({ key: 'deployments/1', value: 13, version: 1 });
    });

    it('commits several writes together and returns each new version (0 for a delete)', async () => {
      const store = await fresh();
      await store.put('apps/web', { v: 1 });
      await store.put('deployments/old', { done: true });
      const versions = await store.commit([
        { op: 'put', key: 'apps/web', value: { v: 2 }, expectedVersion: 1 },
        { op: 'put', key: 'deployments/new', value: { steps: 3 }, expectedVersion: 0 },
        { op: 'delete', key: 'deployments/old' },
      ]);
      expect(versions).toEqual([2, 1, 0]);
      expect((await store.list('')).map((e) => [e.key, e.version])).toEqual([
        ['apps/web', 2],
        ['deployments/new', 1],
      ]);
    });

    it('applies nothing of a commit when any compare-and-set fails', async () => {
      const store = await fresh();
      await store.put('apps/web', { v: 1 });
      await store.put('apps/db', { v: 1 });
      const error = await store
        .commit([
          { op: 'put', key: 'apps/web', value: { v: 2 }, expectedVersion: 1 },
          { op: 'delete', key: 'apps/db' },
          { op: 'put', key: 'deployments/d1', value: {}, expectedVersion: 0 },
          { op: 'put', key: 'framework', value: 'id', expectedVersion: 4 },
        ])
        .catch((e: unknown) => e);
      expect(error).toMatchObject({ name: 'VersionConflictError', key: 'framework', expectedVersion: 4, actualVersion: 0 });
      expect(await store.list('')).toEqual([
        { key: 'apps/db', value: { v: 1 }, version: 1 },
        { key: 'apps/web', value: { v: 1 }, version: 1 },
      ]);
    });

    it('accepts an empty commit', async () => {
      const store = await fresh();
      expect(await store.commit([])).toEqual([]);
    });

    it('rejects a commit naming a key twice, writing nothing', async () => {
      const store = await fresh();
      await expect(
        store.commit([
          { op: 'put', key: 'a', value: 1 },
          { op: 'delete', key: 'a' },
        ]),
      ).rejects.toThrow(/appears twice in one commit/);
      expect(await store.get('a')).toBeUndefined();
    });

    it('rejects keys outside the path-like alphabet', async () => {
      const store = await fresh();
      for (const key of ['', '/apps/web', 'apps//web', 'apps/', 'apps/../secrets', './a', 'a b', 'a\nb', 'ü', 'x'.repeat(513)]) {
        await expect(store.put(key, 1), key).rejects.toBeInstanceOf(InvalidKeyError);
      }
      await expect(store.get('../etc/passwd')).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(store.list('a b')).rejects.toBeInstanceOf(InvalidKeyError);
      expect(await store.put('apps/shop.web/v:2_a-b', 1)).toBe(1);
    });

    it('rejects values without a JSON form', async () => {
      const store = await fresh();
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      for (const value of [undefined, () => 1, 10n, cyclic]) {
        await expect(store.put('bad', value)).rejects.toBeInstanceOf(InvalidValueError);
      }
      expect(await store.get('bad')).toBeUndefined();
    });

    it('lets exactly one of several concurrent compare-and-sets on one version win', async () => {
      const store = await fresh();
      await store.put('counter', 0);
      const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => store.put('counter', i + 1, { expectedVersion: 1 })));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      expect(results.filter((r) => r.status === 'rejected' && r.reason instanceof VersionConflictError)).toHaveLength(7);
      expect((await store.get('counter'))!.version).toBe(2);
    });

    it('loses no increment when concurrent writers retry their compare-and-set', async () => {
      const store = await fresh();
      async function increment(): Promise<void> {
        for (;;) {
          const current = await store.get('counter');
          try {
            await store.put('counter', ((current?.value as number | undefined) ?? 0) + 1, { expectedVersion: current?.version ?? 0 });
            return;
          } catch (error) {
            if (!(error instanceof VersionConflictError)) throw error;
          }
        }
      }
      await Promise.all(Array.from({ length: 10 }, increment));
      expect((await store.get('counter'))!.value).toBe(10);
    });

    it('refuses every call once closed', async () => {
      const store = await openFresh();
      await store.close();
      await expect(store.get('a')).rejects.toBeInstanceOf(StoreClosedError);
      await expect(store.put('a', 1)).rejects.toBeInstanceOf(StoreClosedError);
      await expect(store.list('')).rejects.toBeInstanceOf(StoreClosedError);
      await store.close(); // idempotent
    });

    it('behaves like a map of versioned values under any sequence of commits (model check)', async () => {
      const keyArb = fc.constantFrom('a', 'a/b', 'a/c', 'b', 'bb/x');
      const writeArb: fc.Arbitrary<StoreWrite> = fc.oneof(
        fc.record({ op: fc.constant('put' as const), key: keyArb, value: fc.jsonValue({ maxDepth: 2 }), expectedVersion: fc.option(fc.nat(3), { nil: undefined }) }),
        fc.record({ op: fc.constant('delete' as const), key: keyArb, expectedVersion: fc.option(fc.nat(3), { nil: undefined }) }),
      );
      const commitArb = fc.uniqueArray(writeArb, { selector: (w) => w.key, maxLength: 3 });
      await fc.assert(
        fc.asyncProperty(fc.array(commitArb, { maxLength: 12 }), fc.constantFrom('', 'a', 'a/', 'b'), async (commits, prefix) => {
          const store = await fresh();
          const model = new Map<string, { value: unknown; version: number }>();
          for (const writes of commits) {
            const conflict = writes.some((w) => w.expectedVersion !== undefined && w.expectedVersion !== (model.get(w.key)?.version ?? 0));
            const outcome = await store.commit(writes).then(
              (versions) => ({ versions }),
              (error: unknown) => ({ error }),
            );
            if (conflict) {
              expect('error' in outcome && outcome.error instanceof VersionConflictError).toBe(true);
              continue;
            }
            const expected = writes.map((w) => {
              if (w.op === 'delete') {
                model.delete(w.key);
                return 0;
              }
              // JSON has no -0; a stored -0 reads back as 0.
              const version = (model.get(w.key)?.version ?? 0) + 1;
              model.set(w.key, { value: JSON.parse(JSON.stringify(w.value)) as unknown, version });
              return version;
            });
            expect(outcome).toEqual({ versions: expected });
          }
          const listed = await store.list(prefix);
          const want = [...model].filter(([k]) => k.startsWith(prefix)).sort(([x], [y]) => (x < y ? -1 : 1)).map(([key, e]) => ({ key, ...e }));
          expect(listed).toEqual(want);
          await store.close();
        }),
        { numRuns: options.propertyRuns ?? 30 },
      );
    });
  });
}
