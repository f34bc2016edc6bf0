import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { conditionHolds, evaluateDependencies, findDependencyCycle, type LatestRunLookup, type RunSummary } from '../../frameworks/batch/dependencies.ts';
import type { Dependency } from '../../frameworks/batch/job-spec.ts';
import { TERMINAL_RUN_STATES, type RunState } from '../../frameworks/batch/run-state.ts';

function lookup(runs: Record<string, RunSummary | undefined>): LatestRunLookup {
  return (job) => (job in runs ? runs[job] : 'unknown-job');
}
const run = (id: string, state: RunState, createdAtMs = 0): RunSummary => ({ id, state, createdAtMs });

describe('dependencies', () => {
  it('afterok, afternotok and afterany over ended runs', () => {
    const states: RunState[] = ['succeeded', 'failed', 'timed_out', 'cancelled'];
    expect(states.map((s) => conditionHolds('afterok', s))).toEqual([true, false, false, false]);
    expect(states.map((s) => conditionHolds('afternotok', s))).toEqual([false, true, true, true]);
    expect(states.map((s) => conditionHolds('afterany', s))).toEqual([true, true, true, true]);
    for (const condition of ['afterok', 'afternotok', 'afterany'] as const) {
      expect(conditionHolds(condition, 'running')).toBe(false);
      expect(conditionHolds(condition, 'queued')).toBe(false);
    }
  });

  it('a two-step pipeline: waits, then is ready when the first step succeeds', () => {
    const deps: Dependency[] = [{ job: 'extract', condition: 'afterok' }];
    expect(evaluateDependencies(deps, lookup({ extract: undefined })).verdict).toBe('waiting');
    expect(evaluateDependencies(deps, lookup({ extract: run('extract-1', 'running') }))).toMatchObject({
      verdict: 'waiting',
      results: [{ status: 'waiting', runId: 'extract-1', reason: "waiting for extract's run extract-1 (running) to end" }],
    });
    expect(evaluateDependencies(deps, lookup({ extract: run('extract-1', 'succeeded') })).verdict).toBe('ready');
  });

  it('says why a dependency can no longer hold', () => {
    const verdict = evaluateDependencies(
      [
        { job: 'extract', condition: 'afterok' },
        { job: 'cleanup', condition: 'afternotok' },
        { job: 'gone', condition: 'afterany' },
      ],
      lookup({ extract: run('extract-1', 'timed_out'), cleanup: run('cleanup-1', 'succeeded') }),
    );
    expect(verdict.verdict).toBe('unsatisfiable');
    expect(verdict.results.map((r) => r.reason)).toEqual([
      "extract's latest run extract-1 timed out (afterok needs it to succeed)",
      "cleanup's latest run cleanup-1 succeeded (afternotok needs it to fail, time out or be cancelled)",
      'there is no job gone',
    ]);
  });

  it('an on-failure handler runs after a failure', () => {
    expect(evaluateDependencies([{ job: 'load', condition: 'afternotok' }], lookup({ load: run('load-1', 'failed') })).verdict).toBe('ready');
  });

  it('ignores runs older than notBeforeMs', () => {
    const deps: Dependency[] = [{ job: 'extract', condition: 'afterok' }];
    expect(evaluateDependencies(deps, lookup({ extract: run('extract-1', 'succeeded', 100) }), { notBeforeMs: 200 }).verdict).toBe('waiting');
    expect(evaluateDependencies(deps, lookup({ extract: run('extract-2', 'succeeded', 200) }), { notBeforeMs: 200 }).verdict).toBe('ready');
  });

  it('no dependencies are ready; the verdict is the conjunction', () => {
    expect(evaluateDependencies([], lookup({})).verdict).toBe('ready');
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom('afterok', 'afternotok', 'afterany' as const), fc.constantFrom<RunState | undefined>(undefined, 'queued', 'running', ...TERMINAL_RUN_STATES))), (pairs) => {
        const runs: Record<string, RunSummary | undefined> = {};
        const deps: Dependency[] = pairs.map(([condition, state], i) => {
          runs[`j${i}`] = state && run(`j${i}-1`, state);
          return { job: `j${i}`, condition };
        });
        const { verdict, results } = evaluateDependencies(deps, lookup(runs));
        expect(verdict === 'ready').toBe(pairs.every(([condition, state]) => state !== undefined && conditionHolds(condition, state)));
        expect(results).toHaveLength(deps.length);
      }),
    );
  });

  it('finds cycles', () => {
    const on = (...jobs: string[]): Dependency[] => jobs.map((job) => ({ job, condition: 'afterok' }));
    expect(findDependencyCycle(new Map([['a', on('b')], ['b', on('c')], ['c', []]]))).toBeUndefined();
    expect(findDependencyCycle(new Map([['a', on('b')], ['b', on('c')], ['c', on('a')]]))).toEqual(['a', 'b', 'c', 'a']);
    expect(findDependencyCycle(new Map([['x', on('y', 'z')], ['z', on('z')]]))).toEqual(['z', 'z']);
  });
});
