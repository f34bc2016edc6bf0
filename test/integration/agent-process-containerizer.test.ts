import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { TaskInfo } from '../../master/protocol/messages.ts';
import type { ContainerStatus } from '../../agent/containerizers/containerizer.ts';
import { ProcessContainerizer, type ProcessCheckpoint } from '../../agent/containerizers/process.ts';
import { waitFor } from './helpers.ts';
import { launcherKinds, nativeSkipReason, launchTask, alive, launcherScratch } from './launcher-kinds.ts';

const { root } = launcherScratch('agora-process-');

let seq = 0;
function taskOf(command: string, extra: Partial<TaskInfo> = {}): TaskInfo {
  return { taskId: `t${++seq}`, resources: {}, command: { value: command }, ...extra };
}



function launch(containerizer: ProcessContainerizer, task: TaskInfo, frameworkId = 'fw1') {
  return launchTask(containerizer, root, task, frameworkId);
}

describe.each(launcherKinds)('ProcessContainerizer (%s launcher)', (kind) => {
  const containerizer = new ProcessContainerizer({ cgroups: false, launcher: kind });

  it('reports RUNNING with a pid checkpoint, then FINISHED for a command that exits 0', async () => {
    const run = launch(containerizer, taskOf('true'));
    const end = await run.ended;
    expect(run.statuses[0]?.state).toBe('RUNNING');
    const checkpoint = run.statuses[0]?.checkpoint as ProcessCheckpoint;
    expect(checkpoint.pid).toBeGreaterThan(0);
    expect(end).toMatchObject({ state: 'FINISHED', exitCode: 0 });
  });

  it('reports FAILED with the exit code for a command that exits 3', async () => {
    const end = await launch(containerizer, taskOf('exit 3')).ended;
    expect(end).toMatchObject({ state: 'FAILED', exitCode: 3, message: 'exited with code 3', reason: 'COMMAND_EXITED' });
  });

  it('reports FAILED naming the signal when the task dies of a signal the agent did not send', async () => {
    const end = await launch(containerizer, taskOf('kill -SEGV $$')).ended;
    expect(end.state).toBe('FAILED');
    expect(end.message).toBe('killed by SIGSEGV');
  });

  it('writes stdout and stderr to files in the sandbox', async () => {
    const run = launch(containerizer, taskOf('echo out; echo err >&2; pwd'));
    await run.ended;
    expect(readFileSync(path.join(run.sandbox, 'stdout'), 'utf8')).toBe(`out\n${run.sandbox}\n`);
    expect(readFileSync(path.join(run.sandbox, 'stderr'), 'utf8')).toBe('err\n');
  });

  it('sets AGORA_* variables, the command environment and PORT0..n / PORT / PORTS from the assigned ports', async () => {
    const task = taskOf('echo "$AGORA_TASK_ID $AGORA_FRAMEWORK_ID $AGORA_SANDBOX $GREETING $PORT $PORT0 $PORT1 $PORT2 $PORTS"', {
      resources: { cpus: 0.1, ports: [[31000, 31001], [31005, 31005]] },
      command: { value: '', environment: { GREETING: 'hello' } },
    });
    task.command.value = 'echo "$AGORA_TASK_ID $AGORA_FRAMEWORK_ID $AGORA_SANDBOX $GREETING $PORT $PORT0 $PORT1 $PORT2 $PORTS"';
    const run = launch(containerizer, task, 'fw-env');
    await run.ended;
    expect(readFileSync(path.join(run.sandbox, 'stdout'), 'utf8').trim()).toBe(`${task.taskId} fw-env ${run.sandbox} hello 31000 31000 31001 31005 31000,31001,31005`);
  });

  it('execs `value` with `arguments` when shell is false', async () => {
    const run = launch(containerizer, taskOf('', { command: { value: '/bin/echo', shell: false, arguments: ['a b', '$HOME'] } }));
    await run.ended;
    expect(readFileSync(path.join(run.sandbox, 'stdout'), 'utf8')).toBe('a b $HOME\n');
  });

  it('reports LAUNCH_FAILED when the program cannot be started', async () => {
    const run = launch(containerizer, taskOf('', { command: { value: '/nonexistent/program', shell: false } }));
    const end = await run.ended;
    expect(run.statuses.map((s) => s.state)).toEqual(['FAILED']);
    expect(end.reason).toBe('LAUNCH_FAILED');
    expect(end.message).toMatch(/ENOENT/);
  });

  it('ends a task that exits on SIGTERM as KILLED (TASK_KILLED)', async () => {
    const run = launch(containerizer, taskOf('sleep 30'));
    await run.started;
    run.container.kill(10_000);
    const end = await run.ended;
    expect(end).toMatchObject({ state: 'KILLED', reason: 'TASK_KILLED' });
    expect(end.message).toMatch(/SIGTERM/);
  });

  it('SIGKILLs a task that ignores SIGTERM once the grace period is over', async () => {
    const run = launch(containerizer, taskOf("trap '' TERM; echo ready; sleep 30"));
    await waitFor(() => existsSync(path.join(run.sandbox, 'stdout')) && readFileSync(path.join(run.sandbox, 'stdout'), 'utf8').includes('ready'), 'the trap to be set');
    run.container.kill(500);
    const end = await run.ended;
    expect(end).toMatchObject({ state: 'KILLED', reason: 'TASK_KILLED' });
    expect(end.message).toMatch(/SIGKILL after the grace period/);
  });

  it('never starts a task killed before its sandbox files were open', async () => {
    const run = launch(containerizer, taskOf('echo started'));
    run.container.kill(1000);
    const end = await run.ended;
    expect(run.statuses.map((s) => s.state)).toEqual(['KILLED']);
    expect(end.message).toMatch(/before it started/);
    expect(readFileSync(path.join(run.sandbox, 'stdout'), 'utf8')).toBe('');
  });

  it('kills the children of a task with it', async () => {
    const run = launch(containerizer, taskOf('sleep 30 & echo $! > child.pid; wait'));
    const pidFile = path.join(run.sandbox, 'child.pid');
    await waitFor(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '', 'the child pid');
    const childPid = Number(readFileSync(pidFile, 'utf8'));
    expect(alive(childPid)).toBe(true);
    run.container.kill(5000);
    await run.ended;
    await waitFor(() => !alive(childPid), `child ${childPid} to die`);
  });

  it('sweeps processes a task left behind when it exits', async () => {
    const run = launch(containerizer, taskOf('sleep 30 & echo $! > child.pid'));
    await run.ended;
    const childPid = Number(readFileSync(path.join(run.sandbox, 'child.pid'), 'utf8'));
    await waitFor(() => !alive(childPid), `orphan ${childPid} to die`);
  });

  it('re-adopts a running task from its checkpoint and notices when it ends', async () => {
    const run = launch(containerizer, taskOf('sleep 30'));
    const checkpoint = (await run.started).checkpoint as ProcessCheckpoint;
    const other = new ProcessContainerizer({ cgroups: false, recoverPollMs: 50 });
    const statuses: ContainerStatus[] = [];
    const adopted = other.recover({ frameworkId: 'fw1', task: taskOf('sleep 30'), sandbox: run.sandbox }, checkpoint, (s) => statuses.push(s));
    expect(adopted).toBeDefined();
    adopted!.kill(5000);
    await waitFor(() => statuses.length > 0, 'the re-adopted task to end');
    expect(statuses[0]).toMatchObject({ state: 'KILLED' });
    await run.ended;
    // A pid whose start time differs is someone else's process now.
    expect(other.recover({ frameworkId: 'fw1', task: taskOf('x'), sandbox: run.sandbox }, { pid: process.pid, startTime: '1' }, () => {})).toBeUndefined();
  });
});

