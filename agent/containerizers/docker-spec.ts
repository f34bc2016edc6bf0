/**
 * Turns a task into the Docker Engine's container-create body: command, environment, labels,
 * limits, hardening, networking and volumes. Pure: no engine, no timers; the only I/O is resolving
 * symlinks of volume host paths (so a link inside an allowed directory cannot reach the Docker
 * socket or leave the allow-list).
 *
 * Security defaults (Mesos' Docker containerizer runs whatever the image says; we do not):
 *   never privileged; CapDrop ALL, then only DEFAULT_CAPABILITIES back; no-new-privileges;
 *   a pids limit; memory = memory+swap (no swap beyond the limit); volumes only under the agent's
 *   allow-list and never the Docker socket or a directory holding it.
 */
import { realpathSync } from 'node:fs';
import path from 'node:path';
import type Docker from 'dockerode';
import { rangesOf, scalar } from '../../master/protocol/resources.ts';
import type { ContainerInfo, TaskInfo } from '../../master/protocol/messages.ts';
import { portEnvironment } from './process.ts';

/** Capabilities a task keeps (all others are dropped): enough to run ordinary images' entrypoints. */
export const DEFAULT_CAPABILITIES = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'SETUID', 'SETGID', 'NET_BIND_SERVICE', 'KILL'] as const;
/** @default for DockerContainerizerOptions.pidsLimit */
export const DEFAULT_PIDS_LIMIT = 1024;
/** Where the task's sandbox is mounted inside its container (Mesos: /mnt/mesos/sandbox). */
export const CONTAINER_SANDBOX = '/mnt/agora/sandbox';

export const Label = {
  agentId: 'agora.agent-id',
  frameworkId: 'agora.framework-id',
  taskId: 'agora.task-id',
  /** The agent's work dir: identifies the agent's containers before it has an id. */
  workDir: 'agora.work-dir',
} as const;

export interface ContainerSpecOptions {
  /** The agent's work dir (absolute). */
  workDir: string;
  /** Undefined until the agent first registers. */
  agentId: string | undefined;
  /** Host address bridge-mode port mappings bind to. */
  advertiseIp: string;
  /** Absolute host paths under which task volumes may live. */
  allowedVolumes: readonly string[];
  /** Paths of the Docker socket on this host (never mountable). */
  dockerSockets: readonly string[];
  pidsLimit: number;
  /** Run docker-init as PID 1 so SIGTERM reaches the task's command and zombies are reaped. */
  init: boolean;
}

export class ContainerSpecError extends Error {
  override name = 'ContainerSpecError';
}

function realOrResolved(p: string): string {
  const resolved = path.resolve(p);
  try {
    return realpathSync(resolved);
  } catch {
    // Not there (yet): Docker would create it as a directory; judge the path as written.
    return resolved;
  }
}

function isUnder(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent.endsWith('/') ? parent : `${parent}/`);
}

/** Checks one volume against the allow-list and the Docker socket; returns the bind string. */
export function checkVolume(volume: NonNullable<ContainerInfo['volumes']>[number], allowed: readonly string[], dockerSockets: readonly string[]): string {
  const written = path.resolve(volume.hostPath);
  const real = realOrResolved(volume.hostPath);
  const sockets = dockerSockets.flatMap((s) => [path.resolve(s), realOrResolved(s)]);
  for (const candidate of [written, real]) {
    const socket = sockets.find((s) => isUnder(s, candidate));
    if (socket) throw new ContainerSpecError(`volume ${volume.hostPath} is or contains the Docker socket (${socket}); tasks can never mount it`);
  }
  const roots = allowed.map((a) => [path.resolve(a), realOrResolved(a)]);
  const permitted = (p: string) => roots.some((pair) => pair.some((root) => isUnder(p, root)));
  if (!permitted(written) || !permitted(real)) {
    const list = allowed.length > 0 ? allowed.join(', ') : 'none (start the agent with --docker-volumes /data,...)';
    throw new ContainerSpecError(`volume ${volume.hostPath}${real !== written ? ` (→ ${real})` : ''} is not under a path this agent allows for volumes: ${list}`);
  }
  if (!volume.containerPath.startsWith('/') || path.posix.normalize(volume.containerPath) === '/') {
    throw new ContainerSpecError(`volume container path ${volume.containerPath} must be an absolute path other than /`);
  }
  return `${real}:${path.posix.normalize(volume.containerPath)}:${volume.mode === 'RW' ? 'rw' : 'ro'}`;
}

/** The task's host ports, in the order of its `ports` resource. */
function taskPorts(task: TaskInfo): number[] {
  const ports: number[] = [];
  for (const [begin, end] of rangesOf(task.resources, 'ports')) for (let p = begin; p <= end; p++) ports.push(p);
  return ports;
}

