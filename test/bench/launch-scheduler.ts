/**
 * The launch benchmark's scheduler: a well-behaved high-throughput framework. It launches up to
 * PER_OFFER tasks per offer, keeps at most WINDOW tasks in flight (launched, not yet finished), and
 * while the window is full declines offers with a short filter. (A scheduler that launches
 * everything it can at once only measures the length of its own queue.) The first `warmup` tasks
 * warm the JIT and the connections and are not measured.
 */
import type { Logger } from 'pino';
import { SchedulerDriver } from '../../frameworks/sdk/index.ts';
import type { TaskInfo } from '../../master/protocol/messages.ts';
import { scalar } from '../../master/protocol/resources.ts';

const TASK_CPUS = 0.1;
const TASK_MEM = 32;
const PER_OFFER = Number(process.env.BENCH_PER_OFFER ?? 8);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 100);
const FULL_REFUSE_SECONDS = Number(process.env.BENCH_REFUSE ?? 2);

export interface LaunchFigures {
  tasks: number;
  seconds: number;
  p50Ms: number;
  p99Ms: number;
}

export async function runScheduler(masterUrl: string, measured: number, warmup: number, logger: Logger): Promise<LaunchFigures> {
  const taskCount = warmup + measured;
  let launched = 0;
  let finished = 0;
  /** ACCEPT time of each measured task, until its RUNNING arrives. */
  const acceptedAt = new Map<string, number>();
  const latencies: number[] = [];
  let measureFrom = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));

  const driver = new SchedulerDriver({
    master: masterUrl,
    framework: { name: 'launch-bench', failoverTimeoutMs: 0 },
    logger,
    handlers: {
      offers(offers, d) {
        for (const offer of offers) {
          const room = Math.min(WINDOW - (launched - finished), taskCount - launched);
          if (room <= 0) {
            d.decline(offer.id, launched >= taskCount ? 60 : FULL_REFUSE_SECONDS);
            continue;
          }
          const fit = Math.floor(Math.min(scalar(offer.resources, 'cpus') / TASK_CPUS + 1e-9, scalar(offer.resources, 'mem') / TASK_MEM));
          const n = Math.min(fit, PER_OFFER, room);
          const tasks: TaskInfo[] = [];
          for (let i = 0; i < n; i++) tasks.push({ taskId: `t${launched++}`, resources: { cpus: TASK_CPUS, mem: TASK_MEM }, command: { value: 'true' } });
          if (launched > warmup) {
            const now = performance.now();
            for (const t of tasks) if (Number(t.taskId.slice(1)) >= warmup) acceptedAt.set(t.taskId, now);
          }
          d.launch(offer, tasks, { refuseSeconds: 0 });
        }
      },
      update(status) {
        if (status.state === 'RUNNING') {
          const t0 = acceptedAt.get(status.taskId);
          if (t0 !== undefined) {
            latencies.push(performance.now() - t0);
            acceptedAt.delete(status.taskId);
          }
        } else if (status.state === 'FINISHED') {
          finished++;
          if (finished === warmup) measureFrom = performance.now();
          if (finished === taskCount) resolveDone();
        } else {
          process.stderr.write(`unexpected ${status.state} for ${status.taskId}: ${status.message}\n`);
        }
      },
    },
  });
  await driver.start();
  await done;
  const seconds = (performance.now() - measureFrom) / 1000;
  await driver.stop({ teardown: true });
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
  return { tasks: measured, seconds, p50Ms: pct(50), p99Ms: pct(99) };
}
