import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { retriesSchema } from '../../frameworks/batch/job-spec.ts';
import { applyRunEvent, createRun, LOST_RETRY_DELAY_MS, MAX_LOST_ATTEMPTS, parseTaskId, retryDelayMs, runCounts, stepRun, taskIdFor, type Run, type RunEvent } from '../../frameworks/batch/run-state.ts';

const NO_RETRIES = retriesSchema.parse({});

function run(options: Partial<Parameters<typeof createRun>[0]> = {}): Run {
  return createRun({ id: 'job-1', jobId: 'job', indices: [0, 1, 2], maxRunning: 2, retries: NO_RETRIES, nowMs: 0, ...options });
}

/** Launches everything stepRun asks for at `nowMs`. */
function launchAll(current: Run, nowMs: number): Run {
  const step = stepRun(current, nowMs);
  return step.launch.reduce((r, l) => applyRunEvent(r, { type: 'launched', taskId: l.taskId, agentId: 'agent-a', atMs: nowMs }), step.run);
}

const status = (taskId: string, state: Extract<RunEvent, { type: 'status' }>['state'], atMs: number, exitCode?: number): RunEvent => ({
  type: 'status',
  taskId,
  state,
  atMs,
  ...(exitCode !== undefined && { exitCode }),
});

describe('task ids', () => {
  it('round-trip through run id, index and attempt', () => {
    expect(parseTaskId(taskIdFor('etl.load-20261123t0200', 17, 3))).toEqual({ runId: 'etl.load-20261123t0200', index: 17, attempt: 3 });
    expect(parseTaskId('not-ours')).toBeUndefined();
  });
});

