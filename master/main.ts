/** Turns `agora master` flags into a running master server. */
import type { Logger } from 'pino';
import { startMasterServer, type MasterServer } from './http/server.ts';

export interface MasterFlags {
  host?: string;
  port?: string | number;
  offerTimeout?: string | number;
  weights?: string;
}

export class FlagError extends Error {
  override name = 'FlagError';
}

export function parsePort(value: string | number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new FlagError(`--port ${value}: expected a port number from 0 to 65535`);
  return port;
}

/** `web:2;batch:1` → `{ web: 2, batch: 1 }` */
export function parseWeights(text: string | undefined): Record<string, number> | undefined {
  if (!text) return undefined;
  const weights: Record<string, number> = {};
  for (const part of text.split(';').map((p) => p.trim()).filter(Boolean)) {
    const [role, raw] = part.split(':');
    const weight = Number(raw);
    if (!role || !(weight > 0)) throw new FlagError(`--weights: "${part}" is not ROLE:WEIGHT with a positive weight (example: web:2;batch:1)`);
    weights[role.trim()] = weight;
  }
  return weights;
}

export async function runMaster(flags: MasterFlags, logger: Logger): Promise<MasterServer> {
  const offerTimeoutSeconds = flags.offerTimeout === undefined ? undefined : Number(flags.offerTimeout);
  if (offerTimeoutSeconds !== undefined && !(offerTimeoutSeconds > 0)) throw new FlagError(`--offer-timeout ${flags.offerTimeout}: expected seconds > 0`);
  const weights = parseWeights(flags.weights);
  const server = await startMasterServer({
    host: flags.host ?? '127.0.0.1',
    port: parsePort(flags.port, 5050),
    logger,
    ...(offerTimeoutSeconds ? { offerTimeoutMs: offerTimeoutSeconds * 1000 } : {}),
    ...(weights ? { weights } : {}),
  });
  logger.info(`master listening on ${server.url} (agents and schedulers dial ${server.wsUrl})`);
  return server;
}
