import { describe, expect, it } from 'vitest';
import type { JobView, RunSummary, RunTaskView, RunView } from '../../frameworks/batch/batch-api.ts';
import { jobsTable, runStatus, runsTable, taskTable } from '../../frameworks/batch/cli/tables.ts';
import { validateJobSpec } from '../../frameworks/batch/parse-job-spec.ts';

const NOW = Date.UTC(2026, 4, 1, 12, 0, 0);

function summary(over: Partial<RunSummary> = {}): RunSummary {
  return {
    id: 'render-1',
    jobId: 'render',
    state: 'running',
    trigger: 'api',
    priority: 0,
    createdAtMs: NOW - 30_000,
    startedAtMs: NOW - 25_000,
    counts: { pending: 5, active: 3, succeeded: 2, failed: 0, cancelled: 0 },
    tasks: 10,
    ...over,
  };
}

function task(index: number, state: RunTaskView['state'], attempts: Partial<RunTaskView['attempts'][number]>[] = []): RunTaskView {
  return {
    index,
    state,
    attempts: attempts.map((a, i) => ({ attempt: i + 1, taskId: `render-1_${index}_${i + 1}`, launchedAtMs: NOW - 20_000, ...a })),
  };
}

describe('jobsTable', () => {
  it('shows each job with its schedule, next slot, latest run and active runs', () => {
    const nightly: JobView = {
      spec: validateJobSpec({ id: 'nightly', cmd: 'backup', schedule: { cron: '0 2 * * *', timezone: 'Europe/Berlin' } }),
      createdAtMs: 0,
      updatedAtMs: 0,
      schedule: { nextSlotMs: NOW + 3_600_000 + 5 * 60_000, lastSlotMs: 0, skipped: [] },
      latestRun: summary({ id: 'nightly-20260501t0000', jobId: 'nightly', state: 'succeeded' }),
      activeRuns: 0,
    };
    const paused: JobView = {
      spec: validateJobSpec({ id: 'paused', cmd: 'x', schedule: { cron: '@hourly', enabled: false } }),
      createdAtMs: 0,
      updatedAtMs: 0,
      schedule: { nextSlotMs: NOW + 1000, lastSlotMs: 0, skipped: [] },
      activeRuns: 0,
    };
    const oneOff: JobView = { spec: validateJobSpec({ id: 'sh-abc', args: ['true'] }), createdAtMs: 0, updatedAtMs: 0, latestRun: summary({ id: 'sh-abc-1', jobId: 'sh-abc' }), activeRuns: 1 };
    const text = jobsTable([nightly, paused, oneOff], NOW);
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^JOB\s+SCHEDULE\s+NEXT\s+LATEST RUN\s+STATE\s+ACTIVE$/);
    expect(lines[1]).toMatch(/^nightly\s+0 2 \* \* \* Europe\/Berlin\s+in 1h05m\s+nightly-20260501t0000\s+succeeded\s+0$/);
    expect(lines[2]).toMatch(/^paused\s+@hourly UTC \(paused\)\s+-\s+-\s+-\s+0$/);
    expect(lines[3]).toMatch(/^sh-abc\s+-\s+-\s+sh-abc-1\s+running\s+1$/);
  });
});

describe('runsTable', () => {
  it('shows progress, age, duration and why a run failed or waits', () => {
    const text = runsTable(
      [
        summary(),
        summary({ id: 'render-0', state: 'failed', startedAtMs: NOW - 120_000, finishedAtMs: NOW - 60_000, createdAtMs: NOW - 125_000, counts: { pending: 0, active: 0, succeeded: 9, failed: 1, cancelled: 0 }, reason: '1 of 10 task(s) failed; task 3 exited with 1 after 1 attempt(s)' }),
        summary({ id: 'load-1', jobId: 'load', state: 'queued', startedAtMs: undefined, waiting: "waiting for etl.extract's run to end", trigger: 'schedule' }),
      ],
      NOW,
    );
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^RUN\s+JOB\s+STATE\s+TRIGGER\s+DONE\s+FAILED\s+CREATED\s+DURATION\s+DETAIL$/);
    expect(lines[1]).toMatch(/^render-1\s+render\s+running\s+api\s+2\/10\s+0\s+30s ago\s+25s$/);
    expect(lines[2]).toMatch(/^render-0\s+render\s+failed\s+api\s+9\/10\s+1\s+2m05s ago\s+1m00s\s+1 of 10 task\(s\) failed; task 3 exited with 1 after 1 attemp…$/);
    expect(lines[3]).toMatch(/^load-1\s+load\s+queued\s+schedule\s+2\/10\s+0\s+30s ago\s+-\s+waiting for etl\.extract's run to end$/);
  });
});

