import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { main } from '../examples/pair-your-workers.js';
import { useRedis } from './support/file-redis.js';

const redis = useRedis();
const read = (path: string) => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8');

describe('examples', () => {
  it('pairs two workers as the README shows: both copies complete with one result', async () => {
    const results = await main(redis().url);
    expect(results).toEqual([
      { twin: 'a', returnvalue: { delivered: 'hello -> device-1' } },
      { twin: 'b', returnvalue: { delivered: 'hello -> device-1' } },
    ]);
  });

  it('keeps the README snippet identical to the example that runs', () => {
    const example = read('examples/pair-your-workers.ts');
    const block = /\/\/ README: begin\n([\s\S]*?)\n\s*\/\/ README: end/.exec(example)?.[1];
    expect(block).toBeDefined();
    const dedent = (text: string) =>
      text
        .split('\n')
        .map((line) => line.replace(/^ {2}/, ''))
        .join('\n');
    expect(read('README.md')).toContain(dedent(block ?? '<missing>'));
  });
});
