#!/usr/bin/env -S npx tsx
/**
 * agora — one CLI for the whole system: run a master or an agent, a dev cluster, and look at state.
 * Run it as `npx tsx bin/agora.ts …`, `npm run agora -- …`, or `agora …` after `npm link`.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { pino, type Logger } from 'pino';
import { runAgent } from '../agent/main.ts';
import { parsePort, runMaster } from '../master/main.ts';
import { serveServices } from '../frameworks/services/serve.ts';
import { serveBatch } from '../frameworks/batch/serve.ts';
import { registerJobCommands } from '../frameworks/batch/cli/job-command.ts';
import type { MasterStateJson, TaskStateJson } from '../master/cluster/state-json.ts';
import { formatResources, scalar, type Resources } from '../master/protocol/resources.ts';
import { followDeployment, ServicesClient, ServicesHttpError, ServicesUnreachableError } from '../frameworks/services/http/client.ts';
import { AppDefinitionError, parseAppDefinition } from '../frameworks/services/parse-app-definition.ts';
import type { DeploymentView } from '../frameworks/services/service-api.ts';

// ---------------------------------------------------------------------------------------------
// Output helpers

/** Logs as readable lines on a terminal (`12:00:01 INFO  master: listening …`), JSON otherwise. */
function createLogger(name: string): Logger {
  const level = process.env.AGORA_LOG_LEVEL ?? 'info';
  if (!process.stderr.isTTY || process.env.AGORA_LOG_FORMAT === 'json') return pino({ level, name }, pino.destination(2));
  const labels: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };
  return pino({ level, name }, {
    write(line: string) {
      const { time, level: n, name: who, msg, pid: _pid, hostname: _host, ...rest } = JSON.parse(line) as Record<string, unknown>;
      const extra = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
      const clock = new Date(time as number).toTimeString().slice(0, 8);
      process.stderr.write(`${clock} ${labels[n as number] ?? n} ${who}: ${msg}${extra ? `  ${extra}` : ''}\n`);
    },
  });
}

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

function fail(message: string): never {
  process.stderr.write(`agora: ${message}\n`);
  process.exit(2);
}

function usedOfTotal(used: Resources, total: Resources, name: string): string {
  const t = scalar(total, name);
  if (t === 0) return '-';
  return `${+scalar(used, name).toFixed(2)}/${+t.toFixed(2)}`;
}

function short(id: string): string {
  return id.length > 12 ? id.slice(0, 8) : id;
}

