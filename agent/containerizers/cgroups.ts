/**
 * Per-task cgroups for the process containerizer: memory limit = the task's `mem` (MB), cpu quota =
 * its `cpus` (CFS quota over a 100 ms period). Supports cgroup v1 (separate memory and cpu
 * hierarchies) and v2 (one unified hierarchy, `memory.max` and `cpu.max`).
 *
 * Creating a task's cgroup is a mkdir and a write per controller, done synchronously (see create()).
 *
 * Task cgroups are pooled: one whose task ended clean (nothing left in it, no OOM kill, next to no
 * memory still charged to it) is kept, idle, for the next task of the same shape, which then only
 * has its limits rewritten where they differ. Making and removing a memory and a cpu cgroup per
 * task costs ~0.3 ms of the agent's CPU on a busy 2-core machine (cgroup_mutex, per-cpu memcg
 * state, and the kernel's deferred teardown), more than everything else the agent does per task;
 * a few reads decide reuse instead. The pool is small (MAX_IDLE) and empty cgroups are swept when
 * the agent starts or stops. A cgroup that cannot be vouched for is removed, as before.
 */
import { accessSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const CFS_PERIOD_US = 100_000;
const MB = 1024 * 1024;
/** Idle task cgroups kept for reuse, at most (a burst of short tasks needs about as many as run at once). */
const MAX_IDLE = 64;
/**
 * A cgroup is reused only if its task left at most this much memory charged to it (page cache,
 * tmpfs files; a trivial shell leaves 0.3-1 MiB in v1, mostly kernel memory and per-cpu charge
 * batches), and at most an eighth of its limit.
 */
const MAX_REUSE_CHARGE_BYTES = 2 * MB;
/** What a new cgroup holds already (v2: no limits), so making one does not write them. */
const NEW_CGROUP_DEFAULTS: Partial<Record<string, string>> = { 'memory.max': 'max', 'cpu.max': `max ${CFS_PERIOD_US}` };

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

/** A cgroup step: the directory and the limit files to write in it, in order. */
interface Step {
  dir: string;
  files: [string, string][];
}

export class Cgroups {
  /** Idle cgroups by shape (which hierarchies they span). */
  private readonly idle = new Map<string, TaskCgroup[]>();
  /** The limit values last written into each cgroup this agent made or reused, by directory. */
  private readonly written = new Map<string, Map<string, string>>();
  /** Names: a prefix of this process's own, then a counter (a clash with a cgroup left by an earlier agent is skipped). */
  private readonly namePrefix = `t${Date.now().toString(36)}${process.pid.toString(36)}`;
  private nameCount = 0;
  /** Set when the agent stops: tasks it leaves running release their cgroups later, for removal. */
  private closed = false;

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
    this.idle.clear();
    this.written.clear();
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

  /**
   * Removes this agent's parent cgroups when no task cgroup is left in them (tasks may outlive a
   * stopped agent), and pools nothing from now on.
   */
  removeParentIfEmpty(): void {
    this.closed = true;
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
   * A cgroup for a task, with its limits: an idle one of the same shape when there is one (its
   * limits rewritten where they differ), else a new one. Undefined when the task asks for neither
   * mem nor cpus. On failure nothing is left behind. Synchronous: a mkdir and a few small writes
   * cost less CPU here than handed to the thread pool (fs.promises' open/write/close round trips
   * cost more than the writes), and a batch of short tasks is bound by CPU.
   */
  acquire(limits: CgroupLimits): TaskCgroup | undefined {
    if (!limits.memMb && !limits.cpus) return undefined;
    const idle = this.idle.get(this.shapeFor(limits));
    for (let reused = idle?.pop(); reused; reused = idle?.pop()) {
      const plan = this.plan(path.basename(reused.dirs[0]!), limits)!;
      try {
        // Still there (another agent given the same parent would sweep it away as empty)?
        for (const dir of reused.dirs) statSync(dir);
        for (const step of plan.steps) this.writeLimits(step, true);
        return plan.cgroup;
      } catch {
        // A limit it cannot take (below what is still charged to it, say): a new one instead.
        this.discard(reused);
      }
    }
    return this.create(limits);
  }

  /**
   * Takes a task's cgroup back once its task has ended: kept idle for the next task if nothing is
   * left running in it, no process of it was OOM-killed and next to no memory is still charged to
   * it; removed otherwise (retrying while its last processes are reaped). `oomKilled`: what the
   * caller read from its OOM counter already (it is not read again).
   */
  release(cgroup: TaskCgroup, oomKilled?: boolean): void {
    let idleCount = 0;
    for (const idle of this.idle.values()) idleCount += idle.length;
    if (!this.closed && idleCount < MAX_IDLE && this.reusable(cgroup, oomKilled)) {
      const shape = shapeOf(cgroup);
      const idle = this.idle.get(shape);
      if (idle) idle.push(cgroup);
      else this.idle.set(shape, [cgroup]);
      return;
    }
    this.discard(cgroup);
  }

  /** The shape of the cgroup a task with these limits gets (as shapeOf says of a made one). */
  private shapeFor({ memMb, cpus }: CgroupLimits): string {
    const parents = this.version === 2 ? [this.memoryParent] : [...(memMb ? [this.memoryParent] : []), ...(cpus ? [this.cpuParent] : [])];
    return `${this.version}:${parents.join(',')}`;
  }

  private discard(cgroup: TaskCgroup): void {
    for (const dir of cgroup.dirs) this.written.delete(dir);
    removeCgroup(cgroup).catch(() => {
      // A cgroup that will not go away holds a stuck process; the sweep at the next start tries again.
    });
  }

  private reusable(cgroup: TaskCgroup, knownOomKilled: boolean | undefined): boolean {
    // Only this agent's own task cgroups (a checkpoint is input too).
    if (cgroup.version !== this.version || !cgroup.dirs.every((dir) => [this.memoryParent, this.cpuParent].includes(path.dirname(dir)))) return false;
    try {
      // A task running as root may have made cgroups of its own inside (whose processes its
      // cgroup.procs does not list): a directory's link count is 2 plus its subdirectories.
      if (cgroup.dirs.some((dir) => statSync(dir).nlink !== 2)) return false;
      // One hierarchy's list tells (a v1 cgroup.procs read costs ~25 µs): what a task leaves
      // behind (a daemon it started, say) is in all of its cgroups, as it was forked into them.
      if (readFileSync(path.join(cgroup.dirs[0]!, 'cgroup.procs'), 'utf8') !== '') return false;
      if (cgroup.oomFile) {
        if (knownOomKilled ?? oomKilled(cgroup)) return false;
        const charged = path.join(path.dirname(cgroup.oomFile), this.version === 1 ? 'memory.usage_in_bytes' : 'memory.current');
        const limit = Math.min(MAX_REUSE_CHARGE_BYTES, ((cgroup.memMb ?? Infinity) * MB) / 8);
        if (Number(readFileSync(charged, 'utf8')) > limit) return false;
      }
      return true;
    } catch {
      return false;
    }
  }

  /** Makes a new cgroup (named after nothing in particular: it may serve many tasks). */
  private create(limits: CgroupLimits): TaskCgroup | undefined {
    for (;;) {
      const name = `${this.namePrefix}-${(this.nameCount++).toString(36)}`;
      const plan = this.plan(name, limits)!;
      const made: string[] = [];
      try {
        for (const step of plan.steps) {
          mkdirSync(step.dir);
          made.push(step.dir);
          this.writeLimits(step, false);
        }
        return plan.cgroup;
      } catch (error) {
        for (const dir of made) {
          this.written.delete(dir);
          try {
            rmdirSync(dir);
          } catch {
            // left for the sweep of empty cgroups at the next start
          }
        }
        // The name is taken (by a task of an earlier agent on this parent): the next one.
        if ((error as NodeJS.ErrnoException).code === 'EEXIST' && made.length === 0) continue;
        throw new CgroupError(`cannot create cgroup ${name}: ${(error as Error).message}`, { cause: error });
      }
    }
  }

  /**
   * Writes a step's limit files: for a new cgroup, those that differ from a new cgroup's defaults;
   * for a reused one, those that differ from what was last written (all, when that is unknown).
   */
  private writeLimits({ dir, files }: Step, reused: boolean): void {
    let written = this.written.get(dir);
    if (!written) this.written.set(dir, (written = new Map()));
    for (const [file, value] of files) {
      if (reused ? written.get(file) === value : NEW_CGROUP_DEFAULTS[file] === value) {
        written.set(file, value);
        continue;
      }
      written.delete(file); // unknown until the write succeeds
      writeFileSync(path.join(dir, file), value);
      written.set(file, value);
    }
  }

  /** The cgroup's directories, each with the files to write after making it, in order. */
  private plan(name: string, limits: CgroupLimits): { cgroup: TaskCgroup; steps: Step[] } | undefined {
    const { memMb, cpus } = limits;
    if (!memMb && !cpus) return undefined;
    const quotaUs = cpus ? Math.max(1000, Math.round(cpus * CFS_PERIOD_US)) : undefined;
    if (this.version === 2) {
      const dir = path.join(this.memoryParent, name);
      const cgroup: TaskCgroup = { version: 2, dirs: [dir], oomFile: path.join(dir, 'memory.events') };
      // Both, always: a reused cgroup may hold a limit this task does not ask for ('max' is none).
      const files: [string, string][] = [
        ['memory.max', memMb ? String(Math.round(memMb * MB)) : 'max'],
        ['cpu.max', `${quotaUs ?? 'max'} ${CFS_PERIOD_US}`],
      ];
      if (memMb) cgroup.memMb = memMb;
      return { cgroup, steps: [{ dir, files }] };
    }
    const cgroup: TaskCgroup = { version: 1, dirs: [] };
    const steps: Step[] = [];
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

/** Which hierarchies a cgroup spans: idle cgroups are reused only for tasks of the same shape. */
function shapeOf(cgroup: TaskCgroup): string {
  return `${cgroup.version}:${cgroup.dirs.map((dir) => path.dirname(dir)).join(',')}`;
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
