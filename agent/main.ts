/**
 * Turns command-line flags into a running agent. `bin/agora.ts agent` calls `runAgent`; this file
 * can also be run on its own: `npx tsx agent/main.ts --master ws://127.0.0.1:5050 --work-dir DIR`.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { isIP } from 'node:net';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { parseAttributes, parseResources, ResourceParseError, type Resources } from '../master/protocol/resources.ts';
import { Agent } from './agent.ts';
import { CompositeContainerizer, type CompositeParts, type ContainerizerKind } from './containerizers/composite.ts';
import { connectDocker, DockerContainerizer, DockerUnavailableError } from './containerizers/docker.ts';
import { ProcessContainerizer } from './containerizers/process.ts';

export interface AgentFlags {
  master: string;
  /** Text form, e.g. "cpus:4;mem:8192;ports:[31000-32000]"; each name given replaces the detected value. */
  resources?: string;
  /** Text form, e.g. "rack:r1;zone:a". */
  attributes?: string;
  /** @default '.agora/agent' */
  workDir?: string;
  hostname?: string;
  /**
   * Comma-separated: "process", "docker" or both. Unset: process, plus docker when the engine
   * answers at start. Named explicitly, docker must answer or the agent does not start.
   */
  containerizers?: string;
  /** The address bridge-mode port mappings bind to on this host. @default '127.0.0.1' */
  advertiseIp?: string;
  /** Comma-separated host paths tasks may mount as Docker volumes (and what is under them). @default none */
  dockerVolumes?: string;
  /** Seconds an ended container is kept before it is removed. @default 3600 */
  dockerRetention?: string | number;
  logger?: Logger;
  /**
   * Stop the agent (leaving its tasks running, like Mesos) on SIGINT/SIGTERM. The process then exits
   * once nothing else keeps it alive. @default true
   */
  handleSignals?: boolean;
}

export class AgentFlagError extends Error {
  override name = 'AgentFlagError';
}

function parse<T>(flag: string, text: string | undefined, parser: (text: string) => T): T | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  try {
    return parser(text);
  } catch (error) {
    if (error instanceof ResourceParseError) throw new AgentFlagError(`--${flag} "${text}": ${error.message}`, { cause: error });
    throw error;
  }
}

