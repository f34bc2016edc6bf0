import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { scheduleSchema, type Schedule } from '../../frameworks/batch/job-spec.ts';
import { latestSlotAtOrBefore, MAX_COUNTED_SLOTS, nextSlotAfter, planSchedule, runIdForSlot, upcomingSlots } from '../../frameworks/batch/schedule.ts';

const at = (iso: string): number => Date.parse(iso);
const schedule = (fields: Partial<Schedule> & { cron: string }): Schedule => scheduleSchema.parse(fields);
const MINUTE = 60_000;

describe('slots', () => {
  it('follow the time zone, across daylight saving changes', () => {
    const nightly = schedule({ cron: '0 2 * * *', timezone: 'Europe/Berlin' });
    expect(nextSlotAfter(nightly, at('2026-01-10T12:00:00Z'))).toBe(at('2026-01-11T01:00:00Z')); // CET
    expect(nextSlotAfter(nightly, at('2026-07-10T12:00:00Z'))).toBe(at('2026-07-11T00:00:00Z')); // CEST
    // 02:00 does not exist on 29 March 2026 in Berlin: the day still gets exactly one run.
    const around = upcomingSlots(nightly, at('2026-03-27T12:00:00Z'), 4);
    expect(around).toHaveLength(4);
    expect(new Set(around.map((ms) => new Date(ms).toISOString().slice(0, 10))).size).toBe(4);
  });

  it('latestSlotAtOrBefore includes a slot exactly at the time', () => {
    const every5 = schedule({ cron: '*/5 * * * *' });
    expect(latestSlotAtOrBefore(every5, at('2026-01-01T00:10:00Z'))).toBe(at('2026-01-01T00:10:00Z'));
    expect(latestSlotAtOrBefore(every5, at('2026-01-01T00:09:59.500Z'))).toBe(at('2026-01-01T00:05:00Z'));
  });

  it('run ids name the job and the slot', () => {
    expect(runIdForSlot('etl.load', at('2026-11-23T02:00:00Z'))).toBe('etl.load-20261123t020000z');
  });
});

