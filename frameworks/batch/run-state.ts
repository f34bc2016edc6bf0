/**
 * A run: one execution of a job, made of indexed tasks. Each task is tried until it succeeds or its
 * retries are spent; every try is an attempt with its own Mesos task id, agent, times and exit code.
 *
 *   queued → running → succeeded | failed | cancelled | timed_out
 *
 * Tasks are independent (Slurm arrays, Kubernetes' backoffLimitPerIndex): one task failing for good
 * does not kill the others; the run ends when every task has, and fails if any task failed.
 *
 * Pure: the run is plain data the scheduler stores. `applyRunEvent` folds in what happened (a launch,
 * a task status — at least once, in any order — or a cancel); `stepRun` decides, at `nowMs`, what to
 * launch, what to kill (timeouts, cancels) and when to look again.
 */
import type { TaskState } from '../sdk/index.ts';
import type { Retries } from './job-spec.ts';

export type RunState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'timed_out';
export const TERMINAL_RUN_STATES: readonly RunState[] = ['succeeded', 'failed', 'cancelled', 'timed_out'];

/**
 * pending: waiting for a launch (or for its retry backoff); active: an attempt is launched and not
 * yet ended; the rest are final.
 */
export type RunTaskState = 'pending' | 'active' | 'succeeded' | 'failed' | 'cancelled';

export type AttemptOutcome = 'succeeded' | 'failed' | 'timed_out' | 'killed' | 'lost';

export interface Attempt {
  /** 1 for the first try. */
  attempt: number;
  taskId: string;
  agentId?: string;
  launchedAtMs: number;
  /** When the task reported RUNNING. */
  startedAtMs?: number;
  endedAtMs?: number;
  exitCode?: number;
  outcome?: AttemptOutcome;
  message?: string;
  /** Why we asked the master to kill it, and when (asked again every KILL_RETRY_MS until it ends). */
  kill?: { reason: 'timeout' | 'cancel'; requestedAtMs: number };
}

export interface RunTask {
  index: number;
  state: RunTaskState;
  attempts: Attempt[];
  /** No new attempt before this (retry backoff). */
  notBeforeMs: number;
}

export interface Run {
  id: string;
  jobId: string;
  state: RunState;
  tasks: RunTask[];
  /** At most this many attempts active at once (parallelism or the array's throttle). */
  maxRunning: number;
  retries: Retries;
  timeoutSeconds?: number;
  createdAtMs: number;
  startedAtMs?: number;
  finishedAtMs?: number;
  cancelRequestedAtMs?: number;
  /** Why it ended otherwise than succeeded, for people. */
  reason?: string;
}

export type RunEvent =
  /** The scheduler launched an attempt `stepRun` asked for. */
  | { type: 'launched'; taskId: string; agentId?: string; atMs: number }
  /** A task status update from the master (delivered at least once; stale ones are ignored). */
  | { type: 'status'; taskId: string; state: TaskState; exitCode?: number; agentId?: string; message?: string; atMs: number }
  | { type: 'cancel'; atMs: number; reason?: string }
  /** Ends a run that has launched nothing, as failed (e.g. a dependency that can never hold). */
  | { type: 'abandon'; atMs: number; reason: string };

export interface LaunchRequest {
  index: number;
  attempt: number;
  taskId: string;
}

export interface KillRequest {
  taskId: string;
  agentId?: string;
  reason: 'timeout' | 'cancel';
}

export interface RunStep {
  run: Run;
  /** Launch these now if offers allow, in this order; those not placed are asked for again. */
  launch: LaunchRequest[];
  kill: KillRequest[];
  /** Call `stepRun` again by then even without an event (a backoff or timeout expires). */
  wakeAtMs?: number;
}

/** A kill not answered by a terminal status within this long is asked for again. */
export const KILL_RETRY_MS = 10_000;

/**
 * Attempts lost through no fault of the task (its agent died, the master never heard of it, the
 * offer was gone) are tried again without using up a retry, but only this many times per task, so
 * a task that kills its agent cannot loop forever.
 */
export const MAX_LOST_ATTEMPTS = 10;

/** A lost attempt is tried again after this long (the agent may be coming back; do not spin). */
export const LOST_RETRY_DELAY_MS = 1_000;

