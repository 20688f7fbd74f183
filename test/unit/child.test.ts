/** FixtureProcess.next names what it waited for when the line never comes. */
import { afterEach, describe, expect, it } from 'vitest';
import { FixtureProcess, NEXT_TIMEOUT_MS } from '../support/child.js';

const children: FixtureProcess[] = [];
afterEach(async () => {
  await Promise.all(children.splice(0).map((child) => child.kill()));
});

function idleChild(): FixtureProcess {
  const child = new FixtureProcess(new URL('./idle-child.ts', import.meta.url), {});
  children.push(child);
  return child;
}

describe('FixtureProcess.next', () => {
  it('rejects after its timeout, naming the fixture, its pid, the event and the last lines', async () => {
    expect(NEXT_TIMEOUT_MS).toBe(30_000);
    const child = idleChild();
    const ready = await child.next('ready');
    const error = await child.next('takeover', () => true, 300).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(
      new RegExp(
        `^child idle-child\\.ts pid ${child.child.pid}: no 'takeover' line within 300 ms; last lines: .*"event":"ready"`,
      ),
    );
    expect(ready.pid).toBe(child.child.pid);
    // The timed-out waiter is gone: a later line does not reach it, the child lives on.
    expect(child.child.exitCode).toBeNull();
  });

  it('rejects at once when the child exits first, naming the event', async () => {
    const child = idleChild();
    await child.next('ready');
    const waiting = child.next('takeover');
    await child.kill();
    await expect(waiting).rejects.toThrow(
      /^child idle-child\.ts pid \d+: exited \(SIGKILL\) before a 'takeover' line/,
    );
  });
});
