/**
 * Framework stores: where a scheduler keeps its intent across restarts.
 *
 * ```ts
 * const store = await openStore(flags.store ?? '.agora', { namespace: 'services' });
 * const app = await store.get('apps/shop/web');                      // { key, value, version } | undefined
 * await store.commit([
 *   { op: 'put', key: 'apps/shop/web', value: next, expectedVersion: app?.version ?? 0 },
 *   { op: 'put', key: 'deployments/d-42', value: deployment, expectedVersion: 0 },
 * ]);                                                                  // both or neither
 * ```
 */
export * from './errors.ts';
export { FileStore } from './file-store.ts';
export { MemoryStore } from './memory-store.ts';
export { openStore, startOnStore, type OpenStoreOptions, type StoreBackedScheduler } from './open-store.ts';
export { RedisStore, type RedisStoreOptions } from './redis-store.ts';
export { MAX_KEY_LENGTH, type Store, type StoreEntry, type StoreWrite, type WriteOptions } from './store.ts';
