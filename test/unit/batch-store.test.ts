import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../frameworks/sdk/index.ts';
import { keys, loadBatchState, RunRecords, TASKS_PER_CHUNK, type StoredRun } from '../../frameworks/batch/batch-store.ts';
import { applyRunEvent, createRun, stepRun, validateJobSpec } from '../../frameworks/batch/index.ts';

const spec = validateJobSpec({ id: 'wide', cmd: 'true', array: `0-${TASKS_PER_CHUNK * 2 + 199}%4` });

function stored(): StoredRun {
  const run = createRun({ id: 'wide-1', jobId: 'wide', indices: spec.array!.indices, maxRunning: 4, retries: spec.retries, nowMs: 1 });
  return { run, spec, trigger: 'api', seq: 0 };
}

async function commit(store: MemoryStore, records: RunRecords, run: StoredRun): Promise<string[]> {
  const { writes, committed } = records.writesFor(run);
  await store.commit(writes);
  committed();
  return writes.map((w) => w.key);
}

describe('batch store: runs in task chunks', () => {
  it('writes a big run as a head and chunks, then only the chunks that changed, and reads it back whole', async () => {
    const store = new MemoryStore();
    const records = new RunRecords();
    const run = stored();
    const chunks = Array.from({ length: Math.ceil(run.run.tasks.length / TASKS_PER_CHUNK) }, (_, i) => keys.runTasks('wide-1', i));
    expect(chunks.length).toBeGreaterThan(2);
    expect(await commit(store, records, run)).toEqual([...chunks, keys.run('wide-1')]);

    // Launch one task in the second chunk: that chunk is rewritten, and the head (the run is running now).
    const target = run.run.tasks[TASKS_PER_CHUNK + 3]!.index;
    let next = applyRunEvent(run.run, { type: 'launched', taskId: `wide-1_${target}_1`, atMs: 2 });
    expect(next.state).toBe('running');
    expect(await commit(store, records, { ...run, run: next })).toEqual([keys.runTasks('wide-1', 1), keys.run('wide-1')]);
    // It reports RUNNING: only its chunk changes; the head is as committed, so it is not written again.
    next = applyRunEvent(next, { type: 'status', taskId: `wide-1_${target}_1`, state: 'RUNNING', atMs: 3 });
    const changed = { ...run, run: next };
    expect(await commit(store, records, changed)).toEqual([keys.runTasks('wide-1', 1)]);
    expect(stepRun(next, 4).launch.length).toBeGreaterThan(0);

    const state = await loadBatchState(store);
    expect(state.runs).toHaveLength(1);
    expect(state.runs[0]!.run).toEqual(changed.run);
    expect(state.runs[0]!.spec).toEqual(spec);

    // Deleting takes the head and every chunk.
    await store.commit(records.deletesFor('wide-1', changed.run.tasks.length));
    expect(await store.list('runs/')).toEqual([]);
  });

  it('keeps a run written in 100-task chunks (before the size was recorded) in that layout', async () => {
    const store = new MemoryStore();
    const run = stored();
    const earlier = 100;
    const count = Math.ceil(run.run.tasks.length / earlier);
    for (let i = 0; i < count; i++) await store.put(keys.runTasks('wide-1', i), run.run.tasks.slice(i * earlier, (i + 1) * earlier));
    await store.put(keys.run('wide-1'), { ...run, run: { ...run.run, tasks: [] }, taskChunks: count });
    const state = await loadBatchState(store);
    expect(state.runs[0]!.run).toEqual(run.run);
    expect(state.taskChunkSizes.get('wide-1')).toBe(earlier);

    const loaded = state.runs[0]!;
    const records = new RunRecords();
    records.loaded(loaded, state.taskChunkSizes.get('wide-1'));
    // Task 150 is in the second 100-task chunk: that chunk and the head are written, nothing else.
    const next = applyRunEvent(loaded.run, { type: 'launched', taskId: `wide-1_${loaded.run.tasks[150]!.index}_1`, atMs: 2 });
    expect(await commit(store, records, { ...run, run: next })).toEqual([keys.runTasks('wide-1', 1), keys.run('wide-1')]);
    expect((await loadBatchState(store)).runs[0]!.run).toEqual(next);
    await store.commit(records.deletesFor('wide-1', next.tasks.length));
    expect(await store.list('runs/')).toEqual([]);
  });

  it('moves a run stored whole into chunks with its first change after loading', async () => {
    const store = new MemoryStore();
    const run = stored();
    await store.put(keys.run('wide-1'), run);
    const state = await loadBatchState(store);
    const loaded = state.runs[0]!;
    const records = new RunRecords();
    records.loaded(loaded, state.taskChunkSizes.get('wide-1'));
    const next = applyRunEvent(loaded.run, { type: 'launched', taskId: `wide-1_${loaded.run.tasks[0]!.index}_1`, atMs: 2 });
    const written = await commit(store, records, { ...run, run: next });
    expect(written).toHaveLength(Math.ceil(run.run.tasks.length / TASKS_PER_CHUNK) + 1);
    expect((await loadBatchState(store)).runs[0]!.run).toEqual(next);
  });

  it('reads a run stored whole (before chunks) and refuses one with a chunk missing', async () => {
    const store = new MemoryStore();
    const run = stored();
    await store.put(keys.run('wide-1'), run);
    expect((await loadBatchState(store)).runs[0]!.run).toEqual(run.run);

    const records = new RunRecords();
    await commit(store, records, run);
    await store.delete(keys.runTasks('wide-1', 1));
    await expect(loadBatchState(store)).rejects.toThrow(/runs\/wide-1\/tasks\/1 is missing/);
  });
});
