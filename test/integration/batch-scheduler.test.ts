/**
 * The batch scheduler on a real master and agent, with real shell tasks: throttles, retries,
 * timeouts, cancel, priorities, dependencies, and bad requests.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BatchError } from '../../frameworks/batch/index.ts';
import { BatchCluster } from './batch-cluster.ts';
import { removeDir, tempDir, waitFor } from './helpers.ts';

let cluster: BatchCluster;
let scratch: string;

beforeEach(async () => {
  cluster = await BatchCluster.start();
  scratch = tempDir('agora-batch-');
});

afterEach(async () => {
  await cluster.close();
  removeDir(scratch);
});

/** The most tasks running at once, from "s"/"e" lines the tasks append (O_APPEND writes of a line are atomic). */
function maxConcurrent(file: string): { max: number; starts: number; ends: number } {
  let running = 0;
  let max = 0;
  let starts = 0;
  let ends = 0;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.startsWith('s')) {
      starts++;
      max = Math.max(max, ++running);
    } else if (line.startsWith('e')) {
      ends++;
      running--;
    }
  }
  return { max, starts, ends };
}

describe('batch scheduler', () => {
  it('runs a 100-task array with throttle 10 and never more than 10 at once', async () => {
    await cluster.addAgent({ resources: { cpus: 16, mem: 8192, disk: 1000 } });
    await cluster.startFramework();
    const log = join(scratch, 'concurrency.log');
    writeFileSync(log, '');
    const run = await cluster.run({ id: 'wide', cmd: `echo s$AGORA_TASK_INDEX >> ${log}; sleep 0.05; echo e$AGORA_TASK_INDEX >> ${log}`, cpus: 0.1, mem: 16, array: '0-99%10' });
    expect(run.tasks).toBe(100);
    const ended = await cluster.ended(run.id, 60_000);
    expect(ended.state).toBe('succeeded');
    expect(ended.counts.succeeded).toBe(100);
    const seen = maxConcurrent(log);
    expect(seen.starts).toBe(100);
    expect(seen.ends).toBe(100);
    expect(seen.max).toBeLessThanOrEqual(10);
    expect(seen.max).toBeGreaterThan(1); // it did run in parallel
    // Every index ran exactly once, with AGORA_TASK_INDEX set.
    const indices = readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith('s')).map((l) => Number(l.slice(1))).sort((a, b) => a - b);
    expect(indices).toEqual(Array.from({ length: 100 }, (_, i) => i));
  }, 90_000);

  it('retries a failing task with backoff until it succeeds, recording every attempt', async () => {
    await cluster.addAgent();
    await cluster.startFramework();
    const run = await cluster.run({ id: 'flaky', cmd: '[ "$AGORA_TASK_ATTEMPT" -ge 3 ] || exit 7', cpus: 0.1, mem: 16, retries: { count: 3, backoffSeconds: 0.2, backoffFactor: 2 } });
    const ended = await cluster.ended(run.id);
    expect(ended.state).toBe('succeeded');
    const [task] = ended.taskList;
    expect(task!.attempts.map((a) => [a.exitCode, a.outcome])).toEqual([
      [7, 'failed'],
      [7, 'failed'],
      [0, 'succeeded'],
    ]);
    // Backoff: 0.2 s then 0.4 s between attempts.
    const [a1, a2, a3] = task!.attempts;
    expect(a2!.launchedAtMs - a1!.endedAtMs!).toBeGreaterThanOrEqual(190);
    expect(a3!.launchedAtMs - a2!.endedAtMs!).toBeGreaterThanOrEqual(390);
    expect(task!.attempts.every((a) => a.host === '127.0.0.1' && a.agentId !== undefined)).toBe(true);
  });

  it('fails the run when the retries are spent, saying which task and how', async () => {
    await cluster.addAgent();
    await cluster.startFramework();
    const run = await cluster.run({ id: 'broken', cmd: '[ "$AGORA_TASK_INDEX" != 1 ] || exit 3', cpus: 0.1, mem: 16, completions: 3, parallelism: 3, retries: { count: 1, backoffSeconds: 0 } });
    const ended = await cluster.ended(run.id);
    expect(ended.state).toBe('failed');
    expect(ended.counts).toMatchObject({ succeeded: 2, failed: 1 });
    expect(ended.reason).toContain('task 1 exited with 3 after 2 attempt(s)');
    expect(ended.taskList[1]!.attempts).toHaveLength(2);
  });

  it('kills a task that runs past its timeout and reports the run timed out', async () => {
    await cluster.addAgent();
    await cluster.startFramework();
    const started = Date.now();
    const run = await cluster.run({ id: 'slow', cmd: 'sleep 60', cpus: 0.1, mem: 16, timeoutSeconds: 1, killGracePeriodSeconds: 0.2 });
    const ended = await cluster.ended(run.id);
    expect(ended.state).toBe('timed_out');
    expect(ended.taskList[0]!.attempts[0]!.outcome).toBe('timed_out');
    expect(Date.now() - started).toBeLessThan(15_000);
    // The master drops the task once its update is acknowledged (acks follow the store write).
    await waitFor(() => cluster.masterTasks().live.length === 0, 'the master to forget the live task');
    expect(cluster.masterTasks().completed.map((t) => t.state)).toEqual(['KILLED']);
  });

  it('cancel kills the running tasks and launches no more', async () => {
    await cluster.addAgent();
    await cluster.startFramework();
    const run = await cluster.run({ id: 'long', cmd: 'sleep 60', cpus: 0.1, mem: 16, array: '0-9%3', killGracePeriodSeconds: 0.2 });
    await waitFor(() => cluster.masterTasks().live.filter((t) => t.state === 'RUNNING').length === 3, '3 tasks running');
    const cancelled = await cluster.api.cancelRun(run.id);
    expect(cancelled.id).toBe(run.id);
    const ended = await cluster.ended(run.id);
    expect(ended.state).toBe('cancelled');
    expect(ended.counts).toMatchObject({ cancelled: 10, succeeded: 0 });
    await waitFor(() => cluster.masterTasks().live.length === 0, 'no live tasks');
    expect(cluster.masterTasks().completed.map((t) => t.state)).toEqual(['KILLED', 'KILLED', 'KILLED']);
    await expect(cluster.api.cancelRun(run.id)).rejects.toMatchObject({ code: 'CONFLICT' });
  });

  it('launches higher priority runs first, then in submission order', async () => {
    // Room for one task at a time, so the order of launches is the order of the queue.
    await cluster.addAgent({ resources: { cpus: 1, mem: 1024, disk: 100 } });
    await cluster.startFramework();
    const order = join(scratch, 'order.log');
    const job = (id: string, priority: number) => ({ id, cmd: `echo ${id} >> ${order}; sleep 0.2`, cpus: 1, mem: 16, priority });
    const first = await cluster.run(job('first', 0)); // takes the agent at once
    await waitFor(() => cluster.masterTasks().live.length === 1, 'the first task running');
    const low = await cluster.run(job('low', 0));
    const high = await cluster.run(job('high', 5));
    const later = await cluster.run(job('later', 0));
    for (const run of [first, low, high, later]) expect((await cluster.ended(run.id)).state).toBe('succeeded');
    expect(readFileSync(order, 'utf8').trim().split('\n')).toEqual(['first', 'high', 'low', 'later']);
  });

  it('chains jobs with afterok and afternotok, and fails a run whose dependency can never hold', async () => {
    await cluster.addAgent();
    await cluster.startFramework();
    const api = cluster.api;
    const { validateJobSpec } = await import('../../frameworks/batch/index.ts');
    await api.putJob(validateJobSpec({ id: 'extract', cmd: 'sleep 0.5; exit $CODE', env: { CODE: '0' }, cpus: 0.1, mem: 16 }));
    await api.putJob(validateJobSpec({ id: 'load', cmd: 'true', cpus: 0.1, mem: 16, dependencies: [{ job: 'extract', condition: 'afterok' }] }));
    await api.putJob(validateJobSpec({ id: 'alert', cmd: 'true', cpus: 0.1, mem: 16, dependencies: ['extract'].map((job) => ({ job, condition: 'afternotok' })) }));

    // No run of extract yet: load waits, and says why.
    const load = await api.triggerRun('load');
    await waitFor(async () => (await api.getRun(load.id))?.waiting?.includes('waiting for a run of extract'), 'load to wait for extract');
    const extract = await api.triggerRun('extract');
    await waitFor(async () => (await api.getRun(load.id))?.waiting?.includes(`extract's run ${extract.id}`), 'load to wait for the extract run');
    expect((await cluster.ended(extract.id)).state).toBe('succeeded');
    const loaded = await cluster.ended(load.id);
    expect(loaded.state).toBe('succeeded');
    expect(loaded.startedAtMs!).toBeGreaterThanOrEqual((await api.getRun(extract.id))!.finishedAtMs!);

    // afternotok on a success can never hold: the run ends failed at once instead of waiting forever.
    const alert = await api.triggerRun('alert');
    const abandoned = await cluster.ended(alert.id);
    expect(abandoned.state).toBe('failed');
    expect(abandoned.reason).toContain('dependency never satisfied');
    expect(abandoned.reason).toContain('afternotok');
    expect(abandoned.counts.active + abandoned.counts.succeeded).toBe(0);

    // Now extract fails: alert runs, load would not.
    await api.putJob(validateJobSpec({ id: 'extract', cmd: 'exit $CODE', env: { CODE: '4' }, cpus: 0.1, mem: 16 }));
    const failing = await api.triggerRun('extract');
    expect((await cluster.ended(failing.id)).state).toBe('failed');
    expect((await cluster.ended((await api.triggerRun('alert')).id)).state).toBe('succeeded');
    expect((await cluster.ended((await api.triggerRun('load')).id)).reason).toContain('afterok needs it to succeed');
  }, 40_000);

  it('refuses bad requests with a clear error and changes nothing', async () => {
    await cluster.addAgent();
    await cluster.startFramework();
    const api = cluster.api;
    const { validateJobSpec } = await import('../../frameworks/batch/index.ts');
    await api.putJob(validateJobSpec({ id: 'a', cmd: 'true' }));
    await api.putJob(validateJobSpec({ id: 'b', cmd: 'true', dependencies: ['a'] }));
    const before = JSON.stringify(await api.listJobs());

    await expect(api.putJob(validateJobSpec({ id: 'c', cmd: 'true', dependencies: ['nope'] }))).rejects.toThrow(/dependencies\[0\]\.job: there is no job nope/);
    await expect(api.putJob(validateJobSpec({ id: 'a', cmd: 'true', dependencies: ['b'] }))).rejects.toThrow(/cycle.*a → b → a|cycle.*b → a → b/);
    await expect(api.triggerRun('nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(api.cancelRun('nope-1')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(api.deleteJob('a')).rejects.toThrow(/b depend on a/);
    await expect(api.taskLog('nope-1', 0)).rejects.toBeInstanceOf(BatchError);
    expect(JSON.stringify(await api.listJobs())).toBe(before);

    // A job with a run still going is not deleted without force; with force its run is cancelled.
    await api.putJob(validateJobSpec({ id: 'busy', cmd: 'sleep 60', killGracePeriodSeconds: 0.2, cpus: 0.1, mem: 16 }));
    const done = await api.triggerRun('a');
    await cluster.ended(done.id);
    const run = await api.triggerRun('busy');
    await expect(api.deleteJob('busy')).rejects.toMatchObject({ code: 'CONFLICT' });
    await api.deleteJob('b');
    await api.deleteJob('a');
    expect(await api.getRun(done.id)).toBeUndefined(); // an ended run goes with its job
    await api.deleteJob('busy', { force: true });
    expect(await api.getJob('busy')).toBeUndefined();
    await waitFor(() => cluster.masterTasks().live.length === 0, 'the busy task killed');
    // Its run ends cancelled and stays readable (retention applies), so a follower sees how it ended.
    const ended = await cluster.ended(run.id);
    expect(ended.state).toBe('cancelled');
    expect(ended.reason).toContain('job busy was deleted');
  });

  it('places tasks by the job\'s constraints: LIKE picks the agents, UNIQUE keeps one per host at a time', async () => {
    await cluster.addAgent({ hostname: 'host-a', attributes: { rack: 'r1' } });
    await cluster.addAgent({ hostname: 'host-b', attributes: { rack: 'r2' } });
    await cluster.startFramework();
    const onB = await cluster.run({ id: 'rack-two', cmd: 'true', cpus: 0.1, mem: 16, array: '0-5', constraints: [['rack', 'LIKE', 'r2']] });
    const ended = await cluster.ended(onB.id);
    expect(ended.state).toBe('succeeded');
    expect(new Set(ended.taskList.map((t) => t.attempts[0]!.host))).toEqual(new Set(['host-b']));

    // UNIQUE hostname: at most one live task per host, so 4 tasks on 2 hosts run two by two.
    const log = join(scratch, 'unique.log');
    writeFileSync(log, '');
    const unique = await cluster.run({ id: 'one-per-host', cmd: `echo s >> ${log}; sleep 0.3; echo e >> ${log}`, cpus: 0.1, mem: 16, array: '0-3', constraints: [['hostname', 'UNIQUE']] });
    const uniqueEnded = await cluster.ended(unique.id);
    expect(uniqueEnded.state).toBe('succeeded');
    expect(maxConcurrent(log).max).toBeLessThanOrEqual(2);
    expect(new Set(uniqueEnded.taskList.map((t) => t.attempts[0]!.host))).toEqual(new Set(['host-a', 'host-b']));
  });

  it('runs under its role, and refuses a job that names another role', async () => {
    await cluster.addAgent();
    const framework = await cluster.startFramework({ scheduler: { role: 'analytics' } });
    expect(cluster.master.master.state().frameworks.find((f) => f.id === framework.frameworkId)?.role).toBe('analytics');
    const { validateJobSpec } = await import('../../frameworks/batch/index.ts');
    await expect(cluster.api.putJob(validateJobSpec({ id: 'elsewhere', cmd: 'true', role: 'web' }))).rejects.toMatchObject({
      code: 'INVALID',
      message: expect.stringMatching(/role: web is not this batch framework's role \(analytics\); run a batch framework with --role web/),
    });
    expect(await cluster.api.getJob('elsewhere')).toBeUndefined();
    for (const role of ['analytics', '*']) {
      const run = await cluster.run({ id: `as-${role === '*' ? 'any' : role}`, cmd: 'true', cpus: 0.1, mem: 16, role });
      expect((await cluster.ended(run.id)).state).toBe('succeeded');
    }
  });

  it('suppresses offers when idle and revives for new work', async () => {
    await cluster.addAgent();
    const framework = await cluster.startFramework();
    const suppressed = () => cluster.master.master.state().frameworks.find((f) => f.id === framework.frameworkId)?.suppressed;
    await waitFor(() => suppressed() === true, 'the idle framework to suppress offers');
    const run = await cluster.run({ id: 'one', cmd: 'true', cpus: 0.1, mem: 16 });
    expect((await cluster.ended(run.id)).state).toBe('succeeded');
    await waitFor(() => suppressed() === true, 'suppressed again once the work is done');
  });

  it('keeps ended runs within the retention limit, newest kept', async () => {
    await cluster.addAgent();
    await cluster.startFramework({ scheduler: { retention: { runsPerJob: 2 } } });
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const run = await cluster.run({ id: 'often', cmd: 'true', cpus: 0.1, mem: 16 });
      await cluster.ended(run.id);
      ids.push(run.id);
    }
    const kept = (await cluster.api.listRuns({ jobId: 'often' })).map((r) => r.id);
    expect(kept).toEqual([ids[3], ids[2]]);
    expect((await cluster.api.getJob('often'))!.latestRun!.id).toBe(ids[3]);
  });
});
