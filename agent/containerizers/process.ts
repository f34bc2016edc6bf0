/**
 * The default containerizer: each task is a child process in its own process group (so a kill
 * reaches everything it started), running in its sandbox with stdout and stderr written straight to
 * files there (file descriptors handed to the child; nothing flows through Node).
 *
 * Limits: when a writable cgroup hierarchy exists and the agent runs as root, each task gets its own
 * cgroup (memory limit = mem, cpu quota = cpus), joined before the task's command runs (by the
 * native launcher between fork and exec, else by a shell prelude), so no process of the task runs
 * unconstrained even for a moment.
 *
 * Kill policy (Mesos' command executor): SIGTERM to the group, SIGKILL after the grace period.
 * When the task's main process exits, whatever is left in its group is SIGKILLed: a container ends
 * with its task.
 *
 * Spawning: through the launcher, a small long-lived child process that forks the tasks and reports
 * their pids and exits over a pipe, like Mesos' `mesos-containerizer launch`. A fork costs in
 * proportion to the forking process's memory, and the agent's is large: spawning from it blocked its
 * main thread for milliseconds per task, the most of its CPU in a batch of short tasks. The launcher
 * is launcher.c, compiled on first use (native-launcher.ts), which also joins the task's cgroups
 * itself; without a C compiler it is launcher.mjs (plain Node, cgroups joined by the shell prelude).
 * Everything else (kills by process group, cgroup creation, checkpoints, statuses) stays here. When
 * the launcher dies, the tasks it spawned are watched by pid like tasks re-adopted after an agent
 * restart, and the next launch starts a new one; when it cannot start at all, the native one gives
 * way to launcher.mjs, and that to spawning from the agent's process as before (also `launcher: false`).
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, open, openSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { rangesOf, scalar } from '../../master/protocol/resources.ts';
import { isTerminal as isTerminalState, Reason, type TaskInfo } from '../../master/protocol/messages.ts';
import type { Readable } from 'node:stream';
import { Cgroups, JOIN_FAILED_EXIT_CODE, joinCgroupScript, killCgroupMembers, oomKilled, removeCgroup, type TaskCgroup } from './cgroups.ts';
import { nativeLauncher, type NativeLauncherOptions } from './native-launcher.ts';
import type { Container, ContainerStatus, Containerizer, LaunchSpec, LimitsInfo, ReportStatus, ContainerizerContext } from './containerizer.ts';

export interface ProcessContainerizerOptions {
  /** 'auto': enforce limits with cgroups when possible. @default 'auto' */
  cgroups?: 'auto' | false;
  /** @default '/sys/fs/cgroup' */
  cgroupRoot?: string;
  /**
   * Parent cgroup under each hierarchy. @default `agora/<a hash of the agent's work dir>`, so
   * agents sharing a host never sweep or collide with each other's task cgroups.
   */
  cgroupParent?: string;
  /** How often a re-adopted task (no longer our child after an agent restart) is checked for exit. @default 500 */
  recoverPollMs?: number;
  /**
   * Spawn tasks through a launcher, a small child process, rather than from the agent's own large
   * one (see the top of this file). true: the native one (launcher.c, built in `init()` or at the
   * first launch) when it can be built, else launcher.mjs; 'native' or 'node': only that one; false:
   * from the agent's process. A launcher that cannot be had falls back (native → launcher.mjs →
   * in-process; a forced one straight to in-process), said once through `warn`. @default true
   */
  launcher?: boolean | 'native' | 'node';
  /** Where a fallback (to launcher.mjs, or to in-process spawning) is reported. @default console.warn */
  warn?: (message: string) => void;
  /** launcher.mjs. @default launcher.mjs next to this file (tests give one that fails) */
  launcherScript?: string;
  /** Where the native launcher's source and compiled binary are (tests give others). @default see native-launcher.ts */
  nativeLauncher?: NativeLauncherOptions;
}

/** What a launcher runs: the compiled launcher.c, or launcher.mjs under node. */
type LauncherProgram = { kind: 'native'; binary: string } | { kind: 'node'; script: string };

const LAUNCHER_SCRIPT = fileURLToPath(new URL('./launcher.mjs', import.meta.url));

/** Launches whose stdout/stderr are being opened at once. */
const MAX_OPENING = 8;

/** What the agent checkpoints for a process container. */
export interface ProcessCheckpoint {
  pid: number;
  /** Field 22 of /proc/<pid>/stat: guards against the pid being reused by another process. */
  startTime?: string;
  cgroup?: TaskCgroup;
}

/** The process's start time in clock ticks since boot, or undefined when it does not exist (or not Linux). */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses; fields after the last ')' are safe.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
    return fields[19];
  } catch {
    return undefined;
  }
}

