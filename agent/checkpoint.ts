/**
 * What the agent writes to disk so a restart (even `kill -9`) loses nothing:
 *
 *   meta/agent.json    {"agentId": "..."}
 *   meta/tasks.log     one JSON line per record, appended, each naming its task by [frameworkId, taskId]:
 *       {"id": [f, t], "task": {...}}        task info and sandbox, written before the launch
 *       {"id": [f, t], "container": {...}}   the containerizer's checkpoint (pid, start time), with RUNNING
 *       {"id": [f, t], "update": {...}}      a status update, with its uuid
 *       {"id": [f, t], "ack": "<uuid>"}      its acknowledgement
 *       {"id": [f, t], "forget": true}       the task is done with: its records above are dead
 *
 * One journal for all tasks, not a file per task: a task's records are then a few appends to a file
 * that is already open, with no file created or deleted per task. Creating files is what costs on a
 * busy disk — on ext4 without a journal (this project's CI machines) an inode allocation skips
 * every inode freed in the last minutes and took 0.2-0.4 ms each, a per-task create and unlink
 * making every later one slower still. When dead records outweigh live ones the journal is
 * compacted: the live tasks' lines are written to a new file that replaces it by rename, so a crash
 * mid-compaction leaves the old journal whole.
 *
 * Writes are synchronous appends with no fsync: they survive the agent process dying at any point
 * (the kernel has the data once write() returns), which is the failure this guards against; a
 * machine crash takes the tasks with it anyway. A line cut short is skipped on reading. Only the
 * instance that writes compacts; one that only reads (a test, the docker containerizer's agent-id
 * lookup) never touches the journal.
 */
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { TaskInfo, TaskStatus } from '../master/protocol/messages.ts';

/**
 * A status update as the agent keeps it: everything but the agent id, which is added when sent.
 * `refusal`, kept here only (never sent), marks the refusal of a second launch of the task: it
 * travels in the task's stream, but it is not the task's state.
 */
export type StoredStatus = Omit<TaskStatus, 'agentId'> & { uuid: string; refusal?: true };

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

type Record = { task: TaskCheckpoint } | { container: unknown } | { update: StoredStatus } | { ack: string } | { forget: true };
type JournalLine = Record & { id: [string, string] };

/** Compact once the journal is past this size and mostly dead records. */
const COMPACT_MIN_BYTES = 1 << 20;
const COMPACT_DEAD_RATIO = 4;

export class CheckpointStore {
  private readonly journal: string;
  private fd: number | undefined;
  /** The live tasks' journal lines (frameworkId NUL taskId → lines), what a compaction keeps. */
  private live = new Map<string, string[]>();
  private liveBytes = 0;
  private journalBytes = 0;
  private closed = false;
  /** The journal ends mid-line (a torn write): the next write starts with a newline. */
  private lineOpen = false;
  /** The journal size at which to weigh a compaction next. */
  private nextCompactCheck = COMPACT_MIN_BYTES;

