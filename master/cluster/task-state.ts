/**
 * The task state machine, as the master sees it.
 *
 * Mesos does not forbid many transitions outright (agents are the source of truth and updates can
 * arrive late), but two rules always hold: a terminal state is final — except that the master's own
 * LOST/UNREACHABLE guesses give way to what a returning agent reports — and nothing goes back to
 * STAGING.
 */
import { isTerminal, type TaskState } from '../protocol/messages.ts';

/** States the master assigns on its own when it loses sight of an agent; an agent's word overrides them. */
const MASTER_GUESSES: ReadonlySet<TaskState> = new Set(['UNREACHABLE', 'LOST', 'UNKNOWN']);

export function canTransition(from: TaskState, to: TaskState, source: 'MASTER' | 'AGENT' | 'EXECUTOR'): boolean {
  if (to === 'STAGING') return false;
  if (from === to) return true;
  if (MASTER_GUESSES.has(from) && source !== 'MASTER') return true;
  return !isTerminal(from);
}

/** The state to report for a task whose agent became unreachable (Mesos: LOST unless the framework is PARTITION_AWARE). */
export function unreachableStateFor(partitionAware: boolean): TaskState {
  return partitionAware ? 'UNREACHABLE' : 'LOST';
}

/** The state to report for a task the master has never heard of, in reconciliation. */
export function unknownStateFor(partitionAware: boolean): TaskState {
  return partitionAware ? 'UNKNOWN' : 'LOST';
}
