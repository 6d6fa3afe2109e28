// An independent partner client: panva's openid-client (v6) and jose, with their defaults, against
// a running relay. tests/interop/test_node_client.py runs it; it can also be run by hand against
// `make run` (see docs/partners.md, "Node (openid-client v6)").
//
// Environment:
//   RELAY_ISSUER    the relay's issuer, e.g. http://127.0.0.1:8000
//   CLIENT_ID       the registered client_id
//   REDIRECT_URI    a registered redirect URI (nobody needs to listen on it)
//   PARTNER_JWKS    a file holding the partner's PRIVATE JWK set: one use=sig key, one use=enc key
//   SCOPE, PURPOSE  default local_tax, loan-screening
//   JOURNEY         deliver (default): the resident agrees; cancel: the resident cancels;
//                   other_key: the resident agrees, the code is first presented with a DPoP key
//                   other than the one the PAR was pushed with (refused), then with the right one
//   PICKUP_WAIT_S   how long to keep picking up through 202 (default 90)
//
// Talk, one JSON object a line: stdout {"event": "authorize", "url"} (send the resident's browser
// there), then one line on stdin: the URL the browser was redirected to at REDIRECT_URI. At the end,
// stdout {"event": "result", ...} and exit 0, or {"event": "failed", "step", ...} and exit 1.
// Progress goes to stderr.

import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

import * as jose from 'jose';
import * as client from 'openid-client';

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};

const issuer = env('RELAY_ISSUER');
const clientId = env('CLIENT_ID');
const redirectUri = env('REDIRECT_URI');
const scope = env('SCOPE', 'local_tax');
const purpose = env('PURPOSE', 'loan-screening');
const journey = env('JOURNEY', 'deliver');
const pickupWaitS = Number(env('PICKUP_WAIT_S', '90'));

const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
const log = (message) => process.stderr.write(`[node-client] ${message}\n`);

const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function readLine() {
  const { value, done } = await stdinLines.next();
  if (done) throw new Error('stdin closed before the redirect URL arrived');
  return value.trim();
}

let step = 'setup';

function describe(error) {
  const described = { name: error?.name, message: error?.message };
  for (const field of ['code', 'error', 'error_description', 'status']) {
    if (error?.[field] !== undefined) described[field] = error[field];
  }
  const cause = error?.cause;
  if (cause !== undefined) {
    if (cause instanceof Response) described.cause = { status: cause.status };
    else if (cause instanceof Error) described.cause = { name: cause.name, message: cause.message };
    else {
      try {
        described.cause = JSON.parse(JSON.stringify(cause));
      } catch {
        described.cause = String(cause);
      }
    }
  }
  return described;
}

// Seconds from a Retry-After header: delay-seconds or an HTTP date (RFC 9110 section 10.2.3).
function retryAfterSeconds(value) {
  if (value === null) throw new Error('202 without Retry-After');
  if (/^\d+$/.test(value)) return Number(value);
  const at = Date.parse(value);
  if (Number.isNaN(at)) throw new Error(`unreadable Retry-After: ${value}`);
  return Math.max(0, (at - Date.now()) / 1000);
}

