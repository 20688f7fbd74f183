import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { useRedis } from './support/file-redis.js';
import { pairedRoundTrip } from './support/round-trip.js';

// A self-signed certificate for 127.0.0.1, made before the file's Redis starts.
const dir = mkdtempSync(join(tmpdir(), 'paired-tls-'));
const [certFile, keyFile] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
const made = spawnSync('openssl', [
  'req',
  '-x509',
  '-newkey',
  'rsa:2048',
  '-nodes',
  '-days',
  '1',
  '-subj',
  '/CN=localhost',
  '-addext',
  'subjectAltName=IP:127.0.0.1,DNS:localhost',
  '-keyout',
  keyFile,
  '-out',
  certFile,
]);
if (made.status !== 0)
  throw new Error(
    `openssl could not make a test certificate (apt-get install -y openssl): ${made.stderr}`,
  );
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const redis = useRedis({ tls: { certFile, keyFile } });

describe('over TLS (rediss://, self-signed certificate)', () => {
  it('runs PairedLock and paired BullMQ workers', async () => {
    expect(redis().url).toMatch(/^rediss:\/\//);
    await pairedRoundTrip(() => redis().connect());
  });
});
