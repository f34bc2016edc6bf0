/**
 * `agora job run [flags] -- CMD ARGS…` as a job spec: each flag checked on its own so a mistake is
 * named by the flag a person typed (`--timeout "5x": …`), then the whole spec by the schema.
 */
import { randomBytes } from 'node:crypto';
import { basename } from 'node:path';
import { ArraySpecError, parseArray } from '../array-spec.ts';
import { jobIdSchema, parseDurationSeconds, type JobSpecInput } from '../job-spec.ts';
import { JobSpecError, validateJobSpec } from '../parse-job-spec.ts';

/** The flags as commander hands them over: strings, and `env` repeated. */
export interface JobRunFlags {
  id?: string;
  image?: string;
  cpus?: string;
  mem?: string;
  disk?: string;
  env?: string[];
  array?: string;
  completions?: string;
  parallelism?: string;
  retries?: string;
  timeout?: string;
  priority?: string;
  ttl?: string;
}

/** How long a job from `agora job run` is kept after its run ends, unless --ttl says otherwise. */
export const DEFAULT_RUN_TTL = '1d';

/** A flag (or the command after `--`) that cannot be used, and why. */
export class JobFlagError extends Error {
  override name = 'JobFlagError';
  constructor(
    /** `--timeout`, or `command` for what follows `--`. */
    readonly flag: string,
    readonly problem: string,
  ) {
    super(`${flag}: ${problem}`);
  }
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Six lowercase letters and digits. */
export function shortRandom(): string {
  return [...randomBytes(6)].map((b) => (b % 36).toString(36)).join('');
}

/** `/usr/bin/Python3.12` → `python3.12-k3x9qa`: the program's name made a valid job id, plus a random part. */
export function defaultJobId(command: readonly string[], random: () => string = shortRandom): string {
  const base = basename(command[0] ?? '')
    .toLowerCase()
    .replace(/[^a-z0-9.-]+/g, '-')
    .replace(/[.-]{2,}/g, '-')
    .replace(/^[.-]+|[.-]+$/g, '')
    .slice(0, 40)
    .replace(/[.-]+$/, '');
  return `${base || 'run'}-${random()}`;
}

function number(flag: string, text: string, rule: 'positive' | 'whole' | 'positive whole' | 'integer', example: string): number {
  const value = /^[-+]?(\d+(\.\d*)?|\.\d+)$/.test(text.trim()) ? Number(text) : Number.NaN;
  const bad = (problem: string): never => {
    throw new JobFlagError(flag, `${JSON.stringify(text)} ${problem}, e.g. ${flag} ${example}`);
  };
  if (Number.isNaN(value)) bad('is not a number');
  if (rule !== 'positive' && !Number.isInteger(value)) bad('must be a whole number');
  if (rule === 'positive' && value <= 0) bad('must be more than 0');
  if (rule === 'positive whole' && value < 1) bad('must be 1 or more');
  if (rule === 'whole' && value < 0) bad('must be 0 or more');
  return value;
}

function durationFlag(flag: string, text: string, rule: 'positive' | 'nonnegative', examples: string): number {
  const seconds = parseDurationSeconds(text);
  if (seconds === undefined) throw new JobFlagError(flag, `${JSON.stringify(text)} is not a duration; use seconds or units ms, s, m, h, d, e.g. ${flag} ${examples}`);
  if (rule === 'positive' && seconds <= 0) throw new JobFlagError(flag, `${JSON.stringify(text)} must be more than 0 seconds`);
  return seconds;
}

/** `K=V` pairs; a later one wins. */
export function parseEnvFlags(pairs: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at < 0) throw new JobFlagError('--env', `${JSON.stringify(pair)} is not NAME=VALUE, e.g. --env MODE=fast (use MODE= for an empty value)`);
    const name = pair.slice(0, at);
    if (!ENV_NAME.test(name)) throw new JobFlagError('--env', `${JSON.stringify(name)} is not a valid environment variable name (letters, digits and "_", not starting with a digit)`);
    env[name] = pair.slice(at + 1);
  }
  return env;
}

