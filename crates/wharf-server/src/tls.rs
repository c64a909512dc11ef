//! FTPS (RFC 4217): the certificate (reloadable) and the TLS configuration that ties data
//! connections to their control connections.
//!
//! # Data-connection session reuse: what is enforced
//! With `require_session_reuse` (the default) a data connection's TLS handshake must resume a
//! TLS session that this server issued on a control connection **from the same client address,
//! logged in as the same user** (or on one of those connections' data connections). Anything
//! else — a full handshake, a session of another user, a session issued to another address — is
//! refused with 522 after the 150. This stops a third party from taking over a data connection
//! (it cannot present a session of the victim's), and it admits clients that run several
//! control connections and share one TLS session cache between them: rclone (Go's TLS) resumes
//! its data connections from whichever sibling control connection's session it holds. vsftpd's
//! `require_ssl_reuse` only asks OpenSSL "was it resumed?", so under TLS 1.3 any session of the
//! server passes there; ProFTPD ties TLS 1.3 tickets to one FTP session (its "ticket appdata").
//!
//! How: sessions are stateful (no ticket key): every TLS 1.2 session ID, TLS 1.2 ticket and TLS
//! 1.3 ticket is an entry of one server-wide store — a ticket is 32 random bytes naming the
//! entry, never session state sealed under a key, which would lose whose it is — recorded with the [`Owner`] (address, and user once logged
//! in) of the control session that issued it. Each control session reaches the store through
//! its own view, which returns an entry only to a session with the same owner; the user is
//! compared when the data connection resumes, so tickets issued before the login (AUTH TLS comes
//! before USER) count for the user who then logged in. (Go's TLS 1.2 client resumes only with
//! tickets, never with a session ID: rclone needs the TLS 1.2 tickets.) A data connection's own
//! view admits any
//! entry of the same address and notes whose it was; after the handshake the owner is compared,
//! and a sibling control session still logging in (rclone's data connection may resume a ticket
//! of a sibling that has just sent AUTH TLS) is waited for until it is logged in or gone. Entries may be used more than once
//! (Python resumes every data connection from the one session saved after login). Each control
//! session keeps at most a few entries (the least recently used go first, never another's, so
//! the session a client resumes again and again stays); when the store is full, entries of
//! sessions that have ended go first. Sessions of a shared account (anonymous) are their own
//! connection's alone. The control connection sends four TLS 1.3 tickets and, under TLS 1.2,
//! one ticket. A data connection issues one TLS 1.3 ticket for a download or listing — curl's
//! OpenSSL uses a TLS 1.3 session once, then needs the new one — and none for an upload whose
//! direction is known (its client never reads them, and closing a socket with unread data
//! resets it); it never renews a TLS 1.2 ticket (OpenSSL drops the old session on a renewal and
//! curl keeps no new one).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

pub use wharf_proto::server::TlsMode;

