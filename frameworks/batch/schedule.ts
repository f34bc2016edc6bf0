/**
 * Cron schedules: when a job's next run is due, and what to do about slots that passed while the
 * scheduler was down or busy. The rules, fixing what Kubernetes CronJob and Chronos users hit:
 *
 * - A slot fires at most once: the caller stores `lastSlotMs` with the run it starts, and run ids
 *   come from the slot (`runIdForSlot`), so a restart cannot fire a slot twice.
 * - After downtime only the latest missed slot is caught up, and only if it is still within
 *   `startingDeadlineSeconds`; the earlier ones are reported as missed, never run in a burst.
 * - FORBID skips a slot while a run of the job is active; REPLACE cancels the active runs and fires.
 * - A schedule never silently stops: every skipped slot is reported with its reason, however many
 *   were missed (Kubernetes gives up after 100 misses), and the next wake-up is always returned.
 *
 * Pure: the time is an input; croner does the calendar arithmetic in the schedule's time zone.
 */
import { Cron } from 'croner';
import type { Schedule } from './job-spec.ts';

export type SkipReason = 'missed' | 'deadline' | 'forbid' | 'disabled';

export interface SkippedSlots {
  reason: SkipReason;
  /** The latest skipped slot for this reason. */
  slotMs: number;
  /** How many slots this covers (at most MAX_COUNTED_SLOTS; `countCapped` says when there were more). */
  count: number;
  countCapped?: boolean;
}

export interface ScheduleDecision {
  /** Start a run for this slot, after cancelling `cancelRunIds` (REPLACE). */
  fire?: { slotMs: number; cancelRunIds: string[] };
  /** Slots passed over, for the event log and metrics; never dropped silently. */
  skipped: SkippedSlots[];
  /** Store this: every slot at or before it is handled. */
  lastSlotMs: number;
  /** The next slot after now; undefined only when the pattern has no future time left. */
  nextSlotMs?: number;
}

export interface PlanScheduleInput {
  schedule: Schedule;
  /** The latest slot already handled; for a new schedule, the time it was created (nothing before counts). */
  lastSlotMs: number;
  /** Runs of this job not yet ended. */
  activeRunIds: readonly string[];
  nowMs: number;
}

/** Missed slots are counted up to this many (a per-second schedule down for a day is 86 400 slots). */
export const MAX_COUNTED_SLOTS = 1000;

function cronFor(schedule: Pick<Schedule, 'cron' | 'timezone'>): Cron {
  return new Cron(schedule.cron, { timezone: schedule.timezone, paused: true });
}

/** The first slot strictly after `afterMs`, or undefined when there is none. */
export function nextSlotAfter(schedule: Pick<Schedule, 'cron' | 'timezone'>, afterMs: number): number | undefined {
  return cronFor(schedule).nextRun(new Date(afterMs))?.getTime();
}

/** The next `count` slots strictly after `afterMs` (for `agora job list` and the API). */
export function upcomingSlots(schedule: Pick<Schedule, 'cron' | 'timezone'>, afterMs: number, count: number): number[] {
  return cronFor(schedule)
    .nextRuns(count, new Date(afterMs))
    .map((d) => d.getTime());
}

/** The latest slot at or before `atMs`, or undefined. */
export function latestSlotAtOrBefore(schedule: Pick<Schedule, 'cron' | 'timezone'>, atMs: number): number | undefined {
  const cron = cronFor(schedule);
  // croner's previousRuns excludes its reference second; look from just past it and step back if that overshoots.
  let candidate = cron.previousRuns(1, new Date(atMs + 1000))[0];
  if (candidate && candidate.getTime() > atMs) candidate = cron.previousRuns(1, candidate)[0];
  return candidate?.getTime();
}

/** Counts slots in (afterMs, untilMs], up to MAX_COUNTED_SLOTS. */
function countSlots(cron: Cron, afterMs: number, untilMs: number): { count: number; capped: boolean } {
  let count = 0;
  let at: Date | null = new Date(afterMs);
  while (count < MAX_COUNTED_SLOTS) {
    at = cron.nextRun(at);
    if (!at || at.getTime() > untilMs) return { count, capped: false };
    count++;
  }
  const next = cron.nextRun(at);
  return { count, capped: next !== null && next.getTime() <= untilMs };
}

/** `nightly-20261123t020000z`: one run id per job and slot, so a slot cannot become two runs. */
export function runIdForSlot(jobId: string, slotMs: number): string {
  const stamp = new Date(slotMs).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'z').toLowerCase();
  return `${jobId}-${stamp}`;
}

/** Decides what is due at `nowMs`. Call it at `nextSlotMs` (and at start-up); it is safe to call at any time. */
export function planSchedule(input: PlanScheduleInput): ScheduleDecision {
  const { schedule, lastSlotMs, activeRunIds, nowMs } = input;
  const cron = cronFor(schedule);
  const nextSlotMs = cron.nextRun(new Date(nowMs))?.getTime();
  const base = nextSlotMs === undefined ? {} : { nextSlotMs };
  const latest = latestSlotAtOrBefore(schedule, nowMs);
  if (latest === undefined || latest <= lastSlotMs) return { skipped: [], lastSlotMs, ...base };

  const counted = (reason: SkipReason, slotMs: number, slots: { count: number; capped: boolean }): SkippedSlots => ({
    reason,
    slotMs,
    count: slots.count,
    ...(slots.capped && { countCapped: true }),
  });
  if (!schedule.enabled) return { skipped: [counted('disabled', latest, countSlots(cron, lastSlotMs, latest))], lastSlotMs: latest, ...base };
  const skipped: SkippedSlots[] = [];
  const earlier = countSlots(cron, lastSlotMs, latest - 1);
  if (earlier.count > 0) skipped.push(counted('missed', latestSlotAtOrBefore(schedule, latest - 1) ?? latest, earlier));
  const skip = (reason: SkipReason): ScheduleDecision => ({ skipped: [...skipped, { reason, slotMs: latest, count: 1 }], lastSlotMs: latest, ...base });
  if (nowMs - latest > schedule.startingDeadlineSeconds * 1000) return skip('deadline');
  if (schedule.concurrencyPolicy === 'FORBID' && activeRunIds.length > 0) return skip('forbid');
  const cancelRunIds = schedule.concurrencyPolicy === 'REPLACE' ? [...activeRunIds] : [];
  return { fire: { slotMs: latest, cancelRunIds }, skipped, lastSlotMs: latest, ...base };
}
