/**
 * Simulated agents in a child process (launch-worker.ts): real WebSocket clients of a master, with
 * a containerizer that spawns nothing. Two cores: the agents' work runs beside, not inside, the
 * process being measured.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

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