/// The server's TLS settings and certificate.
pub struct Tls {
    pub mode: TlsMode,
    /// A data connection must resume the control connection's TLS session.
    pub require_reuse: bool,
    /// An upload over TLS must end with close_notify to count as complete (426 otherwise): a
    /// TCP FIN alone may be forged or come from a broken connection.
    pub require_close_notify: bool,
    certs: Arc<CertStore>,
    base: Arc<rustls::ServerConfig>,
    /// Every TLS session issued, with its owner (see the module documentation).
    sessions: Arc<SessionStore>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("mode", &self.mode)
            .field("require_reuse", &self.require_reuse)
            .field("cert", &self.certs.cert_path)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the certificate chain and key (PEM) and builds the configuration.
    pub fn new(
        mode: TlsMode,
        cert: &Path,
        key: &Path,
        require_reuse: bool,
        require_close_notify: bool,
    ) -> Result<Tls, String> {
        let current = load_key_pair(cert, key)?;
        let certs = Arc::new(CertStore {
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            current: RwLock::new(Arc::new(current)),
            hosts: RwLock::new(Arc::new(RwLock::new(Vec::new()))),
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut base = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        // TLS 1.3 tickets for the control connection: clients resume their data connections
        // from these (OpenSSL and GnuTLS clients reuse one session for all of them; clients
        // with single-use tickets ask for more with RFC 9149, up to the maximum).
        base.send_tls13_tickets = 4;
        base.max_tls13_tickets = 8;
        Ok(Tls {
            mode,
            require_reuse,
            require_close_notify,
            certs,
            base: Arc::new(base),
            sessions: Arc::new(SessionStore::default()),
        })
    }

    /// The virtual hosts' certificates, to be shared with the TLS object a reload makes (ACME
    /// keeps putting renewed certificates into this one).
    pub fn host_store(&self) -> HostStore {
        self.certs.store()
    }

    /// Uses `store` for the virtual hosts' certificates (the one of the TLS object this one
    /// replaces), so that certificates put in either are served by both.
    pub fn share_host_store(self, store: HostStore) -> Tls {
        *self.certs.hosts.write().unwrap_or_else(|p| p.into_inner()) = store;
        self
    }

    /// Sets the certificates of the virtual hosts (each host's names, certificate and key),
    /// read now; handshakes that name one of them get its certificate, others the default. On
    /// error the earlier set stays.
    pub fn set_host_certs(&self, hosts: &[HostCert]) -> Result<(), String> {
        let mut loaded = Vec::new();
        for h in hosts {
            match load_key_pair(&h.cert, &h.key) {
                Ok(pair) => loaded.push((h.clone(), Arc::new(pair))),
                // ACME's files are Wharf's own: a pair that does not load (a crash between
                // writing the key and the certificate) is left out and ordered again.
                Err(e) if h.acme => {
                    tracing::warn!(host = ?h.names.first(), error = %e, "ACME certificate in the state directory unusable: it will be ordered again");
                }
                Err(e) => return Err(e),
            }
        }
        *self
            .certs
            .store()
            .write()
            .unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(())
    }

    /// When each certificate in use expires (Unix seconds): `default` for the `[tls]` one, then
    /// each host's by its first name.
    pub fn expiries(&self) -> Vec<(String, i64)> {
        let not_after = |k: &CertifiedKey| {
            k.cert
                .first()
                .and_then(|c| wharf_proto::x509::summarize(c.as_ref()))
                .map(|s| s.not_after)
        };
        let mut out = Vec::new();
        let current = self
            .certs
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(t) = not_after(&current) {
            out.push(("default".to_string(), t));
        }
        let store = self.certs.store();
        for (h, key) in store.read().unwrap_or_else(|p| p.into_inner()).iter() {
            if let (Some(name), Some(t)) = (h.names.first(), not_after(key)) {
                out.push((name.clone(), t));
            }
        }
        out
    }

    /// Reads one host's certificate and key and puts them in use for its names (replacing the
    /// host's earlier pair); running sessions keep theirs.
    pub fn put_host_cert(&self, host: HostCert) -> Result<(), String> {
        let pair = Arc::new(load_key_pair(&host.cert, &host.key)?);
        let store = self.certs.store();
        let mut hosts = store.write().unwrap_or_else(|p| p.into_inner());
        match hosts.iter_mut().find(|(h, _)| h.names == host.names) {
            Some(entry) => *entry = (host, pair),
            None => hosts.push((host, pair)),
        }
        Ok(())
    }

    /// Whether `t` names this certificate and key with the same mode and flags.
    pub fn same_settings(&self, t: &crate::config::TlsSettings) -> bool {
        self.mode == t.mode
            && self.require_reuse == t.require_session_reuse
            && self.require_close_notify == t.require_close_notify
            && self.certs.cert_path == t.cert
            && self.certs.key_path == t.key
    }

    /// Reads the certificate and key files again; sessions keep running, new handshakes use the
    /// new pair. On error the old pair stays in use.
    pub fn reload(&self) -> Result<(), String> {
        self.certs.reload()?;
        let hosts: Vec<HostCert> = self
            .certs
            .store()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(h, _)| h.clone())
            .collect();
        self.set_host_certs(&hosts)
    }

    /// The configurations of one control session, for the client `owner`: TLS sessions it
    /// issues are recorded as the owner's, and it resumes only sessions of the same owner.
    ///
    /// Data connections send no tickets unless the client asks for them (RFC 9149): a client
    /// that only writes (an upload) never reads them, and closing a socket with unread data
    /// makes the kernel send a reset, which can throw away the end of the upload before the
    /// server has read it (seen with lftp in active mode).
    pub(crate) fn session_acceptors(&self, owner: Arc<Owner>) -> io::Result<SessionTls> {
        let mut control = (*self.base).clone();
        let view = Arc::new(OwnedView {
            store: self.sessions.clone(),
            owner: owner.clone(),
        });
        control.session_storage = view.clone();
        control.ticketer = view;
        let mut data = (*self.base).clone();
        data.max_tls13_tickets = 4;
        Ok(SessionTls {
            control: TlsAcceptor::from(Arc::new(control)),
            data: Arc::new(data),
            owner,
            store: self.sessions.clone(),
        })
    }
}

/// Who TLS sessions belong to: the client's address and, once logged in, the user.
#[derive(Debug)]
pub(crate) struct Owner {
    ip: IpAddr,
    login: watch::Sender<OwnerLogin>,
    /// The keys of the store's entries this control session issued, oldest first.
    keys: Mutex<VecDeque<Vec<u8>>>,
}

#[derive(Debug, Default)]
struct OwnerLogin {
    user: Option<String>,
    /// A shared account (anonymous): its sessions are this connection's alone.
    shared: bool,
    /// The control session has ended: no login is coming.
    ended: bool,
}

impl Owner {
    pub(crate) fn new(ip: IpAddr) -> Owner {
        Owner {
            ip,
            login: watch::Sender::new(OwnerLogin::default()),
            keys: Mutex::new(VecDeque::new()),
        }
    }

