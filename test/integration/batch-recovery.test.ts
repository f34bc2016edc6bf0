/**
 * The batch scheduler SIGKILLed in the middle of a run and started again on the same store: the
 * run carries on and ends with every task run exactly once — none lost, none launched twice —
 * including tasks that ended while no scheduler was there to hear it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunView } from '../../frameworks/batch/index.ts';
import { BatchCluster } from './batch-cluster.ts';
import { removeDir, tempDir, testRedis, waitFor } from './helpers.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/batch-scheduler-process.ts', import.meta.url));

let cluster: BatchCluster;
let scratch: string;
const children: ChildProcess[] = [];

beforeEach(async () => {
  cluster = await BatchCluster.start();
  await cluster.addAgent({ resources: { cpus: 8, mem: 4096, disk: 1000 } });
  scratch = tempDir('agora-batch-recovery-');
});

afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await cluster.close();
  removeDir(scratch);
});

interface SchedulerProcess {
  child: ChildProcess;
  lines: Record<string, unknown>[];
}

function startScheduler(store: string, name: string, job?: unknown): SchedulerProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
    env: { ...process.env, MASTER: cluster.master.wsUrl, STORE: store, NAME: name, ...(job !== undefined && { JOB: JSON.stringify(job) }) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  const lines: Record<string, unknown>[] = [];
  let buffer = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let newline: number;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buffer.slice(0, newline)) as Record<string, unknown>);
      buffer = buffer.slice(newline + 1);
    }
  });
  return { child, lines };
}

const linesOf = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean);

async function killMidRunAndResume(store: string, name = 'batch'): Promise<void> {
  const marks = join(scratch, 'marks.log');
  writeFileSync(marks, '');
  // 30 tasks, 6 at a time, each about half a second: the kill lands with tasks running and launching.
  const job = { id: 'resilient', cmd: `echo "$AGORA_TASK_INDEX $AGORA_TASK_ATTEMPT" >> ${marks}; sleep 0.5`, cpus: 0.1, mem: 16, array: '0-29%6' };
  const first = startScheduler(store, name, job);
  await waitFor(() => first.lines.find((l) => l.event === 'started'), 'the first scheduler to start', 20_000);
  await waitFor(() => linesOf(marks).length >= 8, 'some tasks to have started', 20_000);
  first.child.kill('SIGKILL');
  await new Promise((resolve) => first.child.once('exit', resolve));
  // Let the running tasks end while nobody listens: their updates wait on the agent.
  await new Promise((resolve) => setTimeout(resolve, 1200));

  const second = startScheduler(store, name);
  const ended = await waitFor(() => second.lines.find((l) => l.event === 'ended')?.run as RunView | undefined, 'the run to end under the second scheduler', 40_000);
  expect(ended.state).toBe('succeeded');
  expect(ended.counts.succeeded).toBe(30);
  // Every task's last attempt succeeded. An earlier attempt is allowed only as one whose launch
  // never left the killed scheduler (recorded write-ahead, then SIGKILL): the master never heard of
  // it, so it never ran — the marks file and the master below check that.
  expect(ended.taskList.filter((t) => t.attempts.at(-1)!.exitCode !== 0)).toEqual([]);
  const earlier = ended.taskList.flatMap((t) => t.attempts.slice(0, -1));
  expect(earlier.filter((a) => a.outcome !== 'lost' || a.message !== 'the master does not know this task')).toEqual([]);
  const started = linesOf(marks).map((l) => l.split(' '));
  expect(started.map(([index]) => Number(index)).sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i));
  // Each index started once, as the attempt the run records as its successful one.
  for (const [index, attempt] of started) expect(Number(attempt)).toBe(ended.taskList.find((t) => t.index === Number(index))!.attempts.length);
  // The master agrees: 30 tasks ran, each once, all FINISHED, under one framework id.
  const frameworkIds = new Set(second.lines.filter((l) => l.event === 'started').map((l) => l.frameworkId));
  expect(frameworkIds.size).toBe(1);
  // The master moves a task to its history once the acknowledgement of its last update arrives,
  // which may be a moment after the scheduler said the run ended.
  const completedOf = () => cluster.master.master.state().completedTasks.filter((t) => frameworkIds.has(t.frameworkId));
  await waitFor(() => completedOf().length === 30, () => `the master to have 30 completed tasks (it has ${completedOf().length}; live ${JSON.stringify(cluster.master.master.state().tasks.map((t) => [t.taskId, t.state]))})`, 10_000);
  const completed = completedOf();
  expect(completed).toHaveLength(30);
  expect(new Set(completed.map((t) => t.taskId)).size).toBe(30);
  expect(completed.every((t) => t.state === 'FINISHED')).toBe(true);
}

describe('batch scheduler recovery', () => {
  it('SIGKILLed mid-run and restarted on the file store: no task lost, none twice', async () => {
    await killMidRunAndResume(join(scratch, 'store'));
  }, 90_000);

  it('the same on the Redis store', async (context) => {
    const redis = await testRedis('batch recovery on Redis');
    if (!redis.reachable) return context.skip();
    // A namespace (framework name) of its own, so runs of this test never meet in Redis.
    await killMidRunAndResume(redis.url, `batch-test-${process.pid}-${Date.now()}`);
  }, 90_000);
});
