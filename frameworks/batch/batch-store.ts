/**
 * The batch framework's layout in its Store. Task states are not here (the master reconciles
 * them); what is here is everything a restart must not lose or repeat:
 *
 *   framework                    { id }         the framework id to resume
 *   jobs/<jobId>                 StoredJob      the definition, and the latest schedule slot handled
 *   runs/<runId>                 StoredRunHead  the run without its tasks, and the spec it runs
 *   runs/<runId>/tasks/<chunk>   RunTask[]      its tasks, TASKS_PER_CHUNK to a key
 *
 * Tasks are kept in chunks so that a status update rewrites the few hundred tasks around it, not a
 * 100,000-task array whole (see RunRecords).
 *
 * Two write-ahead rules make restarts exact:
 *  - an attempt is recorded in its run BEFORE its task is launched, so a restarted scheduler knows
 *    every task it may have started and asks the master about each (none launched twice, none lost);
 *  - a scheduled run is committed together with its job's `lastSlotMs`, so a slot fires once.
 */
import type { Store, StoreWrite } from '../sdk/index.ts';
import { formatArray } from './array-spec.ts';
import type { RunTrigger } from './batch-api.ts';
import type { JobSpec } from './job-spec.ts';
import { validateJobSpec } from './parse-job-spec.ts';
import type { Run, RunTask } from './run-state.ts';
import type { SkippedSlots } from './schedule.ts';
import { asDefinitionInput } from '../services/services-store.ts';

export interface StoredJob {
  spec: JobSpec;
  createdAtMs: number;
  updatedAtMs: number;
  /** Every schedule slot at or before this is handled (fired or skipped). */
  lastSlotMs?: number;
  /** The latest skipped slots, newest last (a few, for people). */
  skipped?: SkippedSlots[];
}

export interface StoredRun {
  run: Run;
  /** The spec as it was when the run was created: editing the job does not change a run in flight. */
  spec: JobSpec;
  trigger: RunTrigger;
  slotMs?: number;
  /** Submission order among runs of equal priority. */
  seq: number;
}

export const keys = {
  framework: 'framework',
  job: (jobId: string) => `jobs/${jobId}`,
  run: (runId: string) => `runs/${runId}`,
  runTasks: (runId: string, chunk: number) => `runs/${runId}/tasks/${chunk}`,
};

/**
 * Small enough that an update rewrites little (the tasks in flight sit close together, so a commit
 * touches one or two chunks), large enough that a 100,000-task array is 4,000 keys, not 100,000.
 * Every commit is written and fsynced whole, so this sets what a busy array costs the store: at
 * 100 a chunk (the size until Nov 2026, still read and kept for runs written so) a 500-task array
 * of `true` wrote ~23 KB per commit.
 */
export const TASKS_PER_CHUNK = 25;
/** The chunk size of runs whose head does not say (written before the size was recorded). */
const EARLIER_TASKS_PER_CHUNK = 100;

/** What `runs/<runId>` holds: the run with `tasks` empty, how many chunks hold them, and how many to a chunk. */
interface StoredRunHead extends Omit<StoredRun, 'run'> {
  run: Run;
  taskChunks?: number;
  taskChunkSize?: number;
}

export interface BatchState {
  frameworkId: string | undefined;
  jobs: StoredJob[];
  runs: StoredRun[];
  /** Per run id, the chunk size its tasks are stored in (none: stored whole in the head, before chunks). */
  taskChunkSizes: Map<string, number>;
}

/** Loads everything. Specs are validated again: a store is input too. */
export async function loadBatchState(store: Store): Promise<BatchState> {
  const [framework, jobs, runs] = await Promise.all([store.get(keys.framework), store.list('jobs/'), store.list('runs/')]);
  const frameworkId = (framework?.value as { id?: unknown } | undefined)?.id;
  const taskChunkSizes = new Map<string, number>();
  return {
    frameworkId: typeof frameworkId === 'string' ? frameworkId : undefined,
    jobs: jobs.map((entry) => {
      const stored = entry.value as StoredJob;
      return { ...stored, spec: revalidate(stored.spec, entry.key) };
    }),
    runs: assembleRuns(runs, taskChunkSizes),
    taskChunkSizes,
  };
}

