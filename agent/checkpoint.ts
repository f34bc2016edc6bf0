/**
 * What the agent writes to disk so a restart (even `kill -9`) loses nothing:
 *
 *   meta/agent.json                          {"agentId": "..."}
 *   meta/tasks/<frameworkId>/<taskId>.log    one JSON line per record, appended:
 *       {"task": {...}}        task info and sandbox, written before the launch
 *       {"container": {...}}   the containerizer's checkpoint (pid, start time), with RUNNING
 *       {"update": {...}}      a status update, with its uuid
 *       {"ack": "<uuid>"}   its acknowledgement
 *
 * One file per task and no per-task directory; forgetting a task is one unlink. Every write is
 * synchronous: each is a few tens of microseconds of syscalls, less CPU than the same write handed
 * to the thread pool (measured: a create-and-append ~27 µs sync against ~110 µs through
 * fs.promises), and the agent's throughput of short tasks is bound by CPU.
 *
 * Writes are synchronous appends with no fsync: they survive the agent process dying at any point
 * (the kernel has the data once write() returns), which is the failure this guards against; a
 * machine crash takes the tasks with it anyway. A line cut short is skipped on reading.
 */
import { appendFileSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { TaskInfo, TaskStatus } from '../master/protocol/messages.ts';

/** A status update as the agent keeps it: everything but the agent id, which is added when sent. */
export type StoredStatus = Omit<TaskStatus, 'agentId'> & { uuid: string };

export interface TaskCheckpoint {
  frameworkId: string;
  task: TaskInfo;
  sandbox: string;
  /** Opaque to the agent: what the containerizer needs to re-adopt the container. */
  container?: unknown;
}

export interface RecoveredTask {
  frameworkId: string;
  taskId: string;
  /** Missing when the task never started (e.g. a refused launch): only its updates were kept. */
  info: TaskCheckpoint | undefined;
  /** Every update in order, acknowledged or not. */
  updates: StoredStatus[];
  acknowledged: Set<string>;
}

type LogLine = { task: TaskCheckpoint } | { container: unknown } | { update: StoredStatus } | { ack: string };

export class CheckpointStore {
  private readonly tasksDir: string;
  private readonly knownDirs = new Set<string>();

  constructor(readonly metaDir: string) {
    this.tasksDir = path.join(metaDir, 'tasks');
  }

  readAgentId(): string | undefined {
    try {
      const parsed = JSON.parse(readFileSync(path.join(this.metaDir, 'agent.json'), 'utf8')) as { agentId?: unknown };
      return typeof parsed.agentId === 'string' ? parsed.agentId : undefined;
    } catch {
      return undefined;
    }
  }

  writeAgentId(agentId: string): void {
    mkdirSync(this.metaDir, { recursive: true });
    const file = path.join(this.metaDir, 'agent.json');
    writeFileSync(`${file}.tmp`, JSON.stringify({ agentId }) + '\n');
    renameSync(`${file}.tmp`, file);
  }

  private taskFile(frameworkId: string, taskId: string): string {
    const dir = path.join(this.tasksDir, frameworkId);
    if (!this.knownDirs.has(dir)) {
      mkdirSync(dir, { recursive: true });
      this.knownDirs.add(dir);
    }
    return path.join(dir, `${taskId}.log`);
  }

  /** Starts a task's log before it is launched. */
  createTask(checkpoint: TaskCheckpoint): void {
    appendFileSync(this.taskFile(checkpoint.frameworkId, checkpoint.task.taskId), JSON.stringify({ task: checkpoint } satisfies LogLine) + '\n');
  }

  /** Records how to re-adopt a started task; its RUNNING update goes in the same write. */
  writeContainer(frameworkId: string, taskId: string, container: unknown, runningUpdate: StoredStatus): void {
    let text = container === undefined ? '' : JSON.stringify({ container } satisfies LogLine) + '\n';
    text += JSON.stringify({ update: runningUpdate } satisfies LogLine) + '\n';
    appendFileSync(this.taskFile(frameworkId, taskId), text);
  }

  appendUpdate(status: StoredStatus): void {
    this.append(status.frameworkId, status.taskId, { update: status });
  }

  appendAck(frameworkId: string, taskId: string, uuid: string): void {
    this.append(frameworkId, taskId, { ack: uuid });
  }

  private append(frameworkId: string, taskId: string, line: LogLine): void {
    appendFileSync(this.taskFile(frameworkId, taskId), JSON.stringify(line) + '\n');
  }

  /** Forgets a task whose terminal update was acknowledged (its sandbox stays). */
  removeTask(frameworkId: string, taskId: string): void {
    try {
      unlinkSync(path.join(this.tasksDir, frameworkId, `${taskId}.log`));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }

  readAll(): RecoveredTask[] {
    const out: RecoveredTask[] = [];
    for (const frameworkId of listDir(this.tasksDir)) {
      const dir = path.join(this.tasksDir, frameworkId);
      this.knownDirs.add(dir);
      let files: string[];
      try {
        files = readdirSync(dir).filter((name) => name.endsWith('.log'));
      } catch {
        continue;
      }
      if (files.length === 0) {
        // A framework with nothing left: drop its directory (harmless if a task appears meanwhile).
        try {
          rmdirSync(dir);
          this.knownDirs.delete(dir);
        } catch {
          // not empty
        }
        continue;
      }
      for (const file of files) out.push({ frameworkId, taskId: file.slice(0, -'.log'.length), ...readLog(path.join(dir, file)) });
    }
    return out;
  }
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name);
  } catch {
    return [];
  }
}

function readLog(file: string): { info: TaskCheckpoint | undefined; updates: StoredStatus[]; acknowledged: Set<string> } {
  let info: TaskCheckpoint | undefined;
  let container: unknown;
  const updates: StoredStatus[] = [];
  const acknowledged = new Set<string>();
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return { info, updates, acknowledged };
  }
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let parsed: Partial<{ task: TaskCheckpoint; container: unknown; update: StoredStatus; ack: string }>;
    try {
      parsed = JSON.parse(line) as typeof parsed;
    } catch {
      continue; // a line cut short by a crash mid-write
    }
    if (parsed.task && typeof parsed.task.frameworkId === 'string') info = parsed.task;
    else if (parsed.container !== undefined) container = parsed.container;
    else if (parsed.update && typeof parsed.update.uuid === 'string') updates.push(parsed.update);
    else if (typeof parsed.ack === 'string') acknowledged.add(parsed.ack);
  }
  if (info && container !== undefined) info = { ...info, container };
  return { info, updates, acknowledged };
}
