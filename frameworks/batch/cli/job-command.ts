/**
 * `agora job …`: the batch framework's REST API from the command line. `registerJobCommands` adds
 * the command group to the program in bin/agora.ts.
 *
 * Exit codes: 0 done (for --wait: the run succeeded); 1 the run failed, timed out or was cancelled,
 * or the API failed; 2 bad input (a flag, a file, an unknown job or run) or no API to talk to; 130
 * stopped following with Ctrl-C (the run goes on).
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { Command } from 'commander';
import type { RunSummary, TaskLogChunk, TaskLogFile } from '../batch-api.ts';
import { BatchClient, BatchHttpError, BatchUnreachableError, followRun, isRunEnded } from '../http/client.ts';
import type { DefinitionFormat } from '../parse-job-spec.ts';
import { JobSpecError } from '../parse-job-spec.ts';
import { formatDuration } from './format.ts';
import { JobFlagError, jobFromFlags, type JobRunFlags } from './job-from-flags.ts';
import { describeCounts, ProgressReporter } from './progress-bar.ts';
import { jobsTable, runsTable, runStatus } from './tables.ts';

export const DEFAULT_BATCH_API = 'http://127.0.0.1:5052';

interface CommonFlags {
  api: string;
  json?: boolean;
}

interface FollowFlags extends CommonFlags {
  wait?: boolean;
}

/** A refusal this CLI prints as `agora: message` and exits with `code`. */
class CliExit extends Error {
  constructor(
    message: string,
    readonly code = 2,
  ) {
    super(message);
  }
}

/** What to suggest when the API says 404 for what this command was given. */
type Missing = 'job' | 'run';

const HINT: Record<Missing, string> = {
  job: '`agora job list` shows the jobs',
  run: '`agora job runs [JOB]` lists the runs',
};

/** Accepts http://host:port, or a bare host:port. */
function apiUrl(api: string): string {
  return (/^[a-z]+:\/\//i.test(api) ? api : `http://${api}`).replace(/\/+$/, '');
}

function client(flags: CommonFlags): BatchClient {
  return new BatchClient(apiUrl(flags.api));
}

function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

function unreachable(error: BatchUnreachableError): string {
  const cause = error.cause as { cause?: { code?: string; message?: string }; message?: string } | undefined;
  const why = cause?.cause?.code ?? cause?.cause?.message ?? cause?.message ?? 'no answer';
  return [
    `cannot reach the batch API at ${error.url} (${why}); is the batch framework running?`,
    '  `agora up` runs a dev cluster with it on 127.0.0.1:5052;',
    '  `agora batch --master ws://HOST:5050` runs it on its own next to a master;',
    '  elsewhere: pass --api URL (or set AGORA_BATCH_API).',
  ].join('\n');
}

/** The message and exit code for an error a person can act on; undefined for a bug. */
function explain(error: unknown, missing?: Missing): { message: string; code: number } | undefined {
  if (error instanceof CliExit) return { message: error.message, code: error.code };
  if (error instanceof JobFlagError) return { message: `${error.message}\n(see \`agora job run --help\`)`, code: 2 };
  if (error instanceof JobSpecError) return { message: error.message, code: 2 };
  if (error instanceof BatchUnreachableError) return { message: unreachable(error), code: 2 };
  if (error instanceof BatchHttpError) {
    const problems = error.problems.map((p) => `  ${p.field ? `${p.field}: ` : ''}${p.message}`);
    let first = error.message;
    if (error.status === 404 && missing && !first.includes('agora job')) first = `${first.replace(/; GET \/v1\/[^;]*$/, '')}; ${HINT[missing]}`;
    const message = [first, ...problems].join('\n');
    return { message, code: error.status >= 500 ? 1 : 2 };
  }
  return undefined;
}

/** Runs an action, turning the errors a person can fix into `agora: …` and an exit code. */
function action<A extends unknown[]>(run: (...args: A) => Promise<void>, missing?: Missing): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await run(...args);
    } catch (error) {
      const explained = explain(error, missing);
      if (!explained) throw error;
      process.stderr.write(`agora: ${explained.message}\n`);
      process.exit(explained.code);
    }
  };
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function wholeNumber(flag: string, text: string | undefined, minimum: number): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < minimum) throw new CliExit(`${flag} must be a whole number, ${minimum} or more (got ${JSON.stringify(text)})`);
  return Number(text);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------
