"""The `auth` section: dockyard's own accounts and tokens, or registry:2's modes (a part of
`settings.Settings`)."""

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from dockyard.config.base import Networks, PositiveDuration, Section, doc, empty_list
from dockyard.config.durations import Duration


class TokenAuthSettings(Section):
    """Docker token auth. dockyard issues the tokens itself, unless `rootcertbundle` is set: then, as
    in registry:2, it only verifies tokens an external issuer signed."""

    realm: str | None = Field(
        default=None,
        description="Where clients are sent for tokens (set it behind a proxy): see "
        "[auth.md](auth.md#tokens) for how it is chosen when unset.",
        json_schema_extra=doc("URL", default="this server's `/token`"),
    )
    service: str = Field(
        default="dockyard", description="The token `aud`: the service clients ask tokens for."
    )
    issuer: str = Field(default="dockyard", description="The token `iss`.")
    expiration: PositiveDuration = Field(
        default=Duration("5m"),
        description="Lifetime of access tokens. Access ends sooner when the principal loses it "
        "(disabled, credential revoked, permission removed): see "
        "[auth.md](auth.md#when-a-tokens-access-ends).",
        json_schema_extra=doc("duration"),
    )
    rootcertbundle: Path | None = Field(
        default=None,
        description="registry:2 mode: only verify tokens an external issuer signed with the keys of "
        "these PEM certificates.",
    )


class HtpasswdSettings(Section):
    """registry:2's `auth.htpasswd`: Basic auth against a bcrypt htpasswd file, instead of dockyard's
    own accounts."""

    realm: str = Field(default="basic-realm", description="The realm of the Basic challenge.")
    path: Path = Field(description="The htpasswd file (bcrypt entries only).")


class LDAPSettings(Section):
    """Search-then-bind against LDAP or Active Directory, beside dockyard's own accounts
    ([auth.md](auth.md#ldap--active-directory))."""

    url: str = Field(
        description="`ldap://host:389` or `ldaps://host:636`; `ldap://` without `starttls` sends passwords "
        "in clear text (a warning says so).",
        json_schema_extra=doc("URL"),
    )
    starttls: bool = Field(default=False, description="Upgrade an `ldap://` connection with StartTLS.")
    ca_file: Path | None = Field(
        default=None, description="PEM CA certificates to verify the server with (else the system's)."
    )
    bind_dn: str | None = Field(
        default=None, description="The service account that searches (else an anonymous bind)."
    )
    bind_password: str | None = Field(
        default=None, repr=False, description="Its password, required with `bind_dn`. Never logged."
    )
    user_base_dn: str = Field(description="Where users are searched.")
    user_filter: str = Field(
        default="(uid={username})",
        description="Finds the user: must contain `{username}`, which is escaped before it is substituted "
        "(Active Directory: `(sAMAccountName={username})`).",
    )
    email_attribute: str = Field(default="mail", description="The user's e-mail address.")
    display_name_attribute: str = Field(default="cn", description="The user's display name.")
    group_base_dn: str | None = Field(
        default=None, description="Where groups are searched; unset: no groups."
    )
    group_filter: str = Field(
        default="(member={user_dn})",
        description="Finds the user's groups: must contain `{user_dn}` (the user's DN) or `{username}`.",
    )
    group_name_attribute: str = Field(default="cn", description="A group's name, as project members name it.")
    admin_groups: list[str] = Field(
        default_factory=empty_list, description="Groups whose members are system administrators."
    )
    timeout: float = Field(
        default=5.0, gt=0, description="Seconds to wait for the directory to connect or answer."
    )