/** containerPort → host port: explicit ones must be the task's; the rest take its unused ports in order. */
export function assignPorts(task: TaskInfo, mappings: NonNullable<ContainerInfo['docker']['portMappings']>): Array<{ containerPort: number; hostPort: number; protocol: 'tcp' | 'udp' }> {
  const ports = taskPorts(task);
  const owned = new Set(ports);
  const taken = new Set<number>();
  for (const m of mappings) {
    if (!m.hostPort) continue;
    if (!owned.has(m.hostPort)) throw new ContainerSpecError(`port mapping ${m.containerPort} → ${m.hostPort}: host port ${m.hostPort} is not in the task's ports resource (${ports.length > 0 ? ports.join(',') : 'none'})`);
    if (taken.has(m.hostPort)) throw new ContainerSpecError(`host port ${m.hostPort} is mapped twice`);
    taken.add(m.hostPort);
  }
  const free = ports.filter((p) => !taken.has(p));
  return mappings.map((m) => {
    let hostPort = m.hostPort || undefined;
    if (hostPort === undefined) {
      hostPort = free.shift();
      if (hostPort === undefined) throw new ContainerSpecError(`port mapping for container port ${m.containerPort} needs a host port, but the task's ports resource has none left (give the task one port per mapping)`);
    }
    return { containerPort: m.containerPort, hostPort, protocol: m.protocol ?? 'tcp' };
  });
}

/** The create body for a DOCKER task. Throws ContainerSpecError for anything the agent refuses. */
export function containerCreateOptions(frameworkId: string, task: TaskInfo, sandbox: string, options: ContainerSpecOptions): Docker.ContainerCreateOptions {
  const info = task.container;
  if (!info || info.type !== 'DOCKER') throw new ContainerSpecError('the task has no DOCKER container info');
  const docker = info.docker;
  const command = task.command;

  let cmd: string[];
  let entrypoint: string[] | undefined = docker.entrypoint;
  if (command.shell !== false) {
    // Mesos: a shell command runs as `/bin/sh -c value`, replacing the image's entrypoint.
    cmd = [command.value];
    entrypoint = docker.entrypoint ?? ['/bin/sh', '-c'];
  } else {
    cmd = [command.value, ...(command.arguments ?? [])];
  }

  const env: Record<string, string> = {
    ...command.environment,
    ...portEnvironment(task),
    AGORA_TASK_ID: task.taskId,
    AGORA_FRAMEWORK_ID: frameworkId,
    AGORA_SANDBOX: CONTAINER_SANDBOX,
  };

  const labels: Record<string, string> = {
    ...task.labels,
    [Label.frameworkId]: frameworkId,
    [Label.taskId]: task.taskId,
    [Label.workDir]: options.workDir,
    ...(options.agentId ? { [Label.agentId]: options.agentId } : {}),
  };

  const network = docker.network ?? 'HOST';
  const mappings = docker.portMappings ?? [];
  if (network === 'HOST' && mappings.length > 0) throw new ContainerSpecError('portMappings need network BRIDGE (with HOST networking the task binds its ports itself; see PORT0..)');
  const exposed: Record<string, object> = {};
  const bindings: Record<string, Array<{ HostIp: string; HostPort: string }>> = {};
  for (const m of network === 'BRIDGE' ? assignPorts(task, mappings) : []) {
    const key = `${m.containerPort}/${m.protocol}`;
    exposed[key] = {};
    (bindings[key] ??= []).push({ HostIp: options.advertiseIp, HostPort: String(m.hostPort) });
  }

  const binds = [`${sandbox}:${CONTAINER_SANDBOX}:rw`, ...(info.volumes ?? []).map((v) => checkVolume(v, options.allowedVolumes, options.dockerSockets))];

  const cpus = scalar(task.resources, 'cpus');
  const memMb = scalar(task.resources, 'mem');
  if (memMb > 0 && memMb < 6) throw new ContainerSpecError(`mem ${memMb} MB is below Docker's minimum of 6 MB`);
  const memBytes = Math.round(memMb * 1024 * 1024);

  return {
    Image: docker.image,
    Cmd: cmd,
    ...(entrypoint ? { Entrypoint: entrypoint } : {}),
    Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
    Labels: labels,
    WorkingDir: CONTAINER_SANDBOX,
    ...(Object.keys(exposed).length > 0 ? { ExposedPorts: exposed } : {}),
    HostConfig: {
      NetworkMode: network === 'HOST' ? 'host' : 'bridge',
      ...(Object.keys(bindings).length > 0 ? { PortBindings: bindings } : {}),
      Binds: binds,
      Privileged: false,
      CapDrop: ['ALL'],
      CapAdd: [...DEFAULT_CAPABILITIES],
      SecurityOpt: ['no-new-privileges'],
      ReadonlyRootfs: docker.readOnlyRootFilesystem === true,
      PidsLimit: options.pidsLimit,
      Init: options.init,
      ...(cpus > 0 ? { NanoCpus: Math.round(cpus * 1e9), CpuShares: Math.max(2, Math.round(cpus * 1024)) } : {}),
      ...(memBytes > 0 ? { Memory: memBytes, MemorySwap: memBytes } : {}),
      // The agent restarts nothing itself: a task that ends is reported, its framework decides.
      RestartPolicy: { Name: 'no' },
    },
  };
}