export interface CreateRunOptions {
  id: string;
  jobId: string;
  indices: readonly number[];
  maxRunning: number;
  retries: Retries;
  timeoutSeconds?: number;
  nowMs: number;
}

export function createRun(options: CreateRunOptions): Run {
  const { id, jobId, indices, maxRunning, retries, timeoutSeconds, nowMs } = options;
  if (id.includes('_')) throw new Error(`run id ${id} must not contain "_" (it separates the parts of task ids)`);
  return {
    id,
    jobId,
    state: indices.length === 0 ? 'succeeded' : 'queued',
    tasks: indices.map((index) => ({ index, state: 'pending', attempts: [], notBeforeMs: 0 })),
    maxRunning: Math.max(1, maxRunning),
    retries,
    ...(timeoutSeconds !== undefined && { timeoutSeconds }),
    createdAtMs: nowMs,
    ...(indices.length === 0 && { finishedAtMs: nowMs }),
  };
}

/** `nightly-20261123T0200_7_2`: run id, task index, attempt. Job and run ids contain no "_". */
export function taskIdFor(runId: string, index: number, attempt: number): string {
  return `${runId}_${index}_${attempt}`;
}

export function parseTaskId(taskId: string): { runId: string; index: number; attempt: number } | undefined {
  const match = /^(.+)_(\d+)_(\d+)$/.exec(taskId);
  if (!match) return undefined;
  return { runId: match[1]!, index: Number(match[2]), attempt: Number(match[3]) };
}

export function isRunDone(run: Pick<Run, 'state'>): boolean {
  return TERMINAL_RUN_STATES.includes(run.state);
}

/** The wait before retry number `retry` (1 = the first retry): backoffSeconds × backoffFactor^(retry − 1), capped. */
export function retryDelayMs(retries: Retries, retry: number): number {
  if (retry <= 0) return 0;
  return Math.round(Math.min(retries.backoffSeconds * retries.backoffFactor ** (retry - 1), retries.maxBackoffSeconds) * 1000);
}

export interface RunCounts {
  pending: number;
  active: number;
  succeeded: number;
  failed: number;
  cancelled: number;
}

/** What a progress bar shows. */
export function runCounts(run: Run): RunCounts {
  const counts: RunCounts = { pending: 0, active: 0, succeeded: 0, failed: 0, cancelled: 0 };
  for (const task of run.tasks) counts[task.state]++;
  return counts;
}

/** Folds one event into the run. Events that do not apply (stale, duplicate, unknown) return the run unchanged. */
export function applyRunEvent(run: Run, event: RunEvent): Run {
  switch (event.type) {
    case 'cancel':
      return cancelRun(run, event.atMs, event.reason);
    case 'abandon':
      return abandonRun(run, event.atMs, event.reason);
    case 'launched':
      return recordLaunch(run, event);
    case 'status':
      return recordStatus(run, event);
  }
}

function cancelRun(run: Run, atMs: number, reason = 'cancelled'): Run {
  if (isRunDone(run) || run.cancelRequestedAtMs !== undefined) return run;
  const tasks = run.tasks.map((task) => (task.state === 'pending' ? { ...task, state: 'cancelled' as const } : task));
  return settle({ ...run, tasks, cancelRequestedAtMs: atMs, reason }, atMs);
}

function abandonRun(run: Run, atMs: number, reason: string): Run {
  if (isRunDone(run) || run.tasks.some((t) => t.state === 'active')) return run;
  const tasks = run.tasks.map((task) => (task.state === 'pending' ? { ...task, state: 'cancelled' as const } : task));
  return { ...run, tasks, state: 'failed', finishedAtMs: atMs, reason };
}

function locate(run: Run, taskId: string): { position: number; task: RunTask; attempt: number } | undefined {
  const parsed = parseTaskId(taskId);
  if (!parsed || parsed.runId !== run.id) return undefined;
  // Tasks are in index order, and usually task i has index i (0-N arrays): look there first.
  const guess = run.tasks[parsed.index];
  const position = guess?.index === parsed.index ? parsed.index : run.tasks.findIndex((t) => t.index === parsed.index);
  const task = run.tasks[position];
  return task ? { position, task, attempt: parsed.attempt } : undefined;
}

