/**
 * The Docker containerizer: each DOCKER task is one container on the local Docker Engine
 * (dockerode), with Mesos' Docker containerizer semantics and safer defaults (see docker-spec.ts).
 *
 * ```ts
 * const { docker, version } = await connectDocker();           // pins the engine's API version
 * const containerizer = new DockerContainerizer({ docker, version, workDir: '.agora/agent' });
 * const agent = new Agent({ master, workDir: '.agora/agent', containerizer });
 * ```
 *
 * Per task: image (local as is, else pulled with progress as STARTING updates) → create (labels
 * agora.*) → wait registered → start → RUNNING (checkpoint: the container id) → stdout/stderr
 * demultiplexed into the sandbox files → exit: 0 FINISHED, else FAILED with the code, OOM-killed
 * FAILED with CONTAINER_LIMITATION_MEMORY. Kill: SIGTERM, SIGKILL after the grace period, KILLED.
 * Ended containers are removed after `retentionMs`.
 *
 * After an agent restart, recover() re-attaches to running containers (logs from now on) and
 * reports those that ended meanwhile with their real exit code; containers labelled with this
 * agent's work dir that no checkpoint knows are removed.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import path from 'node:path';
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import Docker from 'dockerode';
import { isTerminal as isTerminalState, Reason } from '../../master/protocol/messages.ts';
import { CheckpointStore } from '../checkpoint.ts';
import type { Container, ContainerStatus, Containerizer, LaunchSpec, LimitsInfo, ReportStatus } from './containerizer.ts';
import { containerCreateOptions, ContainerSpecError, DEFAULT_CAPABILITIES, DEFAULT_PIDS_LIMIT, Label, type ContainerSpecOptions } from './docker-spec.ts';

export interface DockerContainerizerOptions {
  /** A client pinned to the engine's API version (connectDocker). */
  docker: Docker;
  /** What the engine answered at start (for the startup log). */
  version?: Docker.DockerVersion;
  /** The agent's work dir: container labels, agent id lookup. */
  workDir: string;
  /** Host address bridge-mode port mappings bind to. @default '127.0.0.1' */
  advertiseIp?: string;
  /** Host paths (and everything under them) tasks may mount as volumes. @default [] */
  allowedVolumes?: string[];
  /** @default 1024 */
  pidsLimit?: number;
  /** Run docker-init as the container's PID 1, so SIGTERM reaches the task's command. @default true */
  init?: boolean;
  /** Ended containers are removed this long after they end. @default 3_600_000 (1 h) */
  retentionMs?: number;
  /** At most one STARTING "pulling image … n%" update per task this often. @default 1000 */
  pullProgressIntervalMs?: number;
  /** Unknown containers of this work dir are looked for this long after init (recover() runs first). @default 1000 */
  orphanSweepDelayMs?: number;
}

/** What the agent checkpoints for a Docker container. */
export interface DockerCheckpoint {
  containerId: string;
}

export class DockerUnavailableError extends Error {
  override name = 'DockerUnavailableError';
}

/** Where the engine listens, for messages and the never-mount list. */
function socketPath(options: Docker.DockerOptions | undefined): string {
  const host = process.env.DOCKER_HOST;
  if (options?.socketPath) return options.socketPath;
  if (host?.startsWith('unix://')) return host.slice('unix://'.length);
  return host ?? '/var/run/docker.sock';
}

/**
 * Asks the engine for its version and returns a client pinned to its API version (so a newer
 * dockerode never speaks an API the engine lacks). Throws DockerUnavailableError saying why not.
 */
export async function connectDocker(options?: Docker.DockerOptions, timeoutMs = 5000): Promise<{ docker: Docker; version: Docker.DockerVersion }> {
  const probe = new Docker({ ...options, timeout: timeoutMs });
  let version: Docker.DockerVersion;
  try {
    version = await probe.version();
  } catch (error) {
    throw new DockerUnavailableError(`cannot reach the Docker engine at ${socketPath(options)}: ${(error as Error).message}`, { cause: error });
  }
  return { docker: new Docker({ ...options, version: `v${version.ApiVersion}` }), version };
}

/** The engine's own words from a dockerode error ("(HTTP code 404) … - message" → "message"). */
export function engineMessage(error: unknown): string {
  const e = error as { json?: { message?: unknown } | null; message?: string; statusCode?: number };
  if (e.json && typeof e.json.message === 'string') return e.json.message;
  return e.message ?? String(error);
}

