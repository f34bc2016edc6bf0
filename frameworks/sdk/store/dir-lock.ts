/**
 * One process per data directory. Two schedulers writing one file store would interleave their
 * renames and lose writes, so the store takes a pid lock file. A lock whose process is gone (a
 * crash, kill -9) is stale and taken over.
 */
import { open, readFile, rm, writeFile } from 'node:fs/promises';
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

/** Takes the lock on `dir` and returns its release function. */
export async function lockDir(dir: string): Promise<() => Promise<void>> {
  const path = join(dir, LOCK_FILE);
  try {
    const handle = await open(path, 'wx');
    await handle.writeFile(String(process.pid));
    await handle.close();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const holder = Number((await readFile(path, 'utf8')).trim());
    if (Number.isInteger(holder) && holder > 0 && isAlive(holder)) throw new StoreLockedError(dir, holder);
    await writeFile(path, String(process.pid));
  }
  return async () => {
    await rm(path, { force: true });
  };
}