  constructor(readonly metaDir: string) {
    this.journal = path.join(metaDir, 'tasks.log');
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

  /** Starts a task's records before it is launched. */
  createTask(checkpoint: TaskCheckpoint): void {
    this.append(checkpoint.frameworkId, checkpoint.task.taskId, { task: checkpoint });
  }

  /** Records how to re-adopt a started task; its RUNNING update goes in the same write. */
  writeContainer(frameworkId: string, taskId: string, container: unknown, runningUpdate: StoredStatus): void {
    const records: Record[] = container === undefined ? [] : [{ container }];
    records.push({ update: runningUpdate });
    this.append(frameworkId, taskId, ...records);
  }

  appendUpdate(status: StoredStatus): void {
    this.append(status.frameworkId, status.taskId, { update: status });
  }

  appendAck(frameworkId: string, taskId: string, uuid: string): void {
    this.append(frameworkId, taskId, { ack: uuid });
  }

  /** Forgets a task whose terminal update was acknowledged (its sandbox stays). */
  removeTask(frameworkId: string, taskId: string): void {
    const key = keyOf(frameworkId, taskId);
    const lines = this.openJournal().live.get(key);
    if (!lines) return;
    this.live.delete(key);
    for (const line of lines) this.liveBytes -= line.length;
    this.write(lineOf(frameworkId, taskId, { forget: true }));
    this.compactIfWorthIt();
  }

  /** Every task the journal still holds, in the order they were first recorded. */
  readAll(): RecoveredTask[] {
    const tasks = new Map<string, RecoveredTask & { container?: unknown }>();
    for (const { key, id, record } of parseJournal(readText(this.journal))) {
      if ('forget' in record) {
        tasks.delete(key);
        continue;
      }
      let task = tasks.get(key);
      if (!task) {
        task = { frameworkId: id[0], taskId: id[1], info: undefined, updates: [], acknowledged: new Set() };
        tasks.set(key, task);
      }
      if ('task' in record) task.info = record.task;
      else if ('container' in record) task.container = record.container;
      else if ('update' in record) task.updates.push(record.update);
      else task.acknowledged.add(record.ack);
    }
    return [...tasks.values()].map(({ container, ...task }) => (task.info && container !== undefined ? { ...task, info: { ...task.info, container } } : task));
  }

  /**
   * Rewrites the journal with only the live tasks' records. Optional work: when it fails (a full
   * disk, say) the journal stays as it is, still whole, and it is tried again later.
   */
  compact(): void {
    this.openJournal();
    if (this.closed) return;
    this.pruneLive();
    const tmp = `${this.journal}.tmp`;
    const text = [...this.live.values()].flat().join('');
    let fd: number;
    try {
      writeFileSync(tmp, text);
      renameSync(tmp, this.journal);
      fd = openSync(this.journal, 'a');
    } catch {
      rmSync(tmp, { force: true });
      this.nextCompactCheck = this.journalBytes + COMPACT_MIN_BYTES;
      return;
    }
    closeSync(this.fd!);
    this.fd = fd;
    this.journalBytes = Buffer.byteLength(text);
    this.nextCompactCheck = COMPACT_MIN_BYTES;
  }

  /**
   * Closes the journal when the agent stops. Nothing is written after that: the stopped agent is
   * detached from its tasks, and the next agent on this work dir owns the journal.
   */
  close(): void {
    this.closed = true;
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private append(frameworkId: string, taskId: string, ...records: Record[]): void {
    const key = keyOf(frameworkId, taskId);
    const lines = records.map((record) => lineOf(frameworkId, taskId, record));
    this.openJournal().write(lines.join(''));
    // Only once written: a compaction must not bring back a record whose write failed.
    const known = this.live.get(key);
    if (known) known.push(...lines);
    else this.live.set(key, lines);
    for (const line of lines) this.liveBytes += line.length;
    this.compactIfWorthIt();
  }

  /** Opens the journal for appending, first learning its live records from what is there. */
  private openJournal(): this {
    if (this.fd !== undefined || this.closed) return this;
    mkdirSync(this.metaDir, { recursive: true });
    const text = readText(this.journal);
    const fd = openSync(this.journal, 'a');
    this.live.clear();
    for (const { key, record, line } of parseJournal(text)) {
      if ('forget' in record) {
        this.live.delete(key);
        continue;
      }
      const lines = this.live.get(key);
      if (lines) lines.push(line);
      else this.live.set(key, [line]);
    }
    this.liveBytes = 0;
    for (const lines of this.live.values()) for (const line of lines) this.liveBytes += line.length;
    this.fd = fd;
    this.journalBytes = fstatSync(fd).size;
    // A line cut short by a crash: the next record starts on a line of its own, not glued to it.
    this.lineOpen = text !== '' && !text.endsWith('\n');
    this.compactIfWorthIt();
    return this;
  }

  private write(text: string): void {
    if (this.closed) return;
    // After a write that failed part-way (a full disk), the journal may end mid-line.
    const bytes = Buffer.from(this.lineOpen ? `\n${text}` : text);
    let offset = 0;
    try {
      while (offset < bytes.length) offset += writeSync(this.fd!, bytes, offset);
    } catch (error) {
      this.lineOpen ||= offset > 0;
      this.journalBytes += offset;
      throw error;
    }
    this.lineOpen = false;
    this.journalBytes += bytes.length;
  }

  private compactIfWorthIt(): void {
    if (this.journalBytes < this.nextCompactCheck) return;
    this.pruneLive();
    if (this.journalBytes > COMPACT_DEAD_RATIO * this.liveBytes) this.compact();
    else this.nextCompactCheck = this.journalBytes + COMPACT_MIN_BYTES / 4;
  }

  /**
   * Drops the records a live task no longer needs, so a task that runs for months with its health
   * changing now and then does not grow the journal without end: of its acknowledged updates only
   * the latest of each kind (state, source, reason) stays — what recovery reads its state from —
   * with their acks; unacknowledged updates (to be sent again), its task and container records stay.
   */
  private pruneLive(): void {
    for (const [key, lines] of this.live) {
      const pruned = pruneTaskLines(lines);
      if (pruned.length === lines.length) continue;
      this.live.set(key, pruned);
      for (const line of lines) this.liveBytes -= line.length;
      for (const line of pruned) this.liveBytes += line.length;
    }
  }
}

/** One task's lines without the superseded ones (see pruneLive); the same array when nothing goes. */
function pruneTaskLines(lines: string[]): string[] {
  if (lines.length < 8) return lines;
  const records = lines.map((line) => JSON.parse(line) as Partial<{ task: unknown; container: unknown; update: StoredStatus; ack: string }>);
  const acked = new Set(records.flatMap((r) => (typeof r.ack === 'string' ? [r.ack] : [])));
  const kindOf = (u: StoredStatus) => `${u.state} ${u.source} ${u.reason ?? ''}`;
  const lastOfKind = new Map<string, number>();
  let lastTask = -1;
  let lastContainer = -1;
  records.forEach((r, i) => {
    if (r.update) lastOfKind.set(kindOf(r.update), i);
    else if ('task' in r) lastTask = i;
    else if ('container' in r) lastContainer = i;
  });
  const keptUuids = new Set<string>();
  const keep = records.map((r, i) => {
    if (r.update) {
      const kept = !acked.has(r.update.uuid) || lastOfKind.get(kindOf(r.update)) === i;
      if (kept) keptUuids.add(r.update.uuid);
      return kept;
    }
    if ('task' in r) return i === lastTask;
    if ('container' in r) return i === lastContainer;
    return true;
  });
  const pruned = lines.filter((_, i) => keep[i] && (typeof records[i]!.ack !== 'string' || keptUuids.has(records[i]!.ack!)));
  return pruned.length === lines.length ? lines : pruned;
}

function keyOf(frameworkId: string, taskId: string): string {
  return `${frameworkId}\u0000${taskId}`;
}

function lineOf(frameworkId: string, taskId: string, record: Record): string {
  return JSON.stringify({ id: [frameworkId, taskId], ...record } satisfies JournalLine) + '\n';
}

/** The journal's text; '' when there is none yet. Any other failure is thrown: reading nothing from a journal that exists would forget its tasks. */
function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw error;
  }
}

function* parseJournal(text: string): Generator<{ key: string; id: [string, string]; record: Record; line: string }> {
  for (const raw of text.split('\n')) {
    if (raw === '') continue;
    let parsed: Partial<JournalLine> & { id?: unknown };
    try {
      parsed = JSON.parse(raw) as typeof parsed;
    } catch {
      continue; // a line cut short by a crash mid-write
    }
    const id = parsed.id;
    if (!Array.isArray(id) || id.length !== 2 || typeof id[0] !== 'string' || typeof id[1] !== 'string') continue;
    const { id: _id, ...record } = parsed as JournalLine;
    if (!isRecord(record)) continue;
    yield { key: keyOf(id[0], id[1]), id: [id[0], id[1]], record, line: raw + '\n' };
  }
}

function isRecord(value: object): value is Record {
  const r = value as Partial<{ task: TaskCheckpoint; container: unknown; update: StoredStatus; ack: string; forget: boolean }>;
  return (
    (r.task !== undefined && typeof r.task.frameworkId === 'string') ||
    'container' in r ||
    (r.update !== undefined && typeof r.update.uuid === 'string') ||
    typeof r.ack === 'string' ||
    r.forget === true
  );
}