/** Accepts http://, ws:// or a bare host:port for the master's address. */
function httpUrl(master: string): string {
  const url = /^[a-z]+:\/\//.test(master) ? master : `http://${master}`;
  return url.replace(/^ws(s?):\/\//, 'http$1://').replace(/\/$/, '');
}

function wsUrl(master: string): string {
  return httpUrl(master).replace(/^http(s?):\/\//, 'ws$1://');
}

// ---------------------------------------------------------------------------------------------

const program = new Command()
  .name('agora')
  .description('Agora: a two-level resource-offer cluster manager (master, agents, framework schedulers).')
  .showHelpAfterError('(run with --help for usage)');

program
  .command('master')
  .description('run a master: agents and schedulers dial it over WebSockets; operators read GET /state')
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--port <port>', 'port to listen on', '5050')
  .option('--offer-timeout <seconds>', 'rescind offers left unanswered this long', '60')
  .option('--weights <roles>', 'role weights for fair sharing, e.g. "web:2;batch:1"')
  .action(async (flags) => {
    const log = createLogger('master');
    const server = await runMaster(flags, log).catch((e: Error) => fail(e.message));
    onShutdown(log, () => server.close());
  });

program
  .command('agent')
  .description('run an agent: offers this machine to the master and runs the tasks it is given')
  .requiredOption('--master <url>', 'the master, e.g. ws://10.0.0.1:5050')
  .option('--resources <spec>', 'override detected resources, e.g. "cpus:4;mem:8192;disk:20000;ports:[31000-32000]"')
  .option('--attributes <spec>', 'attributes for placement constraints, e.g. "rack:r1;zone:a"')
  .option('--work-dir <dir>', 'where sandboxes and checkpoints live', '.agora/agent')
  .option('--hostname <name>', 'the hostname to advertise')
  .option('--containerizers <list>', 'process, docker or both (default: process, plus docker when the engine answers)')
  .option('--advertise-ip <ip>', 'address Docker bridge port mappings bind to', '127.0.0.1')
  .option('--docker-volumes <paths>', 'host paths tasks may mount as Docker volumes, e.g. "/data,/srv"')
  .option('--docker-retention <seconds>', 'keep ended containers this long before removing them', '3600')
  .action(async (flags) => {
    const log = createLogger('agent');
    const agent = await runAgent({ ...flags, master: wsUrl(flags.master), logger: log, handleSignals: false }).catch((e: Error) => fail(e.message));
    // Like Mesos, an agent that is stopped leaves its tasks running; a restarted agent re-adopts them.
    onShutdown(log, () => agent.stop({ killTasks: false }));
  });

program
  .command('up')
  .description('run a dev cluster in one process: a master, one agent with this machine\'s resources, and the services and batch frameworks')
  .option('--port <port>', 'master port', '5050')
  .option('--dir <dir>', 'state directory', '.agora')
  .option('--containerizers <list>', 'process, docker or both (default: process, plus docker when the engine answers)')
  .option('--advertise-ip <ip>', 'address Docker bridge port mappings bind to', '127.0.0.1')
  .option('--docker-volumes <paths>', 'host paths tasks may mount as Docker volumes, e.g. "/data,/srv"')
  .option('--docker-retention <seconds>', 'keep ended containers this long before removing them', '3600')
  .option('--services-port <port>', 'the services framework\'s HTTP API port', '5051')
  .option('--batch-port <port>', 'the batch framework\'s HTTP API port', '5052')
  .option('--store <url>', 'the services and batch frameworks\' store: a directory, file://…, redis://… (default: the state directory)')
  .action(async (flags) => {
    const log = createLogger('up');
    const dir = resolve(flags.dir);
    mkdirSync(dir, { recursive: true });
    const server = await runMaster({ port: flags.port }, createLogger('master')).catch((e: Error) => fail(e.message));
    const agent = await runAgent({
      master: server.wsUrl,
      workDir: join(dir, 'agent'),
      containerizers: flags.containerizers,
      advertiseIp: flags.advertiseIp,
      dockerVolumes: flags.dockerVolumes,
      dockerRetention: flags.dockerRetention,
      logger: createLogger('agent'),
      handleSignals: false,
    }).catch((e: Error) => fail(e.message));
    await agent.registered();
    const services = await serveServices({
      master: server.wsUrl,
      store: flags.store ?? dir,
      port: parsePort(flags.servicesPort, 5051),
      logger: createLogger('services'),
    }).catch((e: Error) => fail(`the services framework did not start: ${e.message}`));
    const batch = await serveBatch({
      master: server.wsUrl,
      store: flags.store ?? dir,
      port: parsePort(flags.batchPort, 5052),
      logger: createLogger('batch'),
    }).catch((e: Error) => fail(`the batch framework did not start: ${e.message}`));
    log.info(`dev cluster up: master ${server.url}, one agent (${formatResources(agent.resources)}), services API ${services.url}, batch API ${batch.url}; state in ${dir}`);
    log.info(`try: npx tsx examples/hello/main.ts --master ${server.wsUrl} --tasks 5   |   npm run agora -- state   |   npm run agora -- app list --api ${services.url}   |   npm run agora -- job run --api ${batch.url} --wait -- echo hello`);
    log.info('press Ctrl-C to stop');
    // A dev cluster owns its tasks: stopping it stops them.
    onShutdown(log, async () => {
      await batch.close();
      await services.close();
      await agent.stop({ killTasks: true });
      await server.close();
    });
  });

interface ServeFlags {
  master: string;
  store: string;
  host: string;
  port: string;
  role: string;
}

/**
 * `agora services` and `agora batch`: one framework and its HTTP API in this process. Its tasks
 * keep running when it stops: a restarted framework resumes them within its failover timeout.
 */
function frameworkCommand(spec: {
  name: 'services' | 'batch';
  description: string;
  persists: string;
  listens: string;
  port: number;
  refused: string;
  serve: (options: { master: string; store: string; host: string; port: number; role: string; logger: Logger }) => Promise<{ url: string; frameworkId: string; close(): Promise<void> }>;
  tryThis: (url: string) => string;
}): void {
  program
    .command(spec.name)
    .description(spec.description)
    .option('--master <url>', 'the master', 'ws://127.0.0.1:5050')
    .option('--store <url>', `where ${spec.persists} persist: a directory, file://…, redis://HOST:PORT`, '.agora')
    .option('--host <host>', `address ${spec.listens}`, '127.0.0.1')
    .option('--port <port>', 'API port', String(spec.port))
    .option('--role <role>', `the role it registers with (its share of the cluster); ${spec.refused} naming another role are refused`, '*')
    .action(async (flags: ServeFlags) => {
      const log = createLogger(spec.name);
      const running = await spec
        .serve({ master: wsUrl(flags.master), store: flags.store, host: flags.host, port: parsePort(flags.port, spec.port), role: flags.role, logger: log })
        .catch((e: Error) => fail(`the ${spec.name} framework did not start: ${e.message}`));
      log.info(`${spec.name} framework ${running.frameworkId} up; API on ${running.url} (try: ${spec.tryThis(running.url)})`);
      onShutdown(log, () => running.close());
    });
}

frameworkCommand({
  name: 'services',
  description: 'run the services framework (long-running apps: deployments, health, discovery, load balancing) and its HTTP API',
  persists: 'apps, versions and deployments',
  listens: 'the API and the service ports listen on',
  port: 5051,
  refused: 'apps',
  serve: serveServices,
  tryThis: (url) => `agora app list --api ${url}`,
});

frameworkCommand({
  name: 'batch',
  description: 'run the batch framework (jobs, arrays, retries, schedules, dependencies) and its HTTP API',
  persists: 'jobs and runs',
  listens: 'the API listens on',
  port: 5052,
  refused: 'jobs',
  serve: serveBatch,
  tryThis: (url) => `agora job run --api ${url} --wait -- echo hello`,
});

program
  .command('state')
  .description('show agents, frameworks and tasks')
  .option('--master <url>', 'the master', 'http://127.0.0.1:5050')
  .option('--json', 'print the raw JSON state')
  .option('--all', 'include completed tasks and removed frameworks')
  .action(async (flags) => {
    const url = `${httpUrl(flags.master)}/state`;
    let state: MasterStateJson;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
      if (!res.ok) fail(`${url} answered HTTP ${res.status}: ${await res.text()}`);
      state = (await res.json()) as MasterStateJson;
    } catch (error) {
      fail(`cannot reach the master at ${url} (${(error as Error).cause ?? (error as Error).message}); is it running? start one with \`npm start\` or pass --master`);
    }
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(state, null, 2)}\n`);
      return;
    }
    process.stdout.write(renderState(state, Boolean(flags.all)));
  });

function renderState(state: MasterStateJson, all: boolean): string {
  const hostOf = new Map(state.agents.map((a) => [a.id, a.hostname]));
  const nameOf = new Map(state.frameworks.map((f) => [f.id, f.name]));
  const out: string[] = [];
  out.push(`AGENTS (${state.agents.length})`);
  out.push(
    table(
      ['ID', 'HOSTNAME', 'STATUS', 'CPUS', 'MEM', 'DISK', 'TASKS'],
      state.agents.map((a) => [short(a.id), a.hostname, a.status, usedOfTotal(a.used, a.resources, 'cpus'), usedOfTotal(a.used, a.resources, 'mem'), usedOfTotal(a.used, a.resources, 'disk'), String(a.taskCount)]),
    ),
  );
  out.push('', `FRAMEWORKS (${state.frameworks.length})`);
  out.push(
    table(
      ['ID', 'NAME', 'ROLE', 'STATUS', 'TASKS', 'SHARE'],
      state.frameworks.map((f) => [short(f.id), f.name, f.role, f.status, String(f.taskCount), `${(f.dominantShare * 100).toFixed(1)}%`]),
    ),
  );
  const taskRows = (tasks: TaskStateJson[]) =>
    tasks.map((t) => [t.taskId, nameOf.get(t.frameworkId) ?? short(t.frameworkId), hostOf.get(t.agentId) ?? short(t.agentId), t.state, [t.reason, t.message].filter(Boolean).join(': ')]);
  out.push('', `TASKS (${state.tasks.length})`);
  out.push(table(['TASK', 'FRAMEWORK', 'AGENT', 'STATE', 'DETAIL'], taskRows(state.tasks)));
  if (all) {
    out.push('', `COMPLETED TASKS (${state.completedTasks.length})`);
    out.push(table(['TASK', 'FRAMEWORK', 'AGENT', 'STATE', 'DETAIL'], taskRows(state.completedTasks)));
    out.push('', `REMOVED FRAMEWORKS (${state.completedFrameworks.length})`);
    out.push(table(['ID', 'NAME', 'REASON'], state.completedFrameworks.map((f) => [short(f.id), f.name, f.reason])));
  }
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// agora app: the services framework's REST API from the command line

const DEFAULT_SERVICES_API = process.env.AGORA_SERVICES_API ?? 'http://127.0.0.1:5051';

interface AppFlags {
  api: string;
  json?: boolean;
  wait?: boolean;
  force?: boolean;
  to?: string;
}

const app = program.command('app').description('deploy and manage long-running services (the services framework\'s API)');

/** Adds the options every `agora app` command takes; `changes` adds --wait and --force. */
function appCommand(spec: string, description: string, changes = false): Command {
  const command = app.command(spec).description(description).option('--api <url>', 'the services API (env AGORA_SERVICES_API)', DEFAULT_SERVICES_API).option('--json', 'print JSON');
  if (changes) {
    command.option('--wait', 'follow the deployment to its end; exit non-zero if it fails or reverts').option('--force', 'take over from a deployment of the app in progress (it stops without revert)');
  }
  return command;
}

function servicesClient(flags: AppFlags): ServicesClient {
  return new ServicesClient(httpUrl(flags.api));
}

/** Runs an `agora app` action, turning the errors a person can fix into one clear message. */
function appAction<A extends unknown[]>(action: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (error) {
      if (error instanceof ServicesUnreachableError) {
        fail(`${error.message}; is it running? \`agora up\` starts one on 127.0.0.1:5051, or pass --api URL (or set AGORA_SERVICES_API)`);
      }
      if (error instanceof ServicesHttpError) {
        fail([error.message, ...error.problems.map((p) => `  ${p.field ? `${p.field}: ` : ''}${p.message}`)].join('\n'));
      }
      if (error instanceof AppDefinitionError) fail(error.message);
      throw error;
    }
  };
}

