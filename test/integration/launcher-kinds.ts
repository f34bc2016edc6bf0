/**
 * Which task launchers the process-containerizer tests run against: 'native' (launcher.c, built
 * with the machine's C compiler) and 'node' (launcher.mjs). Without a C compiler the native runs
 * are skipped, said once per file — unless CI=true: CI must exercise the native launcher.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export type LauncherKind = 'native' | 'node';

export const compilerAvailable = ['cc', 'gcc'].some((compiler) => spawnSync(compiler, ['--version'], { stdio: 'ignore' }).status === 0);

export const launcherKinds: LauncherKind[] = compilerAvailable || process.env.CI === 'true' ? ['native', 'node'] : ['node'];

export const nativeSkipReason = launcherKinds.includes('native') ? undefined : 'skipped: no C compiler (cc or gcc) to build the native launcher';

/** Root on Linux with cgroup v1 (memory and cpu hierarchies) or v2 mounted at /sys/fs/cgroup. */
export const cgroupsUsable =
  process.platform === 'linux' && process.getuid?.() === 0 && (existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes') || existsSync('/sys/fs/cgroup/cgroup.controllers'));
