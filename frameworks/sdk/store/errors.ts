/** The store's named errors, each with the fields a caller branches on. */

/** A compare-and-set failed: someone else wrote the key first. Nothing in the commit was applied. */
export class VersionConflictError extends Error {
  override name = 'VersionConflictError';
  constructor(
    readonly key: string,
    readonly expectedVersion: number,
    readonly actualVersion: number,
  ) {
    super(
      `store key ${key} is at version ${actualVersion}, the write expected ${expectedVersion === 0 ? 'it to be absent' : `version ${expectedVersion}`}; ` +
        'nothing was written — read the key again and retry',
    );
  }
}

export class InvalidKeyError extends Error {
  override name = 'InvalidKeyError';
  constructor(
    readonly key: string,
    readonly rule: string,
  ) {
    super(`invalid store key ${JSON.stringify(key)}: ${rule}`);
  }
}

export class InvalidValueError extends Error {
  override name = 'InvalidValueError';
  constructor(
    readonly key: string,
    readonly reason: string,
  ) {
    super(`cannot store a value under ${key}: ${reason}`);
  }
}

/** `openStore` was given a URL it does not understand. */
export class StoreUrlError extends Error {
  override name = 'StoreUrlError';
  constructor(
    readonly url: string,
    readonly reason: string,
  ) {
    super(
      `cannot open store ${JSON.stringify(url)}: ${reason}; ` +
        'use file:///absolute/path or a plain path (a data directory), redis://[user:password@]host[:port][/db] (or rediss://), or memory:',
    );
  }
}

/** Another live process holds the file store's directory. Two schedulers writing one directory would corrupt it. */
export class StoreLockedError extends Error {
  override name = 'StoreLockedError';
  constructor(
    readonly dir: string,
    readonly holderPid: number,
  ) {
    super(`the file store at ${dir} is in use by process ${holderPid}; stop it, or give this scheduler another data directory`);
  }
}

export class StoreClosedError extends Error {
  override name = 'StoreClosedError';
  constructor(readonly description: string) {
    super(`the ${description} is closed`);
  }
}

/**
 * A write failed part-way on the medium (disk full, I/O error, connection dropped mid-reply). The
 * store refuses further calls; reopening it recovers a consistent state (the file store replays its
 * journal).
 */
export class StoreBrokenError extends Error {
  override name = 'StoreBrokenError';
  constructor(
    readonly description: string,
    options?: { cause?: unknown },
  ) {
    super(`the ${description} failed during a write and must be reopened to recover`, options);
  }
}
