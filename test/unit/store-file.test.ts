import { execFile } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
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

  it('appends each commit as one line to its log, creating no file per commit or key', async () => {
    const dir = freshDir();
    const store = await FileStore.open(dir);
    await store.commit([
      { op: 'put', key: 'apps/a', value: 1 },
      { op: 'put', key: 'apps/b', value: { n: 2 } },
    ]);
    for (let i = 0; i < 20; i++) await store.put('apps/a', i);
    await store.delete('apps/b');
    expect((await readdir(dir)).sort()).toEqual(['LOCK', 'log.jsonl']);
    const lines = (await readFile(join(dir, 'log.jsonl'), 'utf8')).trimEnd().split('\n');
    expect(lines).toHaveLength(22);
    expect(JSON.parse(lines[0]!)).toEqual({ c: [{ k: 'apps/a', v: 1, d: 1 }, { k: 'apps/b', v: 1, d: { n: 2 } }] });
    expect(JSON.parse(lines[21]!)).toEqual({ c: [{ k: 'apps/b', x: 1 }] });
    await store.close();
  });

  it('drops a commit a crash cut short (all of it, even one of several keys) and keeps the ones before', async () => {
    const dir = freshDir();
    const before = await FileStore.open(dir);
    await before.put('apps/web', { v: 1 });
    await before.put('deployments/old', {});
    await before.close();
    // What dying mid-append leaves: the next commit's line, without its end.
    await appendFile(join(dir, 'log.jsonl'), '{"c":[{"k":"apps/web","v":2,"d":{"v":2}},{"k":"deployments/new","v":1,"d":{"st');
    const after = await FileStore.open(dir);
    expect(await after.list('')).toEqual([
      { key: 'apps/web', value: { v: 1 }, version: 1 },
      { key: 'deployments/old', value: {}, version: 1 },
    ]);
    // The torn line is gone from the log, so the next commit is not glued to it.
    await after.put('apps/web', { v: 3 });
    await after.close();
    const again = await FileStore.open(dir);
    expect(await again.get('apps/web')).toEqual({ key: 'apps/web', value: { v: 3 }, version: 2 });
    await again.close();
  });

  it('refuses to open over a damaged line in the middle of the log, naming the file and line', async () => {
    const dir = freshDir();
    const store = await FileStore.open(dir);
    await store.put('a', 1);
    await store.close();
    await appendFile(join(dir, 'log.jsonl'), 'garbage\n{"c":[{"k":"b","v":1,"d":2}]}\n');
    await expect(FileStore.open(dir)).rejects.toThrow(/log\.jsonl line 2 is damaged, and commits after it were acknowledged; restore the data directory from a backup/);
  });

  it('drops a last commit a machine crash left damaged even with its newline (blocks that never reached the disk)', async () => {
    const dir = freshDir();
    const store = await FileStore.open(dir);
    await store.put('a', 1);
    await store.close();
    // The line's length is on disk but its first blocks are zeros; its newline made it.
    await appendFile(join(dir, 'log.jsonl'), Buffer.concat([Buffer.alloc(5000), Buffer.from('"d":2}]}\n')]));
    const after = await FileStore.open(dir);
    expect(await after.list('')).toEqual([{ key: 'a', value: 1, version: 1 }]);
    await after.put('b', 2);
    await after.close();
    const again = await FileStore.open(dir);
    expect((await again.list('')).map((e) => e.key)).toEqual(['a', 'b']);
    await again.close();
  });

  it('a compaction that cannot write its snapshot fails nothing: the commit stands and the store goes on', async () => {
    const dir = freshDir();
    const store = await FileStore.open(dir);
    await mkdir(join(dir, 'snapshot.json.tmp')); // the snapshot's temp file cannot be written
    const big = 'y'.repeat(400_000);
    for (let i = 0; i < 14; i++) await store.put('k', { i, big }); // past the 4 MB log size: compaction is tried
    expect((await store.get('k'))!.version).toBe(14);
    await store.put('after', true);
    await store.close();
    const reopened = await FileStore.open(dir);
    expect((await reopened.get('k'))!.value).toMatchObject({ i: 13 });
    expect(await reopened.get('after')).toBeDefined();
    await reopened.close();
  });

  it('compacts a long log into a snapshot, with the same entries after reopening', async () => {
    const dir = freshDir();
    const store = await FileStore.open(dir);
    const big = 'x'.repeat(50_000);
    for (let i = 0; i < 120; i++) await store.put(`runs/r${i % 3}`, { i, big }); // ~6 MB of commits over 3 keys
    await store.put('framework', 'f-1');
    expect((await readdir(dir)).sort()).toEqual(['LOCK', 'log.jsonl', 'snapshot.json']);
    expect((await stat(join(dir, 'log.jsonl'))).size).toBeLessThan(4 * 1024 * 1024);
    const expected = await store.list('');
    await store.close();
    const reopened = await FileStore.open(dir);
    expect(await reopened.list('')).toEqual(expected);
    expect((await reopened.get('runs/r2'))!.value).toMatchObject({ i: 119 });
    expect((await reopened.get('runs/r2'))!.version).toBe(40);
    await reopened.close();
  });

  it('reads a store written in the earlier layout (a file per key, a journal mid-commit) and moves it to a snapshot', async () => {
    const dir = freshDir();
    await mkdir(join(dir, 'entries'), { recursive: true });
    await mkdir(join(dir, 'tmp'));
    await writeFile(join(dir, 'entries', 'apps%2Fweb.json'), '{"version":1,"value":{"v":1}}');
    await writeFile(join(dir, 'entries', 'deployments%2Fold.json'), '{"version":1,"value":{}}');
    // A multi-key commit past its commit point when the old process died, half applied.
    const changes = [
      { key: 'apps/web', text: '{"v":2}', version: 2 },
      { key: 'deployments/new', text: '{"steps":2}', version: 1 },
      { key: 'deployments/old', deleted: true },
    ];
    await writeFile(join(dir, 'journal.json'), JSON.stringify({ changes }));
    await writeFile(join(dir, 'entries', 'apps%2Fweb.json'), '{"version":2,"value":{"v":2}}');
    await writeFile(join(dir, 'tmp', '1234-9'), '{"version":1,"val'); // a torn temp file
    const store = await FileStore.open(dir);
    const expected = [
      { key: 'apps/web', value: { v: 2 }, version: 2 },
      { key: 'deployments/new', value: { steps: 2 }, version: 1 },
    ];
    expect(await store.list('')).toEqual(expected);
    expect((await readdir(dir)).sort()).toEqual(['LOCK', 'log.jsonl', 'snapshot.json']);
    await store.put('apps/web', { v: 3 });
    await store.close();
    const reopened = await FileStore.open(dir);
    expect(await reopened.get('apps/web')).toEqual({ key: 'apps/web', value: { v: 3 }, version: 3 });
    await reopened.close();
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
    expect(await readFile(join(dir, 'LOCK'), 'utf8')).toMatch(new RegExp(`^${process.pid}( \\d+)?$`));
    await again.close();
    // Our own pid, left by an earlier life of this process's pid (a restarted container is pid 1
    // again): stale too, unless this process holds the store.
    await writeFile(join(dir, 'LOCK'), `${process.pid} 1`);
    const mine = await FileStore.open(dir);
    await mine.close();
  });

  it('lets exactly one of several processes starting at once take a directory, fresh or with a stale lock', async () => {
    for (let round = 0; round < 4; round++) {
      const dir = freshDir();
      if (round % 2 === 1) {
        await mkdir(dir, { recursive: true });
        await writeFile(join(dir, 'LOCK'), '2147483646 12345'); // its process is long gone
      }
      const script = `import { FileStore } from ${JSON.stringify(join(process.cwd(), 'frameworks/sdk/store/index.ts'))};
        try { const s = await FileStore.open(${JSON.stringify(dir)}); console.log('held'); await new Promise((r) => setTimeout(r, 1500)); await s.close(); }
        catch (e) { console.log(e.name); }`;
      const outputs = await Promise.all(
        [0, 1, 2].map(
          () =>
            new Promise<string>((resolve) => {
              execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], (_error, stdout) => resolve(stdout.trim()));
            }),
        ),
      );
      expect(outputs.filter((o) => o === 'held')).toHaveLength(1);
      expect(outputs.filter((o) => o === 'StoreLockedError')).toHaveLength(2);
    }
  }, 60_000);
});
