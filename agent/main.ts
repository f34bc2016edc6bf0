/**
 * Turns command-line flags into a running agent. `bin/agora.ts agent` calls `runAgent`; this file
 * can also be run on its own: `npx tsx agent/main.ts --master ws://127.0.0.1:5050 --work-dir DIR`.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { parseAttributes, parseResources, ResourceParseError, type Resources } from '../master/protocol/resources.ts';
import { Agent } from './agent.ts';

export interface AgentFlags {
  master: string;
  /** Text form, e.g. "cpus:4;mem:8192;ports:[31000-32000]"; each name given replaces the detected value. */
  resources?: string;
  /** Text form, e.g. "rack:r1;zone:a". */
  attributes?: string;
  /** @default '.agora/agent' */
  workDir?: string;
  hostname?: string;
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
  const agent = new Agent({
    master: flags.master,
    workDir: flags.workDir ?? '.agora/agent',
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

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: {
      master: { type: 'string' },
      resources: { type: 'string' },
      attributes: { type: 'string' },
      'work-dir': { type: 'string' },
      hostname: { type: 'string' },
    },
  });
  runAgent({
    master: values.master ?? '',
    ...(values.resources !== undefined ? { resources: values.resources } : {}),
    ...(values.attributes !== undefined ? { attributes: values.attributes } : {}),
    ...(values['work-dir'] !== undefined ? { workDir: values['work-dir'] } : {}),
    ...(values.hostname !== undefined ? { hostname: values.hostname } : {}),
  }).catch((error: Error) => {
    process.stderr.write(`agent: ${error.message}\n`);
    process.exit(2);
  });
}
