//! Certificates by ACME (RFC 8555) for hosts with `acme = true`: an account kept in the state
//! directory, an order per host when its certificate is missing or due, HTTP-01 answered on a
//! listener of its own (or by files in a webroot), the new certificate swapped into the TLS
//! configuration without touching running sessions. Failures are logged with the CA's problem
//! document and retried with backoff; the old certificate stays in use.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use tracing::{error, info, warn};

use crate::config::{AcmeChallenge, AcmeSettings, HostSettings};
use crate::tls::{HostCert, Tls};

/// The files of one host's certificate in the state directory.
pub fn cert_files(state: &Path, host_id: &str) -> (PathBuf, PathBuf) {
    (
        state.join(format!("{host_id}.crt")),
        state.join(format!("{host_id}.key")),
    )
}

/// The account's credentials in the state directory.
pub fn account_file(state: &Path) -> PathBuf {
    state.join("account.json")
}

/// Pending HTTP-01 answers: token → key authorization.
pub type Tokens = Arc<Mutex<HashMap<String, String>>>;

/// ACME's HTTP client: reqwest (already the hooks' and S3's), with the CA's certificate checked
/// against the system's CAs or `[acme] ca`.
struct Http(reqwest::Client);

impl HttpClient for Http {
    fn request(
        &self,
        req: http::Request<BodyWrapper<bytes::Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.0.clone();
        Box::pin(async move {
            let other = |e: Box<dyn std::error::Error + Send + Sync>| instant_acme::Error::Other(e);
            let (parts, mut body) = req.into_parts();
            // The request's body is whole in memory (a JWS): collected without waiting.
            let bytes = match http_body_util::BodyExt::collect(&mut body).await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let resp = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(bytes)
                .send()
                .await
                .map_err(|e| other(Box::new(e)))?;
            let mut builder = http::Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                builder = builder.header(k, v);
            }
            let body = resp.bytes().await.map_err(|e| other(Box::new(e)))?;
            let (parts, ()) = builder
                .body(())
                .map_err(|e| other(Box::new(e)))?
                .into_parts();
            Ok(BytesResponse {
                parts,
                body: Box::new(body),
            })
        })
    }
}

fn http_client(ca: Option<&Path>) -> Result<Http, String> {
    let roots = crate::tls::client_roots(ca)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(30))
        .user_agent("wharf")
        .build()
        .map(Http)
        .map_err(|e| format!("cannot make the ACME client: {e}"))
}

/// What the manager runs with.
pub struct Acme {
    settings: AcmeSettings,
    /// The hosts with `acme = true`: their own name and all names.
    hosts: Vec<(String, Vec<String>)>,
    tls: Arc<Tls>,
    tokens: Tokens,
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Validity (Unix seconds) of the first certificate of a PEM file.
pub fn validity(cert: &Path) -> Option<(i64, i64)> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::pem_file_iter(cert)
        .ok()?
        .next()?
        .ok()?;
    let s = wharf_proto::x509::summarize(&der)?;
    Some((s.not_before, s.not_after))
}

/// Whether a certificate valid from `not_before` to `not_after` is due for renewal at `now`:
/// `renew_days` or less left, or else a third of its lifetime or less.
pub fn is_due(not_before: i64, not_after: i64, now: i64, renew_days: Option<u64>) -> bool {
    let left = not_after - now;
    match renew_days {
        Some(days) => left <= i64::try_from(days.saturating_mul(86_400)).unwrap_or(i64::MAX),
        None => left <= (not_after - not_before) / 3,
    }
}

