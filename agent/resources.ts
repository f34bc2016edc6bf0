/**
 * What this machine can offer. Detected once at agent construction; any name given in the agent's
 * `resources` option replaces the detected value for that name (so `{cpus: 4}` keeps detected mem).
 *
 * Headroom is kept back for the agent and the OS, like Mesos does (it keeps min(1 GiB, 50%) of mem;
 * we keep min(1 GiB, 10%) because agents here are small).
 */
import { execFileSync } from 'node:child_process';
import { statfsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { normalize, type Resources } from '../master/protocol/resources.ts';

const MB = 1024 * 1024;
const HEADROOM_MAX_MB = 1024;
const HEADROOM_FRACTION = 0.1;
export const DEFAULT_PORTS: [number, number] = [31000, 32000];

function withHeadroom(totalMb: number): number {
  return Math.max(0, Math.floor(totalMb - Math.min(HEADROOM_MAX_MB, totalMb * HEADROOM_FRACTION)));
}

/** statfs of the nearest existing ancestor: the work dir may not exist yet. */
function diskMb(workDir: string): number {
  let dir = path.resolve(workDir);
  for (;;) {
    try {
      const stats = statfsSync(dir);
      return withHeadroom((stats.bavail * stats.bsize) / MB);
    } catch {
      const parent = path.dirname(dir);
      if (parent === dir) return 0;
      dir = parent;
    }
  }
}

let gpuCache: number | undefined;
/** GPUs listed by nvidia-smi; 0 when it is missing or fails. Cached: a thousand simulated agents share a host. */
export function detectGpus(): number {
  if (gpuCache !== undefined) return gpuCache;
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=index', '--format=csv,noheader'], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] });
    gpuCache = out.split('\n').filter((line) => line.trim() !== '').length;
  } catch {
    gpuCache = 0;
  }
  return gpuCache;
}

/** cpus, mem (MB), disk (MB, of the file system holding workDir), ports, and gpus when present. */
export function detectResources(workDir: string): Resources {
  const detected: Resources = {
    cpus: os.availableParallelism(),
    mem: withHeadroom(os.totalmem() / MB),
    disk: diskMb(workDir),
    ports: [[DEFAULT_PORTS[0], DEFAULT_PORTS[1]]],
  };
  const gpus = detectGpus();
  if (gpus > 0) detected.gpus = gpus;
  return normalize(detected);
}

/** Detected resources with each name in `overrides` replaced. */
export function agentResources(workDir: string, overrides: Resources | undefined): Resources {
  return normalize({ ...detectResources(workDir), ...overrides });
}
