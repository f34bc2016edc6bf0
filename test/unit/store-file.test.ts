import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileStore, StoreLockedError } from '../../frameworks/sdk/store/index.ts';
import { storeContract } from './store-contract.ts';

const root = await mkdtemp(join(tmpdir(), 'agora-file-store-'));
afterAll(() => rm(root, { recursive: true, force: true }));
let counter = 0;
const freshDir = (): string => join(root, `s${++counter}`);

storeContract('file store', async () => FileStore.open(freshDir()), { propertyRuns: 15 });

describe('FileStore on disk', () => {
  it('keeps every entry and its version across close and reopen', async () => {
    const dir = freshDir();
    const first = await FileStore.open(dir);
    await first.put('apps/shop/web', { instances: 3 });
    await first.put('apps/shop/web', { instances: 4 });
    await first.commit([
      { op: 'put', key: 'deployments/d1', value: { steps: 2 } },
      { op: 'put', key: 'framework-id', value: 'f-1' },
    ]);
    await first.close();
    const second = await FileStore.open(dir);
    expect(await second.list('')).toEqual([
      { key: 'apps/shop/web', value: { instances: 4 }, version: 2 },
      { key: 'deployments/d1', value: { steps: 2 }, version: 1 },
      { key: 'framework-id', value: 'f-1', version: 1 },
    ]);
    await second.close();
  });

  it('writes one JSON file per key, named by the encoded key, and leaves no journal or temp file behind', async () => {
    const dir = freshDir();
    const store = await FileStore.open(dir);
    await store.commit([
      { op: 'put', key: 'apps/a', value: 1 },
      { op: 'put', key: 'apps/b', value: 2 },
    ]);
    expect((await readdir(join(dir, 'entries'))).sort()).toEqual(['apps%2Fa.json', 'apps%2Fb.json']);
    expect(JSON.parse(await readFile(join(dir, 'entries', 'apps%2Fa.json'), 'utf8'))).toEqual({ version: 1, value: 1 });
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
    expect((await readdir(dir)).sort()).toEqual(['LOCK', 'entries', 'tmp']);
    await store.close();
  });

  it('completes a multi-key commit whose journal was durable when the process died', async () => {
    const dir = freshDir();
    const before = await FileStore.open(dir);
    await before.put('apps/web', { v: 1 });
    await before.put('deployments/old', {});
    await before.close();
    // What a crash right after the commit point leaves: the journal, and only part of it applied.
    const changes = [
      { key: 'apps/web', text: '{"v":2}', version: 2 },
      { key: 'deployments/new', text: '{"steps":2}', version: 1 },
      { key: 'deployments/old', deleted: true },
    ];
    await writeFile(join(dir, 'journal.json'), JSON.stringify({ changes }));
    await writeFile(join(dir, 'entries', 'apps%2Fweb.json'), '{"version":2,"value":{"v":2}}');
    await writeFile(join(dir, 'tmp', '1234-9'), '{"version":1,"val'); // a torn temp file
    const after = await FileStore.open(dir);
    expect(await after.list('')).toEqual([
      { key: 'apps/web', value: { v: 2 }, version: 2 },
      { key: 'deployments/new', value: { steps: 2 }, version: 1 },
    ]);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
    expect(await readdir(dir)).not.toContain('journal.json');
    await after.close();
  });

  it('refuses a second store on a directory a live process holds, and takes over a dead one', async () => {
    const dir = freshDir();
    const store = await FileStore.open(dir);
    const error = await FileStore.open(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreLockedError);
    expect(error).toMatchObject({ holderPid: process.pid });
    expect(String(error)).toMatch(/in use by process \d+; stop it, or give this scheduler another data directory/);
    await store.close();
    // A pid that cannot be alive: the lock is stale.
    await writeFile(join(dir, 'LOCK'), '2147483646');
    const again = await FileStore.open(dir);
    expect(await readFile(join(dir, 'LOCK'), 'utf8')).toBe(String(process.pid));
    await again.close();
  });
});
