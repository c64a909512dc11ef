//! FTPS for the client: the rustls configuration (system CAs or `--ca-file`, or no verification
//! with `--insecure`), a certificate verifier that also records what it saw (for `wharf check`),
//! and the stream type that is plain TCP or TLS.
//!
//! Data connections resume the control connection's TLS session: they connect with the same
//! server name through the same `ClientConfig`, whose session cache holds the control
//! connection's tickets (TLS 1.3) or session ID (TLS 1.2). Strict servers (vsftpd with
//! `require_ssl_reuse`, ProFTPD, FileZilla Server, Wharf) refuse data connections that do not.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use crate::error::{Error, Result};

/// Where system CA bundles live (Debian/Ubuntu, RHEL/Fedora, openSUSE, Alpine).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// TLS for one server: explicit (AUTH TLS) or implicit, the name the certificate must carry,
/// and the configuration shared by every connection to it (and so its session cache).
#[derive(Clone)]
pub struct TlsSettings {
    /// TLS from the first byte (`ftps://`, port 990) instead of AUTH TLS.
    pub implicit: bool,
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) name: ServerName<'static>,
    recorder: Arc<Recorder>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("implicit", &self.implicit)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A TLS protocol version (see [`TlsSettings::only`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLS 1.2",
            TlsVersion::Tls13 => "TLS 1.3",
        }
    }
}

/// How a server certificate is checked.
#[derive(Debug, Clone, Default)]
pub enum Trust {
    /// The system's CA bundle (`SSL_CERT_FILE`, else the usual paths).
    #[default]
    System,
    /// Only the certificates in this PEM file (`--ca-file`).
    CaFile(PathBuf),
}