// Following a run

/**
 * After a run was triggered: without --wait, its id (or JSON); with --wait, a progress bar on
 * stderr until it ends, and the exit code from how it ended.
 */
async function reportRun(api: BatchClient, flags: FollowFlags, run: RunSummary): Promise<void> {
  if (!flags.wait) {
    if (flags.json) return printJson(run);
    process.stdout.write(`${run.id}\n`);
    process.stderr.write(`run ${run.id} of job ${run.jobId} ${run.state} (${run.tasks} task${run.tasks === 1 ? '' : 's'}); follow it: agora job status ${run.id}  |  agora job logs ${run.id} -f\n`);
    return;
  }
  if (!flags.json) process.stdout.write(`${run.id}\n`);
  const final = await waitForRun(api, run, !flags.json);
  if (flags.json) printJson(final);
  const took = final.finishedAtMs !== undefined && final.startedAtMs !== undefined ? ` in ${formatDuration(final.finishedAtMs - final.startedAtMs)}` : '';
  if (final.state === 'succeeded') {
    if (!flags.json) process.stderr.write(`run ${final.id} succeeded: ${final.counts.succeeded}/${final.tasks} task(s) done${took}\n`);
    return;
  }
  process.stderr.write(`agora: run ${final.id} ${final.state.replace('_', ' ')}${took}: ${final.reason ?? describeCounts(final)}\n`);
  const logs = final.tasks === 1 ? `agora job logs ${final.id} --stderr` : `agora job logs ${final.id} --index I --stderr`;
  process.stderr.write(`  see \`agora job status ${final.id}\` and \`${logs}\`\n`);
  process.exitCode = 1;
}

/** Follows the run to its end; Ctrl-C stops following (exit 130) and leaves the run going. */
async function waitForRun(api: BatchClient, run: RunSummary, showProgress: boolean): Promise<RunSummary> {
  const stderr = process.stderr;
  const reporter = showProgress ? new ProgressReporter({ tty: Boolean(stderr.isTTY), write: (text) => stderr.write(text), width: () => stderr.columns }) : undefined;
  reporter?.update(run);
  const ticker = reporter && setInterval(() => reporter.tick(), 1000);
  const controller = new AbortController();
  const interrupt = () => controller.abort(new CliExit(`stopped following; run ${run.id} goes on (\`agora job status ${run.id}\`, \`agora job cancel ${run.id}\`)`, 130));
  process.once('SIGINT', interrupt);
  try {
    if (isRunEnded(run)) return run;
    const final = await followRun(api, run.id, (summary) => reporter?.update(summary), { signal: controller.signal });
    reporter?.finish(final);
    return final;
  } catch (error) {
    reporter?.finish();
    throw error;
  } finally {
    if (ticker) clearInterval(ticker);
    process.removeListener('SIGINT', interrupt);
  }
}

// ---------------------------------------------------------------------------------------------
// Logs

interface LogsFlags extends CommonFlags {
  index?: string;
  attempt?: string;
  stderr?: boolean;
  follow?: boolean;
}

function chunkJson(chunk: TaskLogChunk): Record<string, unknown> {
  const { data, ...rest } = chunk;
  return { ...rest, length: data.length, data: data.toString('utf8') };
}

/**
 * Prints a task's stdout (or stderr) from the start; with --follow keeps reading at the offset
 * reached until the attempt has ended and every byte is read.
 */
