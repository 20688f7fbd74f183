import { afterEach, describe, expect, it } from 'vitest';
import { PushGateway } from '../../examples/push-notifications/gateway.js';

describe('push gateway: claim the fence at the start, check it at the send', () => {
  let gateway: PushGateway | undefined;
  afterEach(async () => {
    await gateway?.close();
  });

  it('refuses a stale send that arrives after a takeover claimed a higher fence but before it sent', async () => {
    gateway = new PushGateway([0, 0]);
    const url = await gateway.start();
    const post = async (path: string, fence: number) => {
      const res = await fetch(`${url}${path}`, {
        method: 'POST',
        body: JSON.stringify({ id: 'n-1', device: 'd', fence, region: 'eu' }),
      });
      return { code: res.status, body: (await res.json()) as { status: string } };
    };
    expect(await post('/claim', 1)).toMatchObject({ code: 200 });
    // The executor freezes; the twin takes over with fence 2 and claims it.
    expect(await post('/claim', 2)).toMatchObject({ code: 200 });
    // The frozen executor wakes and sends with fence 1: refused, though fence 2 sent nothing yet.
    expect(await post('/push', 1)).toMatchObject({ code: 409, body: { status: 'stale-fence' } });
    expect(await post('/push', 2)).toMatchObject({ code: 200, body: { status: 'delivered' } });
    expect(gateway.stats()).toEqual({ delivered: 1, duplicatesSuppressed: 0, staleRejected: 1 });
  });
});