class OIDCSettings(Section):
    """OpenID Connect single sign-on for the portal: the authorization code flow with PKCE against
    your provider (Keycloak, Dex, Entra ID, Okta, ...), beside dockyard's own accounts and LDAP
    ([auth.md](auth.md#openid-connect-single-sign-on)). Users log in in the browser; `docker login`
    and the API take their CLI secret."""

    issuer: str = Field(
        description="The provider's issuer URL, exactly as its ID tokens name it (`iss`); its "
        "`/.well-known/openid-configuration` is read from there. `https://` unless a loopback address.",
        json_schema_extra=doc("URL"),
    )
    client_id: str = Field(min_length=1, description="The client dockyard is registered as.")
    client_secret: str = Field(
        min_length=1, repr=False, description="Its secret (a confidential client). Never logged."
    )
    redirect_uri: str | None = Field(
        default=None,
        description="Where the provider sends the browser back: register exactly this URL with it. "
        "Never taken from a request's `Host`; one of it or `http.host` must be set.",
        json_schema_extra=doc("URL", default="`http.host` + `/ui/oidc/callback`"),
    )
    display_name: str = Field(
        default="single sign-on", description='What the login page\'s button says after "Log in with".'
    )
    scopes: list[str] = Field(
        default_factory=lambda: ["openid", "profile", "email"],
        description="Scopes asked for; `openid` is always added. Add the one that makes your provider "
        "send the groups claim if it needs one (Dex: `groups`).",
    )
    username_claim: str = Field(
        default="preferred_username",
        description="The claim that names the dockyard user (`preferred_username`, `email`, `sub`...). "
        "Once a user has logged in, the account stays bound to their `sub`: another subject with the "
        "same name is refused.",
    )
    groups_claim: str | None = Field(
        default="groups",
        description="The claim listing the user's groups (a list of names); unset: no groups. They "
        "become dockyard groups, so project memberships can name them, as LDAP groups.",
    )
    admin_groups: list[str] = Field(
        default_factory=empty_list, description="Groups whose members are system administrators."
    )
    auto_onboard: bool = Field(
        default=True,
        description="Create the dockyard account of a user at their first login. `false`: only users "
        "who already have an OIDC account here (made by an administrator, `source: oidc`) may log in.",
    )
    timeout: float = Field(
        default=5.0, gt=0, le=60, description="Seconds to wait for the provider to connect or answer."
    )
    ca_file: Path | None = Field(
        default=None, description="PEM CA certificates to verify the provider with (else the system's)."
    )

    @field_validator("issuer", "redirect_uri")
    @classmethod
    def _https_unless_loopback(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ValueError("must be an https:// URL (http:// only on a loopback address)")
        if parts.query or parts.fragment or not parts.hostname:
            raise ValueError("must be a plain URL, without query or fragment")
        return value


class LoginLimitSettings(Section):
    """Failed logins allowed within `window` before refusing: from one client address for one account
    (`max_failures`: that address's passwords for it are refused), from one address whatever the
    accounts (`max_failures_per_address`: everything from it is refused), and for one account from
    every address (`max_failures_per_account`: then each address that has failed for it is refused,
    while addresses that have not may still log in). Robot secrets count against the address only.
    Unset, the last two are 3 and 10 times `max_failures`."""

    max_failures: int = Field(
        default=10,
        ge=1,
        description="Failed logins allowed from one client address for one account in the window; past "
        "it that address's passwords for the account are refused ([auth.md](auth.md#failed-logins)).",
    )
    max_failures_per_address: int | None = Field(
        default=None,
        ge=1,
        description="Failed logins allowed from one client address, whatever the accounts; past it the "
        "address is refused.",
        json_schema_extra=doc(default="3 times `max_failures`"),
    )
    max_failures_per_account: int | None = Field(
        default=None,
        ge=1,
        description="Failed logins allowed for one account from every address; past it each address that "
        "has failed for the account is refused, never one that has not.",
        json_schema_extra=doc(default="10 times `max_failures`"),
    )
    window: PositiveDuration = Field(
        default=Duration("15m"),
        description="The window failures are counted in.",
        json_schema_extra=doc("duration"),
    )


class AuthSettings(Section):
    """dockyard's own accounts, projects and token auth are on by default in dockyard's format
    ([auth.md](auth.md)). A registry:2 file without an auth section runs open, as registry:2 does;
    `htpasswd` or `token` with `rootcertbundle` select registry:2's modes instead. On the first start with
    dockyard's own auth, `serve` creates the system administrator `admin`: its password is
    `DOCKYARD_ADMIN_PASSWORD` when set, otherwise random, printed once and kept in
    `<datadir>/admin-password` (mode 0600)."""

    enabled: bool = Field(
        default=True,
        description="dockyard's own users, projects, robots and Docker token auth, unless `htpasswd` or "
        "`token.rootcertbundle` selects a registry:2 mode. `false` with neither runs an open registry, "
        "like registry:2 without auth.",
        json_schema_extra=doc(default="`true` (`false` in registry:2 files)"),
    )
    token: TokenAuthSettings = TokenAuthSettings()
    htpasswd: HtpasswdSettings | None = None
    ldap: LDAPSettings | None = None
    oidc: OIDCSettings | None = None
    login_limit: LoginLimitSettings = LoginLimitSettings()
    allow_ips: Networks = Field(
        default_factory=empty_list,
        description="Who may use the registry at all (`/v2`, `/token`, `/api`); empty: everyone. A "
        "variable takes a comma-separated list.",
        json_schema_extra=doc("list of CIDRs"),
    )
    management_allow_ips: Networks = Field(
        default_factory=empty_list,
        description="Who may use the management API (`/api`), on top of `allow_ips`; empty: everyone.",
        json_schema_extra=doc("list of CIDRs"),
    )