function statusCodeOf(error: unknown): number | undefined {
  return (error as { statusCode?: number }).statusCode;
}

function readAll(stream: Readable): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    stream.once('error', reject);
  });
}

interface WaitResult {
  StatusCode: number;
  Error?: { Message?: string } | null;
}

/** docker-safe name part: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`. */
function containerName(taskId: string): string {
  const safe = taskId.replace(/[^a-zA-Z0-9_.-]/g, '_').slice(0, 100);
  return `agora-${safe}-${Math.random().toString(36).slice(2, 8)}`;
}

interface PullInProgress {
  done: Promise<void>;
  listeners: Set<(percent: number | undefined) => void>;
}

export class DockerContainerizer implements Containerizer {
  readonly name = 'docker';
  readonly docker: Docker;
  private readonly workDir: string;
  private readonly specOptions: Omit<ContainerSpecOptions, 'agentId'>;
  private readonly retentionMs: number;
  private readonly pullProgressIntervalMs: number;
  private readonly agentIds: CheckpointStore;
  private agentId: string | undefined;
  /** Containers whose outcome is still to be read: the sweeps never touch them. */
  private readonly active = new Set<string>();
  private readonly pulls = new Map<string, PullInProgress>();
  /** Image inspects in flight, shared by the launches that arrive while one runs. */
  private readonly inspects = new Map<string, Promise<boolean>>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private initAtMs = 0;
  /** Creates in flight, and how many were ever begun: a sweep must not take a fresh one for an orphan. */
  private creating = 0;
  private createsBegun = 0;

  constructor(private readonly options: DockerContainerizerOptions) {
    this.docker = options.docker;
    this.workDir = path.resolve(options.workDir);
    this.retentionMs = options.retentionMs ?? 3_600_000;
    this.pullProgressIntervalMs = options.pullProgressIntervalMs ?? 1000;
    const engineSocket = (this.docker.modem as { socketPath?: unknown }).socketPath;
    this.specOptions = {
      workDir: this.workDir,
      advertiseIp: options.advertiseIp ?? '127.0.0.1',
      allowedVolumes: (options.allowedVolumes ?? []).map((p) => path.resolve(p)),
      dockerSockets: [...new Set([typeof engineSocket === 'string' ? engineSocket : socketPath(undefined), '/var/run/docker.sock', '/run/docker.sock'])],
      pidsLimit: options.pidsLimit ?? DEFAULT_PIDS_LIMIT,
      init: options.init ?? true,
    };
    this.agentIds = new CheckpointStore(path.join(this.workDir, 'meta'));
  }

  async init(): Promise<LimitsInfo> {
    this.initAtMs = Date.now();
    const version = this.options.version ?? (await this.docker.version());
    // recover() is called for every checkpointed task right after init; the sweep must come later.
    this.later(() => this.sweep(), this.options.orphanSweepDelayMs ?? 1000);
    const every = Math.min(Math.max(this.retentionMs / 2, 1000), 10 * 60_000);
    const interval = setInterval(() => void this.sweep(), every);
    interval.unref();
    this.timers.add(interval);
    return {
      enforced: true,
      detail: `Docker Engine ${version.Version} (API ${version.ApiVersion}): NanoCpus from cpus, Memory = MemorySwap from mem, PidsLimit ${this.specOptions.pidsLimit}; CapDrop ALL + ${DEFAULT_CAPABILITIES.join(',')}, no-new-privileges`,
    };
  }

