/**
 * Per-task cgroups for the process containerizer: memory limit = the task's `mem` (MB), cpu quota =
 * its `cpus` (CFS quota over a 100 ms period). Supports cgroup v1 (separate memory and cpu
 * hierarchies) and v2 (one unified hierarchy, `memory.max` and `cpu.max`).
 *
 * Creating a task's cgroup is a mkdir and one to two writes per controller, done synchronously
 * (see create()).
 */
import { accessSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const CFS_PERIOD_US = 100_000;
const MB = 1024 * 1024;

export interface CgroupLimits {
  memMb?: number;
  cpus?: number;
}

/** One task's cgroup: a directory per hierarchy (v1) or one directory (v2). Checkpointed as JSON. */
export interface TaskCgroup {
  version: 1 | 2;
  /** Directories to remove after the task ends; each has a `cgroup.procs` the task joins. */
  dirs: string[];
  /** Where the OOM-kill counter lives: v1 memory.oom_control, v2 memory.events. */
  oomFile?: string;
  memMb?: number;
}

export class CgroupError extends Error {
  override name = 'CgroupError';
}

export class Cgroups {
  private constructor(
    readonly version: 1 | 2,
    /** v1: {memory, cpu} parent dirs; v2: one parent dir under both keys. */
    private readonly memoryParent: string,
    private readonly cpuParent: string,
  ) {}

  /**
   * Removes task cgroups left empty under the parent (by an agent that was killed before it could
   * clean up). One holding processes (a task a restarted agent will re-adopt) cannot be removed,
   * so it stays. Returns how many were removed.
   */
  sweepEmpty(): number {
    let removed = 0;
    for (const parent of new Set([this.memoryParent, this.cpuParent])) {
      let entries: string[];
      try {
        entries = readdirSync(parent, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
      } catch {
        continue;
      }
      for (const name of entries) {
        try {
          rmdirSync(path.join(parent, name));
          removed++;
        } catch {
          // in use
        }
      }
    }
    return removed;
  }

  /** Removes this agent's parent cgroups when no task cgroup is left in them (tasks may outlive a stopped agent). */
  removeParentIfEmpty(): void {
    this.sweepEmpty();
    for (const parent of new Set([this.memoryParent, this.cpuParent])) {
      try {
        rmdirSync(parent);
      } catch {
        // still holds the cgroups of tasks that keep running
      }
    }
  }

  get description(): string {
    return this.version === 1
      ? `cgroup v1: memory limit and cpu quota per task under ${this.memoryParent} and ${this.cpuParent}`
      : `cgroup v2: memory.max and cpu.max per task under ${this.memoryParent}`;
  }

  /**
   * Finds a writable hierarchy and creates the parent cgroup. Returns the reason as a string when
   * limits cannot be enforced here.
   */
  static detect(root = '/sys/fs/cgroup', parent = 'agora'): Cgroups | string {
    if (process.platform !== 'linux') return `cgroups need Linux (this is ${process.platform})`;
    if (process.getuid?.() !== 0) return 'the agent is not running as root, so it cannot create cgroups';
    try {
      if (existsSync(path.join(root, 'cgroup.controllers'))) {
        const controllers = readFileSync(path.join(root, 'cgroup.controllers'), 'utf8').split(/\s+/);
        const missing = ['memory', 'cpu'].filter((c) => !controllers.includes(c));
        if (missing.length > 0) return `the cgroup v2 hierarchy at ${root} lacks the ${missing.join(' and ')} controller`;
        writeFileSync(path.join(root, 'cgroup.subtree_control'), '+memory +cpu');
        // v2 hands controllers down one level at a time: enable them at every level of the parent.
        let dir = root;
        for (const level of parent.split('/').filter(Boolean)) {
          dir = path.join(dir, level);
          mkdirSync(dir, { recursive: true });
          writeFileSync(path.join(dir, 'cgroup.subtree_control'), '+memory +cpu');
        }
        return new Cgroups(2, dir, dir);
      }
      const memory = path.join(root, 'memory');
      const cpu = path.join(root, 'cpu');
      if (!existsSync(path.join(memory, 'memory.limit_in_bytes'))) return `no cgroup v1 memory hierarchy at ${memory} and no cgroup v2 at ${root}`;
      if (!existsSync(path.join(cpu, 'cpu.cfs_quota_us'))) return `no cgroup v1 cpu hierarchy at ${cpu}`;
      const memoryParent = path.join(memory, parent);
      const cpuParent = path.join(cpu, parent);
      mkdirSync(memoryParent, { recursive: true });
      mkdirSync(cpuParent, { recursive: true });
      accessSync(path.join(memoryParent, 'cgroup.procs'), constants.W_OK);
      accessSync(path.join(cpuParent, 'cgroup.procs'), constants.W_OK);
      return new Cgroups(1, memoryParent, cpuParent);
    } catch (error) {
      return `the cgroup hierarchy at ${root} is not writable (${(error as Error).message})`;
    }
  }

  /**
   * Creates the task's cgroup with its limits. Undefined when the task asks for neither mem nor
   * cpus. On failure nothing is left behind. Synchronous: a mkdir and a few small writes cost less
   * CPU here than handed to the thread pool (fs.promises' open/write/close round trips cost more
   * than the writes), and a batch of short tasks is bound by CPU.
   */
  create(name: string, limits: CgroupLimits): TaskCgroup | undefined {
    const plan = this.plan(name, limits);
    if (!plan) return undefined;
    const made: string[] = [];
    try {
      for (const { dir, files } of plan.steps) {
        mkdirSync(dir);
        made.push(dir);
        for (const [file, value] of files) writeFileSync(path.join(dir, file), value);
      }
      return plan.cgroup;
    } catch (error) {
      for (const dir of made) {
        try {
          rmdirSync(dir);
        } catch {
          // left for the sweep of empty cgroups at the next start
        }
      }
      throw new CgroupError(`cannot create cgroup ${name}: ${(error as Error).message}`, { cause: error });
    }
  }

  /** The cgroup's directories, each with the files to write after making it, in order. */
  private plan(name: string, limits: CgroupLimits): { cgroup: TaskCgroup; steps: { dir: string; files: [string, string][] }[] } | undefined {
    const { memMb, cpus } = limits;
    if (!memMb && !cpus) return undefined;
    const quotaUs = cpus ? Math.max(1000, Math.round(cpus * CFS_PERIOD_US)) : undefined;
    if (this.version === 2) {
      const dir = path.join(this.memoryParent, name);
      const cgroup: TaskCgroup = { version: 2, dirs: [dir], oomFile: path.join(dir, 'memory.events') };
      const files: [string, string][] = [];
      if (memMb) {
        files.push(['memory.max', String(Math.round(memMb * MB))]);
        cgroup.memMb = memMb;
      }
      if (quotaUs) files.push(['cpu.max', `${quotaUs} ${CFS_PERIOD_US}`]);
      return { cgroup, steps: [{ dir, files }] };
    }
    const cgroup: TaskCgroup = { version: 1, dirs: [] };
    const steps: { dir: string; files: [string, string][] }[] = [];
    if (memMb) {
      const dir = path.join(this.memoryParent, name);
      cgroup.dirs.push(dir);
      cgroup.oomFile = path.join(dir, 'memory.oom_control');
      cgroup.memMb = memMb;
      steps.push({ dir, files: [['memory.limit_in_bytes', String(Math.round(memMb * MB))]] });
    }
    if (quotaUs) {
      const dir = path.join(this.cpuParent, name);
      cgroup.dirs.push(dir);
      // A new v1 cgroup's period is the kernel's default, CFS_PERIOD_US, always: only the quota is written.
      steps.push({ dir, files: [['cpu.cfs_quota_us', String(quotaUs)]] });
    }
    return { cgroup, steps };
  }
}

/** Exit status of the task's shell when it could not join its cgroup (before running anything). */
export const JOIN_FAILED_EXIT_CODE = 125;

/**
 * The shell prelude that moves the shell itself into the task's cgroup before it runs anything
 * else, so no process of the task ever runs outside its limits (no race with the command's first
 * fork), then writes one byte to fd 3 and closes it: the agent reports RUNNING on that byte.
 *
 * Why wait for it: the first cgroup attach after a quiet spell can take tens of milliseconds (the
 * kernel's cgroup rwsem waits out an RCU grace period), and a kill arriving meanwhile would end the
 * task before its own command (and its TERM trap) ever ran, although the scheduler saw RUNNING.
 */
export function joinCgroupScript(cgroup: TaskCgroup): string {
  return `{ ${cgroup.dirs.map((dir) => `echo $$ > '${dir}/cgroup.procs'`).join(' && ')}; } || exit ${JOIN_FAILED_EXIT_CODE}; echo >&3; exec 3>&-`;
}

/** SIGKILLs every process in the task's cgroup (one the agent never learnt the pid of). */
export function killCgroupMembers(cgroup: TaskCgroup): void {
  for (const dir of cgroup.dirs) {
    let pids: string[];
    try {
      pids = readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
    } catch {
      continue; // gone already
    }
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
  }
}

/** True when the kernel's OOM killer killed a process of this cgroup. */
export function oomKilled(cgroup: TaskCgroup): boolean {
  if (!cgroup.oomFile) return false;
  try {
    const match = /^oom_kill (\d+)$/m.exec(readFileSync(cgroup.oomFile, 'utf8'));
    return match !== null && Number(match[1]) > 0;
  } catch {
    return false;
  }
}

/** Removes the task's cgroup directories, retrying while the last processes are being reaped. */
export async function removeCgroup(cgroup: TaskCgroup, attempts = 20): Promise<void> {
  for (const dir of cgroup.dirs) {
    for (let i = 0; ; i++) {
      try {
        rmdirSync(dir);
        break;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (i >= attempts) throw error;
        await new Promise((resolve) => setTimeout(resolve, 50 * (i + 1)));
      }
    }
  }
}
