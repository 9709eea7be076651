// node-oidc-provider as the real OpenID Provider of oidc-logout's end-to-end tests.
//
// Configured by environment: OP_PORT, OP_ISSUER (http://127.0.0.1:<port>), OP_CLIENTS (a JSON
// array of client metadata), OP_TAMPER_CLIENT (optional, below). Dev interactions (any login, any
// password) stand in for a login page. Prints `ready <issuer>` when listening, one line per
// back-channel logout delivery, and one per refresh or userinfo request (`op-call <what>
// <account> <status>`). A user `name.tenant` carries the claim `tid: tenant`; a user whose name
// starts with `admin` is in the group `oidc-logout-admins` (claim `groups`, for the console).
// `POST /_test/disable?sub=…` disables a user the way an administrator would, with no push:
// their refresh tokens and access tokens stop working (their account is no longer found).
// OP_PRINT_TOKENS=1 prints every token the token endpoint issues (`op-issued <kind> <token>`), so
// a test can look for them where they must not be (test use only: these are credentials).
import Provider from 'oidc-provider';

const port = Number(process.env.OP_PORT);
const issuer = process.env.OP_ISSUER;
const clients = JSON.parse(process.env.OP_CLIENTS ?? '[]');

const loopback = new Set(['127.0.0.1', 'localhost', '[::1]']);
const disabled = new Set();

const provider = new Provider(issuer, {
  clients,
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  // Since 9.7 outgoing requests to loopback addresses are refused; the tests' applications all
  // run on loopback, so lift the guard for exactly those hosts.
  fetch: (url, options) => {
    if (loopback.has(new URL(url).hostname)) {
      delete options.dispatcher;
    }
    return globalThis.fetch(url, options);
  },
  // A refresh token for every client allowed the refresh_token grant.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  findAccount: async (_ctx, sub) => (disabled.has(sub) ? undefined : {
    accountId: sub,
    claims: async () => ({
      sub,
      email: `${sub}@example.com`,
      ...(sub.includes('.') ? { tid: sub.split('.').pop() } : {}),
      groups: sub.startsWith('admin') ? ['oidc-logout-admins', 'staff'] : ['staff'],
    }),
  }),
  claims: { openid: ['sub', 'tid', 'groups'], email: ['email'] },
  // Scope claims (tid) in the ID token too, for the applications' policy rules.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  ttl: { Session: 3600, Interaction: 600, Grant: 3600, AccessToken: 600, IdToken: 600, RefreshToken: 3600, AuthorizationCode: 60 },
});
provider.proxy = false;

provider.use(async (ctx, next) => {
  if (ctx.path === '/_test/disable' && ctx.method === 'POST') {
    disabled.add(String(ctx.query.sub));
    ctx.body = 'disabled';
    return;
  }
  await next();
  if (ctx.path === '/token' && ctx.oidc?.params?.grant_type === 'refresh_token') {
    const account = ctx.oidc.entities?.RefreshToken?.accountId ?? '-';
    console.log(`op-call refresh ${account} ${ctx.status}`);
  } else if (ctx.path === '/me') {
    const account = ctx.oidc?.entities?.AccessToken?.accountId ?? '-';
    console.log(`op-call userinfo ${account} ${ctx.status}`);
  }
});

if (process.env.OP_PRINT_TOKENS === '1') {
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === '/token' && ctx.status === 200) {
      for (const kind of ['id_token', 'access_token', 'refresh_token']) {
        if (ctx.body?.[kind]) console.log(`op-issued ${kind} ${ctx.body[kind]}`);
      }
    }
  });
}

// OP_TAMPER_CLIENT: corrupt the signature of the ID tokens this client gets from the token
// endpoint, so tests can check that the application refuses them.
const tamperClient = process.env.OP_TAMPER_CLIENT;
if (tamperClient) {
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === '/token' && ctx.body?.id_token && ctx.oidc?.client?.clientId === tamperClient) {
      const [header, payload, signature] = ctx.body.id_token.split('.');
      const flipped = (signature[0] === 'A' ? 'B' : 'A') + signature.slice(1);
      ctx.body = { ...ctx.body, id_token: `${header}.${payload}.${flipped}` };
    }
  });
}

provider.on('backchannel.success', (_ctx, client, accountId, sid) => {
  console.log(`backchannel.success ${client.clientId} ${accountId} ${sid ?? '-'}`);
});
provider.on('backchannel.error', (_ctx, err, client) => {
  console.log(`backchannel.error ${client.clientId} ${err.message}`);
});
provider.on('server_error', (_ctx, err) => console.log(`server_error ${err.message}`));

const server = provider.listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
