/**
 * The batch framework on large arrays: one array job of BENCH_TASKS (8,000) tasks of `true` on 50
 * simulated agents (a child process: real WebSocket clients whose tasks finish at once and spawn
 * nothing), through a real master and the batch framework as `agora up` runs it (file store, HTTP
 * API) in this process. Timed from the run's POST to the run succeeded, polled through the API as
 * `agora job run --wait` does; then one read of the run's task list.
 *
 * What it shows is the scheduler's own cost per task as arrays grow (the `batch` bench measures
 * real processes on one agent). Knobs (environment): BENCH_TASKS, BENCH_AGENTS (50).
 */
import { serveBatch } from '../../frameworks/batch/serve.ts';
import { serveOnSimulatedAgents } from './simulated-agents.ts';
import { round2 } from './stats.ts';

const TASKS = Number(process.env.BENCH_TASKS ?? 8000);
const AGENTS = Number(process.env.BENCH_AGENTS ?? 50);

export default async function run(_opts: { json: boolean }): Promise<Record<string, unknown>> {
  const cluster = await serveOnSimulatedAgents(serveBatch, { agents: AGENTS, tasks: 'finish', name: 'batch-scale' });
  const call = async (method: string, url: string, body?: unknown): Promise<unknown> => JSON.parse((await cluster.call(method, url, body)).body);

  try {
    await call('POST', '/v1/jobs', { id: 'big', cmd: 'true', cpus: 0.01, mem: 1, array: `0-${TASKS - 1}` });
    const start = performance.now();
    const { id } = (await call('POST', '/v1/jobs/big/runs')) as { id: string };
    let state = '';
    for (;;) {
      state = ((await call('GET', `/v1/runs/${id}?summary=true`)) as { state: string }).state;
      if (!['queued', 'running'].includes(state)) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const seconds = (performance.now() - start) / 1000;
    if (state !== 'succeeded') throw new Error(`the run ended ${state}`);
    const readStart = performance.now();
    const { tasks } = (await call('GET', `/v1/runs/${id}/tasks`)) as { tasks: unknown[] };
    const readMs = performance.now() - readStart;
    if (tasks.length !== TASKS) throw new Error(`expected ${TASKS} tasks in the run, found ${tasks.length}`);
    const tasksPerSecond = Math.round(TASKS / seconds);
    console.log(`batch-scale: an array of ${TASKS} tasks on ${AGENTS} simulated agents (file store, HTTP API): submit → succeeded in ${seconds.toFixed(2)} s = ${tasksPerSecond} tasks/s; GET its tasks ${readMs.toFixed(0)} ms`);
    return { bench: 'batch-scale', tasks: TASKS, agents: AGENTS, seconds: round2(seconds), tasksPerSecond, readTasksMs: round2(readMs) };
  } finally {
    await cluster.close();
  }
}
