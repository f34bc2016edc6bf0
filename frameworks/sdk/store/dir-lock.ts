/**
 * One process per data directory. Two schedulers writing one file store would interleave their
 * renames and lose writes, so the store takes a pid lock file. A lock whose process is gone (a
 * crash, kill -9) is stale and taken over.
 */
import { readFileSync } from 'node:fs';
import { link, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StoreLockedError } from './errors.ts';

const LOCK_FILE = 'LOCK';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Directories this process holds: its own pid in a LOCK elsewhere is a stale lock of an earlier life. */
const held = new Set<string>();

/** Field 22 of /proc/<pid>/stat: tells a pid's process from a later one given the same pid. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined; // gone, or not Linux
  }
}

/** The LOCK text: "pid start-time" (start time where /proc has it). */
function lockText(): string {
  const started = startTime(process.pid);
  return started === undefined ? String(process.pid) : `${process.pid} ${started}`;
}

/** Whether the process a LOCK names still holds it. */
function holderAlive(text: string, dir: string): number | undefined {
  const [pidText, started] = text.trim().split(' ');
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  // Our own pid: held by us only if we took it (a restarted container is pid 1 again, say).
  if (pid === process.pid) return held.has(dir) ? pid : undefined;
  if (!isAlive(pid)) return undefined;
  // Alive, but another process than the one that wrote it, if its start time differs.
  if (started !== undefined && startTime(pid) !== undefined && startTime(pid) !== started) return undefined;
  return pid;
}

/**
 * Moves a stale LOCK (one whose text is `staleText`) out of the way. Two processes may judge the
 * same LOCK stale at once: the rename moves it for one of them only, and the other, having moved
 * the first one's fresh LOCK instead (its text differs), puts that back and looks again.
 */
async function takeOverStale(path: string, staleText: string): Promise<void> {
  const aside = `${path}.stale.${process.pid}.${Math.random().toString(36).slice(2, 8)}`;
  try {
    await rename(path, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else moved it
    throw error;
  }
  const moved = await readFile(aside, 'utf8').catch(() => staleText);
  if (moved !== staleText) {
    // A live process's LOCK: back where it was (unless yet another process took LOCK meanwhile).
    await link(aside, path).catch(() => undefined);
  }
  await rm(aside, { force: true });
}

/**
 * Takes the lock on `dir` and returns its release function. The LOCK file appears with its
 * content already in it (written to a temp file, then hard-linked into place, which fails if it
 * exists), so a process starting at the same moment never reads an empty one and takes it over.
 */
export async function lockDir(dir: string): Promise<() => Promise<void>> {
  const path = join(dir, LOCK_FILE);
  const mine = join(dir, `${LOCK_FILE}.${process.pid}.${Math.random().toString(36).slice(2, 8)}`);
  await writeFile(mine, lockText());
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await link(mine, path);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT' && attempt < 5) continue; // released meanwhile
        throw error;
      }
      const holder = holderAlive(text, dir);
      if (holder !== undefined) throw new StoreLockedError(dir, holder);
      if (attempt >= 5) throw new StoreLockedError(dir, Number(text.trim().split(' ')[0]) || 0);
      await takeOverStale(path, text);
    }
  } finally {
    await rm(mine, { force: true });
  }
  held.add(dir);
  return async () => {
    held.delete(dir);
    await rm(path, { force: true });
  };
}
