/**
 * A Store in Redis, for schedulers that must survive the loss of their machine (HA masters and
 * frameworks share one Redis). Each framework gets its own namespace — every key carries the
 * prefix `agora:{<namespace>}:` — so services and batch can share a Redis without seeing each other.
 *
 * Layout under the prefix:  `index` a sorted set of the namespace's keys (lex order, for list by
 * prefix), `e:<key>` one hash per entry (v = version, d = JSON). Commits and lists run as Lua scripts
 * (atomic on the server); a get is one HMGET.
 *
 * The connection is configured to fail fast rather than queue: with the offline queue off a write
 * made while Redis is unreachable rejects at once instead of being replayed later behind the
 * scheduler's back, and every command has a timeout. A timed-out commit has an unknown outcome
 * (the script may have run): read the keys again before retrying.
 */
import { Redis } from 'ioredis';
import { StoreClosedError, VersionConflictError } from './errors.ts';
import { commitScript, listScript } from './redis-scripts.ts';
import { checkKey, checkPrefix, prepareWrites, type Store, type StoreEntry, type StoreWrite, type WriteOptions } from './store.ts';

export interface RedisStoreOptions {
  /** `redis://[user:password@]host[:port][/db]` or `rediss://…`. */
  url: string;
  /** The framework's name: keys go under `agora:{<namespace>}:`. */
  namespace: string;
  /** @default 5000 */
  commandTimeoutMs?: number;
  /** @default 5000 */
  connectTimeoutMs?: number;
}

export class RedisStore implements Store {
  readonly description: string;
  readonly #redis: Redis;
  readonly #prefix: string;
  #closed = false;

  private constructor(redis: Redis, prefix: string, description: string) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.description = description;
  }

  /** Connects, and rejects with the reason if Redis cannot be reached. */
  static async open(options: RedisStoreOptions): Promise<RedisStore> {
    if (!/^[A-Za-z0-9_.:-]+$/.test(options.namespace)) {
      throw new RangeError(`namespace ${JSON.stringify(options.namespace)} must be letters, digits, "_", ".", ":" or "-"`);
    }
    const where = redactedUrl(options.url);
    let lastError: Error | undefined;
    const redis = new Redis(options.url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      commandTimeout: options.commandTimeoutMs ?? 5000,
      connectTimeout: options.connectTimeoutMs ?? 5000,
      maxRetriesPerRequest: 1,
      // Keep reconnecting after the first connect (a scheduler outlives Redis restarts), but stay polite.
      retryStrategy: (attempt) => Math.min(attempt * 200, 5000),
    });
    // Without a listener ioredis prints every connection error; the error reaches callers through their commands.
    redis.on('error', (error: Error) => {
      lastError = error;
    });
    try {
      await redis.connect();
    } catch (error) {
      redis.disconnect();
      const reason = (lastError ?? error) instanceof Error ? (lastError ?? (error as Error)).message : String(error);
      throw new Error(`cannot reach the Redis store at ${where}: ${reason}`, { cause: lastError ?? error });
    }
    const prefix = `agora:{${options.namespace}}:`;
    return new RedisStore(redis, prefix, `redis store at ${where} (keys ${prefix}*)`);
  }

  async get(key: string): Promise<StoreEntry | undefined> {
    this.#checkOpen();
    checkKey(key);
    const [version, text] = await this.#redis.hmget(this.#entryKey(key), 'v', 'd');
    if (version == null || text == null) return undefined;
    return { key, value: JSON.parse(text) as unknown, version: Number(version) };
  }

  async list(prefix: string): Promise<StoreEntry[]> {
    this.#checkOpen();
    checkPrefix(prefix);
    const flat = (await listScript.run(this.#redis, [this.#indexKey()], [this.#entryKey(''), prefix])) as string[];
    const out: StoreEntry[] = [];
    for (let i = 0; i + 2 < flat.length; i += 3) {
      out.push({ key: flat[i]!, version: Number(flat[i + 1]), value: JSON.parse(flat[i + 2]!) as unknown });
    }
    return out;
  }

  async put(key: string, value: unknown, options: WriteOptions = {}): Promise<number> {
    const [version] = await this.commit([{ op: 'put', key, value, ...options }]);
    return version!;
  }

  async delete(key: string, options: WriteOptions = {}): Promise<boolean> {
    const [removed] = await this.#commit([{ op: 'delete', key, ...options }]);
    return removed === 1;
  }

  async commit(writes: readonly StoreWrite[]): Promise<number[]> {
    const results = await this.#commit(writes);
    return results.map((result, i) => (writes[i]!.op === 'delete' ? 0 : result));
  }

  /** Per write: a put's new version, or a delete's count of removed keys. */
  async #commit(writes: readonly StoreWrite[]): Promise<number[]> {
    this.#checkOpen();
    const prepared = prepareWrites(writes);
    if (prepared.length === 0) return [];
    const keys = [this.#indexKey(), ...prepared.map((w) => this.#entryKey(w.key))];
    const args: string[] = [];
    for (const w of prepared) args.push(w.op, w.expectedVersion === undefined ? '' : String(w.expectedVersion), w.op === 'put' ? w.text : '');
    for (const w of prepared) args.push(w.key);
    const reply = (await commitScript.run(this.#redis, keys, args)) as [string, ...number[]];
    if (reply[0] === 'conflict') {
      const write = prepared[reply[1]! - 1]!;
      throw new VersionConflictError(write.key, write.expectedVersion!, reply[2]!);
    }
    return reply.slice(1) as number[];
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }

  #indexKey(): string {
    return `${this.#prefix}index`;
  }

  #entryKey(key: string): string {
    return `${this.#prefix}e:${key}`;
  }

  #checkOpen(): void {
    if (this.#closed) throw new StoreClosedError(this.description);
  }
}

/** The URL without its password, for messages and logs. */
export function redactedUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return url;
  }
}
