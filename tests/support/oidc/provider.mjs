// A real OpenID provider (oidc-provider, pinned in package.json) for dockyard's OIDC tests.
// tests/support/oidc.py starts it on a loopback port: `node provider.mjs CONFIG.json`, where the file says
// {"port", "clients": [...], "users": {"alice": {"groups": [...], ...}}}. It prints "ready <issuer>" once
// it listens. Logins go through oidc-provider's devInteractions (a login form that takes any password
// for a configured user, then a consent form); PKCE (S256) is required of every client.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${config.port}`;
const users = config.users;

const provider = new Provider(issuer, {
  clients: config.clients,
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  async findAccount(ctx, id) {
    if (!Object.hasOwn(users, id)) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: users[id].sub || id, preferred_username: id, ...users[id] };
      },
    };
  },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['dockyard-tests-only-cookie-key'] },
  ttl: { AuthorizationCode: 60, IdToken: config.id_token_ttl || 3600 },
});
provider.proxy = false;
process.on('SIGTERM', () => process.exit(0));
provider.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});
