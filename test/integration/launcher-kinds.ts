/**
 * What the process-containerizer tests share. Which task launchers they run against: 'native'
 * (launcher.c, built with the machine's C compiler) and 'node' (launcher.mjs); without a C compiler
 * the native runs are skipped, said once per file — unless CI=true: CI must exercise the native
 * launcher. And their scaffolding: a scratch dir, launching a task and collecting its statuses.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';
import type { ContainerStatus } from '../../agent/containerizers/containerizer.ts';
import { processStartTime, type ProcessContainerizer } from '../../agent/containerizers/process.ts';
import { isTerminal, type TaskInfo } from '../../master/protocol/messages.ts';

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

/** Launches a task in a sandbox under `root` and collects its statuses; `ended` resolves with the terminal one. */
export function launchTask(containerizer: ProcessContainerizer, root: string, task: TaskInfo, frameworkId = 'fw') {
  const sandbox = path.join(root, 'sandboxes', frameworkId, task.taskId);
  mkdirSync(sandbox, { recursive: true });
  const statuses: ContainerStatus[] = [];
  let resolveEnded!: (status: ContainerStatus) => void;
  let resolveStarted!: (status: ContainerStatus) => void;
  const ended = new Promise<ContainerStatus>((resolve) => (resolveEnded = resolve));
  /** The first status: RUNNING, or a terminal one if it never started. */
  const started = new Promise<ContainerStatus>((resolve) => (resolveStarted = resolve));
  const container = containerizer.launch({ frameworkId, task, sandbox }, (status) => {
    statuses.push(status);
    resolveStarted(status);
    if (isTerminal(status.state)) resolveEnded(status);
  });
  return { container, statuses, started, ended, sandbox };
}

/** Alive and not a zombie waiting to be reaped. */
export function alive(pid: number): boolean {
  return processStartTime(pid) !== undefined;
}