    /// The control session logged in as `user`; `shared`: an account many people use (the
    /// anonymous one), whose sessions no sibling connection may resume.
    pub(crate) fn logged_in(&self, user: &str, shared: bool) {
        self.login.send_replace(OwnerLogin {
            user: Some(user.to_string()),
            shared,
            ended: false,
        });
    }

    /// The control session is no longer logged in (USER, REIN, AUTH): a login may follow.
    pub(crate) fn logged_out(&self) {
        self.login.send_modify(|l| {
            l.user = None;
            l.shared = false;
        });
    }

    /// The user, unless the account is shared.
    fn personal_user(&self) -> Option<String> {
        let login = self.login.borrow();
        login.user.clone().filter(|_| !login.shared)
    }

    fn is_shared(&self) -> bool {
        self.login.borrow().shared
    }

    /// Waits, at most `limit`, until this control session is logged in or has ended.
    async fn settled(&self, limit: Duration) {
        let mut rx = self.login.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|l| l.user.is_some() || l.ended)).await;
    }

    /// The same client: this very connection, or the same address logged in as the same
    /// (personal) user.
    fn same_as(self: &Arc<Self>, other: &Arc<Owner>) -> bool {
        if Arc::ptr_eq(self, other) {
            return true;
        }
        self.ip == other.ip
            && self
                .personal_user()
                .is_some_and(|u| other.personal_user().as_ref() == Some(&u))
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, VecDeque<Vec<u8>>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Entries one control session keeps (with its data connections'): four tickets at the
/// handshake, one per download. The least recently used go first: no other session's.
const PER_SESSION: usize = 8;

/// The length of a ticket: random bytes that name an entry of the store.
const TICKET_LEN: usize = 32;

/// The lifetime a ticket announces (the hint rustls gives for its own stateful tickets).
const TICKET_LIFETIME: u32 = 24 * 60 * 60;

/// A fresh ticket name.
fn new_ticket() -> Option<Vec<u8>> {
    let mut id = vec![0; TICKET_LEN];
    getrandom::fill(&mut id).ok()?;
    Some(id)
}

/// `key` was just resumed: it becomes `issuer`'s most recently used entry.
fn touch(issuer: &Owner, key: &[u8]) {
    let mut keys = issuer.keys();
    if let Some(i) = keys.iter().position(|k| k == key)
        && let Some(k) = keys.remove(i)
    {
        keys.push_back(k);
    }
}

/// Entries the server-wide store keeps at most (a few hundred bytes each). When it is full,
/// entries of control sessions that have ended go first; entries of live sessions are never
/// pushed out by others (with the default limits they cannot fill it); if only those are left,
/// no new session is stored (that handshake's client cannot resume it: 522 on its data
/// connections, never another client's session taken over).
const MAX_SESSIONS: usize = 65_536;

/// Every TLS session the server issued, with its owner.
#[derive(Debug, Default)]
pub(crate) struct SessionStore {
    inner: Mutex<StoreInner>,
}

#[derive(Debug, Default)]
struct StoreInner {
    entries: HashMap<Vec<u8>, (Vec<u8>, Arc<Owner>)>,
    /// Keys of control sessions that have ended, oldest first: the first to go.
    retired: VecDeque<Vec<u8>>,
}

impl SessionStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, StoreInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The control session of `owner` ended: its entries stay (a sibling connection of the same
    /// user may still resume them) but are the first to go when the store is full.
    pub(crate) fn retire(&self, owner: &Owner) {
        owner.login.send_modify(|l| l.ended = true);
        let mut inner = self.lock();
        let keys = std::mem::take(&mut *owner.keys());
        inner.retired.extend(keys);
    }
}

/// One control session's view of the store.
#[derive(Debug)]
struct OwnedView {
    store: Arc<SessionStore>,
    owner: Arc<Owner>,
}

impl StoresServerSessions for OwnedView {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        // Lock order: the store, then an owner's keys.
        let mut inner = self.store.lock();
        let mut keys = self.owner.keys();
        while keys.len() >= PER_SESSION {
            if let Some(old) = keys.pop_front() {
                inner.entries.remove(&old);
            }
        }
        while inner.entries.len() >= MAX_SESSIONS {
            let Some(old) = inner.retired.pop_front() else {
                return false;
            };
            inner.entries.remove(&old);
        }
        keys.push_back(key.clone());
        inner.entries.insert(key, (value, self.owner.clone()));
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let inner = self.store.lock();
        let (value, owner) = inner.entries.get(key)?;
        if !owner.same_as(&self.owner) {
            return None;
        }
        touch(owner, key);
        Some(value.clone())
    }

    /// Not single-use: clients resume every data connection from the session they saved.
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// The control connection's tickets (TLS 1.2 and 1.3): a ticket is the name of a store entry,
/// recorded with its owner like a session ID.
impl ProducesTickets for OwnedView {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        TICKET_LIFETIME
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let id = new_ticket()?;
        self.put(id.clone(), plain.to_vec()).then_some(id)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        self.get(ticket)
    }
}

/// A data connection's tickets: it resumes the tickets of its control session (and of
/// siblings, see [`DataView`]) but neither announces nor renews TLS 1.2 tickets (disabled,
/// rustls still looks an offered ticket up here and sends no new one); its TLS 1.3 tickets are
/// store entries made through [`DataView`]'s `put`.
#[derive(Debug)]
struct ResumeOnly(Arc<DataView>);

impl ProducesTickets for ResumeOnly {
    fn enabled(&self) -> bool {
        false
    }

    fn lifetime(&self) -> u32 {
        TICKET_LIFETIME
    }

    fn encrypt(&self, _plain: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        self.0.get(ticket)
    }
}

/// The TLS acceptors of one control session, and whose sessions they issue and resume.
#[derive(Clone)]
pub(crate) struct SessionTls {
    pub(crate) control: TlsAcceptor,
    /// The data connections' configuration; each connection gets its own view (see
    /// [`SessionTls::data`]).
    data: Arc<rustls::ServerConfig>,
    pub(crate) owner: Arc<Owner>,
    pub(crate) store: Arc<SessionStore>,
}

impl SessionTls {
    /// The acceptor of one data connection, which sends `tickets` TLS 1.3 tickets (one for a
    /// download, none for an upload: see the module documentation).
    pub(crate) fn data(&self, tickets: usize) -> DataTls {
        let view = Arc::new(DataView {
            own: OwnedView {
                store: self.store.clone(),
                owner: self.owner.clone(),
            },
            resumed: Mutex::new(None),
        });
        let mut config = (*self.data).clone();
        config.session_storage = view.clone();
        config.ticketer = Arc::new(ResumeOnly(view.clone()));
        config.send_tls13_tickets = tickets;
        DataTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            view,
        }
    }
}

