/**
 * The Docker test image, built here because no registry is reachable: `agora-test/busybox` is
 * FROM scratch with the host's static busybox (Debian's busybox-static) installed as /bin/*
 * (`sh`, `httpd`, `nc`, `sleep`, …). Built once if the engine lacks it.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type Docker from 'dockerode';

export const TEST_IMAGE = 'agora-test/busybox';

function staticBusybox(): string {
  for (const candidate of ['/bin/busybox', '/usr/bin/busybox']) {
    try {
      const description = execFileSync('file', ['-L', candidate], { encoding: 'utf8' });
      if (/statically linked|static-pie/.test(description)) return candidate;
    } catch {
      // no such file, or no `file`: fall through to ldd
    }
    try {
      execFileSync('ldd', [candidate], { stdio: 'pipe' });
    } catch (error) {
      // ldd exits 1 with "not a dynamic executable" for a static binary.
      if (/not a dynamic executable|statically linked/.test(String((error as { stderr?: Buffer }).stderr ?? ''))) return candidate;
    }
  }
  throw new Error(`no static busybox found to build ${TEST_IMAGE}: apt-get install -y busybox-static`);
}

/** Force-removes every container (running or not) that carries all of these `key=value` labels. */
export async function removeLabelled(docker: Docker, ...labels: string[]): Promise<void> {
  const list = await docker.listContainers({ all: true, filters: { label: labels } });
  await Promise.all(list.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => {})));
}

/** Builds TEST_IMAGE unless the engine already has it. */
export async function ensureTestImage(docker: Docker): Promise<void> {
  try {
    await docker.getImage(TEST_IMAGE).inspect();
    return;
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode !== 404) throw error;
  }
  const context = mkdtempSync(path.join(tmpdir(), 'agora-image-'));
  try {
    copyFileSync(staticBusybox(), path.join(context, 'busybox'));
    writeFileSync(path.join(context, 'Dockerfile'), 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nCMD ["sh"]\n');
    const stream = (await docker.buildImage({ context, src: ['Dockerfile', 'busybox'] }, { t: TEST_IMAGE })) as unknown as Readable;
    await new Promise<void>((resolve, reject) => {
      docker.modem.followProgress(stream, (error: Error | null, output: Array<{ error?: string }> | undefined) => {
        const failure = error?.message ?? output?.find((e) => e.error)?.error;
        if (failure) reject(new Error(`cannot build ${TEST_IMAGE}: ${failure}`));
        else resolve();
      });
    });
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
}