  /** Stops the containerizer's timers (tests; an agent process just exits). Containers keep running. */
  close(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  private later(run: () => unknown, ms: number): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      void run();
    }, ms);
    timer.unref();
    this.timers.add(timer);
  }

  private currentAgentId(): string | undefined {
    // Unknown at the first launch after a fresh start: the agent writes it when it registers.
    this.agentId ??= this.agentIds.readAgentId();
    return this.agentId;
  }

  launch(spec: LaunchSpec, report: ReportStatus): Container {
    const container = new DockerContainer(this.docker, report, (id) => this.settled(id));
    void this.run(spec, container);
    return container;
  }

  /**
   * The create body this agent sends for a task (without the container's name). Throws
   * ContainerSpecError for anything the agent refuses. Public so a benchmark can ask the engine for
   * exactly what the agent would.
   */
  createOptions(frameworkId: string, task: LaunchSpec['task'], sandbox: string): Docker.ContainerCreateOptions {
    return containerCreateOptions(frameworkId, task, sandbox, { ...this.specOptions, agentId: this.currentAgentId() });
  }

  private async run(spec: LaunchSpec, container: DockerContainer): Promise<void> {
    const { task, frameworkId, sandbox } = spec;
    let create: Docker.ContainerCreateOptions;
    try {
      create = this.createOptions(frameworkId, task, sandbox);
    } catch (error) {
      if (!(error instanceof ContainerSpecError)) throw error;
      container.failed(Reason.LAUNCH_FAILED, error.message);
      return;
    }
    const image = create.Image!;
    try {
      await this.ensureImage(image, task.container?.docker.forcePull === true, container);
    } catch (error) {
      container.failed(Reason.CONTAINER_IMAGE_PULL_FAILED, `cannot pull image ${image}: ${engineMessage(error)}`);
      return;
    }
    if (container.killedBeforeStart()) return;

    let id: string;
    this.creating++;
    this.createsBegun++;
    try {
      id = (await this.docker.createContainer({ ...create, name: containerName(task.taskId) })).id;
    } catch (error) {
      container.failed(Reason.LAUNCH_FAILED, `cannot create the container from ${image}: ${engineMessage(error)}`);
      return;
    } finally {
      this.creating--;
    }
    this.active.add(id);
    container.created(id);
    if (container.killedBeforeStart()) {
      this.settled(id);
      return;
    }
    try {
      // Wait registered before start (the engine answers the headers once it waits), so an exit
      // however quick is never missed: 'next-exit' on a created container waits for its run.
      const { exited } = await this.waitRegistered(id, 'next-exit');
      await this.docker.getContainer(id).start();
      container.started(sandbox, exited);
    } catch (error) {
      container.failed(Reason.LAUNCH_FAILED, `cannot start container ${id.slice(0, 12)}: ${engineMessage(error)}`);
      // Removed at once: that also ends the pending wait's connection.
      this.active.delete(id);
      void this.remove(id);
    }
  }

  /** A local image is used as is (unless forcePull); otherwise pulled, one pull per image at a time. */
  private async ensureImage(image: string, forcePull: boolean, container: DockerContainer): Promise<void> {
    if (!forcePull && (await this.imageIsLocal(image))) return;
    let pull = this.pulls.get(image);
    if (!pull) {
      const listeners = new Set<(percent: number | undefined) => void>();
      const done = this.pull(image, (percent) => listeners.forEach((l) => l(percent))).finally(() => this.pulls.delete(image));
      pull = { done, listeners };
      this.pulls.set(image, pull);
    }
    let lastReportMs = 0;
    const progress = (percent: number | undefined) => {
      const now = Date.now();
      if (now - lastReportMs < this.pullProgressIntervalMs) return;
      lastReportMs = now;
      container.starting(`pulling image ${image}${percent !== undefined ? ` … ${percent}%` : ''}`);
    };
    progress(undefined);
    pull.listeners.add(progress);
    try {
      await pull.done;
    } finally {
      pull.listeners.delete(progress);
    }
  }

  /**
   * Whether the engine has the image (404 → false; other errors throw). Launches of one image that
   * arrive together share one inspect: a deployment's 50 instances ask the engine once, not 50
   * times, while the engine is busiest with their creates.
   */
  private imageIsLocal(image: string): Promise<boolean> {
    let inspect = this.inspects.get(image);
    if (!inspect) {
      inspect = this.docker
        .getImage(image)
        .inspect()
        .then(
          () => true,
          (error: unknown) => {
            if (statusCodeOf(error) === 404) return false;
            throw error;
          },
        )
        .finally(() => this.inspects.delete(image));
      this.inspects.set(image, inspect);
    }
    return inspect;
  }

  /** Pulls with progress; the engine reports failures as ordinary progress events with `error`. */
  private async pull(image: string, onPercent: (percent: number | undefined) => void): Promise<void> {
    const stream = (await this.docker.pull(image)) as Readable;
    const layers = new Map<string, { current: number; total: number }>();
    await new Promise<void>((resolve, reject) => {
      let failure: string | undefined;
      this.docker.modem.followProgress(
        stream,
        (error: Error | null, output: Array<{ error?: string }> | undefined) => {
          failure ??= error ? engineMessage(error) : output?.find((e) => e.error)?.error;
          if (failure) reject(new Error(failure));
          else resolve();
        },
        (event: { id?: string; error?: string; errorDetail?: { message?: string }; progressDetail?: { current?: number; total?: number } }) => {
          if (event.error || event.errorDetail) {
            failure ??= event.error ?? event.errorDetail?.message;
            return;
          }
          const detail = event.progressDetail;
          if (event.id && detail?.total) layers.set(event.id, { current: detail.current ?? 0, total: detail.total });
          let current = 0;
          let total = 0;
          for (const layer of layers.values()) {
            current += layer.current;
            total += layer.total;
          }
          onPercent(total > 0 ? Math.min(100, Math.floor((current / total) * 100)) : undefined);
        },
      );
    });
  }

  /**
   * POST /containers/{id}/wait, resolved once the engine has sent the headers (it does so after it
   * registered the wait, API ≥ 1.30); the inner promise resolves with the exit.
   */
  private waitRegistered(id: string, condition: 'next-exit' | 'not-running'): Promise<{ exited: Promise<WaitResult> }> {
    return new Promise((resolve, reject) => {
      this.docker.modem.dial(
        {
          path: `/containers/${id}/wait?`,
          method: 'POST',
          options: { condition },
          isStream: true,
          statusCodes: { 200: true, 400: 'bad parameter', 404: 'no such container', 500: 'server error' },
        },
        (error: Error | null, response: unknown) => {
          if (error || !response) {
            reject(error ?? new Error('no response to wait'));
            return;
          }
          // Wrapped: a promise resolved with a promise would wait for the exit itself.
          resolve({ exited: readAll(response as IncomingMessage).then((body) => JSON.parse(body) as WaitResult) });
        },
      );
    });
  }

  recover(spec: LaunchSpec, checkpoint: unknown, report: ReportStatus): Container | undefined {
    const saved = checkpoint as Partial<DockerCheckpoint> | undefined;
    if (!saved || typeof saved.containerId !== 'string') return undefined;
    const id = saved.containerId;
    this.active.add(id);
    const container = new DockerContainer(this.docker, report, (c) => this.settled(c));
    container.adopted(id);
    void this.reattach(spec, id, container);
    return container;
  }

  private async reattach(spec: LaunchSpec, id: string, container: DockerContainer): Promise<void> {
    let running: boolean;
    try {
      running = (await this.docker.getContainer(id).inspect()).State.Running;
    } catch (error) {
      this.settled(id);
      const gone = statusCodeOf(error) === 404;
      container.lost(gone ? `container ${id.slice(0, 12)} is gone (removed while the agent was down); the task's exit status is unknown` : `cannot inspect container ${id.slice(0, 12)}: ${engineMessage(error)}`);
      return;
    }
    if (!running) {
      void container.ended({ StatusCode: -1 }); // inspect has the real exit code
      return;
    }
    try {
      const { exited } = await this.waitRegistered(id, 'not-running');
      container.reattached(spec.sandbox, exited);
    } catch (error) {
      container.lost(`cannot wait for container ${id.slice(0, 12)}: ${engineMessage(error)}`);
      this.settled(id);
    }
  }

  /** The container's outcome is known: it may be removed once the retention period is over. */
  private settled(id: string): void {
    this.active.delete(id);
    this.later(() => this.remove(id), this.retentionMs);
  }

  private async remove(id: string): Promise<void> {
    if (this.active.has(id)) return;
    try {
      await this.docker.getContainer(id).remove({ force: true, v: true });
    } catch {
      // Already removed (by a sweep or an operator).
    }
  }

  /**
   * Containers labelled with this work dir: running ones no checkpoint knows (created before this
   * agent started) are orphans and go; ended ones go once their retention period is over.
   */
  private async sweep(): Promise<void> {
    // With no create in flight before or during the listing, every running container it shows
    // that is not active is an orphan; otherwise only those from before this agent started are.
    const idle = this.creating === 0;
    const begun = this.createsBegun;
    let list: Docker.ContainerInfo[];
    try {
      list = await this.docker.listContainers({ all: true, filters: { label: [`${Label.workDir}=${this.workDir}`] } });
    } catch {
      return; // the engine is away; the next sweep tries again
    }
    for (const info of list) {
      if (this.active.has(info.Id)) continue;
      if (info.State === 'running' || info.State === 'created' || info.State === 'paused' || info.State === 'restarting') {
        const quiet = idle && this.createsBegun === begun;
        if (quiet || info.Created * 1000 < this.initAtMs - 1000) await this.remove(info.Id);
        continue;
      }
      let finishedMs: number;
      try {
        finishedMs = Date.parse((await this.docker.getContainer(info.Id).inspect()).State.FinishedAt);
      } catch {
        continue;
      }
      if (!Number.isFinite(finishedMs) || finishedMs + this.retentionMs <= Date.now()) await this.remove(info.Id);
    }
  }
}

