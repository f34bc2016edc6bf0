/**
 * The default containerizer: each task is a child process in its own process group (so a kill
 * reaches everything it started), running in its sandbox with stdout and stderr written straight to
 * files there (file descriptors handed to the child; nothing flows through Node).
 *
 * Limits: when a writable cgroup hierarchy exists and the agent runs as root, each task gets its own
 * cgroup (memory limit = mem, cpu quota = cpus). The task's shell joins it before running the
 * command, so no process of the task runs unconstrained even for a moment.
 *
 * Kill policy (Mesos' command executor): SIGTERM to the group, SIGKILL after the grace period.
 * When the task's main process exits, whatever is left in its group is SIGKILLed: a container ends
 * with its task.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, open, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { rangesOf, scalar } from '../../master/protocol/resources.ts';
import { isTerminal as isTerminalState, Reason, type TaskInfo } from '../../master/protocol/messages.ts';
import type { Readable } from 'node:stream';
import { Cgroups, JOIN_FAILED_EXIT_CODE, joinCgroupScript, oomKilled, removeCgroup, type TaskCgroup } from './cgroups.ts';
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
}

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

  constructor(private readonly options: ProcessContainerizerOptions = {}) {
    this.recoverPollMs = options.recoverPollMs ?? 500;
  }

  async init(context?: ContainerizerContext): Promise<LimitsInfo> {
    if (this.initialised) return this.limits;
    this.initialised = true;
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
    this.cgroups?.removeParentIfEmpty();
  }

  launch(spec: LaunchSpec, report: ReportStatus): Container {
    const { sandbox, task, frameworkId } = spec;
    const container = new ProcessContainer(report, (cgroup) => this.release(cgroup), { cwd: sandbox, env: () => this.environment(spec) });
    // Creating stdout and stderr is a file creation each, which costs more than the spawn on a busy
    // disk, and so is the task's cgroup; doing them on the thread pool lets the agent spawn other
    // tasks meanwhile. A small window bounds the descriptors held open: every fork copies the
    // descriptor table.
    this.whenOpenSlot(() => {
      const cgroups = this.cgroups;
      const cgroupMade = cgroups ? cgroups.create(cgroupName(frameworkId, task.taskId), { memMb: scalar(task.resources, 'mem'), cpus: scalar(task.resources, 'cpus') }) : Promise.resolve(undefined);
      const logsOpened = new Promise<{ stdout: number; stderr: number }>((resolve, reject) => openLogs(sandbox, (error, stdout, stderr) => (error ? reject(error) : resolve({ stdout, stderr }))));
      void Promise.allSettled([cgroupMade, logsOpened]).then(([made, opened]) => {
        this.releaseOpenSlot();
        const cgroup = made.status === 'fulfilled' ? made.value : undefined;
        if (opened.status === 'rejected' || made.status === 'rejected') {
          if (opened.status === 'fulfilled') {
            closeSync(opened.value.stdout);
            closeSync(opened.value.stderr);
          }
          this.release(cgroup);
          const problem = opened.status === 'rejected' ? `cannot open the task's stdout/stderr in ${sandbox}: ${(opened.reason as Error).message}` : ((made as PromiseRejectedResult).reason as Error).message;
          container.failed(problem);
          return;
        }
        const { stdout, stderr } = opened.value;
        try {
          if (container.killedBeforeStart()) {
            this.release(cgroup);
            return;
          }
          this.spawn(spec, container, stdout, stderr, cgroup);
        } finally {
          closeSync(stdout);
          closeSync(stderr);
        }
      });
    });
    return container;
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

  private spawn(spec: LaunchSpec, container: ProcessContainer, stdout: number, stderr: number, cgroup: TaskCgroup | undefined): void {
    const { task, sandbox } = spec;
    const command = task.command;
    const shell = command.shell !== false;

    let file: string;
    let args: string[];
    if (cgroup) {
      const join = joinCgroupScript(cgroup);
      file = 'sh';
      args = shell ? ['-c', `${join}\n${command.value}`] : ['-c', `${join}; exec "$@"`, 'agora-task', command.value, ...(command.arguments ?? [])];
    } else if (shell) {
      file = 'sh';
      args = ['-c', command.value];
    } else {
      file = command.value;
      args = command.arguments ?? [];
    }

    const env = this.environment(spec);

    let child: ChildProcess;
    try {
      // With a cgroup, fd 3 is a pipe the prelude writes one byte to once the shell is inside it.
      const stdio: StdioOptions = cgroup ? ['ignore', stdout, stderr, 'pipe'] : ['ignore', stdout, stderr];
      child = spawn(file, args, { cwd: sandbox, env, stdio, detached: true });
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
    const container = new ProcessContainer(report, (c) => this.release(c), { cwd: spec.sandbox, env: () => this.environment(spec) });
    container.adopted(pid, cgroup);
    // No longer our child, so no 'exit' event: poll. The exit status is lost with the parent.
    const timer = setInterval(() => {
      if (processAlive(pid, startTime)) return;
      clearInterval(timer);
      container.exited(null, null, true);
    }, this.recoverPollMs);
    timer.unref();
    return container;
  }

  /** The task's environment; COMMAND health checks run with it too. */
  private environment({ task, frameworkId, sandbox }: LaunchSpec): Record<string, string | undefined> {
    return {
      ...this.baseEnv,
      ...task.command.environment,
      ...portEnvironment(task),
      AGORA_TASK_ID: task.taskId,
      AGORA_FRAMEWORK_ID: frameworkId,
      AGORA_SANDBOX: sandbox,
    };
  }

  private release(cgroup: TaskCgroup | undefined): void {
    if (!cgroup) return;
    removeCgroup(cgroup).catch(() => {
      // A cgroup that will not go away holds a stuck process; nothing more to do here.
    });
  }
}