describe('run state', () => {
  it('launches up to maxRunning, lowest index first, and succeeds when all tasks do', () => {
    let r = run();
    const first = stepRun(r, 0);
    expect(first.launch.map((l) => l.index)).toEqual([0, 1]);
    r = launchAll(r, 0);
    expect(r.state).toBe('running');
    expect(stepRun(r, 1).launch).toEqual([]);
    r = applyRunEvent(r, status(taskIdFor('job-1', 0, 1), 'RUNNING', 5));
    r = applyRunEvent(r, status(taskIdFor('job-1', 0, 1), 'FINISHED', 10, 0));
    expect(stepRun(r, 10).launch.map((l) => l.index)).toEqual([2]);
    r = launchAll(r, 10);
    r = applyRunEvent(r, status(taskIdFor('job-1', 1, 1), 'FINISHED', 20, 0));
    r = applyRunEvent(r, status(taskIdFor('job-1', 2, 1), 'FINISHED', 30, 0));
    expect(r.state).toBe('succeeded');
    expect(r.finishedAtMs).toBe(30);
    expect(r.tasks[0]!.attempts[0]).toMatchObject({ agentId: 'agent-a', launchedAtMs: 0, startedAtMs: 5, endedAtMs: 10, exitCode: 0, outcome: 'succeeded' });
  });

  it('retries a failed task after its backoff, then succeeds', () => {
    const retries = retriesSchema.parse({ count: 2, backoffSeconds: 10, backoffFactor: 3 });
    let r = launchAll(run({ indices: [0], maxRunning: 1, retries }), 0);
    r = applyRunEvent(r, status(taskIdFor('job-1', 0, 1), 'FAILED', 1_000, 1));
    expect(r.state).toBe('running');
    const waiting = stepRun(r, 5_000);
    expect(waiting.launch).toEqual([]);
    expect(waiting.wakeAtMs).toBe(11_000);
    expect(stepRun(r, 11_000).launch).toEqual([{ index: 0, attempt: 2, taskId: taskIdFor('job-1', 0, 2) }]);
    r = launchAll(r, 11_000);
    r = applyRunEvent(r, status(taskIdFor('job-1', 0, 2), 'FAILED', 12_000, 1));
    expect(stepRun(r, 12_000).wakeAtMs).toBe(12_000 + 30_000);
    r = launchAll(r, 42_000);
    r = applyRunEvent(r, status(taskIdFor('job-1', 0, 3), 'FINISHED', 43_000, 0));
    expect(r.state).toBe('succeeded');
    expect(r.tasks[0]!.attempts.map((a) => a.outcome)).toEqual(['failed', 'failed', 'succeeded']);
  });

  it('fails once retries are spent, letting the other tasks finish, and says why', () => {
    let r = launchAll(run({ indices: [0, 1], retries: retriesSchema.parse({ count: 1, backoffSeconds: 0 }) }), 0);
    r = applyRunEvent(r, status(taskIdFor('job-1', 0, 1), 'FINISHED', 1, 3));
    r = launchAll(r, 1);
    r = applyRunEvent(r, status(taskIdFor('job-1', 0, 2), 'FINISHED', 2, 3));
    expect(r.state).toBe('running');
    r = applyRunEvent(r, status(taskIdFor('job-1', 1, 1), 'FINISHED', 3, 0));
    expect(r.state).toBe('failed');
    expect(r.reason).toBe('1 of 2 task(s) failed; task 0 exited with 3 after 2 attempt(s)');
    expect(runCounts(r)).toEqual({ pending: 0, active: 0, succeeded: 1, failed: 1, cancelled: 0 });
  });

  it('kills a task past its timeout, once, and ends timed_out', () => {
    let r = launchAll(run({ indices: [0], timeoutSeconds: 30 }), 0);
    r = applyRunEvent(r, status(taskIdFor('job-1', 0, 1), 'RUNNING', 1_000));
    expect(stepRun(r, 5_000)).toMatchObject({ kill: [], wakeAtMs: 31_000 });
    const step = stepRun(r, 31_000);
    expect(step.kill).toEqual([{ taskId: taskIdFor('job-1', 0, 1), agentId: 'agent-a', reason: 'timeout' }]);
    r = step.run;
    expect(stepRun(r, 32_000).kill).toEqual([]); // asked already
    expect(stepRun(r, 31_000 + 10_000).kill).toHaveLength(1); // not answered: ask again
    r = applyRunEvent(r, status(taskIdFor('job-1', 0, 1), 'KILLED', 33_000));
    expect(r.state).toBe('timed_out');
    expect(r.tasks[0]!.attempts[0]!.outcome).toBe('timed_out');
  });

  it('cancels: pending tasks never start, active ones are killed, then the run is cancelled', () => {
    let r = launchAll(run(), 0);
    r = applyRunEvent(r, { type: 'cancel', atMs: 5 });
    const step = stepRun(r, 5);
    expect(step.launch).toEqual([]);
    expect(step.kill.map((k) => k.reason)).toEqual(['cancel', 'cancel']);
    r = applyRunEvent(step.run, status(taskIdFor('job-1', 0, 1), 'KILLED', 6));
    expect(r.state).toBe('running');
    r = applyRunEvent(r, status(taskIdFor('job-1', 1, 1), 'FINISHED', 7, 0));
    expect(r.state).toBe('cancelled');
    expect(runCounts(r)).toEqual({ pending: 0, active: 0, succeeded: 1, failed: 0, cancelled: 2 });
    expect(applyRunEvent(run(), { type: 'cancel', atMs: 1 }).state).toBe('cancelled');
  });

  it('ignores duplicate, stale and foreign events', () => {
    let r = launchAll(run({ indices: [0], retries: retriesSchema.parse({ count: 1, backoffSeconds: 0 }) }), 0);
    const done = applyRunEvent(r, status(taskIdFor('job-1', 0, 1), 'FAILED', 1));
    expect(applyRunEvent(done, status(taskIdFor('job-1', 0, 1), 'FAILED', 2))).toBe(done);
    expect(applyRunEvent(done, status(taskIdFor('job-1', 0, 1), 'RUNNING', 2))).toBe(done);
    expect(applyRunEvent(done, status(taskIdFor('other', 0, 1), 'FINISHED', 2))).toBe(done);
    expect(applyRunEvent(done, status(taskIdFor('job-1', 9, 1), 'FINISHED', 2))).toBe(done);
    r = launchAll(done, 1);
    expect(applyRunEvent(r, { type: 'launched', taskId: taskIdFor('job-1', 0, 2), atMs: 3 })).toBe(r); // launched twice
  });

  it('an empty run is done at once', () => {
    expect(run({ indices: [] }).state).toBe('succeeded');
  });

  it('tries a lost attempt again without using up a retry, but not forever', () => {
    let r = launchAll(run({ indices: [0], maxRunning: 1, retries: retriesSchema.parse({ count: 1, backoffSeconds: 5 }) }), 0);
    // The master never heard of it (UNKNOWN after reconciliation) or its agent died (LOST).
    r = applyRunEvent(r, status(taskIdFor('job-1', 0, 1), 'UNKNOWN', 100));
    expect(r.tasks[0]).toMatchObject({ state: 'pending', notBeforeMs: 100 + LOST_RETRY_DELAY_MS });
    expect(r.tasks[0]!.attempts[0]!.outcome).toBe('lost');
    r = launchAll(r, 100 + LOST_RETRY_DELAY_MS);
    r = applyRunEvent(r, status(taskIdFor('job-1', 0, 2), 'FINISHED', 2000, 1));
    // The one real failure uses the one retry, after the usual backoff.
    expect(r.tasks[0]).toMatchObject({ state: 'pending', notBeforeMs: 2000 + 5000 });
    let t = 7000;
    for (let i = 0; i <= MAX_LOST_ATTEMPTS; i++) {
      r = launchAll(r, t);
      const live = r.tasks[0]!.attempts.at(-1)!;
      r = applyRunEvent(r, status(live.taskId, 'LOST', t + 1));
      t += 10_000;
    }
    expect(r.state).toBe('failed');
    expect(r.tasks[0]!.attempts.filter((a) => a.outcome === 'lost')).toHaveLength(MAX_LOST_ATTEMPTS + 1);
  });

  it('abandons a run that launched nothing, as failed with the reason', () => {
    const r = applyRunEvent(run(), { type: 'abandon', atMs: 5, reason: 'dependency never satisfied: x' });
    expect(r).toMatchObject({ state: 'failed', finishedAtMs: 5, reason: 'dependency never satisfied: x' });
    expect(runCounts(r)).toMatchObject({ cancelled: 3, pending: 0 });
    // Not once it has launched something: that run ends through its tasks.
    const started = launchAll(run(), 0);
    expect(applyRunEvent(started, { type: 'abandon', atMs: 5, reason: 'x' })).toBe(started);
  });

  it('retry delays grow by the factor up to the cap', () => {
    const retries = retriesSchema.parse({ count: 10, backoffSeconds: 10, backoffFactor: 2, maxBackoffSeconds: 60 });
    expect([0, 1, 2, 3, 4, 5].map((n) => retryDelayMs(retries, n))).toEqual([0, 10_000, 20_000, 40_000, 60_000, 60_000]);
  });
});

