/**
 * The settle message a shadow wakes on: its tag, and the outcome it carries when the result
 * fit in it (so the shadow completes without reading the record).
 */
import { describe, expect, it } from 'vitest';
import { parseSettled } from '../../src/lock/settle-message.js';

describe('parseSettled', () => {
  it('reads a done outcome with its result and progress', () => {
    const message = JSON.stringify(['p:pair:{g:1}', '', 'done', 3, 'eu', '{"ok":1}', '50']);
    expect(parseSettled(message)).toEqual({
      tag: parseSettled(JSON.stringify(['p:pair:{g:1}', ''])).tag,
      done: { fence: 3, owner: 'eu', result: '{"ok":1}', progress: '50' },
    });
  });

  it('carries no outcome for a failed or released record, or a result too large to ride along', () => {
    for (const message of [
      ['k', '', 'failed', 2, 'eu', '', ''],
      ['k', '', 'released', 2, 'eu', '', ''],
      ['k', '', 'done', 2, 'eu', '', ''],
      ['k', ''], // a grant announced to a standby
    ]) {
      expect(parseSettled(JSON.stringify(message)).done).toBeUndefined();
    }
  });

  it("wakes the same tag whether cjson escaped a '/' or not", () => {
    const escaped = '["p:pair:{g:a\\/b}","","done",1,"eu","1",""]';
    const plain = JSON.stringify(['p:pair:{g:a/b}', '', 'done', 1, 'eu', '1', '']);
    expect(parseSettled(escaped).tag).toBe(parseSettled(plain).tag);
    expect(parseSettled(escaped).done?.progress).toBeNull();
  });

  it('matches no ticket with a message that is not ours', () => {
    expect(parseSettled('not json')).toEqual({ tag: 'not json' });
  });
});
