/**
 * Cron schedules through the real scheduler, master and agent, under a fake clock: slots fire on
 * time, FORBID skips while a run is active, REPLACE cancels it, only the latest missed slot is
 * caught up, a slot past its starting deadline is skipped (and said so), and a restart never fires
 * a slot twice. Also under the fake clock: jobs deleted ttlSecondsAfterFinished after their last run.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runIdForSlot, validateJobSpec, type JobSpecInput } from '../../frameworks/batch/index.ts';
import { BatchCluster } from './batch-cluster.ts';
import { removeDir, tempDir, waitFor } from './helpers.ts';

let cluster: BatchCluster;
let storeDir: string;
let clock: number;
const at = (iso: string) => Date.parse(iso);

beforeEach(async () => {
  cluster = await BatchCluster.start();
  await cluster.addAgent();
  storeDir = tempDir('agora-batch-store-');
  clock = at('2026-03-01T00:00:30Z');
});

afterEach(async () => {
  await cluster.close();
  removeDir(storeDir);
});

const start = () => cluster.startFramework({ store: storeDir, scheduler: { now: () => clock } });

function everyMinute(id: string, policy: 'ALLOW' | 'FORBID' | 'REPLACE', extra: Partial<JobSpecInput> = {}): JobSpecInput {
  return { id, cmd: 'sleep 60', cpus: 0.1, mem: 16, killGracePeriodSeconds: 0.2, schedule: { cron: '* * * * *', concurrencyPolicy: policy, startingDeadlineSeconds: 30 }, ...extra };
}

async function runIds(jobId: string): Promise<string[]> {
  return (await cluster.api.listRuns({ jobId })).map((r) => r.id).sort();
}

describe('batch schedules', () => {
  it('fires each slot once, on time, and FORBID skips a slot while the last run is active', async () => {
    await start();
    await cluster.api.putJob(validateJobSpec(everyMinute('forbid', 'FORBID')));
    expect((await cluster.api.getJob('forbid'))!.schedule!.nextSlotMs).toBe(at('2026-03-01T00:01:00Z'));

    await cluster.framework!.scheduler.tick();
    expect(await runIds('forbid')).toEqual([]); // not yet

    clock = at('2026-03-01T00:01:00.200Z');
    await cluster.framework!.scheduler.tick();
    const first = runIdForSlot('forbid', at('2026-03-01T00:01:00Z'));
    expect(await runIds('forbid')).toEqual([first]);
    const run = (await cluster.api.getRun(first))!;
    expect(run).toMatchObject({ trigger: 'schedule', slotMs: at('2026-03-01T00:01:00Z') });
    await waitFor(() => cluster.masterTasks().live.some((t) => t.state === 'RUNNING'), 'the scheduled task running');

    // Ticking again in the same minute fires nothing more.
    await cluster.framework!.scheduler.tick();
    expect(await runIds('forbid')).toEqual([first]);

    // The next slot comes while the first run still sleeps: FORBID skips it, and says so.
    clock = at('2026-03-01T00:02:00.100Z');
    await cluster.framework!.scheduler.tick();
    expect(await runIds('forbid')).toEqual([first]);
    const job = (await cluster.api.getJob('forbid'))!;
    expect(job.schedule!.skipped.at(-1)).toMatchObject({ reason: 'forbid', slotMs: at('2026-03-01T00:02:00Z') });
    expect(job.schedule!.nextSlotMs).toBe(at('2026-03-01T00:03:00Z'));
    expect(cluster.events.some((e) => e.type === 'schedule_skipped' && e.skipped.reason === 'forbid')).toBe(true);
  });

  it('REPLACE cancels the active run and starts the new slot', async () => {
    await start();
    await cluster.api.putJob(validateJobSpec(everyMinute('replace', 'REPLACE')));
    clock = at('2026-03-01T00:01:00.100Z');
    await cluster.framework!.scheduler.tick();
    const first = runIdForSlot('replace', at('2026-03-01T00:01:00Z'));
    await waitFor(() => cluster.masterTasks().live.some((t) => t.state === 'RUNNING'), 'the first run running');

    clock = at('2026-03-01T00:02:00.100Z');
    await cluster.framework!.scheduler.tick();
    const second = runIdForSlot('replace', at('2026-03-01T00:02:00Z'));
    expect(await runIds('replace')).toEqual([first, second]);
    const replaced = await cluster.ended(first);
    expect(replaced.state).toBe('cancelled');
    expect(replaced.reason).toContain('REPLACE');
    await waitFor(async () => (await cluster.api.getRun(second))?.counts.active === 1, 'the second run running');
  });

  it('catches up only the latest missed slot, and skips one past its starting deadline', async () => {
    await start();
    await cluster.api.putJob(validateJobSpec(everyMinute('nightly', 'ALLOW', { cmd: 'true' })));
    // Down for ten minutes: slots 00:01 … 00:10 passed; only 00:10 runs, 20 s late (deadline 30 s).
    clock = at('2026-03-01T00:10:20Z');
    await cluster.framework!.scheduler.tick();
    expect(await runIds('nightly')).toEqual([runIdForSlot('nightly', at('2026-03-01T00:10:00Z'))]);
    const job = (await cluster.api.getJob('nightly'))!;
    expect(job.schedule!.skipped.at(-1)).toMatchObject({ reason: 'missed', count: 9, slotMs: at('2026-03-01T00:09:00Z') });

    // 40 s after the 00:11 slot: past its 30 s starting deadline, so it is skipped, not run late.
    clock = at('2026-03-01T00:11:40Z');
    await cluster.framework!.scheduler.tick();
    expect(await runIds('nightly')).toHaveLength(1);
    expect((await cluster.api.getJob('nightly'))!.schedule!.skipped.at(-1)).toMatchObject({ reason: 'deadline', slotMs: at('2026-03-01T00:11:00Z') });
    // …and the schedule carries on: 00:12 fires.
    clock = at('2026-03-01T00:12:01Z');
    await cluster.framework!.scheduler.tick();
    expect(await runIds('nightly')).toHaveLength(2);
  });

  it('fires a slot once across a scheduler restart', async () => {
    await start();
    await cluster.api.putJob(validateJobSpec(everyMinute('once', 'ALLOW', { cmd: 'true' })));
    clock = at('2026-03-01T00:01:00.100Z');
    await cluster.framework!.scheduler.tick();
    const slotRun = runIdForSlot('once', at('2026-03-01T00:01:00Z'));
    await cluster.ended(slotRun);
    await cluster.framework!.close();

    // Same store, same minute: nothing fires again; the next minute does.
    await start();
    await cluster.framework!.scheduler.tick();
    expect(await runIds('once')).toEqual([slotRun]);
    clock = at('2026-03-01T00:02:00.100Z');
    await cluster.framework!.scheduler.tick();
    expect(await runIds('once')).toEqual([slotRun, runIdForSlot('once', at('2026-03-01T00:02:00Z'))]);
  });

  it('deletes a job and its runs ttlSecondsAfterFinished after its run ended, across a restart, and keeps one that others depend on', async () => {
    await start();
    const oneOff = (id: string, extra: Partial<JobSpecInput> = {}) => validateJobSpec({ id, cmd: 'true', cpus: 0.1, mem: 16, ttlSecondsAfterFinished: 60, ...extra });
    await cluster.api.putJob(oneOff('brief'));
    await cluster.api.putJob(oneOff('needed'));
    await cluster.api.putJob(validateJobSpec({ id: 'after', cmd: 'true', cpus: 0.1, mem: 16, dependencies: [{ job: 'needed', condition: 'afterok' }] }));
    const brief = await cluster.api.triggerRun('brief');
    const needed = await cluster.api.triggerRun('needed');
    await cluster.ended(brief.id);
    await cluster.ended(needed.id);
    const endedMs = (await cluster.api.getRun(brief.id))!.finishedAtMs!;
    expect((await cluster.api.getJob('brief'))!.expiresAtMs).toBe(endedMs + 60_000);

    // Not yet: a second before the ttl passes, the job and its run are still there.
    clock = endedMs + 59_000;
    await cluster.framework!.scheduler.tick();
    expect(await cluster.api.getJob('brief')).toBeDefined();

    // Past it (after a restart on the same store: the expiry is recomputed from the runs).
    await cluster.framework!.close();
    await start();
    clock = endedMs + 61_000;
    await cluster.framework!.scheduler.tick();
    expect(await cluster.api.getJob('brief')).toBeUndefined();
    expect(await cluster.api.getRun(brief.id)).toBeUndefined();
    expect(cluster.events.some((e) => e.type === 'job_changed' && e.jobId === 'brief' && e.job === undefined)).toBe(true);
    // `needed` is past its ttl too, but `after` depends on it: it stays until that goes.
    expect(await cluster.api.getJob('needed')).toBeDefined();
    await cluster.api.deleteJob('after');
    await cluster.framework!.scheduler.tick();
    expect(await cluster.api.getJob('needed')).toBeUndefined();

    // Restarted again: nothing comes back from the store.
    await cluster.framework!.close();
    await start();
    expect((await cluster.api.listJobs()).map((j) => j.spec.id)).toEqual([]);
  });

  it('a job run again before its ttl passes is kept, and expires after the new run instead', async () => {
    await start();
    await cluster.api.putJob(validateJobSpec({ id: 'again', cmd: 'true', cpus: 0.1, mem: 16, ttlSecondsAfterFinished: 60 }));
    const first = await cluster.api.triggerRun('again');
    await cluster.ended(first.id);
    const firstEnded = (await cluster.api.getRun(first.id))!.finishedAtMs!;
    clock = firstEnded + 30_000;
    const second = await cluster.api.triggerRun('again');
    expect((await cluster.api.getJob('again'))!.expiresAtMs).toBeUndefined(); // a run is going
    await cluster.ended(second.id);
    clock = firstEnded + 61_000; // past the first run's ttl, not the second's
    await cluster.framework!.scheduler.tick();
    expect(await cluster.api.getJob('again')).toBeDefined();
    clock = (await cluster.api.getRun(second.id))!.finishedAtMs! + 60_001;
    await cluster.framework!.scheduler.tick();
    expect(await cluster.api.getJob('again')).toBeUndefined();
  });
});
