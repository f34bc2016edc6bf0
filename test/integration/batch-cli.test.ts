/**
 * `agora job …` as a user runs it: the real CLI in its own process against the real batch framework
 * (serveBatch: scheduler + HTTP API) on a real master and agent, running real shell tasks.
 */
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunSummary, RunView } from '../../frameworks/batch/batch-api.ts';
import { BatchClient } from '../../frameworks/batch/http/client.ts';
import { serveBatch, type ServingBatch } from '../../frameworks/batch/serve.ts';
import type { MasterServer } from '../../master/http/server.ts';
import type { Agent } from '../../agent/agent.ts';
import { agora as agoraCli, freePort, quiet, removeDir, startAgent, startMaster, tempDir, waitFor, type CliRun } from './helpers.ts';

const agora = (args: string[], timeoutMs = 40_000): Promise<CliRun> => agoraCli(args, timeoutMs);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('agora job (real CLI, batch framework, master and agent)', { timeout: 90_000 }, () => {
  let master: MasterServer;
  let agent: Agent;
  let batch: ServingBatch;
  let client: BatchClient;
  let dir: string;
  let api: string[];

  beforeAll(async () => {
    dir = tempDir('agora-job-cli-');
    master = await startMaster();
    agent = await startAgent(master, { workDir: join(dir, 'agent') });
    batch = await serveBatch({ master: master.wsUrl, store: join(dir, 'store'), port: 0, logger: quiet });
    client = new BatchClient(batch.url);
    api = ['--api', batch.url];
  });
  afterAll(async () => {
    await batch?.close();
    await agent?.stop({ killTasks: true });
    await master?.close();
    removeDir(dir);
  });

  function file(name: string, text: string): string {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  }

  let helloRun = '';

  it('runs a command with --wait: the run id on stdout, progress on stderr, exit 0', async () => {
    const run = await agora(['job', 'run', ...api, '--id', 'hello', '--cpus', '0.1', '--mem', '32', '--wait', '--', 'sh', '-c', 'echo hi from $AGORA_TASK_INDEX']);
    expect(run.code, run.stderr).toBe(0);
    helloRun = run.stdout.trim();
    expect(helloRun).toMatch(/^hello-\S+$/);
    expect(run.stderr).toMatch(/\] 1\/1 done · 0 failed · 0 running · 0 pending/); // not a TTY: a line per change
    expect(run.stderr).toMatch(new RegExp(`run ${helloRun} succeeded: 1/1 task\\(s\\) done`));
    expect(run.stderr).not.toContain('\r');
    const stored = await client.getJob('hello');
    expect(stored?.spec.args).toEqual(['sh', '-c', 'echo hi from $AGORA_TASK_INDEX']); // after --: args, not a shell line
  });

  it('prints the final run as JSON with --wait --json, and nothing else on stdout', async () => {
    const run = await agora(['job', 'run', ...api, '--cpus', '0.1', '--mem', '32', '--wait', '--json', '--', 'sh', '-c', 'echo hi']);
    expect(run.code, run.stderr).toBe(0);
    const summary = JSON.parse(run.stdout) as RunSummary;
    expect(summary).toMatchObject({ state: 'succeeded', tasks: 1, counts: { succeeded: 1, failed: 0 } });
    expect(summary.jobId).toMatch(/^sh-[a-z0-9]{6}$/); // the program's name and a random part
    expect(run.stderr).not.toMatch(/\[[#.]+\]/); // no progress bar with --json
  });

  it('with --ttl 0 still shows how the run ended, then the job goes by itself', async () => {
    const run = await agora(['job', 'run', ...api, '--id', 'brief', '--ttl', '0', '--cpus', '0.1', '--mem', '32', '--wait', '--', 'true']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/run brief-\S+ succeeded: 1\/1 task\(s\) done/);
    expect((await client.getJob('brief'))?.expiresAtMs).toBeDefined();
    await waitFor(async () => (await client.getJob('brief')) === undefined, 'the job to expire', 15_000);
    // The default is a day: a job from `agora job run` stays that long.
    const kept = (await client.getJob('hello'))!;
    expect(kept.spec.ttlSecondsAfterFinished).toBe(86_400);
  });

  it('exits non-zero with the run\'s reason when the command fails', async () => {
    const run = await agora(['job', 'run', ...api, '--cpus', '0.1', '--mem', '32', '--wait', '--', 'false']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/agora: run false-\S+ failed in \S+: 1 of 1 task\(s\) failed; task 0 exited with 1/);
    expect(run.stderr).toMatch(/agora job status false-\S+/);
  });

  it('runs an array with a throttle to 10 done', async () => {
    const run = await agora(['job', 'run', ...api, '--id', 'arr', '--cpus', '0.1', '--mem', '16', '--array', '0-9%3', '--wait', '--json', '--', 'sh', '-c', 'echo task $AGORA_TASK_INDEX']);
    expect(run.code, run.stderr).toBe(0);
    const summary = JSON.parse(run.stdout) as RunSummary;
    expect(summary.state).toBe('succeeded');
    expect(summary.tasks).toBe(10);
    expect(summary.counts.succeeded).toBe(10);
  });

  it('refuses a bad flag before calling the API, naming the flag', async () => {
    const timeout = await agora(['job', 'run', ...api, '--timeout', '5x', '--', 'true']);
    expect(timeout.code).toBe(2);
    expect(timeout.stderr).toMatch(/--timeout: "5x" is not a duration/);
    const array = await agora(['job', 'run', ...api, '--id', 'never', '--array', '9-1', '--', 'true']);
    expect(array.code).toBe(2);
    expect(array.stderr).toMatch(/--array: "9-1" the range 9-1 runs backwards/);
    expect(await client.getJob('never')).toBeUndefined();
  });

  it('refuses an invalid file with exit 2, a line per bad field, and stores nothing', async () => {
    const run = await agora(['job', 'submit', file('bad.yaml', 'id: broken-job\ncmd: echo\narray: 9-1\nretires: 2\n'), ...api]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('bad.yaml');
    expect(run.stderr).toMatch(/\n {2}array: the range 9-1 runs backwards; write 1-9\n/);
    expect(run.stderr).toMatch(/\n {2}retires: unknown field; did you mean retries\?/);
    expect(await client.getJob('broken-job')).toBeUndefined();
  });

  it('submits a file, then runs it with --run --wait', async () => {
    const path = file('pair.yaml', 'id: pair\ncmd: echo pair $AGORA_TASK_INDEX\ncompletions: 2\nparallelism: 2\ncpus: 0.1\nmem: 16\n');
    const created = await agora(['job', 'submit', path, ...api]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/^created job pair; start a run: agora job trigger pair\n$/);
    const run = await agora(['job', 'submit', path, '--wait', '--json', ...api]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('updated job pair');
    expect(JSON.parse(run.stdout)).toMatchObject({ jobId: 'pair', state: 'succeeded', counts: { succeeded: 2 } });
  });

  it('prints a task\'s stdout and stderr, and follows one that is still writing', async () => {
    const logs = await agora(['job', 'logs', helloRun, ...api]);
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toBe('hi from 0\n');

    const arr = (await client.listRuns({ jobId: 'arr' }))[0]!;
    const seventh = await agora(['job', 'logs', arr.id, '--index', '7', ...api]);
    expect(seventh.stdout).toBe('task 7\n');
    expect((await agora(['job', 'logs', arr.id, '--index', '42', ...api])).stderr).toMatch(/has no task 42; its tasks are 0 … 9 \(10\)/);

    const started = await agora(['job', 'run', ...api, '--id', 'slow-writer', '--cpus', '0.1', '--mem', '16', '--', 'sh', '-c', 'echo one; echo oops >&2; sleep 1.5; echo two']);
    const runId = started.stdout.trim();
    const followed = await agora(['job', 'logs', runId, '-f', ...api]);
    expect(followed.code, followed.stderr).toBe(0);
    expect(followed.stdout).toBe('one\ntwo\n');
    const stderr = await agora(['job', 'logs', runId, '--stderr', '--json', ...api]);
    expect(JSON.parse(stderr.stdout.trim().split('\n')[0]!)).toMatchObject({ file: 'stderr', data: 'oops\n', ended: true, attempt: 1 });
  });

  it('cancels a running run', async () => {
    const started = await agora(['job', 'run', ...api, '--id', 'sleeper', '--cpus', '0.1', '--mem', '16', '--', 'sleep', '60']);
    const runId = started.stdout.trim();
    await waitFor(async () => (await client.getRun(runId))?.state === 'running', 'the sleeper to run', 15_000);
    const cancel = await agora(['job', 'cancel', runId, ...api]);
    expect(cancel.code, cancel.stderr).toBe(0);
    expect(cancel.stdout).toMatch(new RegExp(`(cancelling run ${runId}|run ${runId} cancelled)`));
    const ended = await waitFor(async () => {
      const run = await client.getRun(runId);
      return run?.state === 'cancelled' && run;
    }, 'the run to be cancelled', 20_000);
    expect(ended.taskList[0]!.state).toBe('cancelled');
    const again = await agora(['job', 'cancel', runId, ...api]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/agora: .*(ended|cancelled)/);
  });

  it('lists jobs and runs as tables, shows a run\'s tasks, and says what to do about unknown ids', async () => {
    const list = await agora(['job', 'list', ...api]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^JOB\s+SCHEDULE\s+NEXT\s+LATEST RUN\s+STATE\s+ACTIVE\n/);
    expect(list.stdout).toMatch(new RegExp(`\\nhello\\s+-\\s+-\\s+${helloRun}\\s+succeeded\\s+0\\n`));
    expect(list.stdout).toMatch(/\nsleeper\s+-\s+-\s+sleeper-\S+\s+cancelled\s+0/);

    const runs = await agora(['job', 'runs', 'arr', ...api]);
    expect(runs.stdout).toMatch(/^RUN\s+JOB\s+STATE\s+TRIGGER\s+DONE\s+FAILED\s+CREATED\s+DURATION\s+DETAIL\narr-\S+\s+arr\s+succeeded\s+api\s+10\/10\s+0\s/);
    const all = await agora(['job', 'runs', '--json', ...api]);
    expect((JSON.parse(all.stdout) as RunSummary[]).map((r) => r.jobId)).toEqual(expect.arrayContaining(['hello', 'arr', 'pair', 'sleeper']));

    const arr = (await client.listRuns({ jobId: 'arr' }))[0]!;
    const status = await agora(['job', 'status', arr.id, ...api]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`^RUN ${arr.id} {2}job arr {2}succeeded`));
    expect(status.stdout).toMatch(/tasks: 10\/10 done · 0 failed · 0 running · 0 pending/);
    expect(status.stdout).toMatch(/TASKS \(10\)\nINDEX\s+STATE\s+ATTEMPTS\s+EXIT\s+AGENT\/HOST\s+DURATION\n0\s+succeeded\s+1\s+0\s+\S+\s+\S+\n/);
    expect(status.stdout).toMatch(/\n9\s+succeeded\s+1\s+0\s/);
    const json = JSON.parse((await agora(['job', 'status', arr.id, '--json', ...api])).stdout) as RunView;
    expect(json.taskList).toHaveLength(10);

    const asJob = await agora(['job', 'status', 'hello', ...api]);
    expect(asJob.code).toBe(2);
    expect(asJob.stderr).toContain(`hello is a job, not a run; its latest run is ${helloRun}`);
    const unknownRun = await agora(['job', 'status', 'no-such-run', ...api]);
    expect(unknownRun.code).toBe(2);
    expect(unknownRun.stderr).toMatch(/no run no-such-run; `agora job runs \[JOB\]` lists the runs/);
    const unknownJob = await agora(['job', 'trigger', 'no-such-job', ...api]);
    expect(unknownJob.code).toBe(2);
    expect(unknownJob.stderr).toMatch(/no-such-job.*`agora job list` shows the jobs/);
  });

  it('triggers a stored job and removes jobs', async () => {
    const trigger = await agora(['job', 'trigger', 'pair', '--wait', ...api]);
    expect(trigger.code, trigger.stderr).toBe(0);
    expect(trigger.stdout).toMatch(/^pair-\S+\n$/);
    const rm = await agora(['job', 'rm', 'pair', ...api]);
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout).toBe('removed job pair\n');
    expect(await client.getJob('pair')).toBeUndefined();
  });

  it('refuses to remove a job with a run going unless --force', async () => {
    const busy = (await agora(['job', 'run', ...api, '--id', 'busy', '--cpus', '0.1', '--mem', '16', '--', 'sleep', '60'])).stdout.trim();
    const refused = await agora(['job', 'rm', 'busy', ...api]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(new RegExp(`job busy has 1 run\\(s\\) still going \\(${busy}\\).*\`agora job rm busy --force\` cancels them`));
    const forced = await agora(['job', 'rm', 'busy', '--force', ...api]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(await client.getJob('busy')).toBeUndefined();
  });

  it('says how to start the API when nothing answers', async () => {
    const port = await freePort();
    const run = await agora(['job', 'list', '--api', `http://127.0.0.1:${port}`]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(new RegExp(`cannot reach the batch API at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)`));
    expect(run.stderr).toMatch(/`agora up`/);
    expect(run.stderr).toMatch(/AGORA_BATCH_API/);
  });

  it('agora batch runs the framework on its own: prints its API, serves it, stops on SIGTERM', async () => {
    const store = join(dir, 'standalone');
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bin/agora.ts'), 'batch', '--master', master.url, '--port', '0', '--store', store], {
      cwd: ROOT,
      env: { ...process.env, AGORA_LOG_LEVEL: 'info', AGORA_LOG_FORMAT: 'json' },
    });
    let log = '';
    child.stderr.on('data', (d: Buffer) => (log += d.toString()));
    try {
      const url = await waitFor(() => /API on (http:\/\/[\d.:]+)/.exec(log)?.[1], () => `agora batch to print its API address (log: ${log})`, 20_000);
      const list = await agora(['job', 'list', '--json', '--api', url]);
      expect(list.code, list.stderr).toBe(0);
      expect(JSON.parse(list.stdout)).toEqual([]);
      expect(existsSync(join(store, 'batch'))).toBe(true);
    } finally {
      child.kill('SIGTERM');
    }
    const code = await new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.on('exit', resolve)));
    expect(code).toBe(0);
  });
});