describe('run state properties', () => {
  const outcome = fc.constantFrom<'FINISHED0' | 'FINISHED1' | 'FAILED' | 'LOST' | 'RUNNING' | 'DUP'>('FINISHED0', 'FINISHED1', 'FAILED', 'LOST', 'RUNNING', 'DUP');
  it('never has more active than maxRunning, never launches a task twice at once, and always ends', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 30 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 0, max: 3 }),
        fc.array(fc.tuple(fc.nat(), outcome, fc.integer({ min: 0, max: 5_000 })), { maxLength: 300 }),
        (size, maxRunning, retryCount, script) => {
          let r = createRun({ id: 'r', jobId: 'j', indices: Array.from({ length: size }, (_, i) => i * 2), maxRunning, retries: retriesSchema.parse({ count: retryCount, backoffSeconds: 1, backoffFactor: 2 }), timeoutSeconds: 60, nowMs: 0 });
          let now = 0;
          const check = (): void => {
            const active = r.tasks.filter((t) => t.state === 'active');
            expect(active.length).toBeLessThanOrEqual(maxRunning);
            for (const t of r.tasks) expect(t.attempts.filter((a) => a.outcome === undefined).length).toBe(t.state === 'active' ? 1 : 0);
          };
          const tick = (): void => {
            r = launchAll(r, now);
            check();
          };
          for (const [pick, what, advance] of script) {
            tick();
            now += advance;
            const live = r.tasks.flatMap((t) => (t.state === 'active' ? [t.attempts.at(-1)!] : []));
            const ended = r.tasks.flatMap((t) => t.attempts.filter((a) => a.outcome !== undefined));
            if (what === 'DUP') {
              const old = ended[pick % Math.max(1, ended.length)];
              if (old) r = applyRunEvent(r, status(old.taskId, 'FINISHED', now, 0));
            } else {
              const target = live[pick % Math.max(1, live.length)];
              if (!target) continue;
              const state = what === 'FINISHED0' || what === 'FINISHED1' ? 'FINISHED' : what;
              r = applyRunEvent(r, status(target.taskId, state, now, what === 'FINISHED1' ? 1 : what === 'FINISHED0' ? 0 : undefined));
            }
            check();
          }
          // Drain: every attempt succeeds from here on; the run must end succeeded or failed.
          for (let guard = 0; guard < 10_000 && !['succeeded', 'failed', 'timed_out'].includes(r.state); guard++) {
            tick();
            const live = r.tasks.flatMap((t) => (t.state === 'active' ? [t.attempts.at(-1)!] : []));
            if (live.length === 0) now = stepRun(r, now).wakeAtMs ?? now + 1_000;
            for (const a of live) r = applyRunEvent(r, status(a.taskId, 'FINISHED', now, 0));
            check();
          }
          expect(['succeeded', 'failed']).toContain(r.state);
          expect(r.tasks.every((t) => t.state === 'succeeded' || t.state === 'failed')).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});