function withTask(run: Run, position: number, task: RunTask): Run {
  const tasks = run.tasks.slice();
  tasks[position] = task;
  return { ...run, tasks };
}

function recordLaunch(run: Run, event: Extract<RunEvent, { type: 'launched' }>): Run {
  const found = locate(run, event.taskId);
  if (!found || isRunDone(run) || run.cancelRequestedAtMs !== undefined) return run;
  const { position, task, attempt } = found;
  // Only the next attempt of a pending task; a repeated or out-of-date launch changes nothing.
  if (task.state !== 'pending' || attempt !== task.attempts.length + 1) return run;
  const record: Attempt = { attempt, taskId: event.taskId, launchedAtMs: event.atMs, ...(event.agentId !== undefined && { agentId: event.agentId }) };
  const next = withTask(run, position, { ...task, state: 'active', attempts: [...task.attempts, record] });
  return next.state === 'queued' ? { ...next, state: 'running', startedAtMs: event.atMs } : next;
}

function outcomeOf(state: TaskState, exitCode: number | undefined, attempt: Attempt): AttemptOutcome | undefined {
  switch (state) {
    case 'FINISHED':
      return exitCode === undefined || exitCode === 0 ? 'succeeded' : 'failed';
    case 'FAILED':
    case 'ERROR':
      return 'failed';
    case 'KILLED':
      return attempt.kill?.reason === 'timeout' ? 'timed_out' : 'killed';
    case 'LOST':
    case 'DROPPED':
    case 'GONE':
    // To a framework that is not partition-aware, the master says UNKNOWN only when it has never
    // heard of the task (reconciliation after a launch that did not arrive): it is not running.
    case 'UNKNOWN':
      return 'lost';
    case 'STAGING':
    case 'STARTING':
    case 'RUNNING':
    case 'KILLING':
    case 'UNREACHABLE':
      return undefined;
  }
}

function recordStatus(run: Run, event: Extract<RunEvent, { type: 'status' }>): Run {
  const found = locate(run, event.taskId);
  if (!found) return run;
  const { position, task } = found;
  const at = task.attempts.findIndex((a) => a.taskId === event.taskId);
  const attempt = task.attempts[at];
  if (!attempt || attempt.outcome !== undefined) return run; // unknown, or already ended: stale or a duplicate
  const agent = attempt.agentId ?? event.agentId;
  let updated: Attempt = { ...attempt, ...(agent !== undefined && { agentId: agent }) };
  const outcome = outcomeOf(event.state, event.exitCode, attempt);
  if (outcome === undefined) {
    if (event.state === 'RUNNING' && attempt.startedAtMs === undefined) updated = { ...updated, startedAtMs: event.atMs };
    return withTask(run, position, { ...task, attempts: replaceAt(task.attempts, at, updated) });
  }
  updated = {
    ...updated,
    outcome,
    endedAtMs: event.atMs,
    ...(event.exitCode !== undefined && { exitCode: event.exitCode }),
    ...(event.message !== undefined && { message: event.message }),
  };
  const attempts = replaceAt(task.attempts, at, updated);
  let next: RunTask;
  if (outcome === 'succeeded') next = { ...task, state: 'succeeded', attempts };
  else if (run.cancelRequestedAtMs !== undefined) next = { ...task, state: 'cancelled', attempts };
  else if (outcome === 'lost') {
    const lost = attempts.filter((a) => a.outcome === 'lost').length;
    next = lost <= MAX_LOST_ATTEMPTS ? { ...task, state: 'pending', attempts, notBeforeMs: event.atMs + LOST_RETRY_DELAY_MS } : { ...task, state: 'failed', attempts };
  } else if (failures(attempts) <= run.retries.count) {
    next = { ...task, state: 'pending', attempts, notBeforeMs: event.atMs + retryDelayMs(run.retries, failures(attempts)) };
  } else next = { ...task, state: 'failed', attempts };
  return settle(withTask(run, position, next), event.atMs);
}

/** Attempts that count against the retries: every ended one but those lost. */
function failures(attempts: readonly Attempt[]): number {
  return attempts.filter((a) => a.outcome !== undefined && a.outcome !== 'lost' && a.outcome !== 'succeeded').length;
}

function replaceAt<T>(items: readonly T[], at: number, item: T): T[] {
  const copy = items.slice();
  copy[at] = item;
  return copy;
}