/// One data connection's TLS acceptor, which notes whose session the client resumed.
pub(crate) struct DataTls {
    pub(crate) acceptor: TlsAcceptor,
    view: Arc<DataView>,
}

impl DataTls {
    /// After the handshake (`resumed`: it resumed a session): whether that session is this
    /// client's — this control session's own, or one of a sibling control connection from the
    /// same address logged in as the same user. A sibling whose login is still under way (its
    /// ticket arrived at AUTH TLS, before USER and PASS) is waited for, at most `limit`.
    pub(crate) async fn resumed_by_owner(&self, resumed: bool, limit: Duration) -> bool {
        self.view.verdict(resumed, limit).await
    }
}

/// A data connection's view of the store: it resumes this control session's entries and, for
/// the check after the handshake, those of other control sessions from the same address.
#[derive(Debug)]
struct DataView {
    own: OwnedView,
    /// Whose entry the handshake resumed.
    resumed: Mutex<Option<Arc<Owner>>>,
}

impl DataView {
    /// See [`DataTls::resumed_by_owner`].
    async fn verdict(&self, resumed: bool, limit: Duration) -> bool {
        let issuer = self
            .resumed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(issuer) = issuer.filter(|_| resumed) else {
            return false;
        };
        let me = &self.own.owner;
        if Arc::ptr_eq(&issuer, me) {
            return true;
        }
        issuer.settled(limit).await;
        issuer.same_as(me)
    }
}