async function printLogs(api: BatchClient, runId: string, flags: LogsFlags): Promise<void> {
  const file: TaskLogFile = flags.stderr ? 'stderr' : 'stdout';
  let attempt = wholeNumber('--attempt', flags.attempt, 1);
  let index = wholeNumber('--index', flags.index, 0);
  const run = await api.getRun(runId);
  if (!run) throw new CliExit(await noRun(api, runId));
  if (index === undefined) {
    const first = run.taskList[0];
    if (!first) throw new CliExit(`run ${runId} has no tasks, so no logs`);
    index = first.index;
    if (run.taskList.length > 1) process.stderr.write(`(task ${index} of ${run.taskList.length}; --index I for another)\n`);
  }
  const task = run.taskList.find((t) => t.index === index);
  if (!task) throw new CliExit(`run ${runId} has no task ${index}; its tasks are ${run.taskList.length > 6 ? `${run.taskList[0]!.index} … ${run.taskList.at(-1)!.index} (${run.taskList.length})` : run.taskList.map((t) => t.index).join(', ')}`);
  if (attempt !== undefined && !flags.follow && attempt > task.attempts.length) throw new CliExit(`task ${index} of run ${runId} has ${task.attempts.length} attempt(s), not ${attempt}`);
  if (task.attempts.length === 0) {
    if (!flags.follow) throw new CliExit(`task ${index} of run ${runId} has not been launched yet (${task.state}); \`agora job logs ${runId} --index ${index} -f\` waits for it`);
    // Wait for the launch: the logs exist only once an attempt runs.
    for (;;) {
      await sleep(500);
      const t = await api.getTask(runId, index);
      if (t && t.attempts.length > 0) break;
      // Ended tasks of a run that launched nothing more: the run is over (or gone).
      const now = t && t.state === 'pending' ? undefined : await api.getRunSummary(runId);
      if (!t || (now && isRunEnded(now))) throw new CliExit(`run ${runId} ended (${now?.state ?? 'gone'}) before task ${index} was launched; it has no logs`);
    }
  }

  let offset = 0;
  for (;;) {
    let chunk: TaskLogChunk;
    try {
      chunk = await api.taskLog(runId, index, { file, offset, ...(attempt !== undefined && { attempt }) });
    } catch (error) {
      // Launched but its sandbox file not there yet, or the agent busy: keep following.
      if (flags.follow && error instanceof BatchHttpError && (error.status === 404 || error.status === 503)) {
        await sleep(1000);
        continue;
      }
      throw error;
    }
    attempt ??= chunk.attempt; // follow one attempt, the latest when we began
    if (flags.json) {
      if (chunk.data.length > 0 || (!flags.follow && offset === 0)) process.stdout.write(`${JSON.stringify(chunkJson(chunk))}\n`);
    } else if (chunk.data.length > 0) {
      process.stdout.write(chunk.data);
    }
    offset = chunk.offset + chunk.data.length;
    if (offset < chunk.size && chunk.data.length > 0) continue; // more to read now
    if (!flags.follow || chunk.ended) break;
    await sleep(500);
  }
  if (flags.follow && !flags.json) {
    const latest = await api.getTask(runId, index);
    const last = latest?.attempts.at(-1);
    if (last && last.attempt > (attempt ?? 0)) process.stderr.write(`(task ${index} was retried: attempt ${last.attempt} runs now; \`agora job logs ${runId} --index ${index} --attempt ${last.attempt} -f\`)\n`);
  }
}

/** What to say when there is no run by that id: maybe it is a job's id. */
async function noRun(api: BatchClient, runId: string): Promise<string> {
  const job = await api.getJob(runId).catch(() => undefined);
  if (job) {
    return job.latestRun
      ? `${runId} is a job, not a run; its latest run is ${job.latestRun.id} (${job.latestRun.state}): \`agora job status ${job.latestRun.id}\``
      : `${runId} is a job that has not run yet; \`agora job trigger ${runId}\` starts a run`;
  }
  return `no run ${runId}; ${HINT.run}`;
}

// ---------------------------------------------------------------------------------------------
// The commands

function formatOf(file: string): DefinitionFormat | undefined {
  const ext = extname(file).toLowerCase();
  if (ext === '.json') return 'json';
  if (ext === '.yaml' || ext === '.yml') return 'yaml';
  return undefined;
}