describe('runStatus and taskTable', () => {
  it('prints the run, its times, its reason and a row per task', () => {
    const run: RunView = {
      ...summary({ state: 'failed', finishedAtMs: NOW - 1000, reason: '1 of 3 task(s) failed', counts: { pending: 0, active: 0, succeeded: 2, failed: 1, cancelled: 0 }, tasks: 3 }),
      taskList: [
        task(0, 'succeeded', [{ host: 'node-1', startedAtMs: NOW - 20_000, endedAtMs: NOW - 18_500, exitCode: 0, outcome: 'succeeded' }]),
        task(1, 'failed', [
          { agentId: 'f3c2b1a0-aaaa-bbbb', exitCode: 1, endedAtMs: NOW - 10_000, outcome: 'failed' },
          { agentId: 'f3c2b1a0-aaaa-bbbb', startedAtMs: NOW - 9000, endedAtMs: NOW - 4000, outcome: 'timed_out' },
        ]),
        task(2, 'succeeded', [{ host: 'node-2', startedAtMs: NOW - 20_000, endedAtMs: NOW - 5_000, exitCode: 0, outcome: 'succeeded' }]),
      ],
    };
    const text = runStatus(run, NOW);
    expect(text).toMatch(/^RUN render-1 {2}job render {2}failed {2}\(trigger api, priority 0\)\n/);
    expect(text).toContain('created 2026-05-01 11:59:30Z (30s ago) · started 2026-05-01 11:59:35Z · finished 2026-05-01 11:59:59Z · took 24s');
    expect(text).toContain('\nreason: 1 of 3 task(s) failed\n');
    expect(text).toContain('\ntasks: 2/3 done · 1 failed · 0 running · 0 pending\n');
    expect(text).toMatch(/TASKS \(3\)\nINDEX\s+STATE\s+ATTEMPTS\s+EXIT\s+AGENT\/HOST\s+DURATION\n0\s+succeeded\s+1\s+0\s+node-1\s+1\.5s\n1\s+failed \(timed out\)\s+2\s+-\s+f3c2b1a0\s+5\.0s\n2\s+succeeded\s+1\s+0\s+node-2\s+15s$/);
  });

  it('keeps failed, running and retrying tasks when it truncates a big array, and counts the rest', () => {
    const tasks: RunTaskView[] = [];
    for (let i = 0; i < 1000; i++) {
      if (i === 500) tasks.push(task(i, 'failed', [{ exitCode: 2, endedAtMs: NOW, outcome: 'failed' }]));
      else if (i === 700) tasks.push(task(i, 'pending', [{ exitCode: 1, endedAtMs: NOW, outcome: 'failed' }]));
      else if (i >= 990) tasks.push(task(i, 'active', [{ startedAtMs: NOW - 3000 }]));
      else if (i < 900) tasks.push(task(i, 'succeeded', [{ exitCode: 0, endedAtMs: NOW, outcome: 'succeeded' }]));
      else tasks.push(task(i, 'pending'));
    }
    const text = taskTable(tasks, NOW, { limit: 20 });
    const rows = text.split('\n').slice(1, -1);
    expect(rows).toHaveLength(20);
    expect(rows.map((r) => Number(r.split(/\s+/)[0]))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 500, 700, 990, 991, 992, 993, 994, 995, 996, 997, 998, 999]);
    expect(rows.find((r) => r.startsWith('700 '))).toMatch(/^700\s+pending \(retry\)\s+1\s+1/);
    expect(rows.find((r) => r.startsWith('990 '))).toMatch(/^990\s+active\s+1\s+-\s+-\s+3\.0s$/);
    expect(text.split('\n').at(-1)).toBe('… 980 more task(s) not shown (890 succeeded, 90 pending); --all lists every task, --json gives every attempt');
    expect(taskTable(tasks.slice(0, 5), NOW, { limit: 20 })).not.toContain('more task');
  });
});
