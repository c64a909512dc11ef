//! FTPS (RFC 4217): the certificate (reloadable), the per-session TLS configuration that ties
//! data connections to their control connection, and the control/data stream types.
//!
//! Data-channel session reuse: every control session gets its own rustls `ServerConfig` (a clone
//! of the shared one, cheap: `Arc`s) with its own session-ID cache and its own ticket key. A data
//! connection can therefore only resume a TLS session that was made on *this* control
//! connection (or on one of its earlier data connections), whatever the TLS version: TLS 1.2
//! session IDs and tickets, and TLS 1.3 tickets alike. Tickets are stateless and may be used
//! more than once (clients such as curl and Python resume every data connection from the one
//! session they saved after login); a data connection whose handshake was not a resumption is
//! refused when reuse is required.
//!
//! How the anchors do it: vsftpd (`require_ssl_reuse`) only asks OpenSSL whether the data
//! handshake was a resumption, so under TLS 1.3 any ticket of the server would pass; ProFTPD
//! (mod_tls, reuse required by default) compared TLS 1.2 session IDs and, for TLS 1.3 tickets,
//! embeds random per-FTP-session "ticket appdata" and compares it (proftpd issue #968).
//! A per-session ticket key gives the same guarantee as ProFTPD's appdata, and covers TLS 1.2
//! tickets too (rustls only exposes resumption data for TLS 1.3). Both depend on the client
//! having read the control connection's tickets, which arrive right after the handshake, before
//! the reply to its next command. OpenSSL issues two tickets and clients with single-use
//! tickets run out after two data connections (Cyberduck's case against vsftpd); here the
//! control connection sends four and honours RFC 9149 ticket requests on data connections.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
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
        })
    }

    /// Reads the certificate and key files again; sessions keep running, new handshakes use the
    /// new pair. On error the old pair stays in use.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = load_key_pair(&self.certs.cert_path, &self.certs.key_path)?;
        let mut guard = self
            .certs
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(fresh);
        Ok(())
    }

    /// The configurations of one control session: its own session cache and ticket key, so that
    /// only this session's data connections can resume its TLS sessions.
    ///
    /// Data connections send no tickets unless the client asks for them (RFC 9149): a client
    /// that only writes (an upload) never reads them, and closing a socket with unread data
    /// makes the kernel send a reset, which can throw away the end of the upload before the
    /// server has read it (seen with lftp in active mode).
    pub(crate) fn session_acceptors(&self) -> io::Result<SessionTls> {
        let mut control = (*self.base).clone();
        control.session_storage = ServerSessionMemoryCache::new(16);
        control.ticketer = rustls::crypto::ring::Ticketer::new().map_err(io::Error::other)?;
        let mut data = control.clone();
        data.send_tls13_tickets = 0;
        data.max_tls13_tickets = 4;
        Ok(SessionTls {
            control: TlsAcceptor::from(Arc::new(control)),
            data: TlsAcceptor::from(Arc::new(data)),
        })
    }
}

/// The TLS acceptors of one control session: sharing its session cache and ticket key.
#[derive(Clone)]
pub(crate) struct SessionTls {
    pub(crate) control: TlsAcceptor,
    pub(crate) data: TlsAcceptor,
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
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}
