// A real OpenID provider (node-oidc-provider) for Bastion's SSO tests, on 127.0.0.1 only.
//
// Usage: node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI[,REDIRECT_URI...]
// One confidential client (PKCE required), three accounts, an automatic interaction handler
// (GET /interaction/:uid?account=NAME logs NAME in and grants every requested scope), and two
// test-only control routes: POST /test/rotate (a fresh signing key replaces the old one) and
// POST /test/sign (signs the posted claims with the current key, to forge expired or mis-addressed
// but correctly signed tokens). Prints "ready" once listening.
import http from 'node:http';
import { generateKeyPair, exportJWK, SignJWT } from 'jose';
import Provider from 'oidc-provider';

const [port, clientId, clientSecret, redirectUri] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

const ACCOUNTS = {
  alice: { email: 'alice@hospital.example', email_verified: true, name: 'Alice', groups: ['bastion-admins'] },
  carol: { email: 'carol@hospital.example', email_verified: true, name: 'Carol', groups: ['researchers'] },
  // claims the address of an existing Bastion account without the provider having verified it
  mallory: { email: 'victim@hospital.example', email_verified: false, name: 'Mallory', groups: [] },
};

let keyCount = 0;
async function newKey() {
  keyCount += 1;
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid: `test-key-${keyCount}`, alg: 'RS256', use: 'sig' };
}

function build(jwk) {
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUri.split(','),
      grant_types: ['authorization_code'],
      response_types: ['code'],
    }],
    jwks: { keys: [jwk] },
    async findAccount(_ctx, id) {
      const account = ACCOUNTS[id];
      if (!account) return undefined;
      return { accountId: id, async claims() { return { sub: id, ...account }; } };
    },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
    scopes: ['openid', 'email', 'profile', 'groups'],
    conformIdTokenClaims: false, // put the scope's claims in the ID token, as Entra ID and Okta do
    features: { devInteractions: { enabled: false } },
    pkce: { required: () => true },
    cookies: { keys: ['bastion-test-cookie-key'] },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  });
  provider.on('server_error', (_ctx, err) => console.error('provider error', err));
  return provider;
}

async function finishInteraction(provider, req, res, url) {
  const details = await provider.interactionDetails(req, res);
  if (details.prompt.name === 'login') {
    const account = url.searchParams.get('account') || 'alice';
    return provider.interactionFinished(req, res, { login: { accountId: account } }, { mergeWithLastSubmission: false });
  }
  const grant = details.grantId ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
  if (details.prompt.details.missingOIDCScope) grant.addOIDCScope(details.prompt.details.missingOIDCScope.join(' '));
  if (details.prompt.details.missingOIDCClaims) grant.addOIDCClaims(details.prompt.details.missingOIDCClaims);
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

let currentKey = await newKey();
let provider = build(currentKey);

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.on('data', (chunk) => { data += chunk; });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  try {
    if (req.method === 'GET' && url.pathname.startsWith('/interaction/')) {
      return await finishInteraction(provider, req, res, url);
    }
    if (req.method === 'POST' && url.pathname === '/test/rotate') {
      currentKey = await newKey();
      provider = build(currentKey);
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ kid: currentKey.kid }));
    }
    if (req.method === 'POST' && url.pathname === '/test/sign') {
      const claims = JSON.parse(await readBody(req));
      const { importJWK } = await import('jose');
      const key = await importJWK(currentKey, 'RS256');
      const token = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: currentKey.kid }).sign(key);
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ token }));
    }
    return provider.callback()(req, res);
  } catch (err) {
    console.error('handler error', err);
    res.writeHead(500);
    return res.end(String(err));
  }
});

server.listen(Number(port), '127.0.0.1', () => console.log('ready'));