type Phase = 'preparing' | 'created' | 'running' | 'done';

class DockerContainer implements Container {
  private phase: Phase = 'preparing';
  private id: string | undefined;
  private killing = false;
  /** The grace period of a kill that came before the container was running. */
  private pendingGraceMs = 0;
  private forced = false;
  private killTimer: NodeJS.Timeout | undefined;
  private logsDone: Promise<void> = Promise.resolve();
  private logStream: Readable | undefined;

  constructor(
    private readonly docker: Docker,
    private readonly reportStatus: ReportStatus,
    private readonly settled: (id: string) => void,
  ) {}

  private report(status: ContainerStatus): void {
    if (this.phase === 'done') return;
    if (isTerminalState(status.state)) {
      this.phase = 'done';
      if (this.killTimer) clearTimeout(this.killTimer);
    }
    this.reportStatus(status);
  }

  starting(message: string): void {
    if (this.phase === 'preparing') this.report({ state: 'STARTING', message });
  }

  failed(reason: string, message: string): void {
    this.report({ state: 'FAILED', reason, message });
  }

  lost(message: string): void {
    this.report({ state: 'FAILED', reason: Reason.AGENT_RESTARTED, message });
  }

  created(id: string): void {
    this.id = id;
    this.phase = 'created';
  }

