/**
 * Validates an ACCEPT's LAUNCH operations against the offers it names. Pure: the master supplies
 * what it knows (the offers, the framework's live task ids) and acts on the verdict.
 *
 * Like Mesos, a bad task does not spoil its neighbours: each task is checked on its own against
 * what is left of the offer after the tasks before it, and resources no valid task used go back to
 * the allocator as declined.
 */
import { add, contains, isEmpty, shortfall, subtract, type Resources } from '../protocol/resources.ts';
import type { Operation, TaskInfo } from '../protocol/messages.ts';

export interface RejectedTask {
  task: TaskInfo;
  message: string;
}

export interface LaunchPlan {
  launches: TaskInfo[];
  rejected: RejectedTask[];
  /** Offered resources no launched task uses; recovered as declined. */
  unused: Resources;
}

export function planLaunches(
  offered: readonly Resources[],
  operations: readonly Operation[],
  isTaskIdInUse: (taskId: string) => boolean,
): LaunchPlan {
  let remaining: Resources = {};
  for (const resources of offered) remaining = add(remaining, resources);
  const launches: TaskInfo[] = [];
  const rejected: RejectedTask[] = [];
  const seen = new Set<string>();

  for (const operation of operations) {
    // The operation union is open; only LAUNCH exists today.
    for (const task of operation.tasks) {
      const problem = checkTask(task, remaining, seen, isTaskIdInUse);
      seen.add(task.taskId);
      if (problem) {
        rejected.push({ task, message: problem });
        continue;
      }
      remaining = subtract(remaining, task.resources);
      launches.push(task);
    }
  }
  return { launches, rejected, unused: remaining };
}

function checkTask(task: TaskInfo, remaining: Resources, seen: ReadonlySet<string>, isTaskIdInUse: (id: string) => boolean): string | undefined {
  if (seen.has(task.taskId)) return `task id "${task.taskId}" appears twice in this ACCEPT; task ids must be unique`;
  if (isTaskIdInUse(task.taskId)) return `task id "${task.taskId}" is already used by a live task of this framework; pick a new id`;
  if (isEmpty(task.resources)) return `task "${task.taskId}" asks for no resources; give it at least cpus or mem`;
  if (!contains(remaining, task.resources)) {
    return `task "${task.taskId}" asks for more than the offer holds (${shortfall(remaining, task.resources)})`;
  }
  return undefined;
}
