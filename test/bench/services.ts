/**
 * Services deployment: 50 Docker instances of a busybox `sleep` app deployed through the services
 * framework on one agent (a real master, an agent with the docker containerizer, the services
 * scheduler), timed from the deploy call to all 50 RUNNING — next to the same 50 replicas through
 * Docker Swarm in the same run, when `docker swarm` works here (../shared/peers/swarm-replicas.sh).
 * Target: speedup (swarm / agora) ≥ 6.
 *
 * One warm-up deploy, then BENCH_ROUNDS (3) rounds, each the bare engine, then an Agora deploy, then
 * a Swarm one (interleaved, so all see the same machine), and the median of each. The bare engine
 * round is 50 dockerode create+start calls in parallel with the very create body the agent sends
 * for these instances: no scheduler can bring them up faster through this engine, so it bounds the
 * speedup any scheduler could reach here (`ceiling` = swarm / engine) and shows what Agora adds on
 * top (`overhead` = agora / engine).
 *
 * On a 2-vCPU VM Agora and the bare round are bound by the engine, which spends 125-165 ms of CPU per container
 * (runc and its init ~45 %, containerd-shim ~20 %, dockerd ~15-25 %, libseccomp compiling the
 * default profile alone ~5 %), so the bare 50 take 3.4-5 s and single runs vary by ±30 % — hence
 * medians. Part of that is the disk: the engine creates a dozen files per container under
 * /var/lib/docker, and on a journal-less ext4 each creation gets slower for a while after many
 * deletions (ext4 skips inodes freed in the last 30 s; the previous round's teardown). Swarm's
 * replicas join the default bridge network (a network namespace and a veth pair each: 2-2.5× the
 * engine CPU of a host-network container), on top of its orchestrator's own pace.
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
import { Label } from '../../agent/containerizers/docker-spec.ts';
import { ensureTestImage, removeLabelled, TEST_IMAGE } from '../docker-image.ts';
import { median, round2 } from './stats.ts';

const INSTANCES = Number(process.env.BENCH_INSTANCES ?? 50);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SWARM_SCRIPT = path.join(ROOT, '..', 'shared', 'peers', 'swarm-replicas.sh');

interface AgoraCluster {
  deploy(round: number): Promise<number>;
  /** The same containers created and started straight through dockerode, in parallel (seconds). */
  bareEngine(round: number): Promise<number>;
  /** Resolves once no container matching the filters exists any more (at most a minute). */
  engineIdle(filters: { label: string[] }): Promise<void>;
  close(): Promise<void>;
}

