/**
 * The compare-and-set rules of `Store.commit`, over an in-memory map of JSON texts. The memory and
 * file stores share it so they cannot disagree on a version; Redis runs the same rules in Lua.
 */
import { VersionConflictError } from './errors.ts';
import type { PreparedWrite, StoreEntry } from './store.ts';

export interface Stored {
  text: string;
  version: number;
}

/** What a commit does to each key: its new text and version, or its removal. */
export type Change = { key: string; text: string; version: number } | { key: string; deleted: true };

/** The changes `writes` make to `entries`, or a VersionConflictError for the first failed expectation. */
export function planCommit(entries: ReadonlyMap<string, Stored>, writes: readonly PreparedWrite[]): Change[] {
  for (const write of writes) {
    const actual = entries.get(write.key)?.version ?? 0;
    if (write.expectedVersion !== undefined && write.expectedVersion !== actual) {
      throw new VersionConflictError(write.key, write.expectedVersion, actual);
    }
  }
  return writes.map((write) =>
    write.op === 'put'
      ? { key: write.key, text: write.text, version: (entries.get(write.key)?.version ?? 0) + 1 }
      : { key: write.key, deleted: true as const },
  );
}

export function applyChanges(entries: Map<string, Stored>, changes: readonly Change[]): number[] {
  return changes.map((change) => {
    if ('deleted' in change) {
      entries.delete(change.key);
      return 0;
    }
    entries.set(change.key, { text: change.text, version: change.version });
    return change.version;
  });
}

/** A fresh copy each time (parsed from text), so callers can never mutate what is stored. */
export function entryOf(key: string, stored: Stored): StoreEntry {
  return { key, value: JSON.parse(stored.text) as unknown, version: stored.version };
}

export function listFrom(entries: ReadonlyMap<string, Stored>, prefix: string): StoreEntry[] {
  const out: StoreEntry[] = [];
  for (const [key, stored] of entries) if (key.startsWith(prefix)) out.push(entryOf(key, stored));
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
