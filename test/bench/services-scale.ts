/**
 * The services framework at a few thousand instances: 5 apps × 1,000 instances on 50 simulated
 * agents (a child process: real WebSocket clients whose tasks run until killed and spawn nothing),
 * through a real master and the services framework as `agora up` runs it (file store, HTTP API,
 * service-port proxy) in this process. Everything goes through the HTTP API.
 *
 * Measures what users of Marathon complain about at this size: how long deployments take once the
 * scheduler, not the containers, is the work (deploy, rolling restart, scale, delete), and how fast
 * the API answers, idle and in the middle of a rolling restart.
 *
 * Knobs (environment): BENCH_APPS (5), BENCH_INSTANCES (1,000 per app), BENCH_AGENTS (50).
 */
import { serveServices } from '../../frameworks/services/serve.ts';
import { serveOnSimulatedAgents } from './simulated-agents.ts';
import { median, percentile, round2 } from './stats.ts';

const APPS = Number(process.env.BENCH_APPS ?? 5);
const PER_APP = Number(process.env.BENCH_INSTANCES ?? 1000);
const AGENTS = Number(process.env.BENCH_AGENTS ?? 50);

export default async function run(_opts: { json: boolean }): Promise<Record<string, unknown>> {
  const cluster = await serveOnSimulatedAgents(serveServices, { agents: AGENTS, tasks: 'run', name: 'services-scale' });
  const apps = Array.from({ length: APPS }, (_, i) => `/scale/app-${i}`);
  const call = cluster.call;

  /** Resolves when no deployment is running any more (polled through the API, as `agora app deploy --wait` does). */
  async function deploymentsDone(): Promise<void> {
    for (;;) {
      const { deployments } = JSON.parse((await call('GET', '/v1/deployments')).body) as { deployments: { state: string; reason?: string }[] };
      const failed = deployments.find((d) => d.state === 'failed');
      if (failed) throw new Error(`a deployment failed: ${failed.reason}`);
      if (deployments.every((d) => d.state !== 'running')) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async function taskCount(): Promise<number> {
    return (JSON.parse((await call('GET', '/v1/tasks')).body) as { tasks: unknown[] }).tasks.length;
  }

  async function timed(what: () => Promise<void>): Promise<number> {
    const start = performance.now();
    await what();
    return (performance.now() - start) / 1000;
  }

  try {
    const putMs: number[] = [];
    const deploySeconds = await timed(async () => {
      for (const id of apps) putMs.push((await call('PUT', `/v1/apps${id}`, { id, instances: PER_APP, cmd: 'sleep 3600', cpus: 0.01, mem: 1, ports: [{ name: 'http' }] })).ms);
      await deploymentsDone();
    });
    const total = await taskCount();
    if (total !== APPS * PER_APP) throw new Error(`expected ${APPS * PER_APP} tasks after the deployments, found ${total}`);

    const reads: Array<[string, string]> = [
      ['GET /v1/apps', '/v1/apps'],
      ['GET /v1/tasks', '/v1/tasks'],
      ['GET /v1/apps/{id}', `/v1/apps${apps[0]}`],
      ['GET /v1/apps/{id}/endpoints', `/v1/apps${apps[0]}/endpoints`],
      ['GET /v1/deployments', '/v1/deployments'],
    ];
    const api: Record<string, { medianMs: number; kib: number }> = {};
    for (const [name, url] of reads) {
      const samples: { ms: number; body: string }[] = [];
      for (let i = 0; i < 7; i++) samples.push(await call('GET', url));
      api[name] = { medianMs: round2(median(samples.map((s) => s.ms))), kib: Math.round(samples[0]!.body.length / 1024) };
    }

    // A rolling restart of one app, with the API read every 20 ms meanwhile.
    const duringMs: number[] = [];
    let restarting = true;
    const reader = (async () => {
      while (restarting) {
        duringMs.push((await call('GET', `/v1/apps${apps[1]}`)).ms);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    const restartSeconds = await timed(async () => {
      await call('POST', `/v1/apps${apps[1]}/restart`);
      await deploymentsDone();
    });
    restarting = false;
    await reader;

    const scaleSeconds = await timed(async () => {
      await call('POST', `/v1/apps${apps[2]}/scale`, { instances: PER_APP * 2 });
      await deploymentsDone();
    });

    const deleteSeconds = await timed(async () => {
      for (const id of apps) await call('DELETE', `/v1/apps${id}`);
      await deploymentsDone();
    });
    const left = await taskCount();
    if (left !== 0) throw new Error(`${left} tasks left after deleting every app`);

    const result = {
      bench: 'services-scale',
      apps: APPS,
      instances: APPS * PER_APP,
      agents: AGENTS,
      deploySeconds: round2(deploySeconds),
      putMaxMs: round2(Math.max(...putMs)),
      restartSeconds: round2(restartSeconds),
      apiDuringRestart: { p50Ms: round2(percentile(duringMs, 50)), p99Ms: round2(percentile(duringMs, 99)), maxMs: round2(Math.max(...duringMs)) },
      scaleUpSeconds: round2(scaleSeconds),
      deleteSeconds: round2(deleteSeconds),
      api,
    };
    console.log(`services-scale: ${APPS} apps × ${PER_APP} instances on ${AGENTS} simulated agents (file store, HTTP API)`);
    console.log(`  deploy all ${APPS * PER_APP} to succeeded   ${deploySeconds.toFixed(2)} s   (slowest PUT ${result.putMaxMs} ms)`);
    console.log(`  rolling restart of ${PER_APP}         ${restartSeconds.toFixed(2)} s   (GET /v1/apps/{id} meanwhile: p50 ${result.apiDuringRestart.p50Ms} ms, p99 ${result.apiDuringRestart.p99Ms} ms, max ${result.apiDuringRestart.maxMs} ms)`);
    console.log(`  scale ${PER_APP} → ${PER_APP * 2}                ${scaleSeconds.toFixed(2)} s`);
    console.log(`  delete every app to no task      ${deleteSeconds.toFixed(2)} s`);
    for (const [name, figures] of Object.entries(api)) console.log(`  ${name.padEnd(30)} ${figures.medianMs.toFixed(1).padStart(7)} ms median   ${figures.kib} KiB`);
    return result;
  } finally {
    await cluster.close();
  }
}
