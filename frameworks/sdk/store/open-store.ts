/**
 * `--store URL` → a Store. One URL names every kind, so a framework's flag needs no sub-options:
 *
 *   file:///var/lib/agora  or  ./.agora  the default: a data directory (`<dir>/<namespace>/`)
 *   redis://host:6379/0                 Redis (rediss:// for TLS); keys under `agora:{<namespace>}:`
 *   memory:                             nothing persists; for tests and throwaway runs
 */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { StoreUrlError } from './errors.ts';
import { FileStore } from './file-store.ts';
import { MemoryStore } from './memory-store.ts';
import { RedisStore } from './redis-store.ts';
import type { Store } from './store.ts';

export interface OpenStoreOptions {
  /** The framework's name (`services`, `batch`): its directory under a file store, its key prefix in Redis. */
  namespace: string;
  /** Redis only. @default 5000 */
  commandTimeoutMs?: number;
}

export async function openStore(url: string, options: OpenStoreOptions): Promise<Store> {
  if (!/^[A-Za-z0-9_.-]+$/.test(options.namespace) || options.namespace.startsWith('.')) {
    throw new RangeError(`store namespace ${JSON.stringify(options.namespace)} must be letters, digits, "_", "." or "-", not starting with "."`);
  }
  const trimmed = url.trim();
  if (trimmed === '') throw new StoreUrlError(url, 'it is empty');
  if (trimmed === 'memory:') return new MemoryStore();
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(trimmed)?.[1]?.toLowerCase();
  // A Windows drive letter ("C:\…") is a path, not a scheme.
  if (scheme === undefined || (scheme.length === 1 && process.platform === 'win32')) {
    return FileStore.open(join(trimmed, options.namespace));
  }
  switch (scheme) {
    case 'file': {
      let dir: string;
      try {
        dir = fileURLToPath(trimmed);
      } catch (error) {
        throw new StoreUrlError(url, error instanceof Error ? error.message : String(error));
      }
      return FileStore.open(join(dir, options.namespace));
    }
    case 'redis':
    case 'rediss': {
      let parsed: URL;
      try {
        parsed = new URL(trimmed);
      } catch {
        throw new StoreUrlError(url, 'it is not a valid URL');
      }
      if (parsed.hostname === '') throw new StoreUrlError(url, 'it names no host');
      if (parsed.pathname !== '' && parsed.pathname !== '/' && !/^\/\d+$/.test(parsed.pathname)) {
        throw new StoreUrlError(url, `the path must be a database number such as /0, got ${parsed.pathname}`);
      }
      return RedisStore.open({
        url: trimmed,
        namespace: options.namespace,
        ...(options.commandTimeoutMs !== undefined && { commandTimeoutMs: options.commandTimeoutMs }),
      });
    }
    case 'memory':
      throw new StoreUrlError(url, 'a memory store takes nothing after "memory:"');
    default:
      throw new StoreUrlError(url, `the scheme "${scheme}:" is not supported`);
  }
}

/** What `startOnStore` runs: a scheduler that resolves with its framework id once subscribed. */
export interface StoreBackedScheduler {
  start(): Promise<string>;
  close(): Promise<void>;
}

/**
 * Opens a framework's store, builds its scheduler on it and starts it; if starting fails, closes
 * both. `close()` closes the scheduler first (it may still write), then the store.
 */
export async function startOnStore<S extends StoreBackedScheduler>(
  url: string,
  namespace: string,
  build: (store: Store) => S,
): Promise<{ scheduler: S; frameworkId: string; close(): Promise<void> }> {
  const store = await openStore(url, { namespace });
  const scheduler = build(store);
  let frameworkId: string;
  try {
    frameworkId = await scheduler.start();
  } catch (error) {
    await scheduler.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    throw error;
  }
  return {
    scheduler,
    frameworkId,
    async close() {
      await scheduler.close();
      await store.close();
    },
  };
}