/** Adds `agora job …` to the program. `defaultApi` is what --api defaults to. */
export function registerJobCommands(program: Command, defaultApi: string = process.env.AGORA_BATCH_API ?? DEFAULT_BATCH_API): Command {
  const job = program.command('job').description('run batch jobs: one-off commands, arrays, schedules (the batch framework\'s API)');

  const command = (spec: string, description: string): Command =>
    job.command(spec).description(description).option('--api <url>', 'the batch API (env AGORA_BATCH_API)', defaultApi);

  command('run', 'run a command as a job now: `agora job run [flags] -- CMD ARGS…` (the command goes after --)')
    .argument('[command...]', 'the program and its arguments, after --; run as is, not through a shell (use sh -c \'…\' for one)')
    .option('--id <id>', 'the job id (default: the program\'s name and a random suffix)')
    .option('--image <image>', 'run in a Docker container of this image')
    .option('--cpus <n>', 'CPUs per task (default 1)')
    .option('--mem <mb>', 'memory per task in MB (default 128)')
    .option('--disk <mb>', 'disk per task in MB (default 0)')
    .option('--env <name=value>', 'an environment variable; repeat for more', collect, [])
    .option('--array <spec>', 'indexed tasks, Slurm\'s syntax: 0-99%10 = indices 0 to 99, at most 10 at once')
    .option('--completions <n>', 'indexed tasks 0 … n−1 (instead of --array)')
    .option('--parallelism <n>', 'with --completions: at most this many at once (default 1)')
    .option('--retries <n>', 'retries per task after its first attempt fails (default 0)')
    .option('--timeout <duration>', 'kill a task attempt running longer than this, e.g. 30s, 5m, 1h30m')
    .option('--priority <n>', 'higher runs first, -1000 to 1000 (default 0)')
    .option('--ttl <duration>', 'delete the job and its runs this long after the run ends, e.g. 1h, 7d, 0 (default 1d)')
    .option('--wait', 'show progress and wait for the run to end; exit 0 only if it succeeded')
    .option('--json', 'print the run (with --wait: as it ended) as JSON, and no progress bar')
    .addHelpText('after', '\nExamples:\n  agora job run --wait -- sh -c \'echo hello from $AGORA_TASK_INDEX\'\n  agora job run --array 0-99%10 --retries 2 --timeout 5m --wait -- ./render.sh\n  agora job run --image busybox:1 --json -- echo hi')
    .action(
      action(async (commandLine: string[], flags: JobRunFlags & FollowFlags) => {
        const spec = jobFromFlags(flags, commandLine);
        const api = client(flags);
        await api.putJob(spec);
        await reportRun(api, flags, await api.triggerRun(spec.id));
      }),
    );

  command('submit <file>', 'create or replace a job from a YAML or JSON file')
    .option('--run', 'start a run of it now')
    .option('--wait', 'start a run and wait for it to end (implies --run); exit 0 only if it succeeded')
    .option('--json', 'print the job (or the run) as JSON')
    .action(
      action(async (file: string, flags: FollowFlags & { run?: boolean }) => {
        let text: string;
        try {
          text = readFileSync(file, 'utf8');
        } catch (error) {
          throw new CliExit(`cannot read ${file}: ${(error as Error).message}`);
        }
        const api = client(flags);
        let result;
        try {
          result = await api.submitJob(text, formatOf(file));
        } catch (error) {
          if (error instanceof BatchHttpError && (error.status === 422 || error.status === 400)) {
            throw new CliExit([`invalid job spec in ${file}:`, ...(error.problems.length > 0 ? error.problems.map((p) => `  ${p.field ? `${p.field}: ` : ''}${p.message}`) : [`  ${error.message}`])].join('\n'));
          }
          throw error;
        }
        const { job: view, created } = result;
        if (!flags.run && !flags.wait) {
          if (flags.json) return printJson(view);
          process.stdout.write(`${created ? 'created' : 'updated'} job ${view.spec.id}${view.spec.schedule ? ` (schedule ${view.spec.schedule.cron} ${view.spec.schedule.timezone})` : ''}; start a run: agora job trigger ${view.spec.id}\n`);
          return;
        }
        process.stderr.write(`${created ? 'created' : 'updated'} job ${view.spec.id}\n`);
        await reportRun(api, flags, await api.triggerRun(view.spec.id));
      }),
    );

  command('list', 'list jobs: schedule, next slot, latest run, active runs')
    .option('--json', 'print JSON')
    .action(
      action(async (flags: CommonFlags) => {
        const jobs = await client(flags).listJobs();
        if (flags.json) return printJson(jobs);
        process.stdout.write(`${jobsTable(jobs, Date.now())}\n`);
        if (jobs.length === 0) process.stderr.write('no jobs yet: `agora job run -- CMD ARGS…` or `agora job submit FILE` adds one\n');
      }),
    );

  command('runs [job]', 'list runs, newest first (of one job, or all)')
    .option('--active', 'only runs not ended yet')
    .option('--limit <n>', 'at most this many', '50')
    .option('--json', 'print JSON')
    .action(
      action(async (jobId: string | undefined, flags: CommonFlags & { active?: boolean; limit: string }) => {
        const api = client(flags);
        const limit = wholeNumber('--limit', flags.limit, 1)!;
        const runs = await api.listRuns({ ...(jobId !== undefined && { jobId }), ...(flags.active && { active: true }), limit });
        if (runs.length === 0 && jobId !== undefined && !(await api.getJob(jobId))) throw new CliExit(`no job ${jobId}; ${HINT.job}`);
        if (flags.json) return printJson(runs);
        process.stdout.write(`${runsTable(runs, Date.now())}\n`);
        if (runs.length === limit) process.stderr.write(`(the newest ${limit}; --limit N for more)\n`);
      }, 'job'),
    );

  command('status <run>', 'show a run: state, times, why it failed, and its tasks')
    .option('--all', 'list every task (big arrays are cut to the failed, running and first ones)')
    .option('--json', 'print JSON (every task and attempt)')
    .action(
      action(async (runId: string, flags: CommonFlags & { all?: boolean }) => {
        const api = client(flags);
        const run = await api.getRun(runId);
        if (!run) throw new CliExit(await noRun(api, runId));
        if (flags.json) return printJson(run);
        process.stdout.write(`${runStatus(run, Date.now(), flags.all ? { limit: Number.MAX_SAFE_INTEGER } : {})}\n`);
      }, 'run'),
    );

  command('logs <run>', 'print a task\'s stdout (or stderr), read from its agent through the master')
    .option('--index <i>', 'the task index (default: the run\'s first task)')
    .option('--attempt <n>', 'which attempt (default: the latest)')
    .option('--stderr', 'stderr instead of stdout')
    .option('-f, --follow', 'keep printing as the task writes, until its attempt ends')
    .option('--json', 'print each piece read as a JSON line ({offset, size, ended, data, …})')
    .action(action(async (runId: string, flags: LogsFlags) => printLogs(client(flags), runId, flags), 'run'));

  command('cancel <run>', 'cancel a run: its running tasks are killed and no more start')
    .option('--json', 'print the run as JSON')
    .action(
      action(async (runId: string, flags: CommonFlags) => {
        const api = client(flags);
        let run: RunSummary;
        try {
          run = await api.cancelRun(runId);
        } catch (error) {
          if (error instanceof BatchHttpError && error.status === 404) throw new CliExit(await noRun(api, runId));
          throw error;
        }
        if (flags.json) return printJson(run);
        process.stdout.write(
          run.state === 'cancelled'
            ? `run ${run.id} cancelled\n`
            : `cancelling run ${run.id}: ${run.counts.active} running task(s) being killed; \`agora job status ${run.id}\` shows when it ends\n`,
        );
      }, 'run'),
    );

  command('rm <job>', 'delete a job (its run history goes with it)')
    .option('--force', 'cancel its active runs first')
    .action(
      action(async (jobId: string, flags: CommonFlags & { force?: boolean }) => {
        try {
          await client(flags).deleteJob(jobId, { force: Boolean(flags.force) });
        } catch (error) {
          if (error instanceof BatchHttpError && error.status === 409 && !flags.force && /active|running|still going/i.test(error.message) && !error.message.includes('--force')) {
            throw new CliExit(`${error.message}; \`agora job rm ${jobId} --force\` cancels them and deletes it`);
          }
          throw error;
        }
        process.stdout.write(`removed job ${jobId}\n`);
      }, 'job'),
    );

  command('trigger <job>', 'start a run of a job now')
    .option('--wait', 'wait for the run to end; exit 0 only if it succeeded')
    .option('--json', 'print the run as JSON')
    .action(
      action(async (jobId: string, flags: FollowFlags) => {
        const api = client(flags);
        await reportRun(api, flags, await api.triggerRun(jobId));
      }, 'job'),
    );

  return job;
}
