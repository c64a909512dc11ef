use super::*;
use crate::auth::Permissions;
use crate::conn::ConnInfo;

fn user(name: &str, password: &[u8]) -> UserEntry {
    UserEntry {
        name: name.into(),
        secret: Secret::Hash(hash_password(password).unwrap()),
        home: "/tmp".into(),
        permissions: Permissions::READ_ONLY,
        limits: UserLimits::default(),
        rules: AddressRules::default(),
        totp: None,
        host: None,
    }
}

fn creds_from(ip: &str, user: &str, password: &str) -> Credentials {
    Credentials {
        user: user.as_bytes().to_vec(),
        password: password.as_bytes().to_vec(),
        conn: ConnInfo::direct(
            std::net::SocketAddr::new(ip.parse().unwrap(), 5000),
            "127.0.0.1:21".parse().unwrap(),
        ),
        tls: false,
        host: None,
        queue: None,
        vhost: None,
    }
}

fn creds(user: &str, password: &str) -> Credentials {
    creds_from("127.0.0.1", user, password)
}

fn rejected(r: Result<Account, AuthError>) -> Rejection {
    match r {
        Err(AuthError::Rejected(why)) => why,
        other => panic!("not a rejection: {other:?}"),
    }
}

#[tokio::test]
async fn store_known_unknown_anonymous() {
    let store = UserStore::new(
        vec![user("alice", b"pw")],
        Some(AnonymousAccess {
            home: "/srv".into(),
            permissions: Permissions::READ_ONLY,
            limits: UserLimits::default(),
        }),
    );
    let auth = |u: &str, p: &str| store.authenticate(creds(u, p));
    assert_eq!(auth("alice", "pw").await.unwrap().name, "alice");
    assert_eq!(
        rejected(auth("alice", "nope").await),
        Rejection::WrongPassword
    );
    assert_eq!(rejected(auth("bob", "pw").await), Rejection::UnknownUser);
    assert_eq!(rejected(auth("alice", "").await), Rejection::EmptyPassword);
    assert!(auth("ftp", "me@example.net").await.unwrap().anonymous);
    assert!(
        auth("anonymous", "").await.unwrap().anonymous,
        "anonymous needs no password"
    );
    let closed = UserStore::new(vec![], None);
    assert_eq!(
        rejected(closed.authenticate(creds("anonymous", "x")).await),
        Rejection::UnknownUser
    );
}

#[tokio::test]
async fn address_rules_server_wide_and_per_user() {
    let mut carol = user("carol", b"pw");
    carol.rules = AddressRules::parse(&["127.0.0.0/8"], &["127.0.0.3"]).unwrap();
    let store = UserStore::new(vec![user("alice", b"pw"), carol], None)
        .with_extra(
            Extra {
                access: AddressRules::parse::<&str>(&[], &["127.0.0.9"]).unwrap(),
                ..Extra::default()
            },
            "/srv".into(),
            UserLimits::default(),
        )
        .unwrap();
    let auth = |ip: &str, u: &str| store.authenticate(creds_from(ip, u, "pw"));
    assert!(auth("127.0.0.1", "carol").await.is_ok());
    let why = rejected(auth("127.0.0.3", "carol").await);
    assert_eq!(
        why,
        Rejection::AddressRule("denied_addresses 127.0.0.3/32 of the user".into())
    );
    assert!(!why.counts_as_failure());
    assert_eq!(
        rejected(auth("::1", "carol").await),
        Rejection::AddressRule("allowed_addresses (not in 127.0.0.0/8) of the user".into())
    );
    assert!(auth("::1", "alice").await.is_ok());
    assert_eq!(
        rejected(auth("127.0.0.9", "alice").await),
        Rejection::AddressRule("denied_addresses 127.0.0.9/32 of [access]".into())
    );
    assert_eq!(
        rejected(auth("127.0.0.9", "anonymous").await),
        Rejection::AddressRule("denied_addresses 127.0.0.9/32 of [access]".into()),
        "anonymous too"
    );
}