async function main() {
  const jwks = JSON.parse(readFileSync(env('PARTNER_JWKS'), 'utf8'));
  const sigJwk = jwks.keys.find((key) => key.use === 'sig');
  const encJwk = jwks.keys.find((key) => key.use === 'enc');
  const signingKey = await jose.importJWK(sigJwk, sigJwk.alg);
  const encryptionKey = await jose.importJWK(encJwk, encJwk.alg);

  step = 'discovery';
  // RFC 8414 metadata (algorithm 'oauth2'); the local stack is plain HTTP on loopback.
  const config = await client.discovery(
    new URL(issuer),
    clientId,
    {},
    client.PrivateKeyJwt({ key: signingKey, kid: sigJwk.kid }),
    { algorithm: 'oauth2', execute: [client.allowInsecureRequests] },
  );
  const metadata = config.serverMetadata();
  log(`discovered ${metadata.issuer}`);

  step = 'par';
  // One DPoP key for the whole delivery: the PAR, the token request and every pickup.
  const DPoP = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'));
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const authorizeUrl = await client.buildAuthorizationUrlWithPAR(
    config,
    {
      redirect_uri: redirectUri,
      scope,
      purpose,
      state,
      code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
    },
    { DPoP },
  );
  log('pushed the authorization request');

  step = 'authorize';
  emit({ event: 'authorize', url: authorizeUrl.href });
  const callbackUrl = new URL(await readLine());

  step = 'token';
  if (journey === 'cancel') {
    try {
      await client.authorizationCodeGrant(
        config,
        callbackUrl,
        { pkceCodeVerifier: codeVerifier, expectedState: state },
        undefined,
        { DPoP },
      );
    } catch (error) {
      if (error instanceof client.AuthorizationResponseError) {
        emit({ event: 'result', journey, ...describe(error) });
        return;
      }
      throw error;
    }
    throw new Error('the redirect carried a code although the resident cancelled');
  }
  let otherKey = null;
  if (journey === 'other_key') {
    // RFC 9449 section 10: the PAR's DPoP proof bound the code to its key; another key is refused
    const stranger = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'));
    try {
      await client.authorizationCodeGrant(
        config,
        callbackUrl,
        { pkceCodeVerifier: codeVerifier, expectedState: state },
        undefined,
        { DPoP: stranger },
      );
      throw new Error('the code was redeemed with a DPoP key other than the one pushed with the PAR');
    } catch (error) {
      if (!(error instanceof client.ResponseBodyError)) throw error;
      otherKey = describe(error);
    }
  }
  const tokens = await client.authorizationCodeGrant(
    config,
    callbackUrl,
    { pkceCodeVerifier: codeVerifier, expectedState: state },
    undefined,
    { DPoP },
  );
  log(`token_type ${tokens.token_type}, expires_in ${tokens.expires_in}`);

  step = 'pickup';
  const resource = new URL('v1/self-info', issuer.endsWith('/') ? issuer : `${issuer}/`);
  const pickup = () => client.fetchProtectedResource(config, tokens.access_token, resource, 'GET', undefined, undefined, { DPoP });
  const pickups = [];
  const retryAfter = [];
  const deadline = Date.now() + pickupWaitS * 1000;
  let response = await pickup();
  pickups.push(response.status);
  while (response.status === 202) {
    const wait = retryAfterSeconds(response.headers.get('retry-after'));
    retryAfter.push(wait);
    if (Date.now() + wait * 1000 > deadline) throw new Error(`still 202 after ${pickupWaitS} s`);
    log(`202, retrying after ${wait} s`);
    await sleep(wait * 1000);
    response = await pickup();
    pickups.push(response.status);
  }
  const contentType = response.headers.get('content-type');
  const sealed = await response.text();
  if (response.status !== 200) {
    throw Object.assign(new Error(`pickup answered ${response.status}`), { status: response.status, cause: sealed });
  }

  step = 'open';
  const { plaintext, protectedHeader: jweHeader } = await jose.compactDecrypt(sealed, encryptionKey, {
    keyManagementAlgorithms: ['ECDH-ES+A256KW'],
    contentEncryptionAlgorithms: ['A256GCM'],
  });
  const JWKS = jose.createRemoteJWKSet(new URL(metadata.jwks_uri));
  const { payload: claims, protectedHeader: jwsHeader } = await jose.jwtVerify(
    new TextDecoder().decode(plaintext),
    JWKS,
    { issuer: metadata.issuer, audience: clientId, algorithms: ['ES256'] },
  );

  step = 'second_pickup';
  const again = await pickup();
  const againBody = await again.text();
  let problem = null;
  try {
    problem = JSON.parse(againBody);
  } catch {
    problem = againBody;
  }

  emit({
    event: 'result',
    journey,
    issuer: metadata.issuer,
    token: { token_type: tokens.token_type, scope: tokens.scope, expires_in: tokens.expires_in },
    pickups,
    retry_after: retryAfter,
    content_type: contentType,
    jwe_header: jweHeader,
    jws_header: jwsHeader,
    claims,
    second_pickup: { status: again.status, content_type: again.headers.get('content-type'), body: problem },
    other_key: otherKey,
  });
}

try {
  await main();
  process.exit(0);
} catch (error) {
  log(`${step} failed: ${error?.stack ?? error}`);
  emit({ event: 'failed', step, ...describe(error) });
  process.exit(1);
}
