/** The store's Lua scripts, loaded from the files beside this one and run by SHA (EVALSHA, EVAL on NOSCRIPT). */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

export class LuaScript {
  readonly #source: string;
  readonly #sha: string;

  constructor(file: string) {
    this.#source = readFileSync(new URL(`./lua/${file}`, import.meta.url), 'utf8');
    this.#sha = createHash('sha1').update(this.#source).digest('hex');
  }

  async run(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.#sha, keys.length, ...keys, ...args);
    } catch (error) {
      // A restarted or flushed Redis forgets loaded scripts; EVAL loads it again.
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return await redis.eval(this.#source, keys.length, ...keys, ...args);
    }
  }
}

export const commitScript = new LuaScript('commit.lua');
export const listScript = new LuaScript('list.lua');