describe('planSchedule', () => {
  const hourly = schedule({ cron: '0 * * * *', startingDeadlineSeconds: 600 });

  it('fires on time under a fake clock, once per slot', () => {
    const clock = { nowMs: at('2026-05-01T09:30:00Z') };
    let lastSlotMs = clock.nowMs; // created now: nothing earlier counts
    const fired: number[] = [];
    for (let minute = 0; minute < 180; minute++) {
      clock.nowMs += MINUTE;
      const decision = planSchedule({ schedule: hourly, lastSlotMs, activeRunIds: [], nowMs: clock.nowMs });
      expect(decision.skipped).toEqual([]);
      if (decision.fire) fired.push(decision.fire.slotMs);
      lastSlotMs = decision.lastSlotMs;
      expect(decision.nextSlotMs).toBeGreaterThan(clock.nowMs);
    }
    expect(fired).toEqual([at('2026-05-01T10:00:00Z'), at('2026-05-01T11:00:00Z'), at('2026-05-01T12:00:00Z')]);
  });

  it('does nothing before the first slot and says when to wake', () => {
    expect(planSchedule({ schedule: hourly, lastSlotMs: at('2026-05-01T09:00:00Z'), activeRunIds: [], nowMs: at('2026-05-01T09:59:59Z') })).toEqual({
      skipped: [],
      lastSlotMs: at('2026-05-01T09:00:00Z'),
      nextSlotMs: at('2026-05-01T10:00:00Z'),
    });
  });

  it('after downtime catches up only the latest missed slot, within the deadline', () => {
    const decision = planSchedule({ schedule: hourly, lastSlotMs: at('2026-05-01T09:00:00Z'), activeRunIds: [], nowMs: at('2026-05-01T14:05:00Z') });
    expect(decision.fire).toEqual({ slotMs: at('2026-05-01T14:00:00Z'), cancelRunIds: [] });
    expect(decision.skipped).toEqual([{ reason: 'missed', slotMs: at('2026-05-01T13:00:00Z'), count: 4 }]);
    expect(decision.lastSlotMs).toBe(at('2026-05-01T14:00:00Z'));
    // Planning again (a restart right after) fires nothing more.
    expect(planSchedule({ schedule: hourly, lastSlotMs: decision.lastSlotMs, activeRunIds: [], nowMs: at('2026-05-01T14:06:00Z') }).fire).toBeUndefined();
  });

  it('skips the latest slot past its starting deadline, and reports it', () => {
    const decision = planSchedule({ schedule: hourly, lastSlotMs: at('2026-05-01T09:00:00Z'), activeRunIds: [], nowMs: at('2026-05-01T14:30:00Z') });
    expect(decision.fire).toBeUndefined();
    expect(decision.skipped).toEqual([
      { reason: 'missed', slotMs: at('2026-05-01T13:00:00Z'), count: 4 },
      { reason: 'deadline', slotMs: at('2026-05-01T14:00:00Z'), count: 1 },
    ]);
    expect(decision.nextSlotMs).toBe(at('2026-05-01T15:00:00Z'));
  });

  it('never stops after many misses, and caps only the count', () => {
    const everySecond = schedule({ cron: '* * * * * *', startingDeadlineSeconds: 5 });
    const decision = planSchedule({ schedule: everySecond, lastSlotMs: at('2026-05-01T00:00:00Z'), activeRunIds: [], nowMs: at('2026-05-02T00:00:00Z') });
    expect(decision.fire?.slotMs).toBe(at('2026-05-02T00:00:00Z'));
    expect(decision.skipped).toEqual([{ reason: 'missed', slotMs: at('2026-05-01T23:59:59Z'), count: MAX_COUNTED_SLOTS, countCapped: true }]);
  });

  it('FORBID skips while a run is active; REPLACE cancels it; ALLOW overlaps', () => {
    const input = { lastSlotMs: at('2026-05-01T09:00:00Z'), activeRunIds: ['job-a'], nowMs: at('2026-05-01T10:00:01Z') };
    expect(planSchedule({ ...input, schedule: { ...hourly, concurrencyPolicy: 'FORBID' } })).toMatchObject({
      skipped: [{ reason: 'forbid', slotMs: at('2026-05-01T10:00:00Z'), count: 1 }],
      lastSlotMs: at('2026-05-01T10:00:00Z'),
    });
    expect(planSchedule({ ...input, schedule: { ...hourly, concurrencyPolicy: 'FORBID' } }).fire).toBeUndefined();
    expect(planSchedule({ ...input, schedule: { ...hourly, concurrencyPolicy: 'REPLACE' } }).fire).toEqual({ slotMs: at('2026-05-01T10:00:00Z'), cancelRunIds: ['job-a'] });
    expect(planSchedule({ ...input, schedule: { ...hourly, concurrencyPolicy: 'ALLOW' } }).fire).toEqual({ slotMs: at('2026-05-01T10:00:00Z'), cancelRunIds: [] });
    expect(planSchedule({ ...input, activeRunIds: [], schedule: { ...hourly, concurrencyPolicy: 'FORBID' } }).fire?.slotMs).toBe(at('2026-05-01T10:00:00Z'));
  });

  it('a disabled schedule fires nothing but reports the slots it passed', () => {
    const decision = planSchedule({ schedule: { ...hourly, enabled: false }, lastSlotMs: at('2026-05-01T09:00:00Z'), activeRunIds: [], nowMs: at('2026-05-01T12:00:00Z') });
    expect(decision).toEqual({ skipped: [{ reason: 'disabled', slotMs: at('2026-05-01T12:00:00Z'), count: 3 }], lastSlotMs: at('2026-05-01T12:00:00Z'), nextSlotMs: at('2026-05-01T13:00:00Z') });
  });

  it('whatever the planning times, a slot fires at most once and every slot is fired or reported', () => {
    const every15 = schedule({ cron: '*/15 * * * *', startingDeadlineSeconds: 300 });
    const start = at('2026-05-01T00:00:00Z');
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 90 * MINUTE }), { minLength: 1, maxLength: 40 }), (gaps) => {
        let nowMs = start;
        let lastSlotMs = start;
        const fired: number[] = [];
        let accounted = 0;
        for (const gap of gaps) {
          nowMs += gap;
          const decision = planSchedule({ schedule: every15, lastSlotMs, activeRunIds: [], nowMs });
          if (decision.fire) {
            expect(decision.fire.slotMs).toBeGreaterThan(lastSlotMs);
            expect(nowMs - decision.fire.slotMs).toBeLessThanOrEqual(300_000);
            fired.push(decision.fire.slotMs);
            accounted++;
          }
          accounted += decision.skipped.reduce((n, s) => n + s.count, 0);
          expect(decision.lastSlotMs).toBeGreaterThanOrEqual(lastSlotMs);
          lastSlotMs = decision.lastSlotMs;
        }
        expect(new Set(fired).size).toBe(fired.length);
        expect(accounted).toBe(Math.floor((nowMs - start) / (15 * MINUTE)));
      }),
    );
  });
});