/** Ends the run once every task has ended. */
function settle(run: Run, atMs: number): Run {
  if (isRunDone(run) || run.tasks.some((t) => t.state === 'pending' || t.state === 'active')) return run;
  const failed = run.tasks.filter((t) => t.state === 'failed');
  let state: RunState;
  let reason: string | undefined;
  if (run.cancelRequestedAtMs !== undefined) {
    state = 'cancelled';
    reason = run.reason ?? 'cancelled';
  } else if (failed.length === 0) {
    state = 'succeeded';
  } else {
    const timedOut = failed.filter((t) => t.attempts.at(-1)?.outcome === 'timed_out');
    state = timedOut.length === failed.length ? 'timed_out' : 'failed';
    const first = failed[0]!;
    const last = first.attempts.at(-1);
    // With an exit code the agent's message only says it again ("exited with code 1").
    const why = last?.outcome === 'timed_out' ? 'timed out' : last?.exitCode !== undefined ? `exited with ${last.exitCode}` : (last?.outcome ?? 'failed');
    reason = `${failed.length} of ${run.tasks.length} task(s) failed; task ${first.index} ${why} after ${first.attempts.length} attempt(s)${last?.message && last.exitCode === undefined && last.outcome !== 'timed_out' ? `: ${last.message}` : ''}`;
  }
  const { reason: _previous, ...rest } = run;
  return { ...rest, state, finishedAtMs: atMs, ...(reason !== undefined && { reason }) };
}

/**
 * Decides at `nowMs`: which pending tasks to launch (lowest index first, past their backoff, never
 * more active than `maxRunning`), which attempts to kill (past the timeout, or the run cancelled;
 * asked again every KILL_RETRY_MS), and when to look again. The returned run records the kills asked for.
 */
export function stepRun(run: Run, nowMs: number): RunStep {
  if (isRunDone(run)) return { run, launch: [], kill: [] };
  const kill: KillRequest[] = [];
  const wakes: number[] = [];
  const timeoutMs = run.timeoutSeconds === undefined ? undefined : run.timeoutSeconds * 1000;
  let active = 0;
  let changed = false;
  const tasks = run.tasks.map((task) => {
    if (task.state !== 'active') return task;
    active++;
    const at = task.attempts.length - 1;
    const attempt = task.attempts[at];
    if (!attempt) return task;
    let reason: 'timeout' | 'cancel' | undefined = attempt.kill?.reason;
    if (reason === undefined && run.cancelRequestedAtMs !== undefined) reason = 'cancel';
    if (reason === undefined && timeoutMs !== undefined) {
      const deadline = (attempt.startedAtMs ?? attempt.launchedAtMs) + timeoutMs;
      if (nowMs >= deadline) reason = 'timeout';
      else wakes.push(deadline);
    }
    if (reason === undefined) return task;
    if (attempt.kill && nowMs < attempt.kill.requestedAtMs + KILL_RETRY_MS) {
      wakes.push(attempt.kill.requestedAtMs + KILL_RETRY_MS);
      return task;
    }
    kill.push({ taskId: attempt.taskId, reason, ...(attempt.agentId !== undefined && { agentId: attempt.agentId }) });
    wakes.push(nowMs + KILL_RETRY_MS);
    changed = true;
    return { ...task, attempts: replaceAt(task.attempts, at, { ...attempt, kill: { reason, requestedAtMs: nowMs } }) };
  });
  const launch: LaunchRequest[] = [];
  if (run.cancelRequestedAtMs === undefined) {
    for (const task of tasks) {
      if (task.state !== 'pending') continue;
      if (task.notBeforeMs > nowMs) {
        wakes.push(task.notBeforeMs);
        continue;
      }
      if (active + launch.length >= run.maxRunning) continue;
      const attempt = task.attempts.length + 1;
      launch.push({ index: task.index, attempt, taskId: taskIdFor(run.id, task.index, attempt) });
    }
  }
  const wakeAtMs = wakes.reduce<number | undefined>((min, at) => (min === undefined || at < min ? at : min), undefined);
  return { run: changed ? { ...run, tasks } : run, launch, kill, ...(wakeAtMs !== undefined && { wakeAtMs }) };
}