function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

function progressLine(d: DeploymentView): string {
  const p = d.progress;
  const old = d.from ? ` · old killed ${p.oldKilled}/${p.oldKilled + p.oldRunning}` : '';
  // `waiting` (why nothing launches yet, e.g. a dependency) is newer than some schedulers.
  const waiting = 'waiting' in d && typeof d.waiting === 'string' ? ` (${d.waiting})` : '';
  return `${d.state.padEnd(9)} new started ${p.newStarted}/${p.target} · healthy ${p.newHealthy}/${p.target} · ready ${p.newReady}/${p.target}${old}${waiting}`;
}

/** Prints the deployment just started; with --wait follows it and sets the exit code from its end. */
async function reportDeployment(client: ServicesClient, flags: AppFlags, deployment: DeploymentView, what: string): Promise<void> {
  if (!flags.wait) {
    if (flags.json) printJson(deployment);
    else process.stdout.write(`${what}: deployment ${deployment.id} to version ${deployment.to.version} (${deployment.to.instances} instances); follow it with --wait\n`);
    return;
  }
  if (!flags.json) process.stdout.write(`${what}: deployment ${deployment.id} to version ${deployment.to.version} (${deployment.to.instances} instances)\n`);
  const outcome = await followDeployment(client, deployment, (d) => {
    if (!flags.json) process.stdout.write(`  ${progressLine(d)}\n`);
  });
  if (flags.json) printJson(outcome);
  if (outcome.ok) {
    if (!flags.json) process.stdout.write(`deployed ${deployment.appId} version ${deployment.to.version}: ${deployment.to.instances} instance(s) healthy\n`);
    return;
  }
  const revert = outcome.revert ? `; reverting to version ${outcome.revert.to.version} (deployment ${outcome.revert.id})` : '';
  process.stderr.write(`agora: deployment ${deployment.id} of ${deployment.appId} failed: ${outcome.reason}${revert}\n`);
  process.exitCode = 1;
}

