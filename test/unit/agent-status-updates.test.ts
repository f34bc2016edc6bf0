import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CheckpointStore, type StoredStatus } from '../../agent/checkpoint.ts';
import { StatusUpdateManager } from '../../agent/status-updates.ts';
import type { TaskState } from '../../master/protocol/messages.ts';

const root = mkdtempSync(path.join(os.tmpdir(), 'agora-sum-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function status(taskId: string, state: TaskState) {
  return { taskId, frameworkId: 'fw', state, source: 'EXECUTOR' as const, timestampMs: 0 };
}

function manager(checkpoint?: CheckpointStore) {
  const sent: StoredStatus[] = [];
  const acked: StoredStatus[] = [];
  const m = new StatusUpdateManager({ send: (s) => sent.push(s), checkpoint, retry: { initialMs: 1000, maxMs: 30_000 }, onAcknowledged: (s) => acked.push(s) });
  return { m, sent, acked };
}

describe('StatusUpdateManager', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('gives every update a uuid and keeps only the head of each task stream in flight, in order', () => {
    const { m, sent } = manager();
    m.resume();
    const running = m.update(status('a', 'RUNNING'));
    const finished = m.update(status('a', 'FINISHED'));
    const other = m.update(status('b', 'RUNNING'));
    expect(running.uuid).not.toBe(finished.uuid);
    expect(sent.map((s) => s.uuid)).toEqual([running.uuid, other.uuid]);
    expect(m.acknowledge('fw', 'a', running.uuid)).toBe(true);
    expect(sent.map((s) => s.uuid)).toEqual([running.uuid, other.uuid, finished.uuid]);
  });

  it('ignores an acknowledgement for an update that is not the head', () => {
    const { m, acked } = manager();
    m.resume();
    m.update(status('a', 'RUNNING'));
    const second = m.update(status('a', 'FINISHED'));
    expect(m.acknowledge('fw', 'a', second.uuid)).toBe(false);
    expect(m.acknowledge('fw', 'nope', second.uuid)).toBe(false);
    expect(acked).toEqual([]);
    expect(m.pending('fw', 'a')).toHaveLength(2);
  });

  it('resends the head with doubling backoff until it is acknowledged', () => {
    const { m, sent } = manager();
    m.resume();
    const update = m.update(status('a', 'RUNNING'));
    vi.advanceTimersByTime(999);
    expect(sent).toHaveLength(1);
    vi.advanceTimersByTime(1); // 1 s
    expect(sent).toHaveLength(2);
    vi.advanceTimersByTime(2000); // +2 s
    expect(sent).toHaveLength(3);
    vi.advanceTimersByTime(4000); // +4 s
    expect(sent).toHaveLength(4);
    m.acknowledge('fw', 'a', update.uuid);
    vi.advanceTimersByTime(60_000);
    expect(sent).toHaveLength(4);
    expect(m.pendingCount).toBe(0);
  });

  it('sends nothing while disconnected and resends every stream head at once on resume', () => {
    const { m, sent } = manager();
    const a = m.update(status('a', 'RUNNING'));
    m.update(status('a', 'FINISHED'));
    const b = m.update(status('b', 'RUNNING'));
    vi.advanceTimersByTime(60_000);
    expect(sent).toEqual([]);
    m.resume();
    expect(sent.map((s) => s.uuid)).toEqual([a.uuid, b.uuid]);
    m.pause();
    vi.advanceTimersByTime(60_000);
    expect(sent).toHaveLength(2);
    m.resume();
    expect(sent.map((s) => s.uuid)).toEqual([a.uuid, b.uuid, a.uuid, b.uuid]);
  });

  it('recovers unacknowledged updates from a checkpoint read by a new instance', () => {
    const dir = path.join(root, 'meta1');
    const first = manager(new CheckpointStore(dir));
    first.m.resume();
    const running = first.m.update(status('a', 'RUNNING'));
    const finished = first.m.update(status('a', 'FINISHED'));
    const other = first.m.update(status('b', 'FAILED'));
    first.m.acknowledge('fw', 'a', running.uuid);
    first.m.stop();

    const store = new CheckpointStore(dir);
    const saved = store.readAll().sort((x, y) => x.taskId.localeCompare(y.taskId));
    expect(saved.map((t) => t.taskId)).toEqual(['a', 'b']);
    expect(saved[0]!.updates.map((u) => u.state)).toEqual(['RUNNING', 'FINISHED']);
    expect([...saved[0]!.acknowledged]).toEqual([running.uuid]);

    const second = manager(store);
    for (const task of saved) second.m.recover(task.updates.filter((u) => !task.acknowledged.has(u.uuid)));
    second.m.resume();
    expect(second.sent.map((s) => s.uuid)).toEqual([finished.uuid, other.uuid]);
    expect(second.sent[0]).toEqual(finished);
  });
});