impl Acme {
    pub fn new(settings: AcmeSettings, hosts: &[HostSettings], tls: Arc<Tls>) -> Acme {
        Acme {
            settings,
            hosts: hosts
                .iter()
                .filter(|h| h.acme)
                .map(|h| (h.id().to_string(), h.names.clone()))
                .collect(),
            tls,
            tokens: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn tokens(&self) -> Tokens {
        self.tokens.clone()
    }

    /// Looks at every certificate now, then every `check_secs`, ordering those missing or due;
    /// a failed order is tried again after 1 minute, then 2, 4 … (at most 6 hours; sooner with
    /// a shorter `check_secs`).
    pub async fn run(self) {
        if let Err(e) = prepare_state(&self.settings.state) {
            error!(error = %e, "ACME: the state directory cannot be used; no certificates will be ordered");
            return;
        }
        let base = self.settings.check.min(Duration::from_secs(60));
        let mut retry: HashMap<String, (Instant, Duration)> = HashMap::new();
        loop {
            for (id, names) in &self.hosts {
                let (cert, _) = cert_files(&self.settings.state, id);
                let due = match validity(&cert) {
                    Some((from, until)) => {
                        is_due(from, until, unix_now(), self.settings.renew_days)
                    }
                    None => true,
                };
                if !due {
                    continue;
                }
                if retry.get(id).is_some_and(|(at, _)| Instant::now() < *at) {
                    continue;
                }
                match self.order(id, names).await {
                    Ok(until) => {
                        retry.remove(id);
                        info!(host = %id, names = %names.join(","), expires = %wharf_proto::x509::date(until), "ACME: certificate obtained and in use");
                    }
                    Err(e) => {
                        let delay = retry
                            .get(id)
                            .map_or(base, |(_, d)| (*d * 2).min(Duration::from_secs(6 * 3600)));
                        retry.insert(id.clone(), (Instant::now() + delay, delay));
                        error!(host = %id, error = %e, retry_secs = delay.as_secs(), "ACME: order failed; the certificate in use stays");
                    }
                }
            }
            tokio::time::sleep(self.settings.check).await;
        }
    }

    /// The account: the one in the state directory, or a new one (kept there, 0600).
    async fn account(&self) -> Result<Account, String> {
        let path = account_file(&self.settings.state);
        let http = || -> Result<Box<dyn HttpClient>, String> {
            Ok(Box::new(http_client(self.settings.ca.as_deref())?))
        };
        if let Ok(text) = std::fs::read_to_string(&path) {
            let credentials: AccountCredentials =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            return Account::builder_with_http(http()?)
                .from_credentials(credentials)
                .await
                .map_err(|e| format!("the ACME account: {e}"));
        }
        let contact: Vec<&str> = self.settings.contact.iter().map(String::as_str).collect();
        let (account, credentials) = Account::builder_with_http(http()?)
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.settings.directory.clone(),
                None,
            )
            .await
            .map_err(|e| {
                format!(
                    "creating the ACME account at {}: {e}",
                    self.settings.directory
                )
            })?;
        let json = serde_json::to_string(&credentials).map_err(|e| e.to_string())?;
        write_private(&path, json.as_bytes())?;
        info!(directory = %self.settings.directory, "ACME: account created");
        Ok(account)
    }

    /// One order for `names`: challenges answered, the certificate finalized, kept and put in
    /// use. Returns its expiry.
    async fn order(&self, id: &str, names: &[String]) -> Result<i64, String> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> =
            names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| format!("new order: {e}"))?;
        let mut published = Vec::new();
        let answered = self.answer_challenges(&mut order, &mut published).await;
        let result = match answered {
            Ok(()) => self.finish(&mut order, id, names).await,
            Err(e) => Err(e),
        };
        self.unpublish(&published);
        result
    }

    async fn answer_challenges(
        &self,
        order: &mut instant_acme::Order,
        published: &mut Vec<String>,
    ) -> Result<(), String> {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("authorization is {other:?}")),
            }
            let mut challenge = authz
                .challenge(ChallengeType::Http01)
                .ok_or("the CA offers no http-01 challenge")?;
            let token = challenge.token.clone();
            if token.is_empty()
                || !token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "a challenge token that is not base64url: {token:?}"
                ));
            }
            let answer = challenge.key_authorization().as_str().to_string();
            self.publish(&token, &answer)?;
            published.push(token);
            challenge
                .set_ready()
                .await
                .map_err(|e| format!("challenge: {e}"))?;
        }
        Ok(())
    }

    async fn finish(
        &self,
        order: &mut instant_acme::Order,
        id: &str,
        names: &[String],
    ) -> Result<i64, String> {
        let status = order
            .poll_ready(&RetryPolicy::default())
            .await
            .map_err(|e| format!("waiting for validation: {e}"))?;
        if status != OrderStatus::Ready {
            let problem = order
                .state()
                .error
                .as_ref()
                .map_or_else(String::new, |p| format!(": {p}"));
            // The authorizations say why (the CA's problem document).
            let mut why = Vec::new();
            let mut authorizations = order.authorizations();
            while let Some(Ok(a)) = authorizations.next().await {
                for c in &a.challenges {
                    if let Some(e) = &c.error {
                        why.push(format!("{:?}: {e}", a.identifier().identifier));
                    }
                }
            }
            return Err(format!(
                "the order is {status:?}{problem} {}",
                why.join("; ")
            ));
        }
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let params = rcgen::CertificateParams::new(names.to_vec()).map_err(|e| e.to_string())?;
        let csr = params
            .serialize_request(&key)
            .map_err(|e| format!("the request: {e}"))?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(|e| format!("finalize: {e}"))?;
        let chain = order
            .poll_certificate(&RetryPolicy::default())
            .await
            .map_err(|e| format!("the certificate: {e}"))?;
        let (cert, key_file) = cert_files(&self.settings.state, id);
        // The key first, then the certificate: a certificate on disk always has its key.
        write_private(&key_file, key.serialize_pem().as_bytes())?;
        write_private(&cert, chain.as_bytes())?;
        self.tls.put_host_cert(HostCert {
            names: names.to_vec(),
            cert: cert.clone(),
            key: key_file,
        })?;
        Ok(validity(&cert).map_or(0, |(_, until)| until))
    }

    fn publish(&self, token: &str, answer: &str) -> Result<(), String> {
        match &self.settings.challenge {
            AcmeChallenge::Listen(_) => {
                if let Ok(mut t) = self.tokens.lock() {
                    t.insert(token.to_string(), answer.to_string());
                }
                Ok(())
            }
            AcmeChallenge::Webroot(root) => {
                let dir = root.join(".well-known/acme-challenge");
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                std::fs::write(dir.join(token), answer)
                    .map_err(|e| format!("{}: {e}", dir.join(token).display()))
            }
        }
    }

    fn unpublish(&self, tokens: &[String]) {
        for token in tokens {
            match &self.settings.challenge {
                AcmeChallenge::Listen(_) => {
                    if let Ok(mut t) = self.tokens.lock() {
                        t.remove(token);
                    }
                }
                AcmeChallenge::Webroot(root) => {
                    let _ =
                        std::fs::remove_file(root.join(".well-known/acme-challenge").join(token));
                }
            }
        }
    }
}