appCommand('deploy <file>', 'create or update an app from a YAML or JSON definition', true).action(
  appAction(async (file: string, flags: AppFlags) => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      fail(`cannot read ${file}: ${(error as Error).message}`);
    }
    const definition = parseAppDefinition(text, /\.json$/i.test(file) ? 'json' : undefined, file);
    const client = servicesClient(flags);
    const deployment = await client.putApp(definition.id, definition, { force: Boolean(flags.force) });
    await reportDeployment(client, flags, deployment, `deploying ${definition.id}`);
  }),
);

appCommand('list', 'list apps: instances, health, version, deployment in progress').action(
  appAction(async (flags: AppFlags) => {
    const apps = await servicesClient(flags).listApps();
    if (flags.json) return printJson(apps);
    const rows = apps.map((s) => [
      s.app.id,
      `${s.tasks.filter((t) => t.state === 'RUNNING').length}/${s.app.instances}`,
      String(s.tasks.filter((t) => t.healthy === true).length),
      s.version,
      s.deployment ? `${s.deployment.id} (${s.deployment.state})` : '-',
      s.app.servicePort === undefined ? '-' : String(s.app.servicePort),
    ]);
    process.stdout.write(`${table(['ID', 'RUNNING', 'HEALTHY', 'VERSION', 'DEPLOYMENT', 'SERVICE PORT'], rows)}\n`);
  }),
);

