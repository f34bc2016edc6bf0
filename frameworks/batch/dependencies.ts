/**
 * Job dependencies, Slurm's conditions over other jobs' latest runs:
 *
 * - afterok: the latest run succeeded;
 * - afternotok: the latest run ended otherwise (failed, timed out, cancelled);
 * - afterany: the latest run ended, however.
 *
 * A run of the dependent job waits while any dependency is still open (no run yet, or the latest
 * still going) and becomes ready when all hold. When a dependency's latest run ended the wrong way
 * the verdict is `unsatisfiable`, with the reason: Slurm leaves such jobs pending forever
 * ("DependencyNeverSatisfied"), which users find late; the scheduler should end the waiting run.
 *
 * Pure: the caller looks the runs up.
 */
import type { Dependency, DependencyCondition, JobId } from './job-spec.ts';
import { isRunDone, type RunState } from './run-state.ts';

/** What a dependency needs to know about another job's latest run. */
export interface RunSummary {
  id: string;
  state: RunState;
  createdAtMs: number;
}

/** `undefined` = the job exists but has no run; `'unknown-job'` = no such job. */
export type LatestRunLookup = (jobId: JobId) => RunSummary | undefined | 'unknown-job';

export type DependencyStatus = 'satisfied' | 'waiting' | 'unsatisfiable';

export interface DependencyResult {
  dependency: Dependency;
  status: DependencyStatus;
  /** For people: `etl.extract's latest run etl.extract-…z failed (afterok needs it to succeed)`. */
  reason: string;
  runId?: string;
}

export interface DependencyVerdict {
  /** ready: all satisfied; waiting: some still open, none unsatisfiable; unsatisfiable: at least one can no longer hold. */
  verdict: 'ready' | 'waiting' | 'unsatisfiable';
  results: DependencyResult[];
}

export interface EvaluateOptions {
  /**
   * Only runs created at or after this count (e.g. when the dependent run was queued), so a
   * pipeline does not start on yesterday's success. Older runs are treated as no run yet.
   */
  notBeforeMs?: number;
}

export function conditionHolds(condition: DependencyCondition, state: RunState): boolean {
  switch (condition) {
    case 'afterok':
      return state === 'succeeded';
    case 'afternotok':
      return isRunDone({ state }) && state !== 'succeeded';
    case 'afterany':
      return isRunDone({ state });
  }
}

const NEEDS: Record<DependencyCondition, string> = {
  afterok: 'afterok needs it to succeed',
  afternotok: 'afternotok needs it to fail, time out or be cancelled',
  afterany: 'afterany needs it to end',
};

export function evaluateDependency(dependency: Dependency, latestRun: LatestRunLookup, options: EvaluateOptions = {}): DependencyResult {
  const { job, condition } = dependency;
  const found = latestRun(job);
  if (found === 'unknown-job') return { dependency, status: 'unsatisfiable', reason: `there is no job ${job}` };
  if (found === undefined || (options.notBeforeMs !== undefined && found.createdAtMs < options.notBeforeMs)) {
    return { dependency, status: 'waiting', reason: `waiting for a run of ${job}` };
  }
  const run = { dependency, runId: found.id };
  if (!isRunDone(found)) return { ...run, status: 'waiting', reason: `waiting for ${job}'s run ${found.id} (${found.state}) to end` };
  if (conditionHolds(condition, found.state)) return { ...run, status: 'satisfied', reason: `${job}'s run ${found.id} ${found.state.replace('_', ' ')}` };
  return { ...run, status: 'unsatisfiable', reason: `${job}'s latest run ${found.id} ${found.state.replace('_', ' ')} (${NEEDS[condition]})` };
}

/** All dependencies must hold (Slurm's `,`-joined list). No dependencies = ready. */
export function evaluateDependencies(dependencies: readonly Dependency[], latestRun: LatestRunLookup, options: EvaluateOptions = {}): DependencyVerdict {
  const results = dependencies.map((d) => evaluateDependency(d, latestRun, options));
  const verdict = results.some((r) => r.status === 'unsatisfiable') ? 'unsatisfiable' : results.every((r) => r.status === 'satisfied') ? 'ready' : 'waiting';
  return { verdict, results };
}

/**
 * A dependency cycle among jobs, as the job ids around it (`[a, b, a]`), or undefined. Check it
 * before accepting a job: a cycle would leave every job in it waiting forever.
 */
export function findDependencyCycle(jobs: ReadonlyMap<JobId, readonly Dependency[]>): JobId[] | undefined {
  const state = new Map<JobId, 'visiting' | 'done'>();
  const path: JobId[] = [];
  const visit = (id: JobId): JobId[] | undefined => {
    const seen = state.get(id);
    if (seen === 'done') return undefined;
    if (seen === 'visiting') return [...path.slice(path.indexOf(id)), id];
    state.set(id, 'visiting');
    path.push(id);
    for (const dependency of jobs.get(id) ?? []) {
      const cycle = visit(dependency.job);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(id, 'done');
    return undefined;
  };
  for (const id of [...jobs.keys()].sort()) {
    const cycle = visit(id);
    if (cycle) return cycle;
  }
  return undefined;
}
