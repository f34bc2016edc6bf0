/**
 * A framework's persistent intent: app and job definitions, versions, deployments, run history.
 *
 * The master keeps only soft state (DESIGN.md), so whatever a scheduler must not forget across a
 * restart lives here. The contract is deliberately small — a versioned key/value map with an atomic
 * multi-key commit — so that a file directory, Redis, or memory can all honour it exactly.
 *
 * Versions: every key has a version, a positive integer bumped by each write; an absent key has
 * version 0. A write may carry `expectedVersion`, and then it applies only if the key's current
 * version equals it (compare-and-set; `expectedVersion: 0` means "only if absent"). `commit` applies
 * all its writes or none, so a scheduler that records "deployment D started, app A is now version 7"
 * can never leave one half behind (Marathon's GroupRepository has the same all-or-nothing rule).
 */
import { InvalidKeyError, InvalidValueError } from './errors.ts';

/** One stored value. `value` is plain JSON data: validate it (zod) before trusting its shape. */
export interface StoreEntry {
  key: string;
  value: unknown;
  version: number;
}

export type StoreWrite =
  | { op: 'put'; key: string; value: unknown; expectedVersion?: number }
  | { op: 'delete'; key: string; expectedVersion?: number };

export interface WriteOptions {
  /** Apply only if the key's current version is this (0 = the key must be absent). */
  expectedVersion?: number;
}

export interface Store {
  /** For logs and errors, e.g. `file store at /var/lib/agora/services`. */
  readonly description: string;
  get(key: string): Promise<StoreEntry | undefined>;
  /** Every entry whose key starts with `prefix` ('' = all), sorted by key, as one consistent snapshot. */
  list(prefix: string): Promise<StoreEntry[]>;
  /** Writes one key and returns its new version. Throws VersionConflictError on a failed compare-and-set. */
  put(key: string, value: unknown, options?: WriteOptions): Promise<number>;
  /** Deletes one key; true if it existed. Throws VersionConflictError on a failed compare-and-set. */
  delete(key: string, options?: WriteOptions): Promise<boolean>;
  /**
   * Applies every write or none. Returns, per write, the key's version afterwards (0 for a delete).
   * If any `expectedVersion` does not hold, nothing is written and VersionConflictError names the key.
   * A key may appear at most once.
   */
  commit(writes: readonly StoreWrite[]): Promise<number[]>;
  /** Releases the store (connections, locks). Further calls throw StoreClosedError. */
  close(): Promise<void>;
}

/**
 * Keys are path-like (`apps/shop/web`, `deployments/42`): letters, digits and `_ . : - /`, no empty
 * segment, no `.`/`..` segment. The alphabet keeps them safe as file names and as Redis lex ranges.
 */
const KEY_PATTERN = /^[A-Za-z0-9_.:-]+(\/[A-Za-z0-9_.:-]+)*$/;
export const MAX_KEY_LENGTH = 512;

export function checkKey(key: string): void {
  const valid =
    typeof key === 'string' &&
    key.length <= MAX_KEY_LENGTH &&
    KEY_PATTERN.test(key) &&
    key.split('/').every((segment) => segment !== '.' && segment !== '..');
  if (!valid) {
    throw new InvalidKeyError(key, `must be 1-${MAX_KEY_LENGTH} characters of letters, digits, "_", ".", ":", "-", in "/"-separated segments (no empty, "." or ".." segment)`);
  }
}

/** A list prefix is a key's beginning: the same alphabet, and it may be empty or end in "/". */
export function checkPrefix(prefix: string): void {
  if (prefix !== '' && (prefix.length > MAX_KEY_LENGTH || !/^[A-Za-z0-9_.:\/-]+$/.test(prefix))) {
    throw new InvalidKeyError(prefix, 'a list prefix must be empty or use only letters, digits, "_", ".", ":", "-" and "/"');
  }
}

/** JSON text of a value, or InvalidValueError if it has no JSON form (undefined, a function, a cycle, a BigInt). */
export function serialize(key: string, value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw new InvalidValueError(key, error instanceof Error ? error.message : String(error));
  }
  if (text === undefined) throw new InvalidValueError(key, `${typeof value} has no JSON form`);
  return text;
}

function checkExpectedVersion(key: string, expected: number | undefined): void {
  if (expected !== undefined && !(Number.isSafeInteger(expected) && expected >= 0)) {
    throw new InvalidValueError(key, `expectedVersion must be a non-negative integer, got ${String(expected)}`);
  }
}

/** A write checked and serialized once, before any implementation touches its medium. */
export type PreparedWrite =
  | { op: 'put'; key: string; text: string; expectedVersion: number | undefined }
  | { op: 'delete'; key: string; expectedVersion: number | undefined };

/** Validates keys, versions and values, and rejects a key named twice (its outcome would be ambiguous). */
export function prepareWrites(writes: readonly StoreWrite[]): PreparedWrite[] {
  const seen = new Set<string>();
  return writes.map((write) => {
    checkKey(write.key);
    if (seen.has(write.key)) throw new InvalidKeyError(write.key, 'appears twice in one commit; merge the writes');
    seen.add(write.key);
    checkExpectedVersion(write.key, write.expectedVersion);
    return write.op === 'put'
      ? { op: 'put', key: write.key, text: serialize(write.key, write.value), expectedVersion: write.expectedVersion }
      : { op: 'delete', key: write.key, expectedVersion: write.expectedVersion };
  });
}
