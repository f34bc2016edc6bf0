/**
 * Which task launchers the process-containerizer tests run against: 'native' (launcher.c, built
 * with the machine's C compiler) and 'node' (launcher.mjs). Without a C compiler the native runs
 * are skipped, said once per file — unless CI=true: CI must exercise the native launcher.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';

export type LauncherKind = 'native' | 'node';

export const compilerAvailable = ['cc', 'gcc'].some((compiler) => spawnSync(compiler, ['--version'], { stdio: 'ignore' }).status === 0);

export const launcherKinds: LauncherKind[] = compilerAvailable || process.env.CI === 'true' ? ['native', 'node'] : ['node'];

export const nativeSkipReason = launcherKinds.includes('native') ? undefined : 'skipped: no C compiler (cc or gcc) to build the native launcher';

/** Root on Linux with cgroup v1 (memory and cpu hierarchies) or v2 mounted at /sys/fs/cgroup. */
export const cgroupsUsable =
  process.platform === 'linux' && process.getuid?.() === 0 && (existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes') || existsSync('/sys/fs/cgroup/cgroup.controllers'));

/**
 * A scratch directory for a test file, and the pids of task process groups it leaves running on
 * purpose (tasks that outlive their launcher): both cleaned up after the file.
 */
export function launcherScratch(prefix: string): { root: string; leftovers: number[] } {
  const root = mkdtempSync(path.join(os.tmpdir(), prefix));
  const leftovers: number[] = [];
  afterAll(() => {
    for (const pid of leftovers) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(root, { recursive: true, force: true });
  });
  return { root, leftovers };
}