#[tokio::test]
async fn one_time_codes_after_the_password() {
    let secret = TotpSecret::parse("JBSWY3DPEHPK3PXPJBSWY3DP").unwrap();
    let mut dave = user("dave", b"pw");
    dave.totp = Some(secret.clone());
    let store = UserStore::new(vec![dave], None);
    let now = unix_now() / totp::STEP;
    let code = |step: u64| format!("{:06}", secret.code(step));
    let auth = |ip: &str, p: String| store.authenticate(creds_from(ip, "dave", &p));
    assert_eq!(
        rejected(auth("127.0.0.1", "pw".into()).await),
        Rejection::MissingCode
    );
    // A code that no step near now has (each step's code differs from the one given).
    let wrong = (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .find(|c| (now - 1..=now + 1).all(|s| *c != code(s)))
        .unwrap();
    assert_eq!(
        rejected(auth("127.0.0.1", format!("pw{wrong}")).await),
        Rejection::WrongCode
    );
    assert_eq!(
        rejected(auth("127.0.0.1", format!("px{}", code(now))).await),
        Rejection::WrongPassword
    );
    assert!(auth("127.0.0.1", format!("pw{}", code(now))).await.is_ok());
    assert!(
        auth("127.0.0.1", format!("pw{}", code(now))).await.is_ok(),
        "again from the same address"
    );
    assert_eq!(
        rejected(auth("127.0.0.2", format!("pw{}", code(now))).await),
        Rejection::CodeReused
    );
    assert!(
        auth("127.0.0.2", format!("pw{}", code(now - 1)))
            .await
            .is_ok(),
        "skew"
    );
    assert_eq!(
        rejected(auth("127.0.0.2", format!("pw{}", code(now + 3))).await),
        Rejection::WrongCode
    );
}

/// A command hook written in sh: answers by the user name.
fn hook_script(dir: &Path, calls: &Path) -> external::External {
    let script = dir.join("hook.sh");
    std::fs::write(
        &script,
        format!(
            r#"read -r line
echo "$line" >> {calls}
case "$line" in
  *'"password":"right"'*'"user":"panel"'*) echo '{{"status":"ok","home":"/srv/panel","permissions":["read","write"]}}' ;;
  *'"user":"panel"'*) echo '{{"status":"refused"}}' ;;
  *'"user":"gone"'*) echo '{{"status":"ok","disabled":true}}' ;;
  *'"user":"down"'*) exit 3 ;;
  *'"user":"slow"'*) sleep 5 ;;
  *) echo '{{"status":"unknown"}}' ;;
esac
"#,
            calls = calls.display()
        ),
    )
    .unwrap();
    let section: external::ExternalSection = toml::from_str(&format!(
        "command = [\"sh\", \"{}\"]\ntimeout_ms = 1000\ncache_secs = 60",
        script.display()
    ))
    .unwrap();
    external::External::new(section.check().unwrap()).unwrap()
}

#[tokio::test]
async fn sources_in_order_with_a_command_hook_and_its_cache() {
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls");
    let store = UserStore::new(vec![user("alice", b"pw")], None)
        .with_extra(
            Extra {
                order: vec![SourceKind::External, SourceKind::File],
                external: Some(hook_script(dir.path(), &calls)),
                ..Extra::default()
            },
            "/srv".into(),
            UserLimits::default(),
        )
        .unwrap();
    let auth = |u: &str, p: &str| store.authenticate(creds(u, p));
    let calls_made = || {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let a = auth("panel", "right").await.unwrap();
    assert_eq!(a.home, PathBuf::from("/srv/panel"));
    assert!(a.permissions.write);
    let seen = std::fs::read_to_string(&calls).unwrap();
    assert!(
        seen.contains(r#""client":"127.0.0.1""#) && seen.contains(r#""tls":false"#),
        "{seen}"
    );
    assert!(auth("panel", "right").await.is_ok());
    assert_eq!(calls_made(), 1, "the second login came from the cache");
    assert_eq!(
        rejected(auth("panel", "wrong").await),
        Rejection::WrongPassword
    );
    assert_eq!(calls_made(), 2, "another password asks the hook");
    assert!(auth("panel", "right").await.is_ok());
    assert_eq!(calls_made(), 3, "the refusal dropped the entry");
    assert_eq!(rejected(auth("gone", "pw").await), Rejection::Disabled);
    // Unknown to the hook: the file's user.
    assert_eq!(
        auth("alice", "pw").await.unwrap().home,
        PathBuf::from("/tmp")
    );
    assert_eq!(rejected(auth("nobody", "pw").await), Rejection::UnknownUser);
    assert!(matches!(
        auth("down", "pw").await,
        Err(AuthError::Unavailable(_))
    ));
    let t = std::time::Instant::now();
    assert!(matches!(
        auth("slow", "pw").await,
        Err(AuthError::Unavailable(_))
    ));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(4),
        "the timeout held"
    );
    assert_eq!(rejected(auth("panel", "").await), Rejection::EmptyPassword);
    assert_eq!(calls_made(), 8, "an empty password asks no source");
}

#[tokio::test]
async fn on_a_virtual_host_the_hook_must_name_it_and_ldap_is_not_asked() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hook.sh");
    std::fs::write(
        &script,
        r#"read -r line
case "$line" in
  *'"user":"aware"'*) echo '{"status":"ok","host":"ftp.a.test"}' ;;
  *'"user":"naive"'*) echo '{"status":"ok"}' ;;
  *) echo '{"status":"unknown"}' ;;
