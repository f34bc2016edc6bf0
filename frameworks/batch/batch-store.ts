/**
 * The batch framework's layout in its Store. Task states are not here (the master reconciles
 * them); what is here is everything a restart must not lose or repeat:
 *
 *   framework          { id }       the framework id to resume
 *   jobs/<jobId>       StoredJob    the definition, and the latest schedule slot handled
 *   runs/<runId>       StoredRun    the run with every attempt, and the spec it runs
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
import type { Run } from './run-state.ts';
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
};

export interface BatchState {
  frameworkId: string | undefined;
  jobs: StoredJob[];
  runs: StoredRun[];
}

/** Loads everything. Specs are validated again: a store is input too. */
export async function loadBatchState(store: Store): Promise<BatchState> {
  const [framework, jobs, runs] = await Promise.all([store.get(keys.framework), store.list('jobs/'), store.list('runs/')]);
  const frameworkId = (framework?.value as { id?: unknown } | undefined)?.id;
  return {
    frameworkId: typeof frameworkId === 'string' ? frameworkId : undefined,
    jobs: jobs.map((entry) => {
      const stored = entry.value as StoredJob;
      return { ...stored, spec: revalidate(stored.spec, entry.key) };
    }),
    runs: runs.map((entry) => {
      const stored = entry.value as StoredRun;
      return { ...stored, spec: revalidate(stored.spec, entry.key) };
    }),
  };
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

export function putRun(run: StoredRun): StoreWrite {
  return { op: 'put', key: keys.run(run.run.id), value: run };
}

export function deleteRun(runId: string): StoreWrite {
  return { op: 'delete', key: keys.run(runId) };
}

export function deleteJob(jobId: string): StoreWrite {
  return { op: 'delete', key: keys.job(jobId) };
}