function processAlive(pid: number, startTime: string | undefined): boolean {
  if (process.platform === 'linux') {
    const now = processStartTime(pid);
    return now !== undefined && (startTime === undefined || now === startTime);
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

/** Environment variables for the ports assigned to a task: PORT0..n, PORT (= PORT0) and PORTS. */
export function portEnvironment(task: TaskInfo): Record<string, string> {
  const env: Record<string, string> = {};
  const ports: number[] = [];
  for (const [begin, end] of rangesOf(task.resources, 'ports')) {
    for (let port = begin; port <= end; port++) ports.push(port);
  }
  if (ports.length === 0) return env;
  ports.forEach((port, i) => (env[`PORT${i}`] = String(port)));
  env.PORT = String(ports[0]);
  env.PORTS = ports.join(',');
  return env;
}

export class ProcessContainerizer implements Containerizer {
  readonly name = 'process';
  private cgroups: Cgroups | undefined;
  private initialised = false;
  private limits: LimitsInfo = { enforced: false, detail: 'not initialised' };
  /** Copied once: reading process.env goes through a slow accessor on every key. */
  private readonly baseEnv: Record<string, string | undefined> = { ...process.env };
  private readonly recoverPollMs: number;
  private opening = 0;
  private readonly openQueue: Array<() => void> = [];
  private launcher: Launcher | undefined;
  /** What the next launcher runs; null: tasks are spawned in-process; undefined: not chosen yet (see chooseLauncher). */
  private program: LauncherProgram | null | undefined;
  private choosing: Promise<void> | undefined;

  constructor(private readonly options: ProcessContainerizerOptions = {}) {
    this.recoverPollMs = options.recoverPollMs ?? 500;
    if (options.launcher === false) this.program = null;
  }

  /** The running launcher's pid (started with the first launch), for diagnostics and tests. */
  get launcherPid(): number | undefined {
    return this.launcher?.pid;
  }

  /** Which launcher runs ('native': launcher.c; 'node': launcher.mjs), if one does. */
  get launcherKind(): LauncherProgram['kind'] | undefined {
    return this.launcher?.pid === undefined ? undefined : this.launcher.program.kind;
  }

  async init(context?: ContainerizerContext): Promise<LimitsInfo> {
    if (this.initialised) return this.limits;
    this.initialised = true;
    // Builds the native launcher (a compile the first time; a file lookup after): ready for the first task.
    await this.chooseLauncher();
    if (this.options.cgroups === false) {
      this.limits = { enforced: false, detail: 'cgroups are disabled in the options' };
      return this.limits;
    }
    const parent = this.options.cgroupParent ?? (context ? `agora/${createHash('sha256').update(context.workDir).digest('hex').slice(0, 12)}` : 'agora');
    const detected = Cgroups.detect(this.options.cgroupRoot, parent);
    if (typeof detected === 'string') {
      this.limits = { enforced: false, detail: detected };
    } else {
      this.cgroups = detected;
      detected.sweepEmpty();
      this.limits = { enforced: true, detail: detected.description };
    }
    return this.limits;
  }

  close(): void {
    // The launcher exits; the tasks it spawned keep running for the next agent to re-adopt.
    this.launcher?.close();
    this.launcher = undefined;
    this.cgroups?.removeParentIfEmpty();
  }

  launch(spec: LaunchSpec, report: ReportStatus): Container {
    const container = new ProcessContainer(report, (cgroup, oomKilled) => this.release(cgroup, oomKilled), { cwd: spec.sandbox, env: () => this.environment(spec) });
    // Creating the task's cgroup is a mkdir and a few writes, on the thread pool; so is opening its
    // stdout and stderr (in the launcher, or here when spawning in-process), which costs more than
    // the spawn on a busy disk. A small window bounds the work (and descriptors) in flight.
    this.whenOpenSlot(
      () =>
        void this.prepare(spec, container)
          .catch((error: Error) => container.failed(`cannot start the task: ${error.message}`))
          .finally(() => this.releaseOpenSlot()),
    );
    return container;
  }

  private async prepare(spec: LaunchSpec, container: ProcessContainer): Promise<void> {
    const { sandbox, task } = spec;
    const cgroups = this.cgroups;
    if (this.program === undefined) await this.chooseLauncher();
    const inProcess = this.program === null;
    let cgroupMade: Promise<TaskCgroup | undefined>;
    try {
      cgroupMade = Promise.resolve(cgroups?.acquire({ memMb: scalar(task.resources, 'mem'), cpus: scalar(task.resources, 'cpus') }));
    } catch (error) {
      cgroupMade = Promise.reject(error as Error);
    }
    const logsOpened = inProcess ? openLogs(sandbox) : Promise.resolve(undefined);
    // Awaited even when both are settled already (the cgroup is made synchronously): a kill asked
    // for in the same turn as the launch is then seen by killedBeforeStart() below.
    const [made, opened] = await Promise.allSettled([cgroupMade, logsOpened]);
    const cgroup = made.status === 'fulfilled' ? made.value : undefined;
    if (opened.status === 'rejected' || made.status === 'rejected') {
      if (opened.status === 'fulfilled' && opened.value) closeLogs(opened.value);
      this.release(cgroup);
      container.failed(opened.status === 'rejected' ? (opened.reason as Error).message : ((made as PromiseRejectedResult).reason as Error).message);
      return;
    }
    const logs = opened.value;
    if (container.killedBeforeStart()) {
      if (logs) closeLogs(logs);
      // The sandbox has its (empty) stdout and stderr as for any task, for whoever reads them.
      else touchLogs(sandbox);
      this.release(cgroup);
      return;
    }
    const launcher = logs ? undefined : this.currentLauncher();
    if (launcher) this.launchThrough(launcher, spec, container, cgroup);
    else await this.spawnHere(spec, container, cgroup, logs);
  }

  private whenOpenSlot(run: () => void): void {
    if (this.opening < MAX_OPENING) {
      this.opening++;
      run();
    } else this.openQueue.push(run);
  }

  private releaseOpenSlot(): void {
    const next = this.openQueue.shift();
    if (next) next();
    else this.opening--;
  }

  /** Decides (once) which launcher runs, building the native one when it is wanted. */
  private chooseLauncher(): Promise<void> {
    this.choosing ??= this.choose();
    return this.choosing;
  }

  private async choose(): Promise<void> {
    const mode = this.options.launcher ?? true;
    if (mode === false) return;
    const node: LauncherProgram = { kind: 'node', script: this.options.launcherScript ?? LAUNCHER_SCRIPT };
    if (mode === 'node') {
      this.program = node;
      return;
    }
    const built = await nativeLauncher(this.options.nativeLauncher);
    if ('path' in built) this.program = { kind: 'native', binary: built.path };
    else if (mode === 'native') {
      this.program = null;
      this.warn(`process containerizer: the native task launcher is unavailable (${built.unavailable}), so tasks are spawned from the agent's process`);
    } else {
      this.program = node;
      this.warn(`process containerizer: native launcher unavailable (${built.unavailable}); using launcher.mjs`);
    }
  }

  private warn(message: string): void {
    (this.options.warn ?? console.warn)(message);
  }

  /** The launcher, started if none runs; undefined when tasks are to be spawned in-process. */
  private currentLauncher(): Launcher | undefined {
    if (this.launcher) return this.launcher;
    const program = this.program;
    if (!program) return undefined;
    const env = { ...this.baseEnv };
    // NODE_OPTIONS (say --import tsx, or a large heap) is for the agent, not this small process;
    // tasks still get it (the launcher gives them the base environment sent below).
    delete env.NODE_OPTIONS;
    try {
      this.launcher = new Launcher(program, env, this.baseEnv, (launcher, wasUp) => this.launcherGone(launcher, wasUp));
    } catch (error) {
      this.launcherFailed(program, `it could not be started: ${(error as Error).message}`);
      return this.currentLauncher();
    }
    return this.launcher;
  }

  private launcherGone(launcher: Launcher, wasUp: boolean): void {
    if (this.launcher === launcher) this.launcher = undefined;
    // Killed after it came up: the next launch starts another. One that never came up will not.
    if (!wasUp) this.launcherFailed(launcher.program, `it exited before it was up (${launcher.exitDescription})`);
  }

  /** The program failed to give a working launcher: the native one gives way to launcher.mjs (unless forced), that to in-process spawning. */
  private launcherFailed(program: LauncherProgram, why: string): void {
    if (this.program !== program) return;
    if (program.kind === 'native' && (this.options.launcher ?? true) === true) {
      this.program = { kind: 'node', script: this.options.launcherScript ?? LAUNCHER_SCRIPT };
      this.warn(`process containerizer: the native task launcher (${program.binary}) is unavailable, so tasks go through launcher.mjs: ${why}`);
      return;
    }
    this.program = null;
    this.warn(`process containerizer: the task launcher (${program.kind === 'native' ? program.binary : program.script}) is unavailable, so tasks are spawned from the agent's process: ${why}`);
  }

  /** What runs: `sh -c` for a shell command, else the program itself; with a cgroup (one the launcher does not join itself), behind the join prelude. */
  private command(spec: LaunchSpec, cgroup: TaskCgroup | undefined): { file: string; args: string[] } {
    const command = spec.task.command;
    const shell = command.shell !== false;
    if (cgroup) {
      const join = joinCgroupScript(cgroup);
      return { file: 'sh', args: shell ? ['-c', `${join}\n${command.value}`] : ['-c', `${join}; exec "$@"`, 'agora-task', command.value, ...(command.arguments ?? [])] };
    }
    if (shell) return { file: 'sh', args: ['-c', command.value] };
    return { file: command.value, args: command.arguments ?? [] };
  }

  private launchThrough(launcher: Launcher, spec: LaunchSpec, container: ProcessContainer, cgroup: TaskCgroup | undefined): void {
    // The native launcher joins the cgroup between fork and exec: the pid it reports is a task in
    // its cgroup already. launcher.mjs cannot, so the command gets the shell prelude, and fd 3 is a
    // pipe the prelude writes one byte to once the shell is inside.
    const joins = launcher.joinsCgroups && cgroup !== undefined;
    const { file, args } = this.command(spec, launcher.joinsCgroups ? undefined : cgroup);
    let pid: number | undefined;
    let startTime: string | undefined;
    launcher.spawn(
      {
        file,
        args,
        cwd: spec.sandbox,
        env: this.taskEnvironment(spec),
        join: joins ? cgroup.dirs.map((dir) => `${dir}/cgroup.procs`) : [],
        ready: cgroup !== undefined && !joins,
      },
      {
        pid: (spawnedPid, spawnedStartTime) => {
          pid = spawnedPid;
          startTime = spawnedStartTime;
          container.spawned(spawnedPid, cgroup, spawnedStartTime);
          if (!cgroup || joins) container.started();
        },
        started: () => container.started(),
        // Both launchers end what is left in the task's group as they reap it.
        exit: (code, signal) => container.exited(code, signal, { groupEnded: true }),
        error: (message) => {
          this.release(cgroup);
          container.failed(message);
        },
        lost: (why) => {
          if (pid !== undefined) {
            // The task runs on without the process that watched it (it is detached): watch it by
            // pid, as after an agent restart. One that had not yet said it was in its cgroup is
            // either there by now or dies writing to the closed ready pipe, which the watch reports.
            if (processAlive(pid, startTime)) container.started();
            this.watch(container, pid, startTime, 'launcher');
          } else if (why === 'never-up') {
            // It never came up, so it spawned nothing: launch this one the next way (see launcherFailed).
            const next = this.currentLauncher();
            if (next) this.launchThrough(next, spec, container, cgroup);
            else this.whenOpenSlot(() => void this.spawnHere(spec, container, cgroup).finally(() => this.releaseOpenSlot()));
          } else {
            // Closed: it spawns nothing after its stdin ends, and every pid it sent has been read.
            // Died: it may have been killed between the fork and the pid: a task we cannot see,
            // except through its cgroup, so whatever is in there is ended before it is removed.
            if (why === 'died' && cgroup) killCgroupMembers(cgroup);
            this.release(cgroup);
            container.failed(why === 'closed' ? 'the agent stopped before the task was spawned' : 'the task launcher died before it reported whether the task started');
          }
        },
      },
    );
  }

  /** Spawns the task from the agent's own process (no launcher), with its stdout/stderr descriptors (opened when not given). */
  private async spawnHere(spec: LaunchSpec, container: ProcessContainer, cgroup: TaskCgroup | undefined, given?: Logs | Error): Promise<void> {
    const logs = given ?? (await openLogs(spec.sandbox).catch((error: Error) => error));
    if (logs instanceof Error) {
      this.release(cgroup);
      container.failed(logs.message);
      return;
    }
    try {
      if (container.killedBeforeStart()) {
        this.release(cgroup);
        return;
      }
      this.spawn(spec, container, logs.stdout, logs.stderr, cgroup);
    } finally {
      closeLogs(logs);
    }
  }

  private spawn(spec: LaunchSpec, container: ProcessContainer, stdout: number, stderr: number, cgroup: TaskCgroup | undefined): void {
    const { file, args } = this.command(spec, cgroup);
    const env = this.environment(spec);

    let child: ChildProcess;
    try {
      // With a cgroup, fd 3 is a pipe the prelude writes one byte to once the shell is inside it.
      const stdio: StdioOptions = cgroup ? ['ignore', stdout, stderr, 'pipe'] : ['ignore', stdout, stderr];
      child = spawn(file, args, { cwd: spec.sandbox, env, stdio, detached: true });
    } catch (error) {
      this.release(cgroup);
      container.failed(`cannot start the task: ${(error as Error).message}`);
      return;
    }
    const pid = child.pid;
    if (pid === undefined) {
      // spawn reports ENOENT/EACCES asynchronously and never emits 'exit'.
      child.once('error', (error) => {
        this.release(cgroup);
        container.failed(`cannot start ${file}: ${error.message}`);
      });
      return;
    }
    // The agent's socket keeps it alive, not its tasks: a stopping agent leaves them running.
    child.unref();
    child.on('error', () => {
      // Errors after a successful spawn (a failed kill) are not task outcomes; 'exit' reports those.
    });
    container.spawned(pid, cgroup);
    const ready = child.stdio[3] as Readable | null | undefined;
    if (ready) {
      ready.once('data', () => container.started());
      ready.on('error', () => {});
      // 'close' comes after the pipe's data, so RUNNING always precedes the terminal state.
      child.once('close', (code, signal) => container.exited(code, signal));
    } else {
      container.started();
      child.once('exit', (code, signal) => container.exited(code, signal));
    }
  }

  recover(spec: LaunchSpec, checkpoint: unknown, report: ReportStatus): Container | undefined {
    const saved = checkpoint as Partial<ProcessCheckpoint> | undefined;
    if (!saved || typeof saved.pid !== 'number') return undefined;
    const { pid, startTime, cgroup } = saved;
    if (!processAlive(pid, startTime)) {
      this.release(cgroup);
      return undefined;
    }
    const container = new ProcessContainer(report, (c, oomKilled) => this.release(c, oomKilled), { cwd: spec.sandbox, env: () => this.environment(spec) });
    container.adopted(pid, cgroup);
    this.watch(container, pid, startTime, 'agent');
    return container;
  }

  /** For a task that is not our child (so no 'exit' event): poll. Its exit status is lost with its parent. */
  private watch(container: ProcessContainer, pid: number, startTime: string | undefined, lostParent: LostParent): void {
    const timer = setInterval(() => {
      if (processAlive(pid, startTime)) return;
      clearInterval(timer);
      container.exited(null, null, { lost: lostParent });
    }, this.recoverPollMs);
    timer.unref();
  }

  /** The task's environment; COMMAND health checks run with it too. */
  private environment(spec: LaunchSpec): Record<string, string | undefined> {
    return { ...this.baseEnv, ...this.taskEnvironment(spec) };
  }

  /** What the task's environment adds to the agent's. */
  private taskEnvironment({ task, frameworkId, sandbox }: LaunchSpec): Record<string, string> {
    return {
      ...task.command.environment,
      ...portEnvironment(task),
      AGORA_TASK_ID: task.taskId,
      AGORA_FRAMEWORK_ID: frameworkId,
      AGORA_SANDBOX: sandbox,
    };
  }

  /** A task's cgroup once the task has ended: kept for the next task, or removed (see Cgroups.release). */
  private release(cgroup: TaskCgroup | undefined, oomKilled?: boolean): void {
    if (!cgroup) return;
    if (this.cgroups) {
      this.cgroups.release(cgroup, oomKilled);
      return;
    }
    removeCgroup(cgroup).catch(() => {
      // A cgroup that will not go away holds a stuck process; nothing more to do here.
    });
  }
}

/** Which parent a task outlived, so its exit status is unknown. */
type LostParent = 'agent' | 'launcher';

interface LaunchRequest {
  file: string;
  args: string[];
  cwd: string;
  /** Added to the base environment the launcher was given. */
  env: Record<string, string>;
  /** cgroup.procs files the task joins between fork and exec (only a launcher that joinsCgroups). */
  join: string[];
  /** Give the task a ready pipe on fd 3 and report `started` when its byte arrives. */
  ready: boolean;
}

interface LaunchHandlers {
  pid(pid: number, startTime: string | undefined): void;
  started(): void;
  exit(code: number | null, signal: NodeJS.Signals | null): void;
  /** It could not be started. */
  error(message: string): void;
  /** The launcher went before the task's exit: see LauncherGone. */
  lost(why: LauncherGone): void;
}

/** never-up: it died before saying it was up, so it spawned nothing; closed: the agent ended it; died: killed, or crashed. */
type LauncherGone = 'never-up' | 'closed' | 'died';

type LauncherMessage = { up: true; id?: undefined } | { id: number; pid: number; startTime?: string } | { id: number; started: true } | { id: number; exit: number | null; signal: NodeJS.Signals | null } | { id: number; error: string };

/** One record of the launchers' input: each field ends with a NUL byte (see launcher.c). */
function record(fields: string[]): string {
  return `${fields.join('\0')}\0`;
}

function environmentEntries(env: Record<string, string | undefined>): string[] {
  const entries: string[] = [];
  for (const [key, value] of Object.entries(env)) if (value !== undefined) entries.push(`${key}=${value}`);
  return entries;
}

/**
 * The agent's end of a launcher (launcher.c compiled, or launcher.mjs): records of NUL-terminated
 * fields to its stdin, newline-delimited JSON back from its stdout.
 */
class Launcher {
  /** It joins the task's cgroups itself (the native one), so no shell prelude or ready pipe is needed. */
  readonly joinsCgroups: boolean;
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, LaunchHandlers>();
  private nextId = 1;
  private up = false;
  private gone = false;
  private closing = false;
  private partial = '';
  exitDescription = 'no exit status';

  constructor(
    readonly program: LauncherProgram,
    ownEnv: Record<string, string | undefined>,
    taskBaseEnv: Record<string, string | undefined>,
    private readonly onGone: (launcher: Launcher, wasUp: boolean) => void,
  ) {
    this.joinsCgroups = program.kind === 'native';
    const stdio: StdioOptions = ['pipe', 'pipe', 'inherit'];
    // launcher.mjs: its fork cost grows with its memory, so keep that small: a 1 MB young generation
    // (it allocates little, and a bigger one only grows its footprint), no V8 helper threads; the
    // old-space cap is only a ceiling, generous for thousands of running tasks' handles. (Measured,
    // 2000 spawns of `true`: ~55 MB RSS and ~0.95 ms of its CPU per spawn, against ~60 MB and ~1.05
    // ms without.) The native one is ~1.3 MB RSS and forks in well under 0.1 ms.
    this.child =
      program.kind === 'native'
        ? spawn(program.binary, [], { stdio, env: ownEnv })
        : spawn(process.execPath, ['--max-old-space-size=64', '--max-semi-space-size=1', '--single-threaded', program.script], { stdio, env: ownEnv });
    // The agent's socket keeps it alive, not its launcher.
    this.child.unref();
    const stdin = this.child.stdin!;
    const stdout = this.child.stdout!;
    (stdin as unknown as { unref?: () => void }).unref?.();
    (stdout as unknown as { unref?: () => void }).unref?.();
    // EPIPE once it is dead; its 'close' reports that.
    stdin.on('error', () => {});
    stdout.setEncoding('utf8');
    stdout.on('data', (chunk: string) => this.onData(chunk));
    // 'close' comes once its stdout is drained, so every pid it sent has been seen by then.
    this.child.once('close', (code, signal) => {
      this.exitDescription = signal ? `killed by ${signal}` : `exit code ${code}`;
      this.died();
    });
    this.child.once('error', (error) => {
      this.exitDescription = error.message;
      this.died();
    });
    const base = environmentEntries(taskBaseEnv);
    stdin.write(record(['B', String(base.length), ...base]));
  }

  get pid(): number | undefined {
    return this.gone ? undefined : this.child.pid;
  }

  spawn(request: LaunchRequest, handlers: LaunchHandlers): void {
    const id = this.nextId++;
    const env = environmentEntries(request.env);
    // argv[0] is the program as given, as node's spawn makes it.
    const argv = [request.file, ...request.args];
    const fields = ['S', String(id), request.cwd, request.file, String(argv.length), ...argv, String(env.length), ...env, String(request.join.length), ...request.join, request.ready ? '1' : '0'];
    // A NUL would end a field early (and no exec can carry one anyway).
    if (fields.some((field) => field.includes('\0'))) {
      handlers.error('cannot start the task: its command, arguments or environment contain a NUL byte');
      return;
    }
    this.pending.set(id, handlers);
    this.child.stdin!.write(record(fields));
  }

  /**
   * Ends it (its stdin closes, so it exits) without touching the tasks it spawned; those are then
   * watched by pid, as the agent's own children went on being watched after a stop.
   */
  close(): void {
    this.closing = true;
    this.child.stdin!.end();
  }

  private onData(chunk: string): void {
    const lines = (this.partial + chunk).split('\n');
    this.partial = lines.pop()!;
    for (const line of lines) {
      if (line === '') continue;
      let message: LauncherMessage;
      try {
        message = JSON.parse(line) as LauncherMessage;
      } catch {
        continue;
      }
      if (message.id === undefined) {
        this.up = true;
        continue;
      }
      const handlers = this.pending.get(message.id);
      if (!handlers) continue;
      if ('pid' in message) handlers.pid(message.pid, message.startTime);
      else if ('started' in message) handlers.started();
      else if ('exit' in message) {
        this.pending.delete(message.id);
        handlers.exit(message.exit, message.signal);
      } else if ('error' in message) {
        this.pending.delete(message.id);
        handlers.error(message.error);
      }
    }
  }

  private died(): void {
    if (this.gone) return;
    this.gone = true;
    const orphans = [...this.pending.values()];
    this.pending.clear();
    if (!this.closing) this.onGone(this, this.up);
    const why: LauncherGone = this.closing ? 'closed' : this.up ? 'died' : 'never-up';
    for (const handlers of orphans) handlers.lost(why);
  }
}

interface Logs {
  stdout: number;
  stderr: number;
}

/** Opens (creating) the sandbox's stdout and stderr for appending, off the main thread. */
function openLogs(sandbox: string): Promise<Logs> {
  return new Promise((resolve, reject) => {
    let pending = 2;
    let failure: Error | null = null;
    const fds = [-1, -1];
    const done = (index: number) => (error: Error | null, fd: number) => {
      if (error) failure ??= error;
      else fds[index] = fd;
      if (--pending > 0) return;
      if (failure) {
        for (const fd of fds) if (fd >= 0) closeSync(fd);
        reject(new Error(`cannot open the task's stdout/stderr in ${sandbox}: ${failure.message}`));
      } else resolve({ stdout: fds[0]!, stderr: fds[1]! });
    };
    open(path.join(sandbox, 'stdout'), 'a', done(0));
    open(path.join(sandbox, 'stderr'), 'a', done(1));
  });
}

function closeLogs(logs: Logs): void {
  closeSync(logs.stdout);
  closeSync(logs.stderr);
}

/** Creates the sandbox's stdout and stderr, empty, for a task that never started (the launcher would have). */
function touchLogs(sandbox: string): void {
  try {
    for (const name of ['stdout', 'stderr']) closeSync(openSync(path.join(sandbox, name), 'a'));
  } catch {
    // A sandbox that is gone has nothing to show anyway.
  }
}

class ProcessContainer implements Container {
  private pid: number | undefined;
  private startTime: string | undefined;
  private cgroup: TaskCgroup | undefined;
  private killing = false;
  /** The grace period of a kill that came before the pid did (the launcher had yet to report it). */
  private pendingGraceMs = 0;
  private done = false;
  /** What its cgroup's OOM counter said when the outcome was decided (undefined: not read). */
  private oomKilled: boolean | undefined;
  private killTimer: NodeJS.Timeout | undefined;
  private forced = false;
  private running = false;

  constructor(
    private readonly reportStatus: ReportStatus,
    /** `oomKilled`: the cgroup's OOM counter as the outcome read it, when it did. */
    private readonly release: (cgroup: TaskCgroup | undefined, oomKilled?: boolean) => void,
    private readonly checkContext: { cwd: string; env: () => Record<string, string | undefined> },
  ) {}

  /**
   * A COMMAND health check: `sh -c` in the task's sandbox with the task's environment, in a process
   * group of its own so a check that overstays its timeout is killed with everything it started.
   * (It does not join the task's cgroup: a check is the agent's work, not the task's.)
   */
  runCheckCommand(command: string, timeoutMs: number): Promise<number> {
    if (this.done) return Promise.reject(new Error('the task has ended'));
    return new Promise((resolve, reject) => {
      let child: ChildProcess;
      try {
        child = spawn('sh', ['-c', command], { cwd: this.checkContext.cwd, env: this.checkContext.env(), stdio: 'ignore', detached: true });
      } catch (error) {
        reject(error as Error);
        return;
      }
      child.unref();
      const timer = setTimeout(() => {
        if (child.pid !== undefined) signalGroup(child.pid, 'SIGKILL');
        reject(new Error(`timed out after ${Number((timeoutMs / 1000).toFixed(3))} s`));
      }, timeoutMs);
      timer.unref();
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        // Whatever the check left behind in its group goes with it.
        if (child.pid !== undefined) signalGroup(child.pid, 'SIGKILL');
        resolve(code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0));
      });
    });
  }

  private report(status: ContainerStatus): void {
    if (isTerminalState(status.state)) {
      if (this.done) return;
      this.done = true;
      this.release(this.cgroup, this.oomKilled);
    }
    this.reportStatus(status);
  }

  /** The process exists: from here on a kill signals its group. */
  spawned(pid: number, cgroup: TaskCgroup | undefined, startTime?: string): void {
    this.pid = pid;
    this.cgroup = cgroup;
    this.startTime = startTime;
    if (this.killing && !this.done) {
      // Killed while the launcher was spawning it: carry the kill out now.
      if (this.pendingGraceMs <= 0) this.forceKill();
      else {
        signalGroup(pid, 'SIGTERM');
        this.killTimer = setTimeout(() => this.forceKill(), this.pendingGraceMs);
      }
    }
  }

  /** The task's command is starting (in its cgroup, if it has one): report RUNNING with what to checkpoint. */
  started(): void {
    if (this.done || this.running || this.pid === undefined) return;
    this.running = true;
    const checkpoint: ProcessCheckpoint = { pid: this.pid, startTime: this.startTime ?? processStartTime(this.pid), ...(this.cgroup ? { cgroup: this.cgroup } : {}) };
    this.report({ state: 'RUNNING', checkpoint });
  }

  /** Re-adopted after an agent restart: already running and already reported. */
  adopted(pid: number, cgroup: TaskCgroup | undefined): void {
    this.pid = pid;
    this.cgroup = cgroup;
    this.running = true;
  }

  failed(message: string): void {
    this.report({ state: 'FAILED', reason: Reason.LAUNCH_FAILED, message });
  }

  /** A kill that arrived while the sandbox files were being opened: never start the task. */
  killedBeforeStart(): boolean {
    if (!this.killing) return false;
    this.report({ state: 'KILLED', reason: Reason.TASK_KILLED, message: 'killed by the agent before it started' });
    return true;
  }

  kill(gracePeriodMs: number): void {
    if (this.done) return;
    if (this.killing) {
      // A second kill with a shorter grace period (e.g. SHUTDOWN after KILL) may hurry it along.
      if (gracePeriodMs === 0 && this.pid !== undefined) this.forceKill();
      return;
    }
    this.killing = true;
    if (this.pid === undefined) {
      // Not spawned yet: killedBeforeStart() reports it, or spawned() carries the kill out.
      this.pendingGraceMs = gracePeriodMs;
      return;
    }
    if (gracePeriodMs <= 0) {
      this.forceKill();
      return;
    }
    signalGroup(this.pid, 'SIGTERM');
    this.killTimer = setTimeout(() => this.forceKill(), gracePeriodMs);
  }

  private forceKill(): void {
    if (this.killTimer) clearTimeout(this.killTimer);
    this.killTimer = undefined;
    this.forced = true;
    if (this.pid !== undefined) signalGroup(this.pid, 'SIGKILL');
  }

  /**
   * `lost`: a process we were not the parent of (re-adopted, or the launcher's that died) ended,
   * and its exit status went to init, not to us. `groupEnded`: whoever reaped it already killed what
   * was left in its process group.
   */
  exited(code: number | null, signal: NodeJS.Signals | null, how: { lost?: LostParent; groupEnded?: boolean } = {}): void {
    if (this.done) return;
    if (this.killTimer) clearTimeout(this.killTimer);
    // The container ends with its task: sweep what the task left in its group.
    if (this.pid !== undefined && !how.groupEnded) signalGroup(this.pid, 'SIGKILL');
    this.report(this.outcome(code, signal, how.lost));
  }

  private outcome(code: number | null, signal: NodeJS.Signals | null, unknown: LostParent | undefined): ContainerStatus {
    if (this.killing) {
      const how = this.forced ? 'SIGKILL after the grace period' : 'SIGTERM';
      return { state: 'KILLED', reason: Reason.TASK_KILLED, message: `killed by the agent (${how})`, ...(code !== null ? { exitCode: code } : {}) };
    }
    if (!this.running && this.cgroup && code === JOIN_FAILED_EXIT_CODE) {
      return { state: 'FAILED', reason: Reason.LAUNCH_FAILED, message: `cannot move the task into its cgroup (${this.cgroup.dirs.join(', ')}); see its stderr` };
    }
    // Whatever the exit code: a pipeline or `|| true` can hide a process the OOM killer ended.
    if (this.cgroup) this.oomKilled = oomKilled(this.cgroup);
    if (this.cgroup && this.oomKilled) {
      return {
        state: 'FAILED',
        reason: Reason.CONTAINER_LIMITATION_MEMORY,
        message: `memory limit of ${this.cgroup.memMb} MB exceeded: the kernel's OOM killer ended the task`,
        ...(code !== null ? { exitCode: code } : {}),
      };
    }
    if (unknown === 'agent') {
      return { state: 'FAILED', reason: Reason.AGENT_RESTARTED, message: 'the task ended after the agent restarted and re-adopted it; its exit status is unknown' };
    }
    if (unknown === 'launcher') {
      // The same loss as after an agent restart (the process that was the task's parent went away),
      // so the same reason: the message says which.
      return { state: 'FAILED', reason: Reason.AGENT_RESTARTED, message: "the task ended after the agent's task launcher died; its exit status is unknown" };
    }
    if (code === 0) return { state: 'FINISHED', reason: Reason.COMMAND_EXITED, message: 'exited with code 0', exitCode: 0 };
    if (code !== null) return { state: 'FAILED', reason: Reason.COMMAND_EXITED, message: `exited with code ${code}`, exitCode: code };
    const name = signal ?? 'an unknown signal';
    return { state: 'FAILED', reason: Reason.COMMAND_EXITED, message: `killed by ${name}` };
  }
}
