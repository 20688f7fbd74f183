/** What a process remembers of the settle messages it heard (src/lock/recent-settles.ts). */
import { describe, expect, it } from 'vitest';
import { RecentSettles } from '../../src/lock/recent-settles.js';
import type { SettledDone } from '../../src/lock/settle-message.js';
import { useFakeClock } from './fake-clock.js';

const clock = useFakeClock();

const done = (fence: number): SettledDone => ({
  fence,
  owner: 'eu',
  result: `{"n":${fence}}`,
  progress: null,
});

describe('RecentSettles', () => {
  it('recalls what a done message carried, and forgets it at a later message that is not done', () => {
    const recent = new RecentSettles();
    recent.heard('a', done(7));
    expect(recent.recall('a')).toEqual(done(7));
    expect(recent.recall('b')).toBeUndefined();
    // A grant announced, a failure or a release of the same record: the record's last word.
    recent.heard('a', undefined);
    expect(recent.recall('a')).toBeUndefined();
  });

  it('forgets an outcome after a minute, or after half the retention when that is shorter', async () => {
    const recent = new RecentSettles();
    recent.heard('a', done(1));
    await clock.advance(60_000);
    expect(recent.recall('a')).toEqual(done(1));
    await clock.advance(1);
    expect(recent.recall('a')).toBeUndefined();

    const short = new RecentSettles(10_000);
    short.heard('a', done(1));
    await clock.advance(5_001);
    expect(short.recall('a')).toBeUndefined();
  });

  it('keeps at most 4 096 outcomes, dropping the oldest heard first', () => {
    const recent = new RecentSettles();
    for (let i = 0; i < 4_100; i++) recent.heard(`t${i}`, done(i));
    expect(recent.size).toBe(4_096);
    expect(recent.recall('t3')).toBeUndefined();
    expect(recent.recall('t4')).toEqual(done(4));
    // Heard again: counted as new, so it outlives those heard between.
    recent.heard('t4', done(4));
    recent.heard('x', done(0));
    expect(recent.recall('t4')).toEqual(done(4));
    expect(recent.recall('t5')).toBeUndefined();
  });

  it('says which pairs it would have heard settle: begun since it listened, not while deaf, within its age', async () => {
    const recent = new RecentSettles();
    const before = Date.now();
    expect(recent.covers(before)).toBe(false); // not listening yet
    await clock.advance(10);
    recent.listening();
    expect(recent.covers(before)).toBe(false); // begun before it listened
    expect(recent.covers(Date.now())).toBe(true);
    await clock.advance(60_001);
    expect(recent.covers(before + 10)).toBe(false); // older than it keeps outcomes
    recent.deaf();
    expect(recent.covers(Date.now())).toBe(false);
    recent.listening();
    expect(recent.covers(Date.now())).toBe(true);
  });
});
