import { afterEach } from 'vitest';

/** Things a test opened, closed after it in reverse order: `closers.push(() => x.close())`. */
export function useClosers(): (() => Promise<void>)[] {
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });
  return closers;
}