/// The state directory, made 0700 when missing.
fn prepare_state(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// Writes `bytes` to `path` readable by the server alone (0600), replacing it at once (a
/// temporary file renamed over it).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Serves HTTP-01 answers on `listener`: `GET /.well-known/acme-challenge/TOKEN` and nothing
/// else (404).
pub async fn serve_challenges(listener: tokio::net::TcpListener, tokens: Tokens) {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::StatusCode;
    use axum::routing::get;
    async fn answer(
        State(tokens): State<Tokens>,
        UrlPath(token): UrlPath<String>,
    ) -> Result<String, StatusCode> {
        tokens
            .lock()
            .ok()
            .and_then(|t| t.get(&token).cloned())
            .ok_or(StatusCode::NOT_FOUND)
    }
    let app = axum::Router::new()
        .route("/.well-known/acme-challenge/{token}", get(answer))
        .with_state(tokens);
    if let Err(e) = axum::serve(listener, app).await {
        warn!(error = %e, "ACME: the challenge listener stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_at_a_third_or_at_the_days_given() {
        let day = 86_400;
        // 90 days of validity: due with 30 days left.
        assert!(!is_due(0, 90 * day, 59 * day, None));
        assert!(is_due(0, 90 * day, 60 * day, None));
        assert!(is_due(0, 90 * day, 91 * day, None), "expired");
        assert!(!is_due(0, 90 * day, 10 * day, Some(30)));
        assert!(is_due(0, 90 * day, 61 * day, Some(30)));
        assert!(is_due(0, 5 * 365 * day, 0, Some(100_000)), "forced");
    }
}