/** Puts each run head back together with its task chunks (`runs/` lists both, in key order). */
function assembleRuns(entries: readonly { key: string; value: unknown }[], taskChunkSizes: Map<string, number>): StoredRun[] {
  const heads = new Map<string, { key: string; head: StoredRunHead }>();
  const chunks = new Map<string, Map<number, RunTask[]>>();
  for (const { key, value } of entries) {
    const chunk = /^runs\/(.+)\/tasks\/(\d+)$/.exec(key);
    if (chunk) {
      let of = chunks.get(chunk[1]!);
      if (!of) chunks.set(chunk[1]!, (of = new Map()));
      of.set(Number(chunk[2]), value as RunTask[]);
    } else {
      heads.set(key.slice('runs/'.length), { key, head: value as StoredRunHead });
    }
  }
  return [...heads.entries()].map(([runId, { key, head }]) => {
    const { taskChunks, taskChunkSize, ...stored } = head;
    const spec = revalidate(stored.spec, key);
    // Runs written before tasks were chunked carry their tasks in the head.
    if (taskChunks === undefined) return { ...stored, spec };
    taskChunkSizes.set(runId, taskChunkSize ?? EARLIER_TASKS_PER_CHUNK);
    const of = chunks.get(runId);
    const tasks: RunTask[] = [];
    for (let i = 0; i < taskChunks; i++) {
      const part = of?.get(i);
      if (!part) throw new Error(`store key ${keys.runTasks(runId, i)} is missing: run ${runId} cannot be read back whole`);
      tasks.push(...part);
    }
    return { ...stored, spec, run: { ...stored.run, tasks } };
  });
}

/**
 * Turns runs into store writes, chunk by chunk, writing only the chunks whose tasks changed since
 * they were last committed, and the head only when it changed. Run state is immutable data
 * (run-state.ts returns new objects for what changes), so "changed" is a reference comparison for
 * tasks. Most commits are then one small key, which a file store writes without a journal. Call
 * `committed` once the writes are durable.
 */
export class RunRecords {
  /** The task arrays last committed, per run and chunk. */
  private readonly written = new Map<string, (readonly RunTask[])[]>();
  /** The head last committed, per run, as JSON. */
  private readonly heads = new Map<string, string>();
  /** Chunk sizes of runs loaded from the store (a run keeps the layout it was written in). */
  private readonly chunkSizes = new Map<string, number>();

  /** Writes for a run, and what to remember once they are committed. */
  writesFor(stored: StoredRun): { writes: StoreWrite[]; committed: () => void } {
    const { run, ...rest } = stored;
    const before = this.written.get(run.id);
    const size = this.chunkSizes.get(run.id) ?? TASKS_PER_CHUNK;
    const count = Math.ceil(run.tasks.length / size);
    const parts: RunTask[][] = [];
    const writes: StoreWrite[] = [];
    for (let i = 0; i < count; i++) {
      const part = run.tasks.slice(i * size, (i + 1) * size);
      parts.push(part);
      const previous = before?.[i];
      if (!previous || previous.length !== part.length || part.some((task, j) => task !== previous[j])) {
        writes.push({ op: 'put', key: keys.runTasks(run.id, i), value: part });
      }
    }
    const head: StoredRunHead = { ...rest, run: { ...run, tasks: [] }, taskChunks: count, taskChunkSize: size };
    const headText = JSON.stringify(head);
    if (headText !== this.heads.get(run.id)) writes.push({ op: 'put', key: keys.run(run.id), value: head });
    return {
      writes,
      committed: () => {
        this.written.set(run.id, parts);
        this.heads.set(run.id, headText);
      },
    };
  }

  /**
   * Remembers a run just loaded from the store, in the chunk size it was stored in (from
   * BatchState.taskChunkSizes), as written; the head is written again once (it says the size now).
   * A run stored whole (no size: before chunks) has nothing in chunks yet: all of them are written
   * with its next change.
   */
  loaded(stored: StoredRun, chunkSize: number | undefined): void {
    if (chunkSize === undefined) return;
    this.chunkSizes.set(stored.run.id, chunkSize);
    const parts: RunTask[][] = [];
    for (let i = 0; i * chunkSize < stored.run.tasks.length; i++) parts.push(stored.run.tasks.slice(i * chunkSize, (i + 1) * chunkSize));
    this.written.set(stored.run.id, parts);
  }

  /** Deletes a run's head and every chunk it may have. */
  deletesFor(runId: string, taskCount: number): StoreWrite[] {
    const size = this.chunkSizes.get(runId) ?? TASKS_PER_CHUNK;
    this.written.delete(runId);
    this.heads.delete(runId);
    this.chunkSizes.delete(runId);
    const writes: StoreWrite[] = [{ op: 'delete', key: keys.run(runId) }];
    for (let i = 0; i * size < taskCount; i++) writes.push({ op: 'delete', key: keys.runTasks(runId, i) });
    return writes;
  }
}

/**
 * A parsed spec back through the schema. The array form is parsed into indices on input, so it
 * goes back as text; constraints go back as tuples.
 */
function revalidate(spec: JobSpec, key: string): JobSpec {
  const input = asDefinitionInput(spec) as Record<string, unknown>;
  if (spec.array) input.array = formatArray(spec.array);
  return validateJobSpec(input, `store key ${key}`);
}

export function putJob(job: StoredJob): StoreWrite {
  return { op: 'put', key: keys.job(job.spec.id), value: job };
}

export function deleteJob(jobId: string): StoreWrite {
  return { op: 'delete', key: keys.job(jobId) };
}