async function startAgora(): Promise<AgoraCluster> {
  const logger = pino({ level: process.env.AGORA_LOG_LEVEL ?? 'warn' });
  const quiet = pino({ level: 'error' });
  const { docker, version } = await connectDocker();
  await ensureTestImage(docker);
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'agora-services-bench-'));
  const server = await startMasterServer({ port: 0, logger: quiet });
  const containerizer = new DockerContainerizer({ docker, version, workDir });
  const agent = new Agent({
    master: server.wsUrl,
    workDir,
    containerizer,
    logger,
    resources: { cpus: INSTANCES, mem: INSTANCES * 64, disk: 1000 },
  });
  await agent.start();
  await agent.registered();
  const services = await startServicesFramework({ master: server.wsUrl, store: 'memory:', logger: quiet });

  /** Deploys the app (a new id each round), times it to all RUNNING, then removes it and its containers. */
  async function deploy(round: number): Promise<number> {
    const app = validateAppDefinition({
      id: `/bench/sleep-${round}`,
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
    await removeContainers();
    return seconds;
  }

  async function bareEngine(round: number): Promise<number> {
    const sandbox = mkdtempSync(path.join(workDir, 'bare-'));
    const bodies = Array.from({ length: INSTANCES }, (_, i) => ({
      ...containerizer.createOptions('bench-bare', { taskId: `bare-${round}-${i}`, resources: { cpus: 0.1, mem: 32 }, command: { value: 'sleep 3600' }, container: { type: 'DOCKER', docker: { image: TEST_IMAGE } } }, sandbox),
      name: `agora-bench-bare-${round}-${i}-${process.pid}`,
    }));
    const start = performance.now();
    await Promise.all(bodies.map(async (body) => (await docker.createContainer(body)).start()));
    const seconds = (performance.now() - start) / 1000;
    await removeLabelled(docker, `${Label.frameworkId}=bench-bare`, `${Label.workDir}=${workDir}`);
    return seconds;
  }

  /** Waits for the agent's containers to be gone, so the next round starts from an idle engine. */
  async function removeContainers(): Promise<void> {
    const filters = { label: [`agora.work-dir=${workDir}`] };
    for (let i = 0; i < 600; i++) {
      const left = await docker.listContainers({ all: true, filters });
      const running = left.filter((c) => c.State === 'running');
      if (running.length === 0) {
        await Promise.all(left.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => {})));
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async function close(): Promise<void> {
    await services.close();
    await agent.stop({ killTasks: true });
    await server.close();
    await removeLabelled(docker, `${Label.workDir}=${workDir}`);
    rmSync(workDir, { recursive: true, force: true });
  }
  async function engineIdle(filters: { label: string[] }): Promise<void> {
    for (let i = 0; i < 600; i++) {
      if ((await docker.listContainers({ all: true, filters })).length === 0) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  return { deploy, bareEngine, engineIdle, close };
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
  const agora = await startAgora();
  const agoraRounds: number[] = [];
  const engineRounds: number[] = [];
  const swarmRounds: number[] = [];
  // BENCH_SWARM=0 skips Swarm (profiling Agora alone).
  let swarmWorks = existsSync(SWARM_SCRIPT) && process.env.BENCH_SWARM !== '0';
  try {
    console.log(`services: warm-up deploy ${(await agora.deploy(0)).toFixed(2)} s`);
    for (let round = 1; round <= ROUNDS; round++) {
      engineRounds.push(await agora.bareEngine(round));
      agoraRounds.push(await agora.deploy(round));
      const swarm = swarmWorks ? await swarmSeconds() : undefined;
      // `docker service rm` returns while the engine still removes the replicas: let it finish, so
      // the next Agora round does not share the engine with Swarm's teardown.
      if (swarm !== undefined) await agora.engineIdle({ label: ['com.docker.swarm.service.id'] });
      if (swarm === undefined) swarmWorks = false;
      else swarmRounds.push(swarm);
      console.log(`  round ${round}: bare engine ${engineRounds.at(-1)!.toFixed(2)} s, Agora ${agoraRounds.at(-1)!.toFixed(2)} s` + (swarm === undefined ? '' : `, Docker Swarm ${swarm.toFixed(2)} s`));
    }
  } finally {
    await agora.close();
  }
  const agoraSeconds = median(agoraRounds);
  const engineSeconds = median(engineRounds);
  const overhead = Math.round((agoraSeconds / engineSeconds) * 100) / 100;
  const swarm = swarmRounds.length === ROUNDS ? median(swarmRounds) : undefined;
  const speedup = swarm === undefined ? null : Math.round((swarm / agoraSeconds) * 10) / 10;
  const ceiling = swarm === undefined ? null : Math.round((swarm / engineSeconds) * 10) / 10;
  console.log(
    `services: ${INSTANCES} Docker instances RUNNING through Agora in ${agoraSeconds.toFixed(2)} s (median of ${ROUNDS})` +
      (swarm === undefined ? '; Docker Swarm not measured here' : `; Docker Swarm ${swarm.toFixed(2)} s; speedup ${speedup}× (target ≥ 6)`),
  );
  console.log(
    `services: the bare engine (the same ${INSTANCES} create bodies, create+start in parallel) ${engineSeconds.toFixed(2)} s; Agora / engine ${overhead}` +
      (ceiling === null ? '' : `; the most any scheduler could reach through this engine: ${ceiling}× Swarm`),
  );
  return {
    bench: 'services',
    instances: INSTANCES,
    agoraSeconds: round2(agoraSeconds),
    swarmSeconds: swarm === undefined ? null : round2(swarm),
    speedup,
    engineSeconds: round2(engineSeconds),
    overhead,
    ceiling,
    rounds: { engine: engineRounds.map(round2), agora: agoraRounds.map(round2), swarm: swarmRounds.map(round2) },
  };
}