/** cgroup directory names are limited to 255 bytes; ids may be up to 200 characters each. */
function cgroupName(frameworkId: string, taskId: string): string {
  const suffix = Math.random().toString(36).slice(2, 8);
  const name = `${frameworkId}.${taskId}`;
  return `${name.length > 240 ? name.slice(0, 120) + '~' + name.slice(-119) : name}.${suffix}`;
}

/** Opens (creating) the sandbox's stdout and stderr for appending, off the main thread. */
function openLogs(sandbox: string, callback: (error: Error | null, stdout: number, stderr: number) => void): void {
  let pending = 2;
  let failure: Error | null = null;
  const fds = [-1, -1];
  const done = (index: number) => (error: Error | null, fd: number) => {
    if (error) failure ??= error;
    else fds[index] = fd;
    if (--pending > 0) return;
    if (failure) {
      for (const fd of fds) if (fd >= 0) closeSync(fd);
      callback(failure, -1, -1);
    } else callback(null, fds[0]!, fds[1]!);
  };
  open(path.join(sandbox, 'stdout'), 'a', done(0));
  open(path.join(sandbox, 'stderr'), 'a', done(1));
}

class ProcessContainer implements Container {
  private pid: number | undefined;
  private cgroup: TaskCgroup | undefined;
  private killing = false;
  private done = false;
  private killTimer: NodeJS.Timeout | undefined;
  private forced = false;
  private running = false;

  constructor(
    private readonly reportStatus: ReportStatus,
    private readonly release: (cgroup: TaskCgroup | undefined) => void,
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
      this.release(this.cgroup);
    }
    this.reportStatus(status);
  }

  /** The process exists: from here on a kill signals its group. */
  spawned(pid: number, cgroup: TaskCgroup | undefined): void {
    this.pid = pid;
    this.cgroup = cgroup;
  }

  /** The task's command is starting (in its cgroup, if it has one): report RUNNING with what to checkpoint. */
  started(): void {
    if (this.done || this.running || this.pid === undefined) return;
    this.running = true;
    const checkpoint: ProcessCheckpoint = { pid: this.pid, startTime: processStartTime(this.pid), ...(this.cgroup ? { cgroup: this.cgroup } : {}) };
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
    if (this.pid === undefined) return; // not started yet: killedBeforeStart() reports it
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

  /** `unknown`: a re-adopted process ended and its exit status went to init, not to us. */
  exited(code: number | null, signal: NodeJS.Signals | null, unknown = false): void {
    if (this.done) return;
    if (this.killTimer) clearTimeout(this.killTimer);
    // The container ends with its task: sweep what the task left in its group.
    if (this.pid !== undefined) signalGroup(this.pid, 'SIGKILL');
    this.report(this.outcome(code, signal, unknown));
  }

  private outcome(code: number | null, signal: NodeJS.Signals | null, unknown: boolean): ContainerStatus {
    if (this.killing) {
      const how = this.forced ? 'SIGKILL after the grace period' : 'SIGTERM';
      return { state: 'KILLED', reason: Reason.TASK_KILLED, message: `killed by the agent (${how})`, ...(code !== null ? { exitCode: code } : {}) };
    }
    if (!this.running && this.cgroup && code === JOIN_FAILED_EXIT_CODE) {
      return { state: 'FAILED', reason: Reason.LAUNCH_FAILED, message: `cannot move the task into its cgroup (${this.cgroup.dirs.join(', ')}); see its stderr` };
    }
    if (this.cgroup && oomKilled(this.cgroup)) {
      return {
        state: 'FAILED',
        reason: Reason.CONTAINER_LIMITATION_MEMORY,
        message: `memory limit of ${this.cgroup.memMb} MB exceeded: the kernel's OOM killer ended the task`,
        ...(code !== null ? { exitCode: code } : {}),
      };
    }
    if (unknown) {
      return { state: 'FAILED', reason: Reason.AGENT_RESTARTED, message: 'the task ended after the agent restarted and re-adopted it; its exit status is unknown' };
    }
    if (code === 0) return { state: 'FINISHED', reason: Reason.COMMAND_EXITED, message: 'exited with code 0', exitCode: 0 };
    if (code !== null) return { state: 'FAILED', reason: Reason.COMMAND_EXITED, message: `exited with code ${code}`, exitCode: code };
    const name = signal ?? 'an unknown signal';
    return { state: 'FAILED', reason: Reason.COMMAND_EXITED, message: `killed by ${name}` };
  }
}