describe('CheckpointStore', () => {
  it('keeps the agent id and forgets a removed task', async () => {
    const store = new CheckpointStore(path.join(root, 'meta2'));
    expect(store.readAgentId()).toBeUndefined();
    store.writeAgentId('agent-1');
    store.createTask({ frameworkId: 'fw', task: { taskId: 't', resources: {}, command: { value: 'true' } }, sandbox: '/x' });
    store.writeContainer('fw', 't', { pid: 1 }, { taskId: 't', frameworkId: 'fw', state: 'RUNNING', source: 'EXECUTOR', timestampMs: 0, uuid: 'u1' });
    const again = new CheckpointStore(path.join(root, 'meta2'));
    expect(again.readAgentId()).toBe('agent-1');
    expect(again.readAll()[0]?.info).toEqual({ frameworkId: 'fw', task: { taskId: 't', resources: {}, command: { value: 'true' } }, sandbox: '/x', container: { pid: 1 } });
    expect(again.readAll()[0]?.updates.map((u) => u.uuid)).toEqual(['u1']);
    again.removeTask('fw', 't');
    expect(new CheckpointStore(path.join(root, 'meta2')).readAll()).toEqual([]);
  });
});

describe('CheckpointStore journal', () => {
  const status = (taskId: string, uuid: string, state: StoredStatus['state']): StoredStatus => ({ taskId, frameworkId: 'fw', state, source: 'EXECUTOR', timestampMs: 0, uuid });
  const info = (taskId: string) => ({ frameworkId: 'fw', task: { taskId, resources: {}, command: { value: 'true' } }, sandbox: `/s/${taskId}` });

  it('keeps thousands of tasks in one file, no file per task, and compacts away the forgotten ones', () => {
    const dir = path.join(root, 'journal');
    const store = new CheckpointStore(dir);
    for (let i = 0; i < 3000; i++) {
      const id = `t${i}`;
      store.createTask(info(id));
      store.writeContainer('fw', id, { pid: i }, status(id, `${id}-r`, 'RUNNING'));
      store.appendAck('fw', id, `${id}-r`);
      if (i % 1000 !== 7) store.removeTask('fw', id); // three stay
    }
    expect(readdirSync(dir).sort()).toEqual(['tasks.log']);
    // Compacted along the way: far smaller than 3000 tasks' records.
    expect(statSync(path.join(dir, 'tasks.log')).size).toBeLessThan(1.1 * 1024 * 1024);
    const saved = new CheckpointStore(dir).readAll();
    expect(saved.map((t) => t.taskId)).toEqual(['t7', 't1007', 't2007']);
    expect(saved[1]).toMatchObject({ info: { ...info('t1007'), container: { pid: 1007 } }, updates: [{ uuid: 't1007-r' }] });
    expect([...saved[1]!.acknowledged]).toEqual(['t1007-r']);

    store.compact();
    expect(new CheckpointStore(dir).readAll().map((t) => t.taskId)).toEqual(['t7', 't1007', 't2007']);
    store.close();
  });

  it('skips a line cut short by a crash and carries on appending after it', () => {
    const dir = path.join(root, 'torn');
    const store = new CheckpointStore(dir);
    store.createTask(info('a'));
    store.close();
    appendFileSync(path.join(dir, 'tasks.log'), '{"id":["fw","b"],"task":{"frame'); // killed mid-write
    const again = new CheckpointStore(dir);
    expect(again.readAll().map((t) => t.taskId)).toEqual(['a']);
    again.appendUpdate(status('a', 'u1', 'RUNNING'));
    again.close();
    // The torn line is skipped; what came after it is kept.
    const [a] = new CheckpointStore(dir).readAll();
    expect(a?.updates.map((u) => u.uuid)).toEqual(['u1']);
  });

  it('a reading store never rewrites the journal a writing one appends to', () => {
    const dir = path.join(root, 'two');
    const writer = new CheckpointStore(dir);
    writer.createTask(info('x'));
    const reader = new CheckpointStore(dir);
    expect(reader.readAll()).toHaveLength(1);
    writer.appendUpdate(status('x', 'u', 'RUNNING'));
    expect(reader.readAll()[0]?.updates).toHaveLength(1);
    writer.close();
  });

  it('does not take a journal it cannot read for an empty one (that would forget every task)', () => {
    const dir = path.join(root, 'unreadable');
    mkdirSync(path.join(dir, 'tasks.log'), { recursive: true }); // EISDIR on reading
    expect(() => new CheckpointStore(dir).readAll()).toThrow(/EISDIR/);
    expect(() => new CheckpointStore(dir).createTask(info('t'))).toThrow(/EISDIR/);
  });

  it('keeps a long-running task\'s journal bounded: of its acknowledged updates only the latest of each kind stays', () => {
    const dir = path.join(root, 'flaps');
    const store = new CheckpointStore(dir);
    store.createTask(info('svc'));
    store.writeContainer('fw', 'svc', { pid: 42 }, status('svc', 'r0', 'RUNNING'));
    store.appendAck('fw', 'svc', 'r0');
    // Months of health checks flapping: every change is an update, acknowledged.
    for (let i = 1; i <= 20_000; i++) {
      store.appendUpdate({ ...status('svc', `h${i}`, 'RUNNING'), healthy: i % 2 === 0 });
      store.appendAck('fw', 'svc', `h${i}`);
    }
    // A refused duplicate launch (acknowledged), then one update not acknowledged yet.
    store.appendUpdate({ ...status('svc', 'dup', 'FAILED'), source: 'AGENT', reason: 'TASK_INVALID', message: 'task svc of framework fw is already on this agent (RUNNING)', refusal: true });
    store.appendAck('fw', 'svc', 'dup');
    store.appendUpdate({ ...status('svc', 'last', 'RUNNING'), healthy: true });
    // ~5 MB of records were written; compactions along the way kept the journal near its 1 MB mark.
    expect(statSync(path.join(dir, 'tasks.log')).size).toBeLessThan(1.5 * 1024 * 1024);
    store.compact();
    store.close();
    const [svc] = new CheckpointStore(dir).readAll();
    expect(svc?.info).toMatchObject({ task: { taskId: 'svc' }, container: { pid: 42 } });
    // What recovery reads: the last RUNNING (its health), the refusal after it, the update still to send.
    const unacked = svc!.updates.filter((u) => !svc!.acknowledged.has(u.uuid)).map((u) => u.uuid);
    expect(unacked).toEqual(['last']);
    expect(svc!.updates.map((u) => u.uuid)).toContain('dup');
    expect(svc!.updates.filter((u) => u.source !== 'AGENT').at(-1)?.uuid).toBe('last');
    expect(svc!.updates.length).toBeLessThan(10);
  });
});
