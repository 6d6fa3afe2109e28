// A partner's webhook endpoint as panva's jose documents it, unmodified: the relay's JWKS fetched
// with createRemoteJWKSet (refetched for an unknown kid), each body verified with jwtVerify.
//
// Environment: JWKS_URI, ISSUER, AUDIENCE. Stdin: one webhook body (a compact JWS) per line.
// Stdout: one JSON line per body: {"ok": true, "kid", "typ", "event"} or {"ok": false, "code"}.
import * as jose from 'jose';
import { createInterface } from 'node:readline';

const JWKS = jose.createRemoteJWKSet(new URL(process.env.JWKS_URI));

for await (const line of createInterface({ input: process.stdin })) {
  const body = line.trim();
  if (!body) continue;
  try {
    const { payload, protectedHeader } = await jose.jwtVerify(body, JWKS, {
      issuer: process.env.ISSUER,
      audience: process.env.AUDIENCE,
      typ: 'myna-relay-event+jwt',
      algorithms: ['ES256'],
    });
    // docs/partners.md, section 4: an event must be signed by an event key
    if (!protectedHeader.kid.startsWith('event-')) throw Object.assign(new Error('not an event key'), { code: 'NOT_AN_EVENT_KEY' });
    console.log(JSON.stringify({ ok: true, kid: protectedHeader.kid, typ: protectedHeader.typ, event: payload.event }));
  } catch (error) {
    console.log(JSON.stringify({ ok: false, code: error.code ?? error.name }));
  }
}
