"""OpenID Connect single sign-on: the authorization code flow with PKCE against the configured
provider (`client`: discovery, JWKS, code exchange, userinfo over httpx; `idtoken`: the ID token's
checks; `logins`: the logins under way, kept in the metadata DB). It hands `accounts` an
`ExternalIdentity`, as the LDAP directory does."""