  /** A kill that came before the container started: it never starts. */
  killedBeforeStart(): boolean {
    if (!this.killing) return false;
    if (this.id) void this.docker.getContainer(this.id).remove({ force: true }).catch(() => {});
    this.report({ state: 'KILLED', reason: Reason.TASK_KILLED, message: 'killed by the agent before it started' });
    return true;
  }

  started(sandbox: string, exited: Promise<WaitResult>): void {
    if (this.phase === 'done' || !this.id) return;
    this.phase = 'running';
    const checkpoint: DockerCheckpoint = { containerId: this.id };
    this.report({ state: 'RUNNING', checkpoint, message: `container ${this.id.slice(0, 12)}` });
    this.follow(sandbox, undefined);
    this.watch(exited);
    if (this.killing) this.terminate(this.forced ? 0 : this.pendingGraceMs);
  }

  /** Re-adopted after an agent restart: already RUNNING as far as the agent knows. */
  adopted(id: string): void {
    this.id = id;
    this.phase = 'running';
  }

  reattached(sandbox: string, exited: Promise<WaitResult>): void {
    // Output from now on: what was written while the agent was down stays in `docker logs`.
    this.follow(sandbox, Date.now() / 1000);
    this.watch(exited);
  }

  private watch(exited: Promise<WaitResult>): void {
    exited.then(
      (result) => this.ended(result),
      (error: unknown) => this.ended({ StatusCode: -1, Error: { Message: engineMessage(error) } }),
    );
  }

  /** Container stdout/stderr → the sandbox's stdout/stderr files, appended. */
  private follow(sandbox: string, sinceSeconds: number | undefined): void {
    const id = this.id!;
    const stdout = createWriteStream(path.join(sandbox, 'stdout'), { flags: 'a' });
    const stderr = createWriteStream(path.join(sandbox, 'stderr'), { flags: 'a' });
    const closed = (file: WriteStream) => new Promise<void>((resolve) => {
      file.once('close', resolve);
      file.once('error', () => resolve());
    });
    this.logsDone = Promise.all([closed(stdout), closed(stderr)]).then(() => {});
    const end = () => {
      stdout.end();
      stderr.end();
    };
    this.docker
      .getContainer(id)
      .logs({ follow: true, stdout: true, stderr: true, ...(sinceSeconds !== undefined ? { since: sinceSeconds } : {}) })
      .then((stream) => {
        const readable = stream as unknown as Readable;
        this.logStream = readable;
        this.docker.modem.demuxStream(readable, stdout, stderr);
        readable.once('end', end);
        readable.once('close', end);
        readable.once('error', end);
      })
      .catch(end);
  }

