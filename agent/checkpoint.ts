/**
 * What the agent writes to disk so a restart (even `kill -9`) loses nothing:
 *
 *   meta/agent.json                        {"agentId": "..."}
 *   meta/tasks/<frameworkId>/<taskId>/
 *     task.json                            task info, sandbox, the containerizer's checkpoint (pid, start time)
 *     updates                              one JSON line per status update and per acknowledgement
 *
 * Writes are synchronous appends with no fsync: they survive the agent process dying at any point
 * (the kernel has the data once write() returns), which is the failure this guards against; a
 * machine crash takes the tasks with it anyway. A line cut short is skipped on reading.
 */
import { appendFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
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

type UpdateLine = { update: StoredStatus } | { ack: string };

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

  private taskDir(frameworkId: string, taskId: string): string {
    const dir = path.join(this.tasksDir, frameworkId, taskId);
    if (!this.knownDirs.has(dir)) {
      mkdirSync(dir, { recursive: true });
      this.knownDirs.add(dir);
    }
    return dir;
  }

  writeTask(checkpoint: TaskCheckpoint): void {
    const dir = this.taskDir(checkpoint.frameworkId, checkpoint.task.taskId);
    writeFileSync(path.join(dir, 'task.json'), JSON.stringify(checkpoint));
  }

  appendUpdate(status: StoredStatus): void {
    this.append(status.frameworkId, status.taskId, { update: status });
  }

  appendAck(frameworkId: string, taskId: string, uuid: string): void {
    this.append(frameworkId, taskId, { ack: uuid });
  }

  private append(frameworkId: string, taskId: string, line: UpdateLine): void {
    appendFileSync(path.join(this.taskDir(frameworkId, taskId), 'updates'), JSON.stringify(line) + '\n');
  }

  /** Forgets a task whose terminal update was acknowledged (its sandbox stays). */
  removeTask(frameworkId: string, taskId: string): void {
    const dir = path.join(this.tasksDir, frameworkId, taskId);
    this.knownDirs.delete(dir);
    rmSync(dir, { recursive: true, force: true });
    try {
      // Drop the framework's directory once it is empty; fails harmlessly otherwise.
      rmSync(path.join(this.tasksDir, frameworkId), { recursive: false });
    } catch {
      // not empty
    }
  }

  readAll(): RecoveredTask[] {
    const out: RecoveredTask[] = [];
    for (const frameworkId of listDir(this.tasksDir)) {
      for (const taskId of listDir(path.join(this.tasksDir, frameworkId))) {
        const dir = path.join(this.tasksDir, frameworkId, taskId);
        this.knownDirs.add(dir);
        out.push({ frameworkId, taskId, info: readTaskJson(dir), ...readUpdates(dir) });
      }
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

function readTaskJson(dir: string): TaskCheckpoint | undefined {
  try {
    const parsed = JSON.parse(readFileSync(path.join(dir, 'task.json'), 'utf8')) as TaskCheckpoint;
    return parsed && typeof parsed.frameworkId === 'string' && parsed.task ? parsed : undefined;
  } catch {
    return undefined;
  }
}

function readUpdates(dir: string): { updates: StoredStatus[]; acknowledged: Set<string> } {
  const updates: StoredStatus[] = [];
  const acknowledged = new Set<string>();
  let text: string;
  try {
    text = readFileSync(path.join(dir, 'updates'), 'utf8');
  } catch {
    return { updates, acknowledged };
  }
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let parsed: Partial<{ update: StoredStatus; ack: string }>;
    try {
      parsed = JSON.parse(line) as Partial<{ update: StoredStatus; ack: string }>;
    } catch {
      continue; // a line cut short by a crash mid-write
    }
    if (parsed.update && typeof parsed.update.uuid === 'string') updates.push(parsed.update);
    else if (typeof parsed.ack === 'string') acknowledged.add(parsed.ack);
  }
  return { updates, acknowledged };
}
