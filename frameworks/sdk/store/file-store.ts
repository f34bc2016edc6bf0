/**
 * The default Store: a data directory, one JSON file per key.
 *
 *   <dir>/LOCK            pid of the process using the store (see dir-lock.ts)
 *   <dir>/entries/*.json  {"version": n, "value": …}; the file name is the URI-encoded key
 *   <dir>/journal.json    a multi-key commit being applied (present only mid-commit or after a crash)
 *   <dir>/tmp/            files being written; emptied on open
 *
 * Durability: a file is written to tmp/, fsynced, renamed over its target, and the target directory
 * is fsynced, so a key holds either its old or its new content after a crash, never a torn one.
 * Atomicity across keys: a commit of several keys first makes its journal durable (the commit
 * point), then applies the files, then removes the journal. Opening the store replays a journal
 * left by a crash — applying a change twice is harmless because the journal holds final contents.
 *
 * Everything is cached in memory at open (a framework's intent is small: definitions, versions,
 * deployments), so reads never touch the disk and writes are serialized one at a time.
 */
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { lockDir } from './dir-lock.ts';
import { StoreBrokenError, StoreClosedError } from './errors.ts';
import { checkKey, checkPrefix, prepareWrites, type Store, type StoreEntry, type StoreWrite, type WriteOptions } from './store.ts';
import { applyChanges, entryOf, listFrom, planCommit, type Change, type Stored } from './versioned-map.ts';

const ENTRY_SUFFIX = '.json';
const JOURNAL = 'journal.json';

export class FileStore implements Store {
  readonly description: string;
  readonly #dir: string;
  readonly #entries: Map<string, Stored>;
  readonly #unlock: () => Promise<void>;
  #queue: Promise<unknown> = Promise.resolve();
  #tmpCounter = 0;
  #closed = false;
  #broken: StoreBrokenError | undefined;

  private constructor(dir: string, entries: Map<string, Stored>, unlock: () => Promise<void>) {
    this.#dir = dir;
    this.#entries = entries;
    this.#unlock = unlock;
    this.description = `file store at ${dir}`;
  }

  /** Opens (creating if needed) the store in `dir`, recovering from a crash mid-commit. */
  static async open(dir: string): Promise<FileStore> {
    const root = resolve(dir);
    await mkdir(join(root, 'entries'), { recursive: true });
    const unlock = await lockDir(root);
    try {
      await rm(join(root, 'tmp'), { recursive: true, force: true });
      await mkdir(join(root, 'tmp'));
      await replayJournal(root);
      return new FileStore(root, await loadEntries(root), unlock);
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
    if (changes.length === 1) {
      // One file's rename is atomic by itself: no journal needed.
      await this.#applyDurably(changes);
    } else {
      await this.#writeFileDurably(join(this.#dir, JOURNAL), JSON.stringify({ changes }), this.#dir);
      await this.#applyDurably(changes);
      await this.#afterCommitPoint(async () => {
        await rm(join(this.#dir, JOURNAL));
        await fsyncDir(this.#dir);
      });
    }
    return applyChanges(this.#entries, changes);
  }

  /** Once a journal is durable (or for a single change, once a rename may have happened), a failure leaves the disk ahead of memory. */
  async #applyDurably(changes: readonly Change[]): Promise<void> {
    const entriesDir = join(this.#dir, 'entries');
    if (changes.length === 1) {
      const [change] = changes;
      if ('deleted' in change!) return this.#afterCommitPoint(() => removeEntry(this.#dir, change.key));
      const tmp = await this.#writeTemp(entryText(change!));
      return this.#afterCommitPoint(async () => {
        await rename(tmp, entryPath(this.#dir, change!.key));
        await fsyncDir(entriesDir);
      });
    }
    await this.#afterCommitPoint(() => applyToDisk(this.#dir, changes));
  }

  async #afterCommitPoint(work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (error) {
      this.#broken = new StoreBrokenError(this.description, { cause: error });
      throw this.#broken;
    }
  }

  async #writeTemp(text: string): Promise<string> {
    const tmp = join(this.#dir, 'tmp', `${process.pid}-${++this.#tmpCounter}`);
    await writeAndSync(tmp, text);
    return tmp;
  }

  async #writeFileDurably(path: string, text: string, dir: string): Promise<void> {
    const tmp = await this.#writeTemp(text);
    await rename(tmp, path);
    await fsyncDir(dir);
  }

  #checkUsable(): void {
    if (this.#closed) throw new StoreClosedError(this.description);
    if (this.#broken) throw this.#broken;
  }
}

function entryPath(dir: string, key: string): string {
  return join(dir, 'entries', encodeURIComponent(key) + ENTRY_SUFFIX);
}

function entryText(change: { text: string; version: number }): string {
  return `{"version":${change.version},"value":${change.text}}`;
}

async function writeAndSync(path: string, text: string): Promise<void> {
  const handle = await open(path, 'w');
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
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

async function removeEntry(dir: string, key: string): Promise<void> {
  await rm(entryPath(dir, key), { force: true });
  await fsyncDir(join(dir, 'entries'));
}

/** Idempotent: writes every change's final content, so replaying a half-applied journal is safe. */
async function applyToDisk(dir: string, changes: readonly Change[]): Promise<void> {
  let n = 0;
  for (const change of changes) {
    if ('deleted' in change) {
      await rm(entryPath(dir, change.key), { force: true });
    } else {
      const tmp = join(dir, 'tmp', `journal-${process.pid}-${n++}`);
      await writeAndSync(tmp, entryText(change));
      await rename(tmp, entryPath(dir, change.key));
    }
  }
  await fsyncDir(join(dir, 'entries'));
}

async function replayJournal(dir: string): Promise<void> {
  let text: string;
  try {
    text = await readFile(join(dir, JOURNAL), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  // The journal is renamed into place only once complete, so it always parses.
  const { changes } = JSON.parse(text) as { changes: Change[] };
  await applyToDisk(dir, changes);
  await rm(join(dir, JOURNAL));
  await fsyncDir(dir);
}

async function loadEntries(dir: string): Promise<Map<string, Stored>> {
  const entries = new Map<string, Stored>();
  for (const name of await readdir(join(dir, 'entries'))) {
    if (!name.endsWith(ENTRY_SUFFIX)) continue;
    const key = decodeURIComponent(name.slice(0, -ENTRY_SUFFIX.length));
    const { version, value } = JSON.parse(await readFile(join(dir, 'entries', name), 'utf8')) as { version: number; value: unknown };
    entries.set(key, { text: JSON.stringify(value), version });
  }
  return entries;
}