appCommand('status <id>', 'show an app: its version, deployment and tasks').action(
  appAction(async (id: string, flags: AppFlags) => {
    const status = await servicesClient(flags).getApp(id);
    if (!status) fail(`no app ${id}; \`agora app list\` shows the apps`);
    if (flags.json) return printJson(status);
    const out = [`APP ${status.app.id}  version ${status.version}  instances ${status.app.instances}${status.app.servicePort === undefined ? '' : `  service port ${status.app.servicePort}`}`];
    out.push(status.deployment ? `DEPLOYMENT ${status.deployment.id}  ${progressLine(status.deployment)}` : 'DEPLOYMENT none in progress');
    out.push('', `TASKS (${status.tasks.length})`);
    out.push(
      table(
        ['TASK', 'VERSION', 'STATE', 'HEALTH', 'HOST', 'PORTS'],
        status.tasks.map((t) => [t.taskId, t.version, t.state, t.healthy === undefined ? '-' : t.healthy ? 'healthy' : 'unhealthy', t.host, t.ports.join(',') || '-']),
      ),
    );
    process.stdout.write(`${out.join('\n')}\n`);
  }),
);

appCommand('scale <id> <instances>', 'change the number of instances', true).action(
  appAction(async (id: string, instances: string, flags: AppFlags) => {
    if (!/^\d+$/.test(instances)) fail(`instances must be a whole number, 0 or more (got ${instances})`);
    const client = servicesClient(flags);
    await reportDeployment(client, flags, await client.scale(id, Number(instances), { force: Boolean(flags.force) }), `scaling ${id} to ${instances}`);
  }),
);

appCommand('restart <id>', 'replace every instance with a fresh one, rolling', true).action(
  appAction(async (id: string, flags: AppFlags) => {
    const client = servicesClient(flags);
    await reportDeployment(client, flags, await client.restart(id, { force: Boolean(flags.force) }), `restarting ${id}`);
  }),
);

