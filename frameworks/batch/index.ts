/**
 * The batch framework's pure core: job specs, runs, schedules and dependencies. No I/O here; the
 * scheduler, store, HTTP API and CLI build on these.
 *
 * ```ts
 * import { parseJobSpec, taskPlan, createRun, stepRun, applyRunEvent } from './frameworks/batch/index.ts';
 *
 * const spec = parseJobSpec('id: render\ncmd: ./render.sh $AGORA_TASK_INDEX\narray: 0-99%10\nretries: 2\n');
 * const { indices, maxRunning } = taskPlan(spec);
 * let run = createRun({ id: 'render-1', jobId: spec.id, indices, maxRunning, retries: spec.retries, nowMs: Date.now() });
 * const step = stepRun(run, Date.now());           // launch ≤ 10 of them, kill none yet
 * run = step.run;
 * for (const { taskId } of step.launch) run = applyRunEvent(run, { type: 'launched', taskId, atMs: Date.now() });
 * // …then fold in each task status with applyRunEvent and call stepRun again (at step.wakeAtMs at the latest).
 * ```
 */
export { ArraySpecError, formatArray, parseArray, MAX_ARRAY_INDEX, MAX_ARRAY_TASKS, type ArraySpec } from './array-spec.ts';
export {
  CONCURRENCY_POLICIES,
  DEPENDENCY_CONDITIONS,
  dependencySchema,
  isValidTimezone,
  jobIdSchema,
  jobSpecSchema,
  parseDurationSeconds,
  retriesSchema,
  scheduleSchema,
  taskPlan,
  type ConcurrencyPolicy,
  type Dependency,
  type DependencyCondition,
  type JobId,
  type JobSpec,
  type JobSpecInput,
  type Retries,
  type Schedule,
  type TaskPlan,
} from './job-spec.ts';
export { JobSpecError, parseJobSpec, validateJobSpec, type DefinitionFormat, type FieldProblem } from './parse-job-spec.ts';
export {
  applyRunEvent,
  createRun,
  isRunDone,
  KILL_RETRY_MS,
  parseTaskId,
  retryDelayMs,
  runCounts,
  stepRun,
  taskIdFor,
  TERMINAL_RUN_STATES,
  type Attempt,
  type AttemptOutcome,
  type CreateRunOptions,
  type KillRequest,
  type LaunchRequest,
  type Run,
  type RunCounts,
  type RunEvent,
  type RunState,
  type RunStep,
  type RunTask,
  type RunTaskState,
} from './run-state.ts';
export {
  latestSlotAtOrBefore,
  MAX_COUNTED_SLOTS,
  nextSlotAfter,
  planSchedule,
  runIdForSlot,
  upcomingSlots,
  type PlanScheduleInput,
  type ScheduleDecision,
  type SkippedSlots,
  type SkipReason,
} from './schedule.ts';
export {
  conditionHolds,
  evaluateDependencies,
  evaluateDependency,
  findDependencyCycle,
  type DependencyResult,
  type DependencyStatus,
  type DependencyVerdict,
  type EvaluateOptions,
  type LatestRunLookup,
  type RunSummary,
} from './dependencies.ts';
export {
  BatchError,
  type BatchApi,
  type BatchEvent,
  type JobView,
  type ListRunsOptions,
  type RunSummary as RunSummaryView,
  type RunTaskView,
  type RunTrigger,
  type RunView,
  type TaskAttemptView,
  type TaskLogChunk,
  type TaskLogFile,
  type TaskLogRequest,
} from './batch-api.ts';
