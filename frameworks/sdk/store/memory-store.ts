/** A Store in process memory: for tests and `memory:`. Values are kept as JSON text, like the real stores. */
import { StoreClosedError } from './errors.ts';
import { checkKey, checkPrefix, prepareWrites, type Store, type StoreEntry, type StoreWrite, type WriteOptions } from './store.ts';
import { applyChanges, entryOf, listFrom, planCommit, type Stored } from './versioned-map.ts';

export class MemoryStore implements Store {
  readonly description = 'memory store';
  readonly #entries = new Map<string, Stored>();
  #closed = false;

  async get(key: string): Promise<StoreEntry | undefined> {
    this.#checkOpen();
    checkKey(key);
    const stored = this.#entries.get(key);
    return stored && entryOf(key, stored);
  }

  async list(prefix: string): Promise<StoreEntry[]> {
    this.#checkOpen();
    checkPrefix(prefix);
    return listFrom(this.#entries, prefix);
  }

  async put(key: string, value: unknown, options: WriteOptions = {}): Promise<number> {
    const [version] = await this.commit([{ op: 'put', key, value, ...options }]);
    return version!;
  }

  async delete(key: string, options: WriteOptions = {}): Promise<boolean> {
    this.#checkOpen();
    const existed = this.#entries.has(key);
    await this.commit([{ op: 'delete', key, ...options }]);
    return existed;
  }

  async commit(writes: readonly StoreWrite[]): Promise<number[]> {
    this.#checkOpen();
    const changes = planCommit(this.#entries, prepareWrites(writes));
    return applyChanges(this.#entries, changes);
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #checkOpen(): void {
    if (this.#closed) throw new StoreClosedError(this.description);
  }
}
