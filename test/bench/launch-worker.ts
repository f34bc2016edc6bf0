/**
 * Child process of the launch benchmark: 1,000 simulated agents (real WebSocket clients of the
 * master given on the command line, with a containerizer that reports RUNNING and FINISHED without
 * spawning). Prints "ready" once all are registered and runs until killed. With `--scheduler` it
 * also runs the scheduler and prints its figures as one JSON line.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Agent } from '../../agent/agent.ts';
import { SimulatedContainerizer } from '../../agent/containerizers/simulated.ts';

const [masterUrl, agentCountText] = process.argv.slice(2);
const agentCount = Number(agentCountText);
const logger = pino({ level: 'warn' });

const workRoot = mkdtempSync(join(tmpdir(), 'agora-launch-bench-'));
process.on('exit', () => rmSync(workRoot, { recursive: true, force: true }));
process.on('SIGTERM', () => process.exit(0));
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
process.stdout.write('ready\n');