esac
"#,
    )
    .unwrap();
    let section: external::ExternalSection =
        toml::from_str(&format!("command = [\"sh\", \"{}\"]", script.display())).unwrap();
    let host = crate::config::HostSettings {
        names: vec!["ftp.a.test".into()],
        root: "/srv/a".into(),
        banner: None,
        cert: None,
        anonymous: false,
        acme: false,
    };
    let store = UserStore::new(vec![], None)
        .with_extra(
            Extra {
                external: Some(external::External::new(section.check().unwrap()).unwrap()),
                hosts: vec![host],
                ..Extra::default()
            },
            "/srv".into(),
            UserLimits::default(),
        )
        .unwrap();
    let on_a = |user: &str| {
        let mut c = creds(user, "pw");
        c.vhost = Some("ftp.a.test".into());
        store.authenticate(c)
    };
    let a = on_a("aware").await.unwrap();
    assert_eq!(a.home, PathBuf::from("/srv/a"), "the host's root");
    assert_eq!(rejected(on_a("naive").await), Rejection::OtherHost);
    // On the default host a hook that knows nothing of hosts works as before.
    assert_eq!(
        store.authenticate(creds("naive", "pw")).await.unwrap().home,
        PathBuf::from("/srv")
    );
}

#[tokio::test]
async fn ldap_answers_only_the_hosts_it_is_given() {
    // A directory nobody listens on: asked, it is unavailable (421); not asked, the name is
    // unknown (530).
    let ldap = |hosts: &str| {
        let section: ldap::LdapSection = toml::from_str(&format!(
            "url = \"ldap://127.0.0.1:1\"\nstarttls = false\nbind_dn = \"uid={{user}},dc=x\"\ntimeout_ms = 2000\n{hosts}"
        ))
        .unwrap();
        ldap::Ldap::new(section.check().unwrap()).unwrap()
    };
    let host = crate::config::HostSettings {
        names: vec!["ftp.a.test".into()],
        root: "/srv/a".into(),
        banner: None,
        cert: None,
        anonymous: false,
        acme: false,
    };
    let store = |hosts: &str| {
        UserStore::new(vec![], None)
            .with_extra(
                Extra {
                    ldap: Some(ldap(hosts)),
                    hosts: vec![host.clone()],
                    ..Extra::default()
                },
                "/srv".into(),
                UserLimits::default(),
            )
            .unwrap()
    };
    let on_a = || {
        let mut c = creds("carol", "pw");
        c.vhost = Some("ftp.a.test".into());
        c
    };
    assert_eq!(
        rejected(store("").authenticate(on_a()).await),
        Rejection::UnknownUser
    );
    assert!(matches!(
        store("hosts = [\"FTP.A.test\"]").authenticate(on_a()).await,
        Err(AuthError::Unavailable(_))
    ));
    assert!(
        matches!(
            store("").authenticate(creds("carol", "pw")).await,
            Err(AuthError::Unavailable(_)),
        ),
        "the default host asks it"
    );
}