  async ended(result: WaitResult): Promise<void> {
    if (this.phase === 'done' || !this.id) return;
    const id = this.id;
    let state: Docker.ContainerInspectInfo['State'] | undefined;
    try {
      state = (await this.docker.getContainer(id).inspect()).State;
    } catch {
      // Removed already: the wait's code is all there is.
    }
    // The log stream ends with the container; give it a moment so the sandbox holds all output.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.logsDone, new Promise((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
    this.logStream?.destroy();
    this.settled(id);
    this.report(this.outcome(state?.ExitCode ?? result.StatusCode, state?.OOMKilled === true, result.Error?.Message));
  }

  private outcome(code: number, oomKilled: boolean, waitError: string | undefined): ContainerStatus {
    if (this.killing) {
      const how = this.forced ? 'SIGKILL after the grace period' : 'SIGTERM';
      return { state: 'KILLED', reason: Reason.TASK_KILLED, message: `killed by the agent (${how})`, exitCode: code };
    }
    if (oomKilled) {
      return { state: 'FAILED', reason: Reason.CONTAINER_LIMITATION_MEMORY, message: 'memory limit exceeded: the kernel\'s OOM killer ended the container', exitCode: code };
    }
    if (code < 0) return { state: 'FAILED', reason: Reason.COMMAND_EXITED, message: `the container's exit status is unknown${waitError ? `: ${waitError}` : ''}` };
    if (code === 0) return { state: 'FINISHED', reason: Reason.COMMAND_EXITED, message: 'exited with code 0', exitCode: 0 };
    return { state: 'FAILED', reason: Reason.COMMAND_EXITED, message: `exited with code ${code}`, exitCode: code };
  }

  kill(gracePeriodMs: number): void {
    if (this.phase === 'done') return;
    if (this.killing) {
      // A second kill with no grace (e.g. SHUTDOWN after KILL) hurries it along.
      if (gracePeriodMs <= 0) this.forceKill();
      return;
    }
    this.killing = true;
    this.pendingGraceMs = gracePeriodMs;
    // Not running yet: run() sees `killing` before the start, or started() right after it.
    if (this.phase === 'running') this.terminate(gracePeriodMs);
  }

  private terminate(gracePeriodMs: number): void {
    if (gracePeriodMs <= 0) {
      this.forceKill();
      return;
    }
    this.signal('SIGTERM');
    this.killTimer = setTimeout(() => this.forceKill(), gracePeriodMs);
  }

  private forceKill(): void {
    if (this.killTimer) clearTimeout(this.killTimer);
    this.killTimer = undefined;
    this.forced = true;
    if (this.phase === 'running') this.signal('SIGKILL');
  }

  private signal(signal: 'SIGTERM' | 'SIGKILL'): void {
    if (!this.id) return;
    this.docker
      .getContainer(this.id)
      .kill({ signal })
      .catch(() => {
        // 409: not running any more; its wait reports the end.
      });
  }

  /** `sh -c command` inside the container (docker exec); resolves with its exit code. */
  async runCheckCommand(command: string, timeoutMs: number): Promise<number> {
    if (!this.id || this.phase !== 'running') throw new Error('the container is not running');
    const container = this.docker.getContainer(this.id);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the check command did not finish within ${timeoutMs} ms`)), timeoutMs);
    });
    const run = async (): Promise<number> => {
      const exec = await container.exec({ Cmd: ['sh', '-c', command], AttachStdout: true, AttachStderr: true });
      const stream = (await exec.start({ hijack: true, stdin: false })) as unknown as Readable;
      await new Promise<void>((resolve) => {
        stream.on('data', () => {});
        stream.once('end', resolve);
        stream.once('close', resolve);
        stream.once('error', () => resolve());
      });
      const code = (await exec.inspect()).ExitCode;
      if (code === null) throw new Error('the check command\'s exit code is unknown');
      return code;
    };
    try {
      return await Promise.race([run(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