/** Where a field of the spec came from, to name it in an error. */
const FLAG_OF_FIELD: Record<string, string> = {
  id: '--id',
  args: 'command',
  cmd: 'command',
  container: '--image',
  cpus: '--cpus',
  mem: '--mem',
  disk: '--disk',
  env: '--env',
  array: '--array',
  completions: '--completions',
  parallelism: '--parallelism',
  retries: '--retries',
  timeoutSeconds: '--timeout',
  priority: '--priority',
  ttlSecondsAfterFinished: '--ttl',
};

/**
 * Turns the flags and the command into a job spec (the input form: the server validates it again).
 * Throws JobFlagError naming the first flag that is wrong.
 */
export function jobFromFlags(flags: JobRunFlags, command: readonly string[], options: { random?: () => string } = {}): JobSpecInput {
  if (command.length === 0 || command[0] === '') {
    throw new JobFlagError('command', 'say what to run after "--", e.g. agora job run -- sh -c \'echo hello\'');
  }
  const id = flags.id ?? defaultJobId(command, options.random);
  const idCheck = jobIdSchema.safeParse(id);
  if (!idCheck.success) throw new JobFlagError('--id', `${JSON.stringify(id)} ${idCheck.error.issues[0]?.message ?? 'is not a valid job id'}`);

  const spec: JobSpecInput = { id, args: [...command] };
  if (flags.image !== undefined) {
    if (flags.image.trim() === '') throw new JobFlagError('--image', 'must name an image, e.g. --image busybox:latest');
    spec.container = { type: 'DOCKER', docker: { image: flags.image } };
  }
  if (flags.cpus !== undefined) spec.cpus = number('--cpus', flags.cpus, 'positive', '0.5');
  if (flags.mem !== undefined) spec.mem = number('--mem', flags.mem, 'positive', '256 (MB)');
  if (flags.disk !== undefined) spec.disk = number('--disk', flags.disk, 'whole', '1024 (MB)');
  if (flags.env !== undefined && flags.env.length > 0) spec.env = parseEnvFlags(flags.env);

  if (flags.array !== undefined) {
    if (flags.completions !== undefined || flags.parallelism !== undefined) {
      throw new JobFlagError('--array', 'give --array or --completions/--parallelism, not both; the throttle goes after "%", e.g. --array 0-99%10');
    }
    try {
      parseArray(flags.array);
    } catch (error) {
      if (error instanceof ArraySpecError) throw new JobFlagError('--array', `${JSON.stringify(flags.array)} ${error.problem}`);
      throw error;
    }
    spec.array = flags.array;
  }
  if (flags.completions !== undefined) spec.completions = number('--completions', flags.completions, 'positive whole', '10');
  if (flags.parallelism !== undefined) spec.parallelism = number('--parallelism', flags.parallelism, 'positive whole', '4');
  if (flags.retries !== undefined) spec.retries = number('--retries', flags.retries, 'whole', '3');
  if (flags.timeout !== undefined) spec.timeoutSeconds = durationFlag('--timeout', flags.timeout, 'positive', '30s, 5m or 1h30m');
  // A one-off job goes by itself a while after its run ends (Kubernetes' ttlSecondsAfterFinished).
  spec.ttlSecondsAfterFinished = durationFlag('--ttl', flags.ttl ?? DEFAULT_RUN_TTL, 'nonnegative', '1h, 7d or 0 (a few seconds after it ends)');
  if (flags.priority !== undefined) {
    const priority = number('--priority', flags.priority, 'integer', '10');
    if (priority < -1000 || priority > 1000) throw new JobFlagError('--priority', `${JSON.stringify(flags.priority)} must be -1000 to 1000`);
    spec.priority = priority;
  }

  // Whatever the flags could not see (limits, combinations) the schema does; name the flag anyway.
  try {
    validateJobSpec(spec);
  } catch (error) {
    if (!(error instanceof JobSpecError)) throw error;
    const problem = error.problems[0]!;
    const top = problem.field.split(/[.[]/)[0] ?? '';
    throw new JobFlagError(FLAG_OF_FIELD[top] ?? (problem.field || 'job'), `${problem.field && !(top in FLAG_OF_FIELD) ? `${problem.field}: ` : ''}${problem.message}`);
  }
  return spec;
}
