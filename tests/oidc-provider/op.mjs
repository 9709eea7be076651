// node-oidc-provider as the real OpenID Provider of oidc-logout's end-to-end tests.
//
// Configured by environment: OP_PORT, OP_ISSUER (http://127.0.0.1:<port>), OP_CLIENTS (a JSON
// array of client metadata). Dev interactions (any login, any password) stand in for a login
// page. Prints `ready <issuer>` when listening and one line per back-channel logout delivery.
import Provider from 'oidc-provider';

const port = Number(process.env.OP_PORT);
const issuer = process.env.OP_ISSUER;
const clients = JSON.parse(process.env.OP_CLIENTS ?? '[]');

const loopback = new Set(['127.0.0.1', 'localhost', '[::1]']);

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
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub, email: `${sub}@example.com` }),
  }),
  claims: { openid: ['sub'], email: ['email'] },
  pkce: { required: () => true },
  ttl: { Session: 3600, Interaction: 600, Grant: 3600, AccessToken: 600, IdToken: 600, RefreshToken: 3600, AuthorizationCode: 60 },
});
provider.proxy = false;

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
