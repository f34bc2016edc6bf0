/**
 * The process containerizer's launcher (agent/containerizers/launcher.c compiled, or launcher.mjs):
 * the small child process that spawns tasks for the agent. What happens when it dies, when the agent
 * dies, and when it cannot start at all; what reaches the task. Each case runs against both.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { TaskInfo } from '../../master/protocol/messages.ts';
import { ProcessContainerizer, type ProcessCheckpoint } from '../../agent/containerizers/process.ts';
import { nativeLauncher } from '../../agent/containerizers/native-launcher.ts';
import { waitFor } from './helpers.ts';
import { launcherKinds, nativeSkipReason, launcherScratch, launchTask, alive } from './launcher-kinds.ts';

const { root, leftovers } = launcherScratch('agora-launcher-');

let seq = 0;
function taskOf(command: string, extra: Partial<TaskInfo['command']> = {}): TaskInfo {
  return { taskId: `l${++seq}`, resources: {}, command: { value: command, ...extra } };
}



function launch(containerizer: ProcessContainerizer, task: TaskInfo) {
  return launchTask(containerizer, root, task);
}

describe.each(launcherKinds)('the process containerizer launcher (%s)', (kind) => {
  it('spawns tasks from a launcher process, not from the agent', async () => {
    const containerizer = new ProcessContainerizer({ cgroups: false, launcher: kind });
    const run = launch(containerizer, taskOf('echo $PPID'));
    expect(await run.ended).toMatchObject({ state: 'FINISHED' });
    const launcherPid = containerizer.launcherPid;
    expect(launcherPid).toBeGreaterThan(0);
    expect(launcherPid).not.toBe(process.pid);
    expect(containerizer.launcherKind).toBe(kind);
    // The native one is its own program, not node.
    if (kind === 'native') expect(readlinkSync(`/proc/${launcherPid}/exe`)).toMatch(/\/launcher-[0-9a-f]{16}$/);
    else expect(readlinkSync(`/proc/${launcherPid}/exe`)).toBe(readlinkSync('/proc/self/exe'));
    // sh's parent is the launcher.
    expect(readFileSync(path.join(run.sandbox, 'stdout'), 'utf8').trim()).toBe(String(launcherPid));
    containerizer.close();
    await waitFor(() => !alive(launcherPid!), 'the closed launcher to exit');
  });

  it('when the launcher is SIGKILLed, keeps watching its running task, reports it when it ends, and launches new tasks through a new launcher', async () => {
    const containerizer = new ProcessContainerizer({ cgroups: false, recoverPollMs: 50, launcher: kind });
    // The task runs until the test lets it end.
    const release = path.join(root, `release-${kind}`);
    const run = launch(containerizer, taskOf(`while [ ! -e '${release}' ]; do sleep 0.05; done`));
    const { pid } = (await run.started).checkpoint as ProcessCheckpoint;
    leftovers.push(pid);
    const first = containerizer.launcherPid!;
    process.kill(first, 'SIGKILL');
    await waitFor(() => containerizer.launcherPid === undefined, 'the agent to notice the launcher is gone');

    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(alive(pid)).toBe(true);
    expect(run.statuses.map((s) => s.state)).toEqual(['RUNNING']);

    // A new task goes through a new launcher.
    const next = launch(containerizer, taskOf('echo fine'));
    expect(await next.ended).toMatchObject({ state: 'FINISHED', exitCode: 0 });
    expect(readFileSync(path.join(next.sandbox, 'stdout'), 'utf8')).toBe('fine\n');
    expect(containerizer.launcherPid).toBeGreaterThan(0);
    expect(containerizer.launcherPid).not.toBe(first);

    // The orphaned task ends: reported, with its exit status unknown (init reaped it, not us).
    writeFileSync(release, '');
    const end = await run.ended;
    expect(end).toMatchObject({ state: 'FAILED', reason: 'AGENT_RESTARTED' });
    expect(end.message).toMatch(/launcher died/);
    expect(run.statuses.map((s) => s.state)).toEqual(['RUNNING', 'FAILED']);
    containerizer.close();
  });

  it('kills an orphaned task by its process group when asked', async () => {
    const containerizer = new ProcessContainerizer({ cgroups: false, recoverPollMs: 50, launcher: kind });
    const run = launch(containerizer, taskOf('sleep 30'));
    const { pid } = (await run.started).checkpoint as ProcessCheckpoint;
    leftovers.push(pid);
    process.kill(containerizer.launcherPid!, 'SIGKILL');
    await waitFor(() => containerizer.launcherPid === undefined, 'the agent to notice the launcher is gone');
    run.container.kill(5000);
    expect(await run.ended).toMatchObject({ state: 'KILLED', reason: 'TASK_KILLED' });
    await waitFor(() => !alive(pid), `task ${pid} to die`);
    containerizer.close();
  });

  it('carries out a kill that arrives while the launcher is spawning the task', async () => {
    const containerizer = new ProcessContainerizer({ cgroups: false, launcher: kind });
    const run = launch(containerizer, taskOf('echo $$ > task.pid; exec sleep 30'));
    // Past the agent's preparation (the request is on its way to the launcher), before its pid is back.
    await new Promise((resolve) => setImmediate(resolve));
    run.container.kill(5000);
    expect(await run.ended).toMatchObject({ state: 'KILLED', reason: 'TASK_KILLED' });
    const pidFile = path.join(run.sandbox, 'task.pid');
    await new Promise((resolve) => setTimeout(resolve, 100));
    let taskPid: number | undefined;
    try {
      taskPid = Number(readFileSync(pidFile, 'utf8'));
    } catch {
      // never started: fine too
    }
    if (taskPid) await waitFor(() => !alive(taskPid), `task ${taskPid} to die`);
    containerizer.close();
  });

  it('exits when the agent dies, leaving the tasks running', async () => {
    const sandbox = path.join(root, 'sandboxes', `agent-dies-${kind}`);
    mkdirSync(sandbox, { recursive: true });
    const script = fileURLToPath(new URL('./fixtures/launcher-agent-of-kind.ts', import.meta.url));
    const agent = spawn(process.execPath, ['--import', 'tsx', script, sandbox, kind], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      agent.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      agent.once('exit', (code) => reject(new Error(`the agent process exited (${code}) before its task ran`)));
    });
    const { launcherPid, launcherKind, taskPid } = JSON.parse(line) as { launcherPid: number; launcherKind: string; taskPid: number };
    leftovers.push(taskPid);
    expect(launcherKind).toBe(kind);
    expect(alive(launcherPid)).toBe(true);
    agent.kill('SIGKILL');
    await waitFor(() => !alive(launcherPid), 'the launcher to exit after its agent');
    expect(alive(taskPid)).toBe(true);
    process.kill(-taskPid, 'SIGKILL');
  }, 30_000);

  it('reports a program that cannot be found as a launch failure naming it and the error', async () => {
    const containerizer = new ProcessContainerizer({ cgroups: false, launcher: kind });
    const run = launch(containerizer, taskOf('no-such-program-agora', { shell: false, arguments: ['x'] }));
    const end = await run.ended;
    expect(run.statuses.map((s) => s.state)).toEqual(['FAILED']);
    expect(end.reason).toBe('LAUNCH_FAILED');
    expect(end.message).toMatch(/^cannot start no-such-program-agora: .*ENOENT/);
    containerizer.close();
  });

  it('passes arguments and environment with spaces, quotes, newlines, backslashes and UTF-8 through intact', async () => {
    const containerizer = new ProcessContainerizer({ cgroups: false, launcher: kind });
    const weird = ['a b', `it's "quoted"`, 'line\nbreak\r\ttab', 'back\\slash $HOME `x`', 'ünïcødé ✓ 日本', '', '=', '-n'];
    const env = { WEIRD_A: weird[1]!, 'WEIRD B': 'spaced key', WEIRD_C: 'multi\nline = value ✓' };
    // printf prints each argument and variable NUL-terminated, so the file shows exactly what arrived;
    // a name that is no identifier only shows in the environment the shell got (it exports none such).
    const script = 'printf "%s\\0" "$@" "$WEIRD_A" "$WEIRD_C"; grep -z "^WEIRD B=" /proc/$$/environ';
    const run = launch(containerizer, taskOf('/bin/sh', { shell: false, arguments: ['-c', script, 'sh', ...weird], environment: env }));
    expect(await run.ended, readFileSync(path.join(run.sandbox, 'stderr'), 'utf8')).toMatchObject({ state: 'FINISHED' });
    expect(readFileSync(path.join(run.sandbox, 'stdout'), 'utf8')).toBe([...weird, env.WEIRD_A, env.WEIRD_C, 'WEIRD B=spaced key'].map((s) => `${s}\0`).join(''));
    containerizer.close();
  });

  it('fails a task whose command holds a NUL byte, without disturbing the launcher', async () => {
    const containerizer = new ProcessContainerizer({ cgroups: false, launcher: kind });
    const bad = launch(containerizer, taskOf('echo a\0b'));
    expect(await bad.ended).toMatchObject({ state: 'FAILED', reason: 'LAUNCH_FAILED', message: expect.stringMatching(/NUL byte/) });
    const good = launch(containerizer, taskOf('echo fine'));
    expect(await good.ended).toMatchObject({ state: 'FINISHED' });
    expect(readFileSync(path.join(good.sandbox, 'stdout'), 'utf8')).toBe('fine\n');
    containerizer.close();
  });
});

const skipped = nativeSkipReason;
if (skipped) {
  describe('the process containerizer launcher (native)', () => {
    it.skip(skipped, () => {});
  });
}

describe('the process containerizer launcher: in-process and fallbacks', () => {
  it('spawns in-process with launcher: false', async () => {
    const containerizer = new ProcessContainerizer({ cgroups: false, launcher: false });
    const run = launch(containerizer, taskOf('echo $PPID'));
    expect(await run.ended).toMatchObject({ state: 'FINISHED' });
    expect(containerizer.launcherPid).toBeUndefined();
    expect(readFileSync(path.join(run.sandbox, 'stdout'), 'utf8').trim()).toBe(String(process.pid));
  });

  it('falls back to spawning in-process, said once, when launcher.mjs cannot start', async () => {
    const broken = path.join(root, 'broken-launcher.mjs');
    writeFileSync(broken, 'process.exit(3);\n');
    const warnings: string[] = [];
    const containerizer = new ProcessContainerizer({ cgroups: false, launcher: 'node', launcherScript: broken, warn: (m) => warnings.push(m) });
    const runs = [launch(containerizer, taskOf('echo one')), launch(containerizer, taskOf('echo two'))];
    for (const run of runs) expect(await run.ended).toMatchObject({ state: 'FINISHED' });
    expect(readFileSync(path.join(runs[0]!.sandbox, 'stdout'), 'utf8')).toBe('one\n');
    const later = launch(containerizer, taskOf('echo $PPID'));
    expect(await later.ended).toMatchObject({ state: 'FINISHED' });
    expect(readFileSync(path.join(later.sandbox, 'stdout'), 'utf8').trim()).toBe(String(process.pid));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/spawned from the agent's process: it exited before it was up \(exit code 3\)/);
  });

  it.skipIf(nativeSkipReason !== undefined)('falls back from a native launcher that cannot start to launcher.mjs, then (forced native) to in-process', async () => {
    // A "compiled launcher" in the cache that exits at once: found there, so used as it is.
    const cacheDir = path.join(root, 'broken-native-cache');
    const built = await nativeLauncher({ cacheDir });
    if (!('path' in built)) throw new Error(built.unavailable);
    writeFileSync(built.path, '#!/bin/sh\nexit 3\n', { mode: 0o755 });

    const warnings: string[] = [];
    const containerizer = new ProcessContainerizer({ cgroups: false, nativeLauncher: { cacheDir }, warn: (m) => warnings.push(m) });
    await containerizer.init();
    const runs = [launch(containerizer, taskOf('echo $PPID')), launch(containerizer, taskOf('echo $PPID'))];
    for (const run of runs) expect(await run.ended).toMatchObject({ state: 'FINISHED' });
    expect(containerizer.launcherKind).toBe('node');
    expect(readFileSync(path.join(runs[1]!.sandbox, 'stdout'), 'utf8').trim()).toBe(String(containerizer.launcherPid));
    expect(warnings).toEqual([expect.stringMatching(/native task launcher \(.*\) is unavailable, so tasks go through launcher\.mjs: it exited before it was up \(exit code 3\)/)]);
    containerizer.close();

    const forced: string[] = [];
    const native = new ProcessContainerizer({ cgroups: false, launcher: 'native', nativeLauncher: { cacheDir }, warn: (m) => forced.push(m) });
    const run = launch(native, taskOf('echo $PPID'));
    expect(await run.ended).toMatchObject({ state: 'FINISHED' });
    expect(readFileSync(path.join(run.sandbox, 'stdout'), 'utf8').trim()).toBe(String(process.pid));
    expect(forced).toEqual([expect.stringMatching(/spawned from the agent's process: it exited before it was up \(exit code 3\)/)]);
  });
});