appCommand('rollback <id>', 'deploy an earlier version again (the previous one unless --to)', true)
  .option('--to <version>', 'the version to go back to (see `agora app versions ID`)')
  .action(
    appAction(async (id: string, flags: AppFlags) => {
      const client = servicesClient(flags);
      await reportDeployment(client, flags, await client.rollback(id, flags.to, { force: Boolean(flags.force) }), `rolling ${id} back`);
    }),
  );

appCommand('rm <id>', 'stop every instance and delete the app', true).action(
  appAction(async (id: string, flags: AppFlags) => {
    const client = servicesClient(flags);
    await reportDeployment(client, flags, await client.deleteApp(id, { force: Boolean(flags.force) }), `removing ${id}`);
  }),
);

appCommand('cancel <id>', 'cancel the app\'s deployment in progress: it reverts to the version before (Marathon)')
  .option('--force', 'stop the deployment where it is, without reverting')
  .option('--wait', 'follow the revert to its end')
  .action(
    appAction(async (id: string, flags: AppFlags) => {
      const client = servicesClient(flags);
      const status = await client.getApp(id);
      if (!status) fail(`no app ${id}; \`agora app list\` shows the apps`);
      const deployment = status.deployment;
      if (!deployment) fail(`app ${id} has no deployment in progress; nothing to cancel`);
      await client.cancelDeployment(deployment.id, { force: Boolean(flags.force) });
      // The revert is a deployment of its own, made by the cancel; it may even be done already.
      const revert = flags.force ? undefined : (await client.listDeployments()).find((d) => d.revertOf === deployment.id);
      if (revert) {
        if (!flags.json || !flags.wait) {
          if (flags.json) return printJson({ cancelled: deployment.id, revert });
          process.stdout.write(`cancelled deployment ${deployment.id} of ${id}; reverting to version ${revert.to.version} (deployment ${revert.id})\n`);
        }
        if (flags.wait) await reportDeployment(client, { ...flags, wait: true }, revert, `reverting ${id}`);
        return;
      }
      if (flags.json) return printJson({ cancelled: deployment.id });
      process.stdout.write(`cancelled deployment ${deployment.id} of ${id}${flags.force ? ' (stopped where it was, no revert)' : ''}\n`);
    }),
  );

appCommand('versions <id>', 'list an app\'s versions, newest last').action(
  appAction(async (id: string, flags: AppFlags) => {
    const versions = await servicesClient(flags).versions(id);
    if (flags.json) return printJson(versions);
    const rows = versions.map((v) => [v.version, new Date(v.createdAtMs).toISOString(), String(v.app.instances), v.app.cmd ?? v.app.args?.join(' ') ?? '-']);
    process.stdout.write(`${table(['VERSION', 'CREATED', 'INSTANCES', 'COMMAND'], rows)}\n`);
  }),
);

appCommand('endpoints <id>', 'host:port of the app\'s healthy, ready instances').action(
  appAction(async (id: string, flags: AppFlags) => {
    const endpoints = await servicesClient(flags).endpoints(id);
    if (flags.json) return printJson(endpoints);
    process.stdout.write(`${table(['TASK', 'ADDRESS', 'PORTS'], endpoints.map((e) => [e.taskId, `${e.host}:${e.port}`, e.ports.join(',')]))}\n`);
  }),
);

// ---------------------------------------------------------------------------------------------
// agora job: the batch framework's REST API from the command line (frameworks/batch/cli)

registerJobCommands(program, process.env.AGORA_BATCH_API ?? 'http://127.0.0.1:5052');

function onShutdown(log: Logger, stop: () => Promise<unknown>): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) process.exit(130);
    stopping = true;
    log.info(`${signal}: stopping`);
    stop().then(
      () => process.exit(0),
      (error: Error) => {
        log.error(`error while stopping: ${error.message}`);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => handler('SIGINT'));
  process.once('SIGTERM', () => handler('SIGTERM'));
}

await program.parseAsync(process.argv);