export async function runAgent(flags: AgentFlags): Promise<Agent> {
  if (!flags.master) throw new AgentFlagError('--master is required, e.g. --master ws://127.0.0.1:5050');
  if (!/^wss?:\/\//.test(flags.master)) throw new AgentFlagError(`--master "${flags.master}" must be a ws:// or wss:// URL, e.g. ws://127.0.0.1:5050`);
  const resources: Resources | undefined = parse('resources', flags.resources, parseResources);
  const attributes = parse('attributes', flags.attributes, parseAttributes);
  const workDir = flags.workDir ?? '.agora/agent';
  const log = flags.logger ?? pino({ name: 'agent', level: process.env.AGORA_LOG_LEVEL ?? 'info' }, pino.destination({ dest: 2, sync: true }));
  const containerizer = await containerizersFor(flags, workDir, log);
  const agent = new Agent({
    master: flags.master,
    workDir,
    containerizer,
    ...(resources ? { resources } : {}),
    ...(attributes ? { attributes } : {}),
    ...(flags.hostname ? { hostname: flags.hostname } : {}),
    ...(flags.logger ? { logger: flags.logger } : {}),
  });
  await agent.start();
  if (flags.handleSignals !== false) {
    // Deferred, so a handler the caller installed for the same signal (e.g. `agora up`, which stops
    // with killTasks) runs first; stop() then waits for that.
    const stop = () => setImmediate(() => void agent.stop());
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  }
  return agent;
}

const KINDS: readonly ContainerizerKind[] = ['process', 'docker'];

/** Builds the containerizers the flags ask for and logs which are active and why. */
async function containerizersFor(flags: AgentFlags, workDir: string, log: Logger): Promise<CompositeContainerizer> {
  let kinds: ContainerizerKind[];
  const explicit = flags.containerizers !== undefined && flags.containerizers.trim() !== '';
  if (explicit) {
    const names = flags.containerizers!.split(',').map((n) => n.trim()).filter(Boolean);
    const unknown = names.filter((n) => !(KINDS as readonly string[]).includes(n));
    if (unknown.length > 0 || names.length === 0) throw new AgentFlagError(`--containerizers "${flags.containerizers}": each must be one of ${KINDS.join(', ')}`);
    kinds = [...new Set(names as ContainerizerKind[])];
  } else kinds = ['process', 'docker'];

  const advertiseIp = flags.advertiseIp ?? '127.0.0.1';
  if (isIP(advertiseIp) === 0) throw new AgentFlagError(`--advertise-ip "${advertiseIp}" must be an IP address, e.g. 127.0.0.1`);
  const allowedVolumes = (flags.dockerVolumes ?? '').split(',').map((p) => p.trim()).filter(Boolean);
  for (const p of allowedVolumes) if (!path.isAbsolute(p)) throw new AgentFlagError(`--docker-volumes: "${p}" must be an absolute path`);
  const retentionSeconds = Number(flags.dockerRetention ?? 3600);
  if (!Number.isFinite(retentionSeconds) || retentionSeconds < 0) throw new AgentFlagError(`--docker-retention "${flags.dockerRetention}" must be a number of seconds`);

  const parts: CompositeParts = { missing: {} };
  const why: string[] = [];
  if (kinds.includes('process')) {
    parts.process = new ProcessContainerizer();
    why.push('process (tasks without a DOCKER container)');
  } else parts.missing!.process = 'not in --containerizers';
  if (kinds.includes('docker')) {
    try {
      const { docker, version } = await connectDocker();
      parts.docker = new DockerContainerizer({ docker, version, workDir: path.resolve(workDir), advertiseIp, allowedVolumes, retentionMs: retentionSeconds * 1000 });
      why.push(`docker (Docker Engine ${version.Version}, API ${version.ApiVersion} pinned; volumes allowed under: ${allowedVolumes.join(', ') || 'none'}; ports bound on ${advertiseIp})`);
    } catch (error) {
      if (!(error instanceof DockerUnavailableError)) throw error;
      if (explicit) throw new AgentFlagError(`--containerizers ${flags.containerizers}: ${error.message}`, { cause: error });
      parts.missing!.docker = error.message;
      log.warn(`the docker containerizer is off: ${error.message}`);
    }
  } else parts.missing!.docker = 'not in --containerizers';
  log.info({ containerizers: why.map((w) => w.split(' ')[0]) }, `containerizers: ${why.join('; ')}`);
  return new CompositeContainerizer(parts);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: {
      master: { type: 'string' },
      resources: { type: 'string' },
      attributes: { type: 'string' },
      'work-dir': { type: 'string' },
      hostname: { type: 'string' },
      containerizers: { type: 'string' },
      'advertise-ip': { type: 'string' },
      'docker-volumes': { type: 'string' },
      'docker-retention': { type: 'string' },
    },
  });
  runAgent({
    master: values.master ?? '',
    ...(values.resources !== undefined ? { resources: values.resources } : {}),
    ...(values.attributes !== undefined ? { attributes: values.attributes } : {}),
    ...(values['work-dir'] !== undefined ? { workDir: values['work-dir'] } : {}),
    ...(values.hostname !== undefined ? { hostname: values.hostname } : {}),
    ...(values.containerizers !== undefined ? { containerizers: values.containerizers } : {}),
    ...(values['advertise-ip'] !== undefined ? { advertiseIp: values['advertise-ip'] } : {}),
    ...(values['docker-volumes'] !== undefined ? { dockerVolumes: values['docker-volumes'] } : {}),
    ...(values['docker-retention'] !== undefined ? { dockerRetention: values['docker-retention'] } : {}),
  }).catch((error: Error) => {
    process.stderr.write(`agent: ${error.message}\n`);
    process.exit(2);
  });
}