impl StoresServerSessions for DataView {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.own.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let inner = self.own.store.lock();
        let (value, issuer) = inner.entries.get(key)?;
        let me = &self.own.owner;
        let candidate = Arc::ptr_eq(issuer, me)
            || (issuer.ip == me.ip && !issuer.is_shared() && !me.is_shared());
        if !candidate {
            return None;
        }
        touch(issuer, key);
        *self.resumed.lock().unwrap_or_else(|p| p.into_inner()) = Some(issuer.clone());
        Some(value.clone())
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// The admin listener's HTTPS: the acceptor, and its certificate store (read again on reload).
pub struct HttpsTls {
    pub acceptor: TlsAcceptor,
    certs: Arc<CertStore>,
}

impl HttpsTls {
    /// Reads the certificate and key again (a renewal); on error the old pair stays.
    pub fn reload(&self) -> Result<(), String> {
        self.certs.reload()
    }
}

/// An HTTPS acceptor (HTTP/1.1) with the certificate and key in PEM: the admin listener's.
pub fn https_acceptor(cert: &Path, key: &Path) -> Result<HttpsTls, String> {
    let certs = Arc::new(CertStore {
        cert_path: cert.to_path_buf(),
        key_path: key.to_path_buf(),
        current: RwLock::new(Arc::new(load_key_pair(cert, key)?)),
        hosts: RwLock::new(Arc::new(RwLock::new(Vec::new()))),
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(certs.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(HttpsTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        certs,
    })
}

/// The CAs a TLS client of the server's trusts (for hooks, the auth hook, LDAP): those of
/// `ca` when given, else the system's (or `SSL_CERT_FILE`'s).
pub fn client_roots(ca: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let path = match ca {
        Some(p) => p.to_path_buf(),
        None => std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .or_else(|| {
                [
                    "/etc/ssl/certs/ca-certificates.crt",
                    "/etc/pki/tls/certs/ca-bundle.crt",
                    "/etc/ssl/ca-bundle.pem",
                    "/etc/ssl/cert.pem",
                ]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
            })
            .ok_or("no CA bundle on this system (set SSL_CERT_FILE)")?,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (added, _) = roots.add_parsable_certificates(certs.flatten());
    if added == 0 {
        return Err(format!("{}: no CA certificate in it", path.display()));
    }
    Ok(roots)
}

/// A TLS client configuration of the server's (hooks, the auth hook, LDAP, ACME): ring, the
/// safe protocol versions, the CAs of [`client_roots`].
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(client_roots(ca)?)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

fn load_key_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no CERTIFICATE in the file", cert.display()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key_der, &provider)
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))
}

/// The current certificate, swapped on reload.
struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The virtual hosts' certificates, by their names: a store that a reload's new TLS object
    /// may share.
    hosts: RwLock<HostStore>,
}