impl TlsSettings {
    /// TLS to `host` (a name or an address literal). With `accept_invalid` the handshake goes on
    /// whatever the certificate (`--insecure`; the troubleshooter also uses it to see past a bad
    /// certificate): the verdict is still recorded, see [`TlsSettings::last_certificate`].
    pub fn new(host: &str, implicit: bool, trust: &Trust, accept_invalid: bool) -> Result<Self> {
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
            .map_err(|_| Error::Usage(format!("`{host}` is not a valid TLS server name")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (roots, roots_source) = load_roots(trust)?;
        let webpki = if roots.is_empty() {
            None
        } else {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .ok()
        };
        let recorder = Arc::new(Recorder {
            webpki,
            roots_source,
            accept_invalid,
            provider: provider.clone(),
            seen: Mutex::new(None),
        });
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Usage(format!("TLS set-up: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone())
            .with_no_client_auth();
        // rustls uses each TLS 1.3 ticket once: ask (RFC 9149) for a fresh one with every
        // resumed data connection, so that a long session never runs out. Servers that do not
        // know the extension send tickets anyway (OpenSSL) or accept a ticket again (Wharf).
        config.send_ticket_request = Some(rustls::client::TicketRequest {
            new_session_count: 4,
            resumption_count: 1,
        });
        Ok(TlsSettings {
            implicit,
            config: Arc::new(config),
            name,
            recorder,
        })
    }

    /// The same settings (trust, name, recorder) limited to one protocol version: for the
    /// troubleshooter, to see which versions a server accepts.
    pub fn only(&self, version: TlsVersion) -> Result<TlsSettings> {
        let provider = self.recorder.provider.clone();
        let versions: &[&'static rustls::SupportedProtocolVersion] = match version {
            TlsVersion::Tls12 => &[&rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| Error::Usage(format!("TLS set-up: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(self.recorder.clone())
            .with_no_client_auth();
        Ok(TlsSettings {
            implicit: self.implicit,
            config: Arc::new(config),
            name: self.name.clone(),
            recorder: self.recorder.clone(),
        })
    }

    /// The configuration for one session: the shared one with a session cache of its own, so
    /// that its data connections resume its own control connection's session, never another
    /// session's (parallel sessions to one server would otherwise share tickets, and strict
    /// servers refuse a data connection that resumes another control connection's session).
    pub(crate) fn session_config(&self) -> Arc<ClientConfig> {
        let mut config = (*self.config).clone();
        config.resumption = rustls::client::Resumption::in_memory_sessions(16);
        Arc::new(config)
    }

    /// Whether certificates that do not verify are accepted (`--insecure`, or the check).
    pub fn accepts_invalid(&self) -> bool {
        self.recorder.accept_invalid
    }

    /// The certificate the last full handshake presented, and whether it verified.
    pub fn last_certificate(&self) -> Option<SeenCertificate> {
        self.recorder
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The server name certificates are checked against.
    pub fn server_name(&self) -> String {
        self.name.to_str().into_owned()
    }
}

/// What the server presented, and the verdict.
#[derive(Debug, Clone)]
pub struct SeenCertificate {
    pub chain: Vec<CertificateDer<'static>>,
    /// `Err` holds why the certificate is not trusted (unknown issuer, expired, wrong name).
    pub verdict: std::result::Result<(), String>,
    /// Whether the leaf names the server (checked apart from the chain, so that a self-signed
    /// certificate still tells whether its name is right).
    pub name_matches: bool,
}

fn load_roots(trust: &Trust) -> Result<(RootCertStore, String)> {
    let path = match trust {
        Trust::CaFile(p) => p.clone(),
        Trust::System => {
            let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
            match from_env.or_else(|| {
                SYSTEM_BUNDLES
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| p.is_file())
            }) {
                Some(p) => p,
                None => return Ok((RootCertStore::empty(), "no system CA bundle".into())),
            }
        }
    };
    let certs = read_pem_certs(&path).map_err(|e| match trust {
        Trust::CaFile(_) => Error::Usage(format!("--ca-file {}: {e}", path.display())),
        Trust::System => Error::Usage(format!("CA bundle {}: {e}", path.display())),
    })?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        if let Trust::CaFile(_) = trust {
            return Err(Error::Usage(format!(
                "--ca-file {}: no usable CA certificate in it",
                path.display()
            )));
        }
    }
    Ok((roots, path.display().to_string()))
}

fn read_pem_certs(path: &Path) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())?;
    let certs = iter
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no CERTIFICATE in the file".into());
    }
    Ok(certs)
}

/// Verifies with webpki (when there are roots) and records the certificate and verdict.
struct Recorder {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    roots_source: String,
    accept_invalid: bool,
    provider: Arc<CryptoProvider>,
    seen: Mutex<Option<SeenCertificate>>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("roots", &self.roots_source)
            .field("accept_invalid", &self.accept_invalid)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.webpki {
            Some(v) => v
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ()),
            None => Err(rustls::Error::General(format!(
                "no trusted CA certificates ({})",
                self.roots_source
            ))),
        };
        let name_matches = rustls::server::ParsedCertificate::try_from(end_entity)
            .ok()
            .is_some_and(|c| rustls::client::verify_server_name(&c, server_name).is_ok());
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(SeenCertificate {
            chain,
            verdict: verdict.as_ref().map(|_| ()).map_err(describe_cert_error),
            name_matches,
        });
        match verdict {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(_) if self.accept_invalid => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A certificate error in words a user acts on.
fn describe_cert_error(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "not trusted: issued by an unknown CA (self-signed?)".into()
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "expired".into()
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "not valid yet".into()
        }
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => "issued for another name".into(),
        rustls::Error::InvalidCertificate(C::Revoked) => "revoked".into(),
        other => other.to_string(),
    }
}

/// Describes a failed handshake: a certificate problem says what to do about it.
pub(crate) fn handshake_error(e: io::Error) -> Error {
    let text = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(cert_error @ rustls::Error::InvalidCertificate(_)) => format!(
            "the server's certificate is {}: give its CA with --ca-file FILE, or --insecure to skip the check",
            describe_cert_error(cert_error)
        ),
        _ => e.to_string(),
    };
    Error::Tls(text)
}
