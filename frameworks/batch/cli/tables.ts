/** What `agora job list`, `runs` and `status` print: plain text from the API's views. */
import type { JobView, RunSummary, RunTaskView, RunView, TaskAttemptView } from '../batch-api.ts';
import type { RunTaskState } from '../run-state.ts';
import { formatDuration, formatInstant, formatRelative, table, truncate } from './format.ts';
import { describeCounts } from './progress-bar.ts';

/** JOB, SCHEDULE, NEXT, LATEST RUN, STATE, ACTIVE. */
export function jobsTable(jobs: readonly JobView[], nowMs: number): string {
  const rows = jobs.map((job) => {
    const schedule = job.spec.schedule;
    const when = schedule ? `${schedule.cron} ${schedule.timezone}${schedule.enabled ? '' : ' (paused)'}` : '-';
    const next = schedule?.enabled && job.schedule?.nextSlotMs !== undefined ? formatRelative(job.schedule.nextSlotMs, nowMs) : '-';
    return [job.spec.id, when, next, job.latestRun?.id ?? '-', job.latestRun?.state ?? '-', String(job.activeRuns)];
  });
  return table(['JOB', 'SCHEDULE', 'NEXT', 'LATEST RUN', 'STATE', 'ACTIVE'], rows);
}

/** From its start (or creation) to its end, or to now while it goes on. */
export function runDurationMs(run: Pick<RunSummary, 'createdAtMs' | 'startedAtMs' | 'finishedAtMs'>, nowMs: number): number | undefined {
  const from = run.startedAtMs ?? (run.finishedAtMs === undefined ? undefined : run.createdAtMs);
  if (from === undefined) return undefined;
  return (run.finishedAtMs ?? nowMs) - from;
}

/** RUN, JOB, STATE, TRIGGER, DONE, FAILED, CREATED, DURATION, DETAIL (why it failed, or what it waits for). */
export function runsTable(runs: readonly RunSummary[], nowMs: number, detailWidth = 60): string {
  const rows = runs.map((run) => {
    const duration = runDurationMs(run, nowMs);
    return [
      run.id,
      run.jobId,
      run.state,
      run.trigger,
      `${run.counts.succeeded}/${run.tasks}`,
      String(run.counts.failed),
      formatRelative(run.createdAtMs, nowMs),
      duration === undefined ? '-' : formatDuration(duration),
      truncate(run.reason ?? run.waiting ?? '', detailWidth),
    ];
  });
  return table(['RUN', 'JOB', 'STATE', 'TRIGGER', 'DONE', 'FAILED', 'CREATED', 'DURATION', 'DETAIL'], rows);
}

/** The first lines of `agora job status`: the run, its times, why, and its counts. */
export function runHeader(run: RunSummary, nowMs: number): string {
  const out = [`RUN ${run.id}  job ${run.jobId}  ${run.state}  (${run.trigger === 'schedule' && run.slotMs !== undefined ? `scheduled for ${formatInstant(run.slotMs)}` : `trigger ${run.trigger}`}, priority ${run.priority})`];
  const times = [`created ${formatInstant(run.createdAtMs)} (${formatRelative(run.createdAtMs, nowMs)})`];
  if (run.startedAtMs !== undefined) times.push(`started ${formatInstant(run.startedAtMs)}`);
  if (run.finishedAtMs !== undefined) times.push(`finished ${formatInstant(run.finishedAtMs)}`);
  const duration = runDurationMs(run, nowMs);
  if (duration !== undefined) times.push(`${run.finishedAtMs === undefined ? 'running for' : 'took'} ${formatDuration(duration)}`);
  out.push(times.join(' · '));
  if (run.reason) out.push(`reason: ${run.reason}`);
  if (run.waiting) out.push(`waiting: ${run.waiting}`);
  out.push(`tasks: ${describeCounts(run)}`);
  return out.join('\n');
}

/** Which tasks a truncated table keeps first: the ones a person looks for. */
const INTEREST: Record<RunTaskState, number> = { failed: 0, active: 1, cancelled: 2, pending: 4, succeeded: 3 };

function interest(task: RunTaskView): number {
  if (task.state === 'pending' && task.attempts.length > 0) return 1.5; // waiting to retry
  return INTEREST[task.state];
}

function taskState(task: RunTaskView): string {
  const last = task.attempts.at(-1);
  if (task.state === 'pending' && last) return 'pending (retry)';
  if (task.state === 'failed' && last?.outcome && last.outcome !== 'failed') return `failed (${last.outcome.replace('_', ' ')})`;
  return task.state;
}

function attemptDuration(attempt: TaskAttemptView | undefined, nowMs: number): string {
  if (!attempt) return '-';
  const from = attempt.startedAtMs ?? attempt.launchedAtMs;
  if (attempt.endedAtMs === undefined && attempt.outcome !== undefined) return '-';
  return formatDuration((attempt.endedAtMs ?? nowMs) - from);
}

function where(attempt: TaskAttemptView | undefined): string {
  if (!attempt) return '-';
  if (attempt.host) return attempt.host;
  if (attempt.agentId) return attempt.agentId.length > 12 ? attempt.agentId.slice(0, 8) : attempt.agentId;
  return '-';
}

export interface TaskTableOptions {
  /** At most this many rows; failed, running and retrying tasks first. @default 50 */
  limit?: number;
}

/**
 * INDEX STATE ATTEMPTS EXIT AGENT/HOST DURATION, by index. Past `limit` tasks it keeps the failed,
 * running and retrying ones first and ends with a line counting the rest by state.
 */
export function taskTable(tasks: readonly RunTaskView[], nowMs: number, options: TaskTableOptions = {}): string {
  const limit = Math.max(1, options.limit ?? 50);
  let shown: readonly RunTaskView[] = tasks;
  let note = '';
  if (tasks.length > limit) {
    const kept = new Set([...tasks].sort((a, b) => interest(a) - interest(b) || a.index - b.index).slice(0, limit));
    shown = tasks.filter((t) => kept.has(t));
    const hidden = new Map<string, number>();
    for (const t of tasks) if (!kept.has(t)) hidden.set(t.state, (hidden.get(t.state) ?? 0) + 1);
    const byState = [...hidden].map(([state, n]) => `${n} ${state}`).join(', ');
    note = `\n… ${tasks.length - shown.length} more task(s) not shown (${byState}); --all lists every task, --json gives every attempt`;
  }
  const rows = shown.map((task) => {
    const last = task.attempts.at(-1);
    return [String(task.index), taskState(task), String(task.attempts.length), last?.exitCode === undefined ? '-' : String(last.exitCode), where(last), attemptDuration(last, nowMs)];
  });
  return table(['INDEX', 'STATE', 'ATTEMPTS', 'EXIT', 'AGENT/HOST', 'DURATION'], rows) + note;
}

/** `agora job status RUN`: the header, then the task table. */
export function runStatus(run: RunView, nowMs: number, options: TaskTableOptions = {}): string {
  return `${runHeader(run, nowMs)}\n\nTASKS (${run.taskList.length})\n${taskTable(run.taskList, nowMs, options)}`;
}
