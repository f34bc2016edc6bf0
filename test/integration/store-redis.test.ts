/**
 * RedisStore against a real redis-server (`.ci/run` starts one). Uses AGORA_TEST_REDIS_URL or
 * redis://127.0.0.1:6379. Without a reachable Redis the suite is skipped with one line — except
 * under CI=true, where a missing Redis is a failure, not a skip.
 */
import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore, RedisStore, type Store } from '../../frameworks/sdk/store/index.ts';
import { storeContract } from '../unit/store-contract.ts';
import { testRedis } from './helpers.ts';

const { url, reachable } = await testRedis('store-redis');

const namespaces: string[] = [];
function freshNamespace(): string {
  const namespace = `test-${randomUUID()}`;
  namespaces.push(namespace);
  return namespace;
}

afterAll(async () => {
  if (!reachable) return;
  const admin = new Redis(url);
  for (const namespace of namespaces) {
    const keys = await admin.keys(`agora:{${namespace}}:*`);
    if (keys.length > 0) await admin.del(...keys);
  }
  await admin.quit();
});

describe.skipIf(!reachable)('RedisStore', () => {
  storeContract('redis store', () => openStore(url, { namespace: freshNamespace() }), { propertyRuns: 15 });

  it('keeps each namespace apart, under the agora:{<namespace>}: prefix', async () => {
    const [services, batch] = [freshNamespace(), freshNamespace()];
    const a = await RedisStore.open({ url, namespace: services });
    const b = await RedisStore.open({ url, namespace: batch });
    await a.put('apps/web', 'services');
    await b.put('apps/web', 'batch');
    expect((await a.get('apps/web'))?.value).toBe('services');
    expect(await b.list('')).toEqual([{ key: 'apps/web', value: 'batch', version: 1 }]);
    expect(a.description).toMatch(/^redis store at redis:\/\/\S+ \(keys agora:\{test-[0-9a-f-]+\}:\*\)$/);
    const admin = new Redis(url);
    expect((await admin.keys(`agora:{${services}}:*`)).sort()).toEqual([`agora:{${services}}:e:apps/web`, `agora:{${services}}:index`]);
    await admin.quit();
    await Promise.all([a.close(), b.close()]);
  });

  it('survives a restarted Redis forgetting its scripts (NOSCRIPT → EVAL)', async () => {
    const store: Store = await openStore(url, { namespace: freshNamespace() });
    await store.put('a', 1);
    const admin = new Redis(url);
    await admin.script('FLUSH');
    await admin.quit();
    expect(await store.put('a', 2, { expectedVersion: 1 })).toBe(2);
    expect(await store.list('')).toEqual([{ key: 'a', value: 2, version: 2 }]);
    await store.close();
  });

  it('sees what another process committed (two stores, one namespace)', async () => {
    const namespace = freshNamespace();
    const writer = await openStore(url, { namespace });
    const reader = await openStore(url, { namespace });
    await writer.commit([
      { op: 'put', key: 'apps/web', value: { v: 1 } },
      { op: 'put', key: 'deployments/d1', value: { steps: 1 } },
    ]);
    expect((await reader.list('')).map((e) => e.key)).toEqual(['apps/web', 'deployments/d1']);
    await expect(reader.put('apps/web', { v: 0 }, { expectedVersion: 0 })).rejects.toThrow(/version 1, the write expected it to be absent/);
    await Promise.all([writer.close(), reader.close()]);
  });
});
