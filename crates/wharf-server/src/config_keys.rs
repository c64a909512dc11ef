//! Every key of the config file, with what it means: the source of `wharf.toml(5)`. The keys
//! themselves come from the parser ([`parser_keys`] asks it which fields each table takes), and
//! a test holds this table to them, so the manual cannot drift from what is accepted.

/// The tables of the file, as written in it (`""`: the top level).
pub const TABLES: &[&str] = &[
    "",
    "[passive]",
    "[active]",
    "[limits]",
    "[[user]]",
    "[users]",
    "[admin]",
    "[[hook]]",
    "[tls]",
    "[log]",
    "[storage]",
    "[[listener]]",
    "[auth]",
    "[auth.external]",
    "[auth.ldap]",
    "[access]",
    "[[host]]",
    "[acme]",
];

/// `table.key` (top-level keys bare) and what it means.
pub const KEYS: &[(&str, &str)] = &[
    (
        "root",
        "The directory served: the home of every user without one of its own (default: the current directory; on S3 a key prefix).",
    ),
    (
        "listen",
        "Control listeners, a list of ADDRESS:PORT (default [\"127.0.0.1:2121\"]; IPv6 as \"[::]:21\"). Under socket activation the sockets systemd hands over take their place.",
    ),
    (
        "listener",
        "A table per control listener with settings of its own: see [[listener]].",
    ),
    (
        "anonymous",
        "Allow anonymous/ftp logins (default: on only when no user is configured).",
    ),
    (
        "write",
        "Write access for anonymous and command-line users (default false).",
    ),
    (
        "banner",
        "The 220 greeting (default \"Wharf FTP server ready.\").",
    ),
    (
        "run_as",
        "Started as root, the user the server switches to once its listeners are bound (default nobody).",
    ),
    (
        "allow_root",
        "Stay root instead (default false; not recommended).",
    ),
    ("passive", "Passive mode: see [passive]."),
    ("active", "Active mode: see [active]."),
    ("limits", "Limits: see [limits]."),
    ("user", "A user: see [[user]]."),
    ("users", "The user database: see [users]."),
    ("admin", "The admin listener: see [admin]."),
    ("hook", "An event hook: see [[hook]]."),
    ("tls", "FTPS: see [tls]."),
    ("log", "Logging: see [log]."),
    ("storage", "Where files are kept: see [storage]."),
    (
        "auth",
        "Sources of users beyond the file and the database: see [auth].",
    ),
    ("access", "Addresses that may log in at all: see [access]."),
    ("host", "A virtual host: see [[host]]."),
    (
        "host.names",
        "The names it answers to, by HOST or the TLS name (SNI): exact, or *.suffix for one label. The first is the host's own name (in [[user]] host, logs, wharf users --host).",
    ),
    (
        "host.root",
        "Its directory: the home of its users without one of their own.",
    ),
    (
        "host.banner",
        "Its greeting: the reply to HOST, and the banner of an implicit-TLS connection that names it.",
    ),
    (
        "host.cert",
        "Its certificate (PEM), served to TLS clients that name it; needs [tls] for the others.",
    ),
    ("host.key", "Its private key (PEM)."),
    ("acme", "Certificates by ACME: see [acme]."),
    (
        "host.acme",
        "Its certificate obtained and renewed by ACME ([acme]) for its names (no wildcards: HTTP-01), instead of cert/key.",
    ),
    (
        "acme.directory",
        "The ACME directory URL (default Let's Encrypt's production; its staging directory or any other CA's).",
    ),
    (
        "acme.contact",
        "Contact URLs for the account, e.g. [\"mailto:admin@example.com\"].",
    ),
    (
        "acme.terms_agreed",
        "Agree to the CA's terms of service (must be true).",
    ),
    (
        "acme.ca",
        "A PEM file of CAs for the directory's own HTTPS (a private or test CA); default the system's.",
    ),
    (
        "acme.state",
        "The directory of the account key and the certificates (made 0700; the files 0600, never served).",
    ),
    (
        "acme.http_listen",
        "Where HTTP-01 challenges are answered (default 0.0.0.0:80); it serves nothing but /.well-known/acme-challenge/.",
    ),
    (
        "acme.webroot",
        "Or a web server's document root: answers are written under .well-known/acme-challenge/ there.",
    ),
    (
        "acme.renew_days",
        "Renew when this many days are left (default: when a third of the lifetime is left).",
    ),
    (
        "acme.check_secs",
        "Seconds between looks at the certificates (default 3600).",
    ),
    (
        "acme.shared_key",
        "With the users on PostgreSQL: 32 bytes in base64, the same on every node, sealing the private keys the nodes share through the database (never stored there).",
    ),
    (
        "host.anonymous",
        "Anonymous logins on this host, read-only into its root (default false).",
    ),
    (
        "user.host",
        "The virtual host this user belongs to (a [[host]] name); default: the default host.",
    ),
    (
        "passive.ports",
        "The passive port range, \"A-B\" with A >= 1024 (default: the kernel's ephemeral range).",
    ),
    (
        "passive.address",
        "The IPv4 address or name announced in PASV replies (NAT); a name is resolved at each PASV (default: the control connection's local address).",
    ),
    (
        "passive.allow_foreign_peer",
        "Accept passive data connections from any address, not only the control connection's peer (default false; logged).",
    ),
    (
        "passive.max_per_address",
        "Passive listeners one client address may hold open at once (default: a third of the range, at least 1); over it PASV/EPSV get 425.",
    ),
    (
        "active.source_port",
        "Source port of active-mode data connections (20 classically; needs privilege).",
    ),
    (
        "active.allow_foreign_address",
        "Allow PORT/EPRT to an address other than the client's (default false: bounce protection; logged).",
    ),
    (
        "active.allow_privileged_ports",
        "Allow PORT/EPRT to ports below 1024 (default false).",
    ),
    (
        "limits.max_sessions",
        "Control connections at once (default 2000).",
    ),
    (
        "limits.max_sessions_per_ip",
        "Control connections at once from one address (default 50).",
    ),
    (
        "limits.idle_timeout",
        "Seconds without a command before 421 (default 300).",
    ),
    (
        "limits.data_timeout",
        "Seconds a data connection may stall (default 300).",
    ),
    (
        "limits.accept_timeout",
        "Seconds a passive listener waits for the client (default 60).",
    ),
    (
        "limits.connect_timeout",
        "Seconds an active connection may take (default 60).",
    ),
    (
        "limits.max_login_failures",
        "Failed logins before the connection is closed (default 3).",
    ),
    (
        "limits.failed_login_delay_ms",
        "Milliseconds after PASS before a failed login is answered (default 1000).",
    ),
    (
        "limits.shutdown_grace",
        "Seconds running transfers get at shutdown (default 30).",
    ),
    (
        "limits.backend_timeout",
        "Seconds a login check or storage call may take before 421/451 (default 30).",
    ),
    (
        "limits.ban_after_failures",
        "Failed logins from one address within ban_window that ban it (default 10; 0: no bans).",
    ),
    (
        "limits.ban_window",
        "Seconds in which failures count towards a ban (default 600).",
    ),
    (
        "limits.ban_time",
        "Seconds a ban lasts, doubled on each repeat within a day (default 900).",
    ),
    (
        "limits.max_sessions_per_user",
        "Default sessions at once per user (none: no limit).",
    ),
    (
        "limits.download_rate",
        "Default download rate per user, bytes per second, shared by its sessions.",
    ),
    (
        "limits.upload_rate",
        "Default upload rate per user, bytes per second.",
    ),
    (
        "limits.quota_bytes",
        "Default bytes a user's home may hold.",
    ),
    (
        "limits.quota_files",
        "Default files a user's home may hold.",
    ),
    (
        "limits.max_file_size",
        "Default largest file a user may upload, bytes.",
    ),
    ("user.name", "The user's name."),
    (
        "user.password_hash",
        "Its password hash: $argon2id$ (wharf passwd), bcrypt $2b$/$2y$, or SHA-crypt $5$/$6$.",
    ),
    ("user.home", "Its home directory (default: root)."),
    (
        "user.permissions",
        "A list of read, write, delete, mkdir, rename, or [\"all\"] (default [\"read\"]).",
    ),
    ("user.max_sessions", "Sessions at once for this user."),
    (
        "user.download_rate",
        "This user's download rate, bytes per second.",
    ),
    (
        "user.upload_rate",
        "This user's upload rate, bytes per second.",
    ),
    ("user.quota_bytes", "Bytes this user's home may hold."),
    ("user.quota_files", "Files this user's home may hold."),
    (
        "user.max_file_size",
        "Largest file this user may upload, bytes.",
    ),
    (
        "users.db",
        "The user database: sqlite:PATH (made when missing; keep it outside the served directories) or postgres://USER@HOST/DB.",
    ),
    (
        "admin.listen",
        "ADDRESS:PORT of the admin listener (HTTP API, page, /health, /metrics); none without it.",
    ),
    (
        "admin.token_hash",
        "The hash of the API token (wharf passwd); without it a token is made at start and printed once (loopback only).",
    ),
    (
        "admin.cert",
        "HTTPS for the admin listener: its certificate (PEM); off loopback the server's [tls] one when unset.",
    ),
    ("admin.key", "Its private key (PEM)."),
    (
        "admin.plain_http",
        "Plain HTTP on a non-loopback address, for a trusted management network (default false; warned about at every start).",
    ),
    (
        "admin.metrics_by_host",
        "/metrics counts open sessions by virtual host too (default false: a line per host).",
    ),
    (
        "hook.on",
        "The events: upload, download, delete, mkdir, rename, login, login_failed (a name or a list).",
    ),
    (
        "hook.command",
        "A command and its arguments (no shell); the event as JSON on stdin and in WHARF_* variables.",
    ),
    (
        "hook.url",
        "An http:// or https:// URL the event is POSTed to as JSON (the certificate checked).",
    ),
    (
        "hook.timeout_ms",
        "Milliseconds a hook may take (default 10000).",
    ),
    (
        "tls.mode",
        "off, optional or required (default required once a certificate is given).",
    ),
    (
        "tls.cert",
        "The certificate chain (PEM), leaf first; reloaded on SIGHUP.",
    ),
    (
        "tls.key",
        "The private key (PEM: PKCS#8, PKCS#1 or SEC1); readable by the server's user only.",
    ),
    (
        "tls.listen_implicit",
        "Implicit-TLS listeners, a list of ADDRESS:PORT (990 in production).",
    ),
    (
        "tls.require_session_reuse",
        "Data connections must resume a TLS session of the same client and user (default true).",
    ),
    (
        "tls.require_close_notify",
        "Uploads must end with TLS close_notify to count as complete (default true).",
    ),
    ("log.format", "text (default) or json, one object a line."),
    (
        "log.xferlog",
        "A transfer log in the xferlog format, appended to; reopened on SIGUSR1.",
    ),
    ("storage.backend", "local (default) or s3."),
    (
        "storage.endpoint",
        "S3: http(s)://HOST:PORT of an S3-compatible store (none: AWS).",
    ),
    (
        "storage.region",
        "S3: the region (default AWS_REGION, else us-east-1).",
    ),
    ("storage.bucket", "S3: the bucket."),
    ("storage.prefix", "S3: the key prefix all homes lie under."),
    (
        "storage.access_key_id",
        "S3: the access key (else AWS_ACCESS_KEY_ID).",
    ),
    (
        "storage.secret_access_key",
        "S3: the secret key (else AWS_SECRET_ACCESS_KEY).",
    ),
    ("listener.address", "ADDRESS:PORT of this control listener."),
    (
        "listener.proxy_protocol",
        "Connections start with a PROXY protocol v1/v2 header (a load balancer in front).",
    ),
    (
        "listener.proxy_from",
        "The networks headers are taken from (CIDR list); required with proxy_protocol.",
    ),
    (
        "user.allowed_addresses",
        "Networks this user may log in from (CIDR list; default any).",
    ),
    (
        "user.denied_addresses",
        "Networks this user may not log in from (CIDR list; wins over allowed_addresses).",
    ),
    (
        "user.totp_secret",
        "The base32 secret of the user's one-time codes: the code is typed after the password.",
    ),
    (
        "auth.order",
        "The order sources are asked in: file, database, external, ldap (default that order). Each answers unknown (the next is asked), refused (530), or with the account.",
    ),
    (
        "auth.external",
        "The external auth hook: see [auth.external].",
    ),
    ("auth.ldap", "LDAP logins: see [auth.ldap]."),
    (
        "auth.external.url",
        "An http:// or https:// URL POSTed each login as JSON (docs/AUTHENTICATION.md); the certificate is checked.",
    ),
    (
        "auth.external.command",
        "Or a program and its arguments, given the same JSON on stdin (no shell); it prints the answer.",
    ),
    (
        "auth.external.timeout_ms",
        "Milliseconds the hook may take (default 5000); then the login gets 421.",
    ),
    (
        "auth.external.cache_secs",
        "Seconds an accepted login is remembered (default 0): how long a password changed elsewhere may still work here.",
    ),
    (
        "auth.external.ca",
        "A PEM file of CAs for an https:// url (default: the system's).",
    ),
    (
        "auth.ldap.url",
        "ldaps://HOST[:PORT], or ldap://HOST[:PORT] with StartTLS.",
    ),
    (
        "auth.ldap.starttls",
        "StartTLS on an ldap:// URL (default true; false sends passwords in clear).",
    ),
    (
        "auth.ldap.ca",
        "A PEM file of CAs for the directory (default: the system's).",
    ),
    (
        "auth.ldap.bind_dn",
        "Bind straight to this DN, {user} replaced by the escaped name: uid={user},ou=people,dc=example,dc=com.",
    ),
    (
        "auth.ldap.search_base",
        "Or find the user under this base as the service account, then bind to its DN.",
    ),
    ("auth.ldap.service_dn", "The service account that searches."),
    ("auth.ldap.service_password", "Its password."),
    (
        "auth.ldap.user_attribute",
        "The attribute with the login name (default uid; Active Directory: sAMAccountName).",
    ),
    (
        "auth.ldap.user_filter",
        "What a user entry must also match (default (objectClass=*)).",
    ),
    (
        "auth.ldap.group_base",
        "Where groups are searched (default: the parent of the users' branch, e.g. dc=example,dc=com).",
    ),
    (
        "auth.ldap.group_filter",
        "The groups of a user, {dn} its DN and {user} its name (default (&(objectClass=groupOfNames)(member={dn}))).",
    ),
    (
        "auth.ldap.groups",
        "A table: group name (cn) = permissions. With any, a user in none of them may not log in.",
    ),
    (
        "auth.ldap.permissions",
        "Permissions of every directory user, added to its groups' (default [\"read\"]).",
    ),
    (
        "auth.ldap.home_attribute",
        "The attribute with the home (e.g. homeDirectory).",
    ),
    (
        "auth.ldap.home",
        "Or the home as a template: /srv/ftp/{user}.",
    ),
    (
        "auth.ldap.allowed_addresses_attribute",
        "An attribute with the networks the user may log in from.",
    ),
    (
        "auth.ldap.denied_addresses_attribute",
        "An attribute with the networks the user may not log in from.",
    ),
    (
        "auth.ldap.totp_attribute",
        "An attribute with the user's base32 one-time code secret.",
    ),
    (
        "auth.ldap.pool_size",
        "Connections kept to the directory (default 4).",
    ),
    (
        "auth.ldap.timeout_ms",
        "Milliseconds a connection or an operation may take (default 5000); then 421.",
    ),
    (
        "auth.ldap.cache_secs",
        "Seconds an accepted login is remembered (default 0).",
    ),
    (
        "auth.ldap.hosts",
        "The virtual hosts (their first names) whose logins the directory answers (default: the default host only).",
    ),
    (
        "access.allowed_addresses",
        "Networks any login may come from (CIDR list; default any). Checked before any password.",
    ),
    (
        "access.denied_addresses",
        "Networks no login may come from (CIDR list; wins over allowed_addresses).",
    ),
];

