/**
 * Sandboxes (`workDir/sandboxes/<frameworkId>/<taskId>/`) outlive their tasks so operators can read
 * the logs; ones whose task has ended are removed once nothing in them changed for the retention
 * period (Mesos' --gc_delay, default one week).
 */
import { readdir, rm, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';

export const DEFAULT_SANDBOX_RETENTION_MS = 7 * 24 * 60 * 60 * 1000;

export function sandboxPath(workDir: string, frameworkId: string, taskId: string): string {
  return path.join(workDir, 'sandboxes', frameworkId, taskId);
}

async function newestMtimeMs(dir: string): Promise<number> {
  let newest = 0;
  for (const file of [dir, path.join(dir, 'stdout'), path.join(dir, 'stderr')]) {
    try {
      newest = Math.max(newest, (await stat(file)).mtimeMs);
    } catch {
      // missing file
    }
  }
  return newest;
}

async function subdirs(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    return [];
  }
}

/** Removes sandboxes of tasks that are not active and untouched for `retentionMs`. Returns the removed paths. */
export async function collectSandboxes(
  workDir: string,
  retentionMs: number,
  isActive: (frameworkId: string, taskId: string) => boolean,
  nowMs = Date.now(),
): Promise<string[]> {
  const root = path.join(workDir, 'sandboxes');
  const removed: string[] = [];
  for (const frameworkId of await subdirs(root)) {
    const frameworkDir = path.join(root, frameworkId);
    for (const taskId of await subdirs(frameworkDir)) {
      if (isActive(frameworkId, taskId)) continue;
      const dir = path.join(frameworkDir, taskId);
      if (nowMs - (await newestMtimeMs(dir)) < retentionMs) continue;
      if (isActive(frameworkId, taskId)) continue; // relaunched while we looked
      await rm(dir, { recursive: true, force: true });
      removed.push(dir);
    }
    await rmdir(frameworkDir).catch(() => {
      // not empty
    });
  }
  return removed;
}
