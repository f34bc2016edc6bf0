#!/usr/bin/env -S npx tsx
/**
 * agora — one CLI for the whole system: run a master or an agent, a dev cluster, and look at state.
 * Run it as `npx tsx bin/agora.ts …`, `npm run agora -- …`, or `agora …` after `npm link`.
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { pino, type Logger } from 'pino';
import { runAgent } from '../agent/main.ts';
import { runMaster } from '../master/main.ts';
import type { MasterStateJson, TaskStateJson } from '../master/cluster/state-json.ts';
import { formatResources, scalar, type Resources } from '../master/protocol/resources.ts';

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
  .description('run a dev cluster in one process: a master and one agent with this machine\'s resources')
  .option('--port <port>', 'master port', '5050')
  .option('--dir <dir>', 'state directory', '.agora')
  .option('--containerizers <list>', 'process, docker or both (default: process, plus docker when the engine answers)')
  .option('--advertise-ip <ip>', 'address Docker bridge port mappings bind to', '127.0.0.1')
  .option('--docker-volumes <paths>', 'host paths tasks may mount as Docker volumes, e.g. "/data,/srv"')
  .option('--docker-retention <seconds>', 'keep ended containers this long before removing them', '3600')
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
    log.info(`dev cluster up: master ${server.url}, one agent (${formatResources(agent.resources)}); state in ${dir}`);
    log.info(`try: npx tsx examples/hello/main.ts --master ${server.wsUrl} --tasks 5   |   npm run agora -- state`);
    log.info('press Ctrl-C to stop');
    // A dev cluster owns its tasks: stopping it stops them.
    onShutdown(log, async () => {
      await agent.stop({ killTasks: true });
      await server.close();
    });
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