impl CertStore {
    fn store(&self) -> HostStore {
        self.hosts.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The virtual hosts' certificates, by their names.
pub type HostStore = Arc<RwLock<Vec<(HostCert, Arc<CertifiedKey>)>>>;

/// A virtual host's certificate: the names it is served for (lower case, `*.` wildcards).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCert {
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Obtained by ACME (files of Wharf's own state directory).
    pub acme: bool,
}

impl HostCert {
    /// 0: not this host's name; 2: one of its exact names; 1: covered by a wildcard.
    fn fits(&self, name: &str) -> u8 {
        let mut best = 0;
        for n in &self.names {
            if n == name {
                return 2;
            }
            if let Some(suffix) = n.strip_prefix("*.") {
                let label = name.strip_suffix(suffix).and_then(|l| l.strip_suffix('.'));
                if label.is_some_and(|l| !l.is_empty() && !l.contains('.')) {
                    best = 1;
                }
            }
        }
        best
    }
}

impl CertStore {
    /// Reads the files again; new handshakes use the new pair, running sessions go on.
    fn reload(&self) -> Result<(), String> {
        let fresh = load_key_pair(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(())
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // The name the client asked for chooses a host's certificate (exact names before
        // wildcards); none, or one no host has: the default.
        if let Some(name) = hello.server_name() {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let store = self.store();
            let hosts = store.read().unwrap_or_else(|p| p.into_inner());
            let best = hosts
                .iter()
                .map(|(h, key)| (h.fits(&name), key))
                .filter(|(fit, _)| *fit > 0)
                .max_by_key(|(fit, _)| *fit);
            if let Some((_, key)) = best {
                return Some(key.clone());
            }
        }
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ticket names an entry of the store (no session state in it), and is resumed only by
    /// its owner (the same address and user); one resumed again and again outlives newer ones.
    #[test]
    fn tickets_are_names_of_owner_bound_entries() {
        let store = Arc::new(SessionStore::default());
        let as_user = |ip: &str, user: &str| {
            let v = view(&store, ip);
            v.owner.logged_in(user, false);
            v
        };
        let alice = as_user("192.0.2.1", "alice");
        let ticket = alice.encrypt(b"session state").unwrap();
        assert_eq!(ticket.len(), TICKET_LEN);
        assert!(!ticket.windows(7).any(|w| w == b"session"));
        assert_eq!(
            alice.decrypt(&ticket).as_deref(),
            Some(&b"session state"[..])
        );
        let sibling = as_user("192.0.2.1", "alice");
        assert!(sibling.decrypt(&ticket).is_some());
        assert!(as_user("192.0.2.1", "bob").decrypt(&ticket).is_none());
        assert!(as_user("192.0.2.9", "alice").decrypt(&ticket).is_none());
        assert!(alice.decrypt(b"forged").is_none());
        for i in 0..100u8 {
            assert!(alice.put(vec![i], vec![i]));
            assert!(
                alice.decrypt(&ticket).is_some(),
                "gone after {i} newer entries"
            );
        }
        assert_eq!(alice.owner.keys().len(), PER_SESSION);
    }

    fn view(store: &Arc<SessionStore>, ip: &str) -> OwnedView {
        OwnedView {
            store: store.clone(),
            owner: Arc::new(Owner::new(ip.parse().unwrap())),
        }
    }

    #[test]
    fn sessions_are_shared_by_the_same_user_and_address_only() {
        let store = Arc::new(SessionStore::default());
        let (a, b, c, d) = (
            view(&store, "192.0.2.1"),
            view(&store, "192.0.2.1"),
            view(&store, "192.0.2.1"),
            view(&store, "192.0.2.9"),
        );
        assert!(a.put(b"k".to_vec(), b"v".to_vec()));
        assert_eq!(
            a.get(b"k").as_deref(),
            Some(&b"v"[..]),
            "its own, before login too"
        );
        assert_eq!(b.get(b"k"), None, "nobody else's before login");
        a.owner.logged_in("alice", false);
        b.owner.logged_in("alice", false);
        c.owner.logged_in("bob", false);
        d.owner.logged_in("alice", false);
        assert_eq!(
            b.get(b"k").as_deref(),
            Some(&b"v"[..]),
            "a sibling of alice"
        );
        assert_eq!(b.take(b"k").as_deref(), Some(&b"v"[..]), "and again");
        assert_eq!(c.get(b"k"), None, "another user");
        assert_eq!(d.get(b"k"), None, "another address");
        a.owner.logged_in("anonymous", true);
        b.owner.logged_in("anonymous", true);
        assert_eq!(
            b.get(b"k"),
            None,
            "a shared account: its own connection only"
        );
        assert_eq!(a.get(b"k").as_deref(), Some(&b"v"[..]));
    }

    fn data_view(of: &OwnedView) -> DataView {
        DataView {
            own: OwnedView {
                store: of.store.clone(),
                owner: of.owner.clone(),
            },
            resumed: Mutex::new(None),
        }
    }

    /// A data connection resumes a sibling's session issued at AUTH TLS, before that sibling
    /// logged in: the verdict waits for the sibling's login, and a login as someone else, or
    /// the sibling's end without a login, refuses it.
    #[tokio::test]
    async fn a_sibling_still_logging_in_is_waited_for() {
        let store = Arc::new(SessionStore::default());
        let limit = Duration::from_secs(5);
        let me = view(&store, "192.0.2.1");
        me.owner.logged_in("alice", false);
        for (then, accepted) in [("alice", true), ("bob", false), ("", false)] {
            let sibling = view(&store, "192.0.2.1");
            let key = then.as_bytes().to_vec();
            assert!(sibling.put(key.clone(), b"v".to_vec()));
            let data = data_view(&me);
            assert_eq!(data.get(&key).as_deref(), Some(&b"v"[..]), "same address");
            let owner = sibling.owner.clone();
            let then = then.to_string();
            let login = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if then.is_empty() {
                    sibling.store.retire(&owner);
                } else {
                    owner.logged_in(&then, false);
                }
            });
            let started = std::time::Instant::now();
            assert_eq!(data.verdict(true, limit).await, accepted, "{key:?}");
            assert!(
                started.elapsed() < limit,
                "decided on the login, not the limit"
            );
            login.await.unwrap();
        }
        // Another address: not even a candidate.
        let far = view(&store, "192.0.2.9");
        far.owner.logged_in("alice", false);
        assert!(far.put(b"far".to_vec(), b"v".to_vec()));
        let data = data_view(&me);
        assert_eq!(data.get(b"far"), None);
        assert!(!data.verdict(true, limit).await);
        // A full handshake is never accepted.
        let data = data_view(&me);
        assert!(me.put(b"mine".to_vec(), b"v".to_vec()));
        assert!(data.get(b"mine").is_some());
        assert!(!data.verdict(false, limit).await);
        assert!(data.get(b"mine").is_some());
        assert!(data.verdict(true, limit).await, "its own session");
    }

    #[test]
    fn a_session_pushes_out_only_its_own_entries() {
        let store = Arc::new(SessionStore::default());
        let (a, b) = (view(&store, "192.0.2.1"), view(&store, "192.0.2.2"));
        assert!(a.put(b"a0".to_vec(), b"v".to_vec()));
        for i in 0..1000u32 {
            assert!(b.put(i.to_be_bytes().to_vec(), b"v".to_vec()));
        }
        assert!(
            a.get(b"a0").is_some(),
            "another session's handshakes never evict ours"
        );
        assert_eq!(store.lock().entries.len(), 1 + PER_SESSION);
        store.retire(&b.owner);
        assert_eq!(store.lock().retired.len(), PER_SESSION);
        assert!(
            store
                .lock()
                .entries
                .contains_key(&999u32.to_be_bytes().to_vec()[..])
        );
    }
}
