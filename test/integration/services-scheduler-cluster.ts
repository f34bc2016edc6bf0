/**
 * A services framework on a real master and real agents (process containerizer) for the
 * services-scheduler tests, and a tiny HTTP server app whose behaviour its environment picks.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MasterServer } from '../../master/http/server.ts';
import { startServicesFramework, type ServicesFramework, type ServicesFrameworkOptions } from '../../frameworks/services/main.ts';
import type { AppDefinitionInput, ServicesEvent } from '../../frameworks/services/index.ts';
import { FrameworkCluster } from './framework-cluster.ts';
import { startMaster, tempDir } from './helpers.ts';

/**
 * `node server.mjs`: serves on $PORT0 after $LISTEN_AFTER_MS; answers 503 on /health when SICK=1 or
 * once the file $SICK_FILE.$AGORA_INSTANCE_ID exists (one instance turns sick), and on /ready while
 * $READY_FILE (when set) does not exist; otherwise 200 with its version. Exits on SIGTERM at once.
 */
const SERVER = `
import http from 'node:http';
import { existsSync } from 'node:fs';
const sick = process.env.SICK === '1';
const readyFile = process.env.READY_FILE;
const sickFile = process.env.SICK_FILE;
const server = http.createServer((req, res) => {
  const unready = req.url === '/ready' && readyFile !== undefined && !existsSync(readyFile);
  const unhealthy = req.url === '/health' && (sick || (sickFile !== undefined && existsSync(sickFile + '.' + process.env.AGORA_INSTANCE_ID)));
  res.writeHead(unhealthy || unready ? 503 : 200);
  res.end(process.env.AGORA_APP_VERSION ?? '');
});
setTimeout(() => server.listen(Number(process.env.PORT0), '127.0.0.1'), Number(process.env.LISTEN_AFTER_MS ?? 0));
process.on('SIGTERM', () => process.exit(0));
`;

const scratch = tempDir('agora-services-');
export const serverScript = join(scratch, 'server.mjs');
writeFileSync(serverScript, SERVER);

/** An HTTP app with a fast HTTP health check on its one dynamic port. */
export function webApp(id: string, extra: Partial<AppDefinitionInput> = {}): AppDefinitionInput {
  return {
    id,
    instances: 1,
    cmd: `exec "${process.execPath}" "${serverScript}"`,
    cpus: 0.1,
    mem: 64,
    ports: [{ port: 0, name: 'http' }],
    healthChecks: [{ protocol: 'HTTP', path: '/health', gracePeriodSeconds: 20, intervalSeconds: 0.1, timeoutSeconds: 2, delaySeconds: 0, maxConsecutiveFailures: 3 }],
    killGracePeriodSeconds: 0.5,
    backoff: { seconds: 0.1, factor: 1.5, maxLaunchDelaySeconds: 2 },
    ...extra,
  };
}

/**
 * A port range unlikely to meet another test file's (two run at once), and below Linux's ephemeral
 * range (32768+), where an outgoing connection's local port could take an instance's port.
 */
export function portRange(size = 60): [number, number] {
  const begin = 21000 + Math.floor(Math.random() * 160) * 60;
  return [begin, begin + size - 1];
}

export class ServicesCluster extends FrameworkCluster<ServicesFramework, ServicesEvent, ServicesFrameworkOptions> {
  private constructor(master: MasterServer) {
    super(master, { name: 'services', start: startServicesFramework, agentResources: () => ({ cpus: 4, mem: 4096, disk: 1000, ports: [portRange()] }) });
  }

  static async start(): Promise<ServicesCluster> {
    return new ServicesCluster(await startMaster());
  }
}
