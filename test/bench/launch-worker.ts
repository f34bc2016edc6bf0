/**
 * Child process of the launch benchmark: 1,000 simulated agents and one scheduler, all real
 * WebSocket clients of the master given on the command line. Prints one JSON line of figures.
 *
 * The scheduler is a well-behaved high-throughput framework: it launches up to PER_OFFER tasks
 * per offer, keeps at most WINDOW tasks in flight (launched, not yet finished), and while the
 * window is full declines offers with a short filter. (A scheduler that launches everything it can
 * at once only measures the length of its own queue.) The first WARMUP tasks warm the JIT and the
 * connections and are not measured; throughput and latency are for the tasks after them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Agent } from '../../agent/agent.ts';
import { SimulatedContainerizer } from '../../agent/containerizers/simulated.ts';
import { SchedulerDriver } from '../../frameworks/sdk/index.ts';
import type { TaskInfo } from '../../master/protocol/messages.ts';
import { scalar } from '../../master/protocol/resources.ts';

const [masterUrl, agentCountText, taskCountText, warmupText] = process.argv.slice(2);
const agentCount = Number(agentCountText);
const measured = Number(taskCountText);
const WARMUP = Number(warmupText);
const taskCount = WARMUP + measured;
const logger = pino({ level: 'warn' });
const TASK_CPUS = 0.1;
const TASK_MEM = 32;
const PER_OFFER = Number(process.env.BENCH_PER_OFFER ?? 8);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 400);
const FULL_REFUSE_SECONDS = Number(process.env.BENCH_REFUSE ?? 2);

const workRoot = mkdtempSync(join(tmpdir(), 'agora-launch-bench-'));
process.on('exit', () => rmSync(workRoot, { recursive: true, force: true }));
const agents: Agent[] = [];
for (let i = 0; i < agentCount; i++) {
  agents.push(
    new Agent({
      master: masterUrl!,
      workDir: join(workRoot, `agent-${i}`),
      hostname: `sim-${i}`,
      resources: { cpus: 8, mem: 16384, disk: 1000, ports: [[31000, 32000]] },
      containerizer: new SimulatedContainerizer(),
      checkpoint: false,
      logger,
    }),
  );
}
await Promise.all(agents.map((a) => a.start()));
await Promise.all(agents.map((a) => a.registered()));

let launched = 0;
let finished = 0;
/** ACCEPT time of each measured task, until its RUNNING arrives. */
const acceptedAt = new Map<string, number>();
const latencies: number[] = [];
let measureFrom = 0;
let resolveDone!: () => void;
const done = new Promise<void>((r) => (resolveDone = r));

const driver = new SchedulerDriver({
  master: masterUrl!,
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
        if (launched > WARMUP) {
          const now = performance.now();
          for (const t of tasks) if (Number(t.taskId.slice(1)) >= WARMUP) acceptedAt.set(t.taskId, now);
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
        if (finished === WARMUP) measureFrom = performance.now();
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
latencies.sort((a, b) => a - b);
const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
process.stdout.write(`${JSON.stringify({ tasks: measured, seconds, p50Ms: pct(50), p99Ms: pct(99) })}\n`);
await driver.stop({ teardown: true });
process.exit(0);
