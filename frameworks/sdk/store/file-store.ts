/**
 * The default Store: a data directory holding a snapshot and a log of the commits since.
 *
 *   <dir>/LOCK            pid of the process using the store (see dir-lock.ts)
 *   <dir>/snapshot.json   every entry as of the last compaction: {"entries": [[key, version, value], …]}
 *   <dir>/log.jsonl       one line per commit since: {"c": [{"k": key, "v": version, "d": value} | {"k": key, "x": 1}, …]}
 *
 * Durability and atomicity: a commit is one line appended to the log and fdatasync'ed; it has
 * happened once its whole line is on disk. A crash mid-append leaves a last line without its
 * newline, which opening the store drops (that commit never happened) — so a multi-key commit is
 * all or nothing with no journal. Appending to one open file creates no file per commit: the
 * earlier layout (a file per key, written to a temp file and renamed over it) cost an inode
 * allocation and a free per commit, and on ext4 without a journal every allocation then skips the
 * inodes freed in the last minutes, slowing every file creation on the disk (the agent's sandboxes
 * too) — measured at a quarter of a batch benchmark's throughput.
 *
 * Compaction: once the log outgrows the live data, the entries are written to a new snapshot
 * (temp file, fsync, rename, directory fsync) and the log is truncated. A crash between the rename
 * and the truncation is harmless: replaying the log over the new snapshot ends in the same state,
 * since every line holds final contents and versions.
 *
 * A store written by an earlier version (<dir>/entries/*.json, perhaps <dir>/journal.json mid-commit)
 * is read on open, its journal replayed, and turned into a snapshot.
 *
 * Everything is cached in memory at open (a framework's intent is small: definitions, versions,
 * deployments, run records), so reads never touch the disk and writes are serialized one at a time.
 */
