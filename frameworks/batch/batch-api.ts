/**
 * What the batch scheduler offers to its edges (the HTTP API, the CLI, tests): one interface, so
 * each edge is written and tested against the real scheduler without knowing its insides.
 *
 * Jobs are definitions; runs are executions of a job (Metronome's split). A run is triggered by a
 * person (`triggerRun`), by the job's schedule, or both at once with `agora job run`.
 */
import type { JobSpec } from './job-spec.ts';
import type { Attempt, RunCounts, RunState, RunTaskState } from './run-state.ts';
import type { SkippedSlots } from './schedule.ts';

export interface JobView {
  spec: JobSpec;
  createdAtMs: number;
  updatedAtMs: number;
  /** For scheduled jobs: the next slot, the latest handled slot and the slots skipped lately (newest last). */
  schedule?: { nextSlotMs?: number; lastSlotMs: number; skipped: SkippedSlots[] };
  /** The newest run, without its tasks. */
  latestRun?: RunSummary;
  /** Runs not ended yet. */
  activeRuns: number;
  /** When the job is deleted (ttlSecondsAfterFinished), once all its runs have ended. */
  expiresAtMs?: number;
}

export type RunTrigger = 'api' | 'schedule';

/** A run without its per-task detail: what lists and progress bars need. */
export interface RunSummary {
  id: string;
  jobId: string;
  state: RunState;
  trigger: RunTrigger;
  /** The slot a scheduled run is for. */
  slotMs?: number;
  priority: number;
  createdAtMs: number;
  startedAtMs?: number;
  finishedAtMs?: number;
  /** Why it failed, timed out or was cancelled, for people. */
  reason?: string;
  /** Why a queued run launches nothing yet, e.g. `waiting for etl.extract's run … (running) to end`. */
  waiting?: string;
  /** Tasks by state; `active` = launched and not ended. */
  counts: RunCounts;
  tasks: number;
}

/** An attempt as people see it: its record without the kill bookkeeping, plus its agent's hostname. */
export type TaskAttemptView = Omit<Attempt, 'kill'> & {
  /** The agent's hostname, when known. */
  host?: string;
};

export interface RunTaskView {
  index: number;
  state: RunTaskState;
  /** Every attempt, oldest first; the last is the current one. */
  attempts: TaskAttemptView[];
}

export interface RunView extends RunSummary {
  /** Every task, by index. */
  taskList: RunTaskView[];
}

export type TaskLogFile = 'stdout' | 'stderr';

export interface TaskLogRequest {
  /** @default 'stdout' */
  file?: TaskLogFile;
  /** @default the latest attempt */
  attempt?: number;
  /** Byte offset to read from. @default 0 */
  offset?: number;
  /** At most this many bytes (capped at 1 MiB). @default 1 MiB */
  length?: number;
}

export interface TaskLogChunk {
  runId: string;
  index: number;
  attempt: number;
  taskId: string;
  file: TaskLogFile;
  offset: number;
  data: Buffer;
  /** The file's size when read; `offset + data.length < size` means there is more. */
  size: number;
  /** The attempt has ended: once the reader reaches `size`, nothing more will come. */
  ended: boolean;
}

export type BatchEvent =
  | { type: 'job_changed'; jobId: string; job: JobView | undefined /* undefined: deleted */ }
  | { type: 'run'; run: RunSummary }
  | { type: 'task'; runId: string; jobId: string; task: RunTaskView }
  | { type: 'schedule_skipped'; jobId: string; skipped: SkippedSlots };

/** A refusal the edges turn into a status code (404, 409, 422) and a message a person can act on. */
export class BatchError extends Error {
  override name = 'BatchError';
  constructor(
    readonly code: 'NOT_FOUND' | 'CONFLICT' | 'INVALID' | 'UNAVAILABLE',
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

export interface ListRunsOptions {
  jobId?: string;
  /** Only runs not ended yet. */
  active?: boolean;
  /** Newest first, at most this many. @default 100 */
  limit?: number;
}

export interface BatchApi {
  listJobs(): Promise<JobView[]>;
  getJob(jobId: string): Promise<JobView | undefined>;
  /** Creates or replaces a job definition. Runs already going keep the spec they started with. */
  putJob(spec: JobSpec): Promise<{ job: JobView; created: boolean }>;
  /** CONFLICT while runs of it are active, unless `force` (which cancels them); CONFLICT while other jobs depend on it. */
  deleteJob(jobId: string, options?: { force?: boolean }): Promise<void>;
  /** Starts a run of the job now (queued until its dependencies hold and offers come). */
  triggerRun(jobId: string): Promise<RunSummary>;
  listRuns(options?: ListRunsOptions): Promise<RunSummary[]>;
  getRun(runId: string): Promise<RunView | undefined>;
  /** One task of a run (cheap where `getRun` of a big array is not); undefined when the run or the index is not there. */
  getTask(runId: string, index: number): Promise<RunTaskView | undefined>;
  /** Kills its running tasks and launches no more; the run ends `cancelled`. Cancelling an ended run is a CONFLICT. */
  cancelRun(runId: string): Promise<RunSummary>;
  /** Reads a task's stdout or stderr from its agent's sandbox, through the master. */
  taskLog(runId: string, index: number, request?: TaskLogRequest): Promise<TaskLogChunk>;
  /** Returns an unsubscribe function. */
  subscribe(listener: (event: BatchEvent) => void): () => void;
}
