/**
 * Services deployment: 50 Docker instances of a busybox `sleep` app deployed through the services
 * framework on one agent (a real master, an agent with the docker containerizer, the services
 * scheduler), timed from the deploy call to all 50 RUNNING — next to the same 50 replicas through
 * Docker Swarm in the same run, when `docker swarm` works here (../shared/peers/swarm-replicas.sh).
 * Target: speedup (swarm / agora) ≥ 6.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Agent } from '../../agent/agent.ts';
import { connectDocker, DockerContainerizer } from '../../agent/containerizers/docker.ts';
import { startMasterServer } from '../../master/http/server.ts';
import { startServicesFramework } from '../../frameworks/services/main.ts';
import { validateAppDefinition } from '../../frameworks/services/index.ts';
import { ensureTestImage, TEST_IMAGE } from '../docker-image.ts';

const INSTANCES = Number(process.env.BENCH_INSTANCES ?? 50);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SWARM_SCRIPT = path.join(ROOT, '..', 'shared', 'peers', 'swarm-replicas.sh');

async function throughAgora(): Promise<number> {
  const logger = pino({ level: process.env.AGORA_LOG_LEVEL ?? 'warn' });
  const quiet = pino({ level: 'error' });
  const { docker, version } = await connectDocker();
  await ensureTestImage(docker);
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'agora-services-bench-'));
  const server = await startMasterServer({ port: 0, logger: quiet });
  const agent = new Agent({
    master: server.wsUrl,
    workDir,
    containerizer: new DockerContainerizer({ docker, version, workDir }),
    logger,
    resources: { cpus: INSTANCES, mem: INSTANCES * 64, disk: 1000 },
  });
  await agent.start();
  await agent.registered();
  const services = await startServicesFramework({ master: server.wsUrl, store: 'memory:', logger: quiet });
  try {
    const app = validateAppDefinition({
      id: '/bench/sleep',
      instances: INSTANCES,
      cmd: 'sleep 3600',
      container: { type: 'DOCKER', docker: { image: TEST_IMAGE } },
      cpus: 0.1,
      mem: 32,
    });
    let done!: () => void;
    const allRunning = new Promise<void>((resolve) => (done = resolve));
    const running = new Set<string>();
    const unsubscribe = services.api.subscribe((event) => {
      if (event.type !== 'task' || event.task.appId !== app.id) return;
      if (event.task.state === 'RUNNING') running.add(event.task.taskId);
      if (running.size === INSTANCES) done();
    });
    const start = performance.now();
    await services.api.putApp(app);
    await allRunning;
    const seconds = (performance.now() - start) / 1000;
    unsubscribe();
    await services.api.deleteApp(app.id, { force: true });
    return seconds;
  } finally {
    await services.close();
    await agent.stop({ killTasks: true });
    await server.close();
    const leftovers = await docker.listContainers({ all: true, filters: { label: [`agora.work-dir=${workDir}`] } });
    await Promise.all(leftovers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => {})));
    rmSync(workDir, { recursive: true, force: true });
  }
}

function swarmSeconds(): Promise<number | undefined> {
  if (!existsSync(SWARM_SCRIPT)) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    execFile('bash', [SWARM_SCRIPT, String(INSTANCES)], { timeout: 300_000 }, (error, stdout, stderr) => {
      const match = /swarm_replicas_seconds=([\d.]+)/.exec(stdout);
      if (error || !match) {
        console.log(`swarm: not measured (${(error?.message ?? stderr).split('\n')[0]})`);
        resolve(undefined);
      } else resolve(Number(match[1]));
    });
  });
}

export default async function run(_opts: { json: boolean }): Promise<Record<string, unknown>> {
  const agoraSeconds = await throughAgora();
  const swarm = await swarmSeconds();
  const speedup = swarm === undefined ? null : Math.round((swarm / agoraSeconds) * 10) / 10;
  console.log(
    `services: ${INSTANCES} Docker instances RUNNING through Agora in ${agoraSeconds.toFixed(2)} s` +
      (swarm === undefined ? '; Docker Swarm not measured here' : `; Docker Swarm ${swarm.toFixed(2)} s; speedup ${speedup}× (target ≥ 6)`),
  );
  return { bench: 'services', instances: INSTANCES, agoraSeconds: Math.round(agoraSeconds * 100) / 100, swarmSeconds: swarm ?? null, speedup };
}