const cgroupsUsable = process.platform === 'linux' && process.getuid?.() === 0 && existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes');

describe.skipIf(!cgroupsUsable).each(launcherKinds)('ProcessContainerizer with cgroup v1 limits (%s launcher)', (kind) => {
  const parent = `agora-test-${process.pid}-${kind}`;
  const containerizer = new ProcessContainerizer({ cgroupParent: parent, launcher: kind });
  afterAll(async () => {
    containerizer.close();
    // Task cgroups are idle or removed just after their task ends; give the last ones a moment.
    for (const hierarchy of ['memory', 'cpu']) {
      for (const suffix of ['', '-pool', '-dirty', '-stop']) {
        const dir = `/sys/fs/cgroup/${hierarchy}/${parent}${suffix}`;
        await waitFor(() => {
          try {
            for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) rmdirSync(path.join(dir, entry.name));
            rmdirSync(dir);
            return true;
          } catch (error) {
            return (error as NodeJS.ErrnoException).code === 'ENOENT';
          }
        }, `${dir} to be removable`).catch(() => {});
      }
    }
  });

  it('puts the task in its own memory and cpu cgroups holding its limits, empty once it ends', async () => {
    const limits = await containerizer.init();
    expect(limits.enforced).toBe(true);
    const run = launch(containerizer, taskOf('cat /proc/self/cgroup; sleep 30', { resources: { cpus: 0.5, mem: 64 } }));
    const checkpoint = (await run.started).checkpoint as ProcessCheckpoint;
    const dirs = checkpoint.cgroup!.dirs;
    const memDir = dirs.find((d) => d.includes('/memory/'))!;
    const cpuDir = dirs.find((d) => d.includes('/cpu/'))!;
    expect(readFileSync(path.join(memDir, 'memory.limit_in_bytes'), 'utf8').trim()).toBe(String(64 * 1024 * 1024));
    expect(readFileSync(path.join(cpuDir, 'cpu.cfs_quota_us'), 'utf8').trim()).toBe('50000');
    expect(readFileSync(path.join(cpuDir, 'cpu.cfs_period_us'), 'utf8').trim()).toBe('100000');
    await waitFor(() => readFileSync(path.join(memDir, 'cgroup.procs'), 'utf8').trim() !== '', 'the task to join its cgroup');
    expect(readFileSync(path.join(memDir, 'cgroup.procs'), 'utf8').split('\n')).toContain(String(checkpoint.pid));
    run.container.kill(1000);
    await run.ended;
    // Kept for the next task, or removed: either way nothing of the task is left in them (the
    // task's other processes, killed with it, may take a moment to be gone).
    const procs = (dir: string) => (existsSync(dir) ? readFileSync(path.join(dir, 'cgroup.procs'), 'utf8') : '');
    await waitFor(() => procs(memDir) === '' && procs(cpuDir) === '', () => `the cgroups to be empty (${procs(memDir)} / ${procs(cpuDir)})`);
  });

  it('gives a cleanly ended task\'s cgroups to the next task of the same shape, with that task\'s limits', async () => {
    const pooled = new ProcessContainerizer({ cgroupParent: `${parent}-pool`, launcher: kind });
    await pooled.init();
    try {
      const first = launch(pooled, taskOf('true', { resources: { cpus: 0.5, mem: 64 } }));
      const firstDirs = ((await first.started).checkpoint as ProcessCheckpoint).cgroup!.dirs;
      expect(await first.ended).toMatchObject({ state: 'FINISHED' });
      const second = launch(pooled, taskOf('cat /proc/self/cgroup', { resources: { cpus: 0.25, mem: 48 } }));
      const secondDirs = ((await second.started).checkpoint as ProcessCheckpoint).cgroup!.dirs;
      expect(await second.ended).toMatchObject({ state: 'FINISHED' });
      expect(secondDirs).toEqual(firstDirs);
      const [memDir, cpuDir] = [secondDirs.find((d) => d.includes('/memory/'))!, secondDirs.find((d) => d.includes('/cpu/'))!];
      expect(readFileSync(path.join(second.sandbox, 'stdout'), 'utf8')).toContain(`memory:/${parent}-pool/${path.basename(memDir)}`);
      expect(readFileSync(path.join(memDir, 'memory.limit_in_bytes'), 'utf8').trim()).toBe(String(48 * 1024 * 1024));
      expect(readFileSync(path.join(cpuDir, 'cpu.cfs_quota_us'), 'utf8').trim()).toBe('25000');
      // Another shape (memory only) gets a cgroup of its own.
      const third = launch(pooled, taskOf('true', { resources: { mem: 32 } }));
      const thirdDirs = ((await third.started).checkpoint as ProcessCheckpoint).cgroup!.dirs;
      await third.ended;
      expect(thirdDirs).toHaveLength(1);
      expect(thirdDirs[0]).not.toBe(memDir);
    } finally {
      pooled.close();
    }
    // Stopping removes the idle ones (and the parent with them).
    expect(existsSync(`/sys/fs/cgroup/memory/${parent}-pool`)).toBe(false);
    expect(existsSync(`/sys/fs/cgroup/cpu/${parent}-pool`)).toBe(false);
  });

  it('does not reuse a cgroup a process escaped into, one with an OOM kill, or one with memory still charged to it', async () => {
    const pooled = new ProcessContainerizer({ cgroupParent: `${parent}-dirty`, launcher: kind });
    await pooled.init();
    const shm = `/dev/shm/agora-cgroup-test-${process.pid}-${kind}`;
    let escaped: number | undefined;
    try {
      const dirsOf = async (run: ReturnType<typeof launch>) => ((await run.started).checkpoint as ProcessCheckpoint).cgroup!.dirs;
      // A process in a session of its own outlives the task's group; it still holds the cgroup.
      // (The task waits until it has: otherwise the sweep of its group could catch it before setsid.)
      const escaping = launch(pooled, taskOf(`setsid sh -c 'echo $$ > escaped.pid; exec sleep 30' & while [ ! -s escaped.pid ]; do sleep 0.01; done`, { resources: { mem: 32 } }));
      const escapedDirs = await dirsOf(escaping);
      await escaping.ended;
      escaped = Number(readFileSync(path.join(escaping.sandbox, 'escaped.pid'), 'utf8'));
      // 4 MB in a tmpfs file stays charged to the cgroup after the task is gone.
      const charging = launch(pooled, taskOf(`head -c 4194304 /dev/zero > ${shm}`, { resources: { mem: 32 } }));
      const chargedDirs = await dirsOf(charging);
      expect(await charging.ended).toMatchObject({ state: 'FINISHED' });
      const hog = launch(pooled, taskOf('x=x; while true; do x="$x$x"; done', { resources: { mem: 16 } }));
      const oomDirs = await dirsOf(hog);
      expect(await hog.ended).toMatchObject({ reason: 'CONTAINER_LIMITATION_MEMORY' });
      // Also when the task's own exit hides it (a pipeline, `|| true`).
      const hidden = launch(pooled, taskOf('sh -c \'x=x; while true; do x="$x$x"; done\' || true', { resources: { mem: 16 } }));
      expect(await hidden.ended).toMatchObject({ state: 'FAILED', reason: 'CONTAINER_LIMITATION_MEMORY', exitCode: 0 });
      expect(new Set([escapedDirs[0], chargedDirs[0], oomDirs[0]]).size).toBe(3);
      const next = launch(pooled, taskOf('true', { resources: { mem: 32 } }));
      const nextDirs = await dirsOf(next);
      await next.ended;
      expect([escapedDirs[0], chargedDirs[0], oomDirs[0]]).not.toContain(nextDirs[0]);
      // The two that could go are gone; the one holding the escaped process stays until it ends.
      await waitFor(() => !existsSync(chargedDirs[0]!) && !existsSync(oomDirs[0]!), 'the unreusable cgroups to be removed');
      expect(existsSync(escapedDirs[0]!)).toBe(true);

      // A cgroup the task made inside its own (it runs as root) may hold processes its
      // cgroup.procs does not list: not reused either.
      const nesting = launch(pooled, taskOf('mkdir "$(grep :memory: /proc/self/cgroup | cut -d: -f3 | sed "s|^|/sys/fs/cgroup/memory|")/inner"', { resources: { mem: 32 } }));
      const nestingDirs = await dirsOf(nesting);
      expect(await nesting.ended).toMatchObject({ state: 'FINISHED' });
      expect(existsSync(path.join(nestingDirs[0]!, 'inner'))).toBe(true);
      rmdirSync(path.join(nestingDirs[0]!, 'inner'));
      const after = launch(pooled, taskOf('true', { resources: { mem: 32 } }));
      expect(await dirsOf(after)).not.toEqual(nestingDirs);
      await after.ended;
    } finally {
      if (escaped) process.kill(escaped, 'SIGKILL');
      rmSync(shm, { force: true });
      pooled.close();
    }
  });

  it('removes the cgroup of a task that ends after the agent stopped (nothing is pooled then)', async () => {
    const stopping = new ProcessContainerizer({ cgroupParent: `${parent}-stop`, launcher: kind, recoverPollMs: 50 });
    await stopping.init();
    const release = path.join(root, `release-stop-${kind}`);
    const run = launch(stopping, taskOf(`while [ ! -e '${release}' ]; do sleep 0.02; done`, { resources: { mem: 32 } }));
    const dirs = ((await run.started).checkpoint as ProcessCheckpoint).cgroup!.dirs;
    stopping.close();
    writeFileSync(release, '');
    await run.ended;
    await waitFor(() => !existsSync(dirs[0]!), 'the cgroup of the task that outlived the agent to be removed');
  });

  it('runs the command itself inside the cgroup (no race with its first fork)', async () => {
    const run = launch(containerizer, taskOf('sh -c "cat /proc/self/cgroup"', { resources: { mem: 32 } }));
    await run.ended;
    const name = path.basename((run.statuses[0]?.checkpoint as ProcessCheckpoint).cgroup!.dirs[0]!);
    expect(readFileSync(path.join(run.sandbox, 'stdout'), 'utf8')).toMatch(new RegExp(`memory:/${parent}/${name.replace(/\./g, '\\.')}`));
  });

  it('reports RUNNING only once the task is in its cgroup, so a kill right after it reaches the command', async () => {
    const run = launch(containerizer, taskOf("trap 'echo got TERM' TERM; while true; do sleep 0.05; done", { resources: { mem: 32 } }));
    expect((await run.started).state).toBe('RUNNING');
    // A kill comes back through the master and the scheduler: a few milliseconds, far less than a
    // slow first cgroup attach, but more than the shell needs from the prelude to its trap line.
    await new Promise((resolve) => setTimeout(resolve, 20));
    run.container.kill(300);
    const end = await run.ended;
    expect(end.state).toBe('KILLED');
    expect(readFileSync(path.join(run.sandbox, 'stdout'), 'utf8')).toContain('got TERM');
  });

  it('removes empty task cgroups a killed agent left behind when it starts', async () => {
    const stale = `/sys/fs/cgroup/memory/${parent}/fw.stale.abc123`;
    mkdirSync(stale, { recursive: true });
    await new ProcessContainerizer({ cgroupParent: parent }).init();
    expect(existsSync(stale)).toBe(false);
  });

  it.runIf(kind === 'native')('has the native launcher join the cgroup between fork and exec: the command runs as it is, no shell prelude', async () => {
    const command = 'cat /proc/self/cgroup; tr "\\0" " " < /proc/$$/cmdline';
    const run = launch(containerizer, taskOf(command, { resources: { mem: 32 } }));
    expect((await run.started).state).toBe('RUNNING');
    await run.ended;
    const name = path.basename((run.statuses[0]?.checkpoint as ProcessCheckpoint).cgroup!.dirs[0]!);
    const stdout = readFileSync(path.join(run.sandbox, 'stdout'), 'utf8');
    expect(stdout).toContain(`memory:/${parent}/${name}`);
    expect(stdout.endsWith(`sh -c ${command} `)).toBe(true);
  });

  it('joins the cgroup before exec when shell is false', async () => {
    const run = launch(containerizer, taskOf('', { resources: { mem: 32 }, command: { value: '/bin/cat', shell: false, arguments: ['/proc/self/cgroup'] } }));
    await run.ended;
    const name = path.basename((run.statuses[0]?.checkpoint as ProcessCheckpoint).cgroup!.dirs[0]!);
    expect(readFileSync(path.join(run.sandbox, 'stdout'), 'utf8')).toContain(`memory:/${parent}/${name}`);
  });

  it('reports a memory limit breach as FAILED with CONTAINER_LIMITATION_MEMORY', async () => {
    // Grow a shell variable well past 16 MB.
    const hog = 'x=x; while true; do x="$x$x"; done';
    const end = await launch(containerizer, taskOf(hog, { resources: { mem: 16 } })).ended;
    expect(end).toMatchObject({ state: 'FAILED', reason: 'CONTAINER_LIMITATION_MEMORY' });
  });
});

if (!cgroupsUsable) {
  describe('ProcessContainerizer with cgroup v1 limits', () => {
    it.skip(`skipped: needs root on Linux with cgroup v1 at /sys/fs/cgroup/memory (uid ${process.getuid?.()})`, () => {});
  });
}

const skipped = nativeSkipReason;
if (skipped) {
  describe('ProcessContainerizer (native launcher)', () => {
    it.skip(skipped, () => {});
  });
}