/// The keys the parser accepts, as `table.key`, asked of the parser itself: each table is fed
/// an unknown key, and its error lists the fields it takes.
pub fn parser_keys() -> Vec<String> {
    let mut out = Vec::new();
    for table in TABLES {
        let text = format!("{table}\nzz_not_a_key = 1\n");
        let Err(e) = crate::config::FileConfig::parse(&text) else {
            continue;
        };
        let message = e.to_string();
        // "expected one of `a`, `b`", or "expected `a`" for a table of one field.
        let Some((_, list)) = message
            .split_once("expected one of ")
            .or_else(|| message.split_once("expected "))
        else {
            continue;
        };
        let prefix = table.trim_matches(|c| c == '[' || c == ']');
        // (Two fields: "expected `a` or `b`".)
        for key in list.split(", ").flat_map(|k| k.split(" or ")) {
            let key = key.trim().trim_matches('`');
            out.push(if prefix.is_empty() {
                key.to_string()
            } else {
                format!("{prefix}.{key}")
            });
        }
    }
    out
}

/// What `key` (`table.key`) means.
pub fn describe(key: &str) -> Option<&'static str> {
    KEYS.iter().find(|(k, _)| *k == key).map(|(_, d)| *d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_the_parser_takes_is_described_and_no_other() {
        let parsed = parser_keys();
        assert!(parsed.len() > 60, "{parsed:?}");
        for k in &parsed {
            assert!(describe(k).is_some(), "`{k}` is accepted but not described");
        }
        for (k, _) in KEYS {
            assert!(
                parsed.iter().any(|p| p == k),
                "`{k}` is described but not accepted"
            );
        }
    }
}
