/**
 * The job spec: what a user asks the batch framework to run. Fields follow Metronome's job JSON and
 * Kubernetes' Job/CronJob where they overlap, Slurm's for arrays and dependencies; where a default
 * hurt their users, ours differs and says why. Resources, env, labels, role, constraints and the
 * container are the services framework's fields, imported, so both frameworks read the same.
 */
import { Cron } from 'croner';
import { z } from 'zod';
import { appObjectSchema, containerSchema } from '../services/app-definition.ts';
import { ArraySpecError, parseArray, type ArraySpec } from './array-spec.ts';

/** `nightly-report`, `etl.load`: lowercase letters, digits, "-" and "." (Metronome's rule), not at either end. */
export const jobIdSchema = z
  .string({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be a string') })
  .regex(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/, 'must be lowercase letters, digits, "-" and "." (not at either end), e.g. nightly-report')
  .max(128, 'must be at most 128 characters');
export type JobId = z.output<typeof jobIdSchema>;

const DURATION_UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86_400 };

/** `30`, `"30s"`, `"5m"`, `"1h30m"` → seconds; undefined when the text is not a duration. */
export function parseDurationSeconds(value: string | number): number | undefined {
  if (typeof value === 'number') return value;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(text)) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) total += Number(amount) * DURATION_UNITS[unit!]!;
  return total;
}

/** Seconds as a number, or a duration string like "30s", "5m", "2h". */
const duration = (rule: z.ZodNumber) =>
  z.preprocess((value) => (typeof value === 'string' ? (parseDurationSeconds(value) ?? value) : value), rule);

const durationSeconds = (minimum: 'positive' | 'nonnegative') =>
  duration(
    minimum === 'positive'
      ? z.number('must be a number of seconds or a duration like "30s", "5m", "2h"').positive('must be more than 0 seconds')
      : z.number('must be a number of seconds or a duration like "30s", "5m", "2h"').nonnegative('must be 0 or more seconds'),
  );

export const retriesSchema = z.strictObject({
  /** Retries per task after its first attempt fails. Metronome's and Slurm's default: none. */
  count: z.number().int('must be a whole number').nonnegative('must be 0 or more').default(0),
  /** The wait before the first retry. Kubernetes' pod failure backoff starts at 10 s. */
  backoffSeconds: durationSeconds('nonnegative').default(10),
  /** Each further retry waits this many times longer (Kubernetes doubles). */
  backoffFactor: z.number().min(1, 'must be 1 or more (1 = a constant delay)').default(2),
  /** The wait never grows past this (Kubernetes caps at 6 minutes). */
  maxBackoffSeconds: durationSeconds('nonnegative').default(360),
});
export type Retries = z.output<typeof retriesSchema>;
const NO_RETRIES: Retries = retriesSchema.parse({});

export const CONCURRENCY_POLICIES = ['ALLOW', 'FORBID', 'REPLACE'] as const;
export type ConcurrencyPolicy = (typeof CONCURRENCY_POLICIES)[number];

export const scheduleSchema = z
  .strictObject({
    /** Five fields (minute hour day month weekday), six with seconds first, or @daily, @hourly, … */
    cron: z.string('must be a cron expression, e.g. "0 2 * * *"').superRefine((pattern, ctx) => {
      const problem = cronProblem(pattern);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
    /** An IANA zone; slots follow its daylight saving changes. */
    timezone: z.string().refine(isValidTimezone, { error: (issue) => `unknown time zone ${JSON.stringify(issue.input)}; use an IANA name like Europe/Berlin or UTC` }).default('UTC'),
    /** Kubernetes' and Metronome's default: ALLOW (runs may overlap). */
    concurrencyPolicy: z.preprocess(
      (v) => (typeof v === 'string' ? v.toUpperCase() : v),
      z.enum(CONCURRENCY_POLICIES, 'must be ALLOW, FORBID or REPLACE'),
    ).default('ALLOW'),
    /**
     * A slot not started within this long of its time is skipped (counted as missed, never silently).
     * Kubernetes has no default and then refuses to schedule after 100 misses; Metronome's 900 s is ours.
     */
    startingDeadlineSeconds: durationSeconds('positive').default(900),
    /** A paused schedule keeps its definition but fires nothing. */
    enabled: z.boolean().default(true),
  });
export type Schedule = z.output<typeof scheduleSchema>;

export function isValidTimezone(timezone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: timezone });
    return true;
  } catch {
    return false;
  }
}

function cronProblem(pattern: string): string | undefined {
  if (pattern.trim() === '') return 'must be a cron expression, e.g. "0 2 * * *"';
  try {
    const cron = new Cron(pattern, { paused: true });
    if (cron.nextRun() === null) return 'never fires (no future time matches it)';
    return undefined;
  } catch (error) {
    return `is not a valid cron expression (${(error as Error).message}); e.g. "0 2 * * *" for 02:00 every day`;
  }
}

export const DEPENDENCY_CONDITIONS = ['afterok', 'afterany', 'afternotok'] as const;
export type DependencyCondition = (typeof DEPENDENCY_CONDITIONS)[number];

export const dependencySchema = z.preprocess(
  (value) => (typeof value === 'string' ? { job: value } : value),
  z.strictObject({
    job: jobIdSchema,
    /** Slurm's: afterok = the latest run succeeded, afternotok = it ended otherwise, afterany = it ended. */
    condition: z.preprocess(
      (v) => (typeof v === 'string' ? v.toLowerCase() : v),
      z.enum(DEPENDENCY_CONDITIONS, 'must be afterok, afterany or afternotok'),
    ).default('afterok'),
  }),
);
export type Dependency = z.output<typeof dependencySchema>;

