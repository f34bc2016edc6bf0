/**
 * Simulated agents in a child process (launch-worker.ts): real WebSocket clients of a master, with
 * a containerizer that spawns nothing. Two cores: the agents' work runs beside, not inside, the
 * process being measured.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import type { ServeFrameworkOptions, ServingFramework } from '../../frameworks/sdk/framework-options.ts';
import { startMasterServer } from '../../master/http/server.ts';

export interface SimulatedAgentsOptions {
  /** 'finish': each task reports RUNNING, then FINISHED at once. 'run': RUNNING until killed. @default 'finish' */
  tasks?: 'finish' | 'run';
  /** Writes a CPU profile of the agents' process into this directory. */
  profileDir?: string;
}

export interface SimulatedAgents {
  stop(): Promise<void>;
}

/** Resolves once all `count` agents have registered with the master at `masterUrl`. */
export async function startSimulatedAgents(masterUrl: string, count: number, options: SimulatedAgentsOptions = {}): Promise<SimulatedAgents> {
  const worker = fileURLToPath(new URL('./launch-worker.ts', import.meta.url));
  const child = spawn(process.execPath, [...(options.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${options.profileDir}`] : []), '--import', 'tsx', worker, masterUrl, String(count), options.tasks ?? 'finish'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, AGORA_LOG_LEVEL: 'warn' },
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const stop = async () => {
    child.kill('SIGTERM');
    await exited;
  };
  try {
    await new Promise<void>((resolve, reject) => {
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('ready')) resolve();
      });
      void exited.then((code) => reject(new Error(`the agents' process exited (${code}) before all agents registered`)));
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return { stop };
}

/** A framework served (HTTP API, file store) on a real master with simulated agents: the scale benchmarks' cluster. */
export interface ServedOnSimulatedAgents {
  /** One HTTP call to the framework's API; throws on a non-2xx answer, naming it. */
  call(method: string, url: string, body?: unknown): Promise<{ ms: number; body: string }>;
  close(): Promise<void>;
}

export async function serveOnSimulatedAgents(
  serve: (options: ServeFrameworkOptions) => Promise<ServingFramework>,
  options: { agents: number; tasks: 'finish' | 'run'; name: string },
): Promise<ServedOnSimulatedAgents> {
  // Errors only, to stderr: stdout carries the figures (and --json's last line).
  const logger = pino({ level: 'error' }, pino.destination(2));
  const storeDir = mkdtempSync(path.join(os.tmpdir(), `agora-${options.name}-`));
  const server = await startMasterServer({ port: 0, logger });
  const agents = await startSimulatedAgents(server.wsUrl, options.agents, { tasks: options.tasks });
  const framework = await serve({ master: server.wsUrl, store: storeDir, port: 0, logger });
  return {
    async call(method, url, body) {
      const start = performance.now();
      const response = await fetch(`${framework.url}${url}`, {
        method,
        ...(body !== undefined && { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
      });
      const text = await response.text();
      if (!response.ok) throw new Error(`${method} ${url}: ${response.status} ${text}`);
      return { ms: performance.now() - start, body: text };
    },
    async close() {
      await framework.close();
      await agents.stop();
      await server.close();
      rmSync(storeDir, { recursive: true, force: true });
    },
  };
}
