import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { FileStore, MemoryStore, openStore, StoreUrlError } from '../../frameworks/sdk/store/index.ts';

const root = await mkdtemp(join(tmpdir(), 'agora-open-store-'));
afterAll(() => rm(root, { recursive: true, force: true }));

describe('openStore', () => {
  it('opens a memory store for memory:', async () => {
    const store = await openStore('memory:', { namespace: 'services' });
    expect(store).toBeInstanceOf(MemoryStore);
    await store.close();
  });

  it('opens a file store in <dir>/<namespace> for a plain path and for a file:// URL', async () => {
    const plain = await openStore(join(root, 'plain'), { namespace: 'services' });
    expect(plain).toBeInstanceOf(FileStore);
    expect(plain.description).toBe(`file store at ${join(root, 'plain', 'services')}`);
    await plain.put('a', 1);
    await plain.close();
    const viaUrl = await openStore(pathToFileURL(join(root, 'plain')).href, { namespace: 'services' });
    expect((await viaUrl.get('a'))?.value).toBe(1);
    await viaUrl.close();
    const batch = await openStore(join(root, 'plain'), { namespace: 'batch' });
    expect(await batch.get('a')).toBeUndefined();
    await batch.close();
    expect((await readdir(join(root, 'plain'))).sort()).toEqual(['batch', 'services']);
  });

  it.each([
    ['', /it is empty/],
    ['postgres://db/agora', /the scheme "postgres:" is not supported/],
    ['localhost:6379', /the scheme "localhost:" is not supported/],
    ['redis:///0', /names no host/],
    ['redis://localhost:6379/agora', /the path must be a database number such as \/0/],
    ['memory:extra', /a memory store takes nothing after "memory:"/],
    ['file://remote-host/data', /cannot open store .*file:\/\/remote-host\/data/],
  ])('refuses %j with a message naming the URL and the accepted forms', async (url, reason) => {
    const error = await openStore(url, { namespace: 'services' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreUrlError);
    expect(String(error)).toMatch(reason);
    expect(String(error)).toContain(JSON.stringify(url));
    expect(String(error)).toMatch(/use file:\/\/\/absolute\/path or a plain path .*redis:\/\/.*memory:/);
  });

  it('refuses a namespace that is not a plain name', async () => {
    await expect(openStore('memory:', { namespace: '../etc' })).rejects.toThrow(/store namespace "..\/etc" must be/);
  });

  it('reports an unreachable Redis with its address and no password', async () => {
    const error = await openStore('redis://:s3cret@127.0.0.1:1/0', { namespace: 'services' }).catch((e: unknown) => e);
    expect(String(error)).toMatch(/cannot reach the Redis store at redis:\/\/:\*\*\*@127\.0\.0\.1:1\/0: .*ECONNREFUSED/);
    expect(String(error)).not.toContain('s3cret');
  });
});