import { mkdir, open, readdir, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { lockDir } from './dir-lock.ts';
import { StoreBrokenError, StoreClosedError } from './errors.ts';
import { checkKey, checkPrefix, prepareWrites, type Store, type StoreEntry, type StoreWrite, type WriteOptions } from './store.ts';
import { applyChanges, entryOf, listFrom, planCommit, type Change, type Stored } from './versioned-map.ts';

const SNAPSHOT = 'snapshot.json';
const LOG = 'log.jsonl';

/** Compact when the log is past this size and more than this many times the live data. */
const COMPACT_MIN_BYTES = 4 * 1024 * 1024;
const COMPACT_RATIO = 2;

/** A log line or the snapshot as written: values embedded as they are stored (JSON text). */
type LoggedChange = { k: string; v: number; d: unknown } | { k: string; x: 1 };

export class FileStore implements Store {
  readonly description: string;
  readonly #dir: string;
  readonly #entries: Map<string, Stored>;
  readonly #unlock: () => Promise<void>;
  #log: FileHandle;
  #logBytes: number;
  /** The log size at which to weigh a compaction next (weighing walks every entry). */
  #nextCompactCheck = COMPACT_MIN_BYTES;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;
  #broken: StoreBrokenError | undefined;

  private constructor(dir: string, entries: Map<string, Stored>, log: FileHandle, logBytes: number, unlock: () => Promise<void>) {
    this.#dir = dir;
    this.#entries = entries;
    this.#log = log;
    this.#logBytes = logBytes;
    this.#unlock = unlock;
    this.description = `file store at ${dir}`;
  }

  /** Opens (creating if needed) the store in `dir`, dropping a commit a crash cut short. */
  static async open(dir: string): Promise<FileStore> {
    const root = resolve(dir);
    await mkdir(root, { recursive: true });
    const unlock = await lockDir(root);
    try {
      await migrateFromEntries(root);
      // A compaction that died before its rename: the old snapshot and the log are whole.
      await rm(join(root, `${SNAPSHOT}.tmp`), { recursive: true, force: true });
      const entries = await readSnapshot(root);
      const logPath = join(root, LOG);
      const bytes = await readFile(logPath).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return Buffer.alloc(0);
        throw error;
      });
      const kept = replayLog(entries, bytes, logPath);
      const log = await open(logPath, 'a');
      try {
        // The last commit was being written when the process (or machine) died: it never
        // happened. What is kept is synced, so this process builds only on what is on disk.
        if (kept < bytes.length) await log.truncate(kept);
        await log.datasync();
        await fsyncDir(root);
      } catch (error) {
        await log.close();
        throw error;
      }
      return new FileStore(root, entries, log, kept, unlock);
    } catch (error) {
      await unlock();
      throw error;
    }
  }

  async get(key: string): Promise<StoreEntry | undefined> {
    this.#checkUsable();
    checkKey(key);
    const stored = this.#entries.get(key);
    return stored && entryOf(key, stored);
  }

  async list(prefix: string): Promise<StoreEntry[]> {
    this.#checkUsable();
    checkPrefix(prefix);
    return listFrom(this.#entries, prefix);
  }

  async put(key: string, value: unknown, options: WriteOptions = {}): Promise<number> {
    const [version] = await this.commit([{ op: 'put', key, value, ...options }]);
    return version!;
  }

  async delete(key: string, options: WriteOptions = {}): Promise<boolean> {
    return this.#serialized(async () => {
      const existed = this.#entries.has(key);
      await this.#commitNow(prepareWrites([{ op: 'delete', key, ...options }]));
      return existed;
    });
  }

  async commit(writes: readonly StoreWrite[]): Promise<number[]> {
    const prepared = prepareWrites(writes);
    return this.#serialized(() => this.#commitNow(prepared));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#queue.catch(() => undefined);
    await this.#log.close().catch(() => undefined);
    await this.#unlock();
  }

  #serialized<T>(work: () => Promise<T>): Promise<T> {
    this.#checkUsable();
    const result = this.#queue.then(() => {
      this.#checkUsable();
      return work();
    });
    this.#queue = result.catch(() => undefined);
    return result;
  }

  async #commitNow(writes: ReturnType<typeof prepareWrites>): Promise<number[]> {
    const changes = planCommit(this.#entries, writes);
    if (changes.length === 0) return [];
    const line = Buffer.from(`{"c":[${changes.map(changeText).join(',')}]}\n`);
    // From the first byte written the disk may be ahead of memory: a failure breaks the store
    // (reopening it settles which way the commit went).
    await this.#guarded(async () => {
      for (let offset = 0; offset < line.length; ) offset += (await this.#log.write(line, offset)).bytesWritten;
      await this.#log.datasync();
    });
    this.#logBytes += line.length;
    const versions = applyChanges(this.#entries, changes);
    if (this.#logBytes >= this.#nextCompactCheck) {
      if (this.#logBytes > COMPACT_RATIO * liveBytes(this.#entries)) await this.#compact();
      else this.#nextCompactCheck = this.#logBytes + COMPACT_MIN_BYTES / 4;
    }
    return versions;
  }

  /**
   * The entries to a new snapshot, then an empty log (see the top of this file for a crash between).
   * Optional work: the commit that triggered it is durable already, so a failure here (a full
   * disk, say) fails nothing; the log just stays longer and compaction is tried again later.
   */
  async #compact(): Promise<void> {
    try {
      await writeSnapshot(this.#dir, this.#entries);
    } catch {
      await rm(join(this.#dir, `${SNAPSHOT}.tmp`), { force: true }).catch(() => undefined);
      this.#nextCompactCheck = this.#logBytes + COMPACT_MIN_BYTES;
      return;
    }
    // The snapshot holds everything now; replaying the log over it changes nothing, so a failed
    // truncation only leaves a longer log.
    try {
      await this.#log.truncate(0);
      await this.#log.datasync();
      this.#logBytes = 0;
      this.#nextCompactCheck = COMPACT_MIN_BYTES;
    } catch {
      this.#nextCompactCheck = this.#logBytes + COMPACT_MIN_BYTES;
    }
  }

  async #guarded(work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (error) {
      this.#broken = new StoreBrokenError(this.description, { cause: error });
      throw this.#broken;
    }
  }

  #checkUsable(): void {
    if (this.#closed) throw new StoreClosedError(this.description);
    if (this.#broken) throw this.#broken;
  }
}

function changeText(change: Change): string {
  return 'deleted' in change ? `{"k":${JSON.stringify(change.key)},"x":1}` : `{"k":${JSON.stringify(change.key)},"v":${change.version},"d":${change.text}}`;
}

/** Roughly what a snapshot of the entries takes (UTF-16 units for bytes: close enough to weigh a compaction). */
function liveBytes(entries: ReadonlyMap<string, Stored>): number {
  let bytes = 0;
  for (const [key, stored] of entries) bytes += key.length + stored.text.length + 16;
  return bytes;
}

/**
 * Applies the log's commits to `entries` and returns how many of its bytes hold whole commits.
 * Commits are written one at a time, each synced before the next, so only the last line can be
 * incomplete: cut short by a process dying mid-write (no newline yet), or, after a machine crash,
 * with blocks that never reached the disk (zeros or stale bytes, perhaps with a newline in them).
 * Such a last line is a commit that was never acknowledged, and is dropped. A damaged line with
 * whole commits after it is damage to acknowledged data, and opening stops.
 */
function replayLog(entries: Map<string, Stored>, bytes: Buffer, file: string): number {
  let start = 0;
  let lineNumber = 0;
  while (start < bytes.length) {
    lineNumber++;
    const newline = bytes.indexOf(0x0a, start);
    const end = newline < 0 ? bytes.length : newline;
    const changes = parseCommit(bytes.toString('utf8', start, end));
    if (!changes) {
      if (newline < 0 || !hasCommitAfter(bytes, newline + 1)) return start;
      throw new Error(`${file} line ${lineNumber} is damaged, and commits after it were acknowledged; restore the data directory from a backup`);
    }
    if (newline < 0) return start; // whole, but its newline never made it: not acknowledged either
    for (const change of changes) {
      if ('x' in change) entries.delete(change.k);
      else entries.set(change.k, { text: JSON.stringify(change.d), version: change.v });
    }
    start = newline + 1;
  }
  return start;
}

function parseCommit(line: string): LoggedChange[] | undefined {
  try {
    const changes = (JSON.parse(line) as { c?: unknown }).c;
    if (!Array.isArray(changes)) return undefined;
    const valid = changes.every((c: Partial<{ k: unknown; v: unknown; x: unknown }>) => typeof c?.k === 'string' && (c.x === 1 || (Number.isSafeInteger(c.v) && 'd' in c)));
    return valid ? (changes as LoggedChange[]) : undefined;
  } catch {
    return undefined;
  }
}

function hasCommitAfter(bytes: Buffer, from: number): boolean {
  for (let start = from; start < bytes.length; ) {
    const newline = bytes.indexOf(0x0a, start);
    const end = newline < 0 ? bytes.length : newline;
    if (newline >= 0 && parseCommit(bytes.toString('utf8', start, end))) return true;
    if (newline < 0) return false;
    start = newline + 1;
  }
  return false;
}

async function readSnapshot(dir: string): Promise<Map<string, Stored>> {
  const entries = new Map<string, Stored>();
  let text: string;
  try {
    text = await readFile(join(dir, SNAPSHOT), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return entries;
    throw error;
  }
  // Renamed into place only once complete and synced, so it always parses.
  for (const [key, version, value] of (JSON.parse(text) as { entries: [string, number, unknown][] }).entries) {
    entries.set(key, { text: JSON.stringify(value), version });
  }
  return entries;
}

async function writeSnapshot(dir: string, entries: ReadonlyMap<string, Stored>): Promise<void> {
  const parts: string[] = [];
  for (const [key, stored] of entries) parts.push(`[${JSON.stringify(key)},${stored.version},${stored.text}]`);
  const tmp = join(dir, `${SNAPSHOT}.tmp`);
  const handle = await open(tmp, 'w');
  try {
    await handle.writeFile(`{"entries":[${parts.join(',\n')}]}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, join(dir, SNAPSHOT));
  await fsyncDir(dir);
}

/** A rename is durable only once its directory is synced (POSIX); without it a crash can undo it. */
async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

// -------------------------------------------------------------------------------------------
// The earlier layout: a file per key, and a journal for multi-key commits.

const LEGACY_ENTRY_SUFFIX = '.json';
const LEGACY_JOURNAL = 'journal.json';

/**
 * Turns a store of the earlier layout into a snapshot. Idempotent: until the entries directory is
 * renamed away (after the snapshot is durable) a crash just means doing it again on the next open.
 */
async function migrateFromEntries(dir: string): Promise<void> {
  const entriesDir = join(dir, 'entries');
  let names: string[] | undefined;
  try {
    names = await readdir(entriesDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (names) {
    const entries = new Map<string, Stored>();
    for (const name of names) {
      if (!name.endsWith(LEGACY_ENTRY_SUFFIX)) continue;
      const key = decodeURIComponent(name.slice(0, -LEGACY_ENTRY_SUFFIX.length));
      const { version, value } = JSON.parse(await readFile(join(entriesDir, name), 'utf8')) as { version: number; value: unknown };
      entries.set(key, { text: JSON.stringify(value), version });
    }
    // A multi-key commit was past its commit point when the process died: its journal holds the
    // final contents of every key it changed.
    try {
      const { changes } = JSON.parse(await readFile(join(dir, LEGACY_JOURNAL), 'utf8')) as { changes: Change[] };
      applyChanges(entries, changes);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    await writeSnapshot(dir, entries);
    await rename(entriesDir, join(dir, 'entries.migrated'));
    await fsyncDir(dir);
  }
  // What is left of the old layout, or of a migration cut short after its rename.
  await rm(join(dir, LEGACY_JOURNAL), { force: true });
  await rm(join(dir, 'tmp'), { recursive: true, force: true });
  await rm(join(dir, 'entries.migrated'), { recursive: true, force: true });
}