const arraySchema = z.string('must be a string like "0-99%10"').transform((text, ctx): ArraySpec => {
  try {
    return parseArray(text);
  } catch (error) {
    if (!(error instanceof ArraySpecError)) throw error;
    ctx.addIssue({ code: 'custom', message: error.problem });
    return z.NEVER;
  }
});

const app = appObjectSchema.shape;

export const jobObjectSchema = z.strictObject({
  id: jobIdSchema,
  description: z.string().optional(),
  cmd: app.cmd,
  args: app.args,
  container: containerSchema.optional(),
  cpus: app.cpus,
  mem: app.mem,
  disk: app.disk,
  env: app.env,
  labels: app.labels,
  role: app.role,
  constraints: app.constraints,
  /** Indexed tasks 0 … completions − 1 (Kubernetes' Indexed Job). @default 1 */
  completions: z.number().int('must be a whole number').positive('must be 1 or more').max(100_000, 'must be at most 100000; split the work into several jobs').optional(),
  /** At most this many tasks running at once. @default 1 with completions (Kubernetes), unlimited with array's default */
  parallelism: z.number().int('must be a whole number').positive('must be 1 or more').optional(),
  /** Slurm's array form, `0-99%10`: these indices, at most 10 running. Instead of completions and parallelism. */
  array: arraySchema.optional(),
  /** A number is shorthand for `{count: N}`. */
  retries: z.preprocess((v) => (typeof v === 'number' ? { count: v } : v), retriesSchema).default(NO_RETRIES),
  /** A task running longer than this is killed and counts as a failed attempt. Metronome and Kubernetes: none. */
  timeoutSeconds: durationSeconds('positive').optional(),
  /** SIGTERM → SIGKILL, as for services. */
  killGracePeriodSeconds: app.killGracePeriodSeconds,
  schedule: scheduleSchema.optional(),
  /** Other jobs whose latest runs must have ended so before a run of this one starts (all must hold). */
  dependencies: z.array(dependencySchema).default([]),
  /**
   * The job (with its runs) is deleted this long after its latest run ended, as Kubernetes' Job
   * field of the same name: one-off jobs (what `agora job run` submits) do not pile up. Not for a
   * scheduled job, which never finishes. None by default: a submitted job stays until deleted.
   */
  ttlSecondsAfterFinished: durationSeconds('nonnegative').optional(),
  /** Higher runs first; equal priorities in submission order. */
  priority: z.number().int('must be a whole number').min(-1000, 'must be -1000 to 1000').max(1000, 'must be -1000 to 1000').default(0),
});

export const jobSpecSchema = jobObjectSchema.superRefine((job, ctx) => {
  if (job.cmd !== undefined && job.args !== undefined) ctx.addIssue({ code: 'custom', path: ['args'], message: 'give `cmd` (a shell command line) or `args` (a program and its arguments), not both' });
  if (job.cmd === undefined && job.args === undefined) ctx.addIssue({ code: 'custom', path: ['cmd'], message: 'say what to run: `cmd` (a shell command line) or `args` (a program and its arguments)' });
  if (job.array !== undefined && job.completions !== undefined) ctx.addIssue({ code: 'custom', path: ['completions'], message: 'give `array` or `completions`, not both: the array names the task indices' });
  if (job.array !== undefined && job.parallelism !== undefined) ctx.addIssue({ code: 'custom', path: ['parallelism'], message: 'with `array`, put the limit after "%" (e.g. "0-99%10") instead of `parallelism`' });
  if ((job.container?.docker.portMappings.length ?? 0) > 0) ctx.addIssue({ code: 'custom', path: ['container', 'docker', 'portMappings'], message: 'batch tasks take no ports; remove the port mappings' });
  if (job.ttlSecondsAfterFinished !== undefined && job.schedule !== undefined) ctx.addIssue({ code: 'custom', path: ['ttlSecondsAfterFinished'], message: 'a scheduled job never finishes, so it cannot expire; remove the schedule or ttlSecondsAfterFinished' });
  const seen = new Set<string>();
  job.dependencies.forEach((dependency, i) => {
    if (dependency.job === job.id) ctx.addIssue({ code: 'custom', path: ['dependencies', i, 'job'], message: 'a job cannot depend on itself' });
    if (seen.has(dependency.job)) ctx.addIssue({ code: 'custom', path: ['dependencies', i, 'job'], message: `${dependency.job} is listed twice` });
    seen.add(dependency.job);
  });
});

export type JobSpec = z.output<typeof jobSpecSchema>;
/** What a user writes: every field with a default may be left out. */
export type JobSpecInput = z.input<typeof jobSpecSchema>;

/** Which task indices a run has and how many may run at once. */
export interface TaskPlan {
  indices: number[];
  /** At most this many running at once (≥ 1). */
  maxRunning: number;
}

export function taskPlan(spec: Pick<JobSpec, 'array' | 'completions' | 'parallelism'>): TaskPlan {
  if (spec.array) return { indices: spec.array.indices, maxRunning: spec.array.throttle ?? spec.array.indices.length };
  const completions = spec.completions ?? 1;
  return { indices: Array.from({ length: completions }, (_, i) => i), maxRunning: Math.min(spec.parallelism ?? 1, completions) };
}
