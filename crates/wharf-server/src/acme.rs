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

use crate::config::{AcmeChallenge, AcmeSettings, HostSettings, SharedKey};
use crate::tls::{HostCert, Tls};
use crate::userdb::{SharedCert, UserDb};

/// Seals `plain` for the database: AES-256-GCM under the nodes' shared key, the host (or
/// `account`) as associated data; base64 of nonce and ciphertext.
pub fn seal(key: &SharedKey, label: &str, plain: &[u8]) -> Result<String, String> {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key.0).map_err(|_| "bad key")?);
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|e| e.to_string())?;
    let mut data = plain.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(label.as_bytes()),
        &mut data,
    )
    .map_err(|_| "sealing failed".to_string())?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    Ok(data_encoding::BASE64.encode(&out))
}

/// Opens what [`seal`] made; an error when the key or the label differs, or it was altered.
pub fn open(key: &SharedKey, label: &str, sealed: &str) -> Result<Vec<u8>, String> {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let bytes = data_encoding::BASE64
        .decode(sealed.as_bytes())
        .map_err(|_| "not base64".to_string())?;
    if bytes.len() < 12 + 16 {
        return Err("too short".into());
    }
    let (nonce, data) = bytes.split_at(12);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce")?;
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key.0).map_err(|_| "bad key")?);
    let mut data = data.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(label.as_bytes()), &mut data)
        .map_err(|_| "cannot open: another shared_key, or altered".to_string())?;
    Ok(plain.to_vec())
}

/// The associated data of the sealed account (no host name has a `:`).
const ACCOUNT_LABEL: &str = "acme-account:";

/// The database the nodes share their ACME state through, and the key sealing it.
#[derive(Clone)]
pub struct Shared {
    pub db: Arc<UserDb>,
    pub key: SharedKey,
}

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
    let config = crate::tls::client_config(ca)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured((*config).clone())
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
    shared: Option<Shared>,
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

/// The DNS names (subject alternative names) of the first certificate of a PEM file, sorted.
pub fn cert_names(cert: &Path) -> Option<Vec<String>> {
    use rustls_pki_types::pem::PemObject;
    use x509_parser::extensions::GeneralName;
    let der = rustls_pki_types::CertificateDer::pem_file_iter(cert)
        .ok()?
        .next()?
        .ok()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    let mut names: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    names.sort();
    Some(names)
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
    /// `db`: the user database, through which the nodes share certificates when
    /// `[acme] shared_key` is set.
    pub fn new(
        settings: AcmeSettings,
        hosts: &[HostSettings],
        tls: Arc<Tls>,
        db: Option<Arc<UserDb>>,
    ) -> Acme {
        let shared = match (&settings.shared_key, db) {
            (Some(key), Some(db)) => Some(Shared {
                db,
                key: key.clone(),
            }),
            _ => None,
        };
        Acme {
            shared,
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

    /// The database for challenge answers other nodes published, when shared.
    pub fn shared_db(&self) -> Option<Arc<UserDb>> {
        self.shared.as_ref().map(|s| s.db.clone())
    }

    /// With a shared database: takes in `id`'s certificate stored there when it is newer than
    /// the one in use (written to the state directory too, for restarts). Returns whether a
    /// certificate is stored there.
    async fn take_shared(
        &self,
        shared: &Shared,
        id: &str,
        names: &[String],
        installed: &mut HashMap<String, i64>,
    ) -> Result<bool, String> {
        let Some(cert) = shared.db.acme_cert(id).await.map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        if installed.get(id) == Some(&cert.updated_at) {
            return Ok(true);
        }
        let key = open(&shared.key, id, &cert.key_sealed)?;
        let (cert_file, key_file) = cert_files(&self.settings.state, id);
        write_private(&key_file, &key)?;
        write_private(&cert_file, cert.chain.as_bytes())?;
        self.tls.put_host_cert(HostCert {
            names: names.to_vec(),
            cert: cert_file,
            key: key_file,
            acme: true,
        })?;
        installed.insert(id.to_string(), cert.updated_at);
        info!(host = %id, expires = %wharf_proto::x509::date(cert.not_after), "ACME: certificate taken from the shared database");
        Ok(true)
    }

    /// Looks at every certificate now, then every `check_secs`, ordering those missing or due;
    /// a failed order is tried again after 1 minute, then 2, 4 … (at most 6 hours; the first
    /// retry comes after `check_secs` when that is shorter than a minute).
    pub async fn run(self) {
        if let Err(e) = prepare_state(&self.settings.state) {
            error!(error = %e, "ACME: the state directory cannot be used; no certificates will be ordered");
            return;
        }
        let base = self.settings.check.min(Duration::from_secs(60));
        let mut retry: HashMap<String, (Instant, Duration)> = HashMap::new();
        let mut installed: HashMap<String, i64> = HashMap::new();
        // Until the directory shows it has no renewal information.
        let mut ari_supported = true;
        // This process among the nodes: host name and PID, and a random part (containers may
        // share both).
        let node = {
            let mut r = [0u8; 6];
            let _ = getrandom::fill(&mut r);
            format!(
                "{}:{}",
                crate::server::node_name(),
                data_encoding::HEXLOWER.encode(&r)
            )
        };
        loop {
            for (id, names) in &self.hosts {
                if let Some(shared) = &self.shared {
                    if let Err(e) = self.take_shared(shared, id, names, &mut installed).await {
                        warn!(host = %id, error = %e, "ACME: the shared certificate cannot be used");
                    }
                }
                let (cert, _) = cert_files(&self.settings.state, id);
                let mut due = self.due_by_files(&cert, names);
                // The CA's own advice (ACME Renewal Information, RFC 9773), where it gives it:
                // renew once its suggested window has begun.
                if !due && ari_supported {
                    match self.renewal_window_begun(&cert).await {
                        Ok(Some(true)) => {
                            info!(host = %id, "ACME: the CA's renewal window has begun");
                            due = true;
                        }
                        Ok(Some(false)) => {}
                        Ok(None) => ari_supported = false,
                        Err(e) => {
                            warn!(host = %id, error = %e, "ACME: renewal information unavailable")
                        }
                    }
                }
                if !due {
                    continue;
                }
                if retry.get(id).is_some_and(|(at, _)| Instant::now() < *at) {
                    continue;
                }
                // With a shared database, one node orders (a lease in the database); the others
                // take its result at their next look.
                if let Some(shared) = &self.shared {
                    match shared.db.take_acme_lease(id, &node, 900).await {
                        // Another node may have stored a certificate since the first look.
                        Ok(true) => match self.take_shared(shared, id, names, &mut installed).await
                        {
                            Ok(true) if !self.due_by_files(&cert, names) => {
                                let _ = shared.db.drop_acme_lease(id, &node).await;
                                continue;
                            }
                            _ => {}
                        },
                        Ok(false) => {
                            info!(host = %id, "ACME: another node orders this certificate");
                            continue;
                        }
                        Err(e) => {
                            warn!(host = %id, error = %e, "ACME: the shared database cannot be asked; ordering nothing");
                            continue;
                        }
                    }
                }
                let ordered = self.order(id, names, &mut installed).await;
                match ordered {
                    Ok(until) => {
                        if let Some(shared) = &self.shared {
                            let _ = shared.db.drop_acme_lease(id, &node).await;
                        }
                        retry.remove(id);
                        info!(host = %id, names = %names.join(","), expires = %wharf_proto::x509::date(until), "ACME: certificate obtained and in use");
                    }
                    Err(e) => {
                        let delay = retry
                            .get(id)
                            .map_or(base, |(_, d)| (*d * 2).min(Duration::from_secs(6 * 3600)));
                        retry.insert(id.clone(), (Instant::now() + delay, delay));
                        // The lease stays for the backoff: no other node retries sooner (a
                        // CA counts failed validations).
                        if let Some(shared) = &self.shared {
                            let secs = i64::try_from(delay.as_secs()).unwrap_or(i64::MAX);
                            let _ = shared.db.take_acme_lease(id, &node, secs).await;
                        }
                        error!(host = %id, error = %e, retry_secs = delay.as_secs(), "ACME: order failed; the certificate in use stays");
                    }
                }
            }
            // Until the next look, or a retry due sooner.
            let now = Instant::now();
            let next = retry
                .values()
                .map(|(at, _)| at.saturating_duration_since(now))
                .min()
                .map_or(self.settings.check, |d| d.min(self.settings.check));
            tokio::time::sleep(next.max(Duration::from_millis(100))).await;
        }
    }

    /// Whether the certificate in `cert` is missing, due by its dates, or for other names than
    /// the host's now (names added or taken away).
    fn due_by_files(&self, cert: &Path, names: &[String]) -> bool {
        let by_date = match validity(cert) {
            Some((from, until)) => is_due(from, until, unix_now(), self.settings.renew_days),
            None => true,
        };
        if by_date {
            return true;
        }
        let mut wanted = names.to_vec();
        wanted.sort();
        let changed = cert_names(cert).is_some_and(|have| have != wanted);
        if changed {
            info!(names = %names.join(","), "ACME: the host's names changed: ordering a certificate for them");
        }
        changed
    }

    /// Whether the CA's suggested renewal window for `cert` has begun; `None` when the CA
    /// offers no renewal information.
    async fn renewal_window_begun(&self, cert: &Path) -> Result<Option<bool>, String> {
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::pem_file_iter(cert)
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("no certificate")?
            .map_err(|e| e.to_string())?;
        let id = instant_acme::CertificateIdentifier::try_from(&der)?;
        let account = self.account().await?;
        match account.renewal_info(&id).await {
            Ok((info, _)) => Ok(Some(
                info.suggested_window.start.unix_timestamp() <= unix_now(),
            )),
            Err(instant_acme::Error::Unsupported(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The account: the one in the state directory, or a new one (kept there, 0600).
    async fn account(&self) -> Result<Account, String> {
        let path = account_file(&self.settings.state);
        let http = || -> Result<Box<dyn HttpClient>, String> {
            Ok(Box::new(http_client(self.settings.ca.as_deref())?))
        };
        // Shared: the account the nodes use, sealed in the database.
        let stored = match &self.shared {
            Some(s) => match s.db.acme_account(&self.settings.directory).await {
                Ok(Some(sealed)) => Some(
                    String::from_utf8(open(&s.key, ACCOUNT_LABEL, &sealed)?)
                        .map_err(|e| e.to_string())?,
                ),
                Ok(None) => None,
                Err(e) => return Err(e.to_string()),
            },
            None => std::fs::read_to_string(&path).ok(),
        };
        if let Some(text) = stored {
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
        match &self.shared {
            Some(s) => {
                s.db.put_acme_account(
                    &self.settings.directory,
                    &seal(&s.key, ACCOUNT_LABEL, json.as_bytes())?,
                )
                .await
                .map_err(|e| e.to_string())?
            }
            None => write_private(&path, json.as_bytes())?,
        }
        info!(directory = %self.settings.directory, "ACME: account created");
        Ok(account)
    }

    /// One order for `names`: challenges answered, the certificate finalized, kept and put in
    /// use. Returns its expiry.
    async fn order(
        &self,
        id: &str,
        names: &[String],
        installed: &mut HashMap<String, i64>,
    ) -> Result<i64, String> {
        info!(host = %id, names = %names.join(","), directory = %self.settings.directory, "ACME: ordering a certificate");
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
        self.unpublish(&published).await;
        let (until, key_pem, chain) = result?;
        if let Some(s) = &self.shared {
            let stored = SharedCert {
                chain,
                key_sealed: seal(&s.key, id, key_pem.as_bytes())?,
                not_after: until,
                updated_at: unix_now(),
            };
            s.db.put_acme_cert(id, &stored)
                .await
                .map_err(|e| format!("storing the certificate for the other nodes: {e}"))?;
            installed.insert(id.to_string(), stored.updated_at);
        }
        Ok(until)
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
            self.publish(&token, &answer).await?;
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
    ) -> Result<(i64, String, String), String> {
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
            acme: true,
        })?;
        let until = validity(&cert).map_or(0, |(_, until)| until);
        Ok((until, key.serialize_pem(), chain))
    }

    async fn publish(&self, token: &str, answer: &str) -> Result<(), String> {
        if let Some(s) = &self.shared {
            // Any node may be the one the CA reaches.
            s.db.put_acme_token(token, answer, 3600)
                .await
                .map_err(|e| format!("publishing the challenge: {e}"))?;
        }
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

    async fn unpublish(&self, tokens: &[String]) {
        for token in tokens {
            if let Some(s) = &self.shared {
                let _ = s.db.drop_acme_token(token).await;
            }
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
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        // One made by hand is closed too.
        return std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", dir.display()));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// The temporary file `write_private` writes `path` through: `path` + `.tmp`.
pub fn temporary(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Writes `bytes` to `path` readable by the server alone (0600), replacing it at once (a
/// temporary file renamed over it).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = temporary(path);
    // A leftover of a crash goes first: the mode below applies only to a file made now.
    let _ = std::fs::remove_file(&tmp);
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
/// else (404). With a shared database, answers another node published are served too.
pub async fn serve_challenges(
    listener: tokio::net::TcpListener,
    tokens: Tokens,
    shared: Option<Arc<UserDb>>,
) {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::StatusCode;
    use axum::routing::get;
    type Known = (Tokens, Option<Arc<UserDb>>);
    async fn answer(
        State((tokens, shared)): State<Known>,
        UrlPath(token): UrlPath<String>,
    ) -> Result<String, StatusCode> {
        if let Some(a) = tokens.lock().ok().and_then(|t| t.get(&token).cloned()) {
            return Ok(a);
        }
        // Only what could be a token reaches the database (RFC 8555 tokens are base64url).
        if token.is_empty()
            || token.len() > 256
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(StatusCode::NOT_FOUND);
        }
        match &shared {
            Some(db) => match db.acme_token(&token).await {
                Ok(Some(a)) => Ok(a),
                Ok(None) => Err(StatusCode::NOT_FOUND),
                Err(_) => Err(StatusCode::SERVICE_UNAVAILABLE),
            },
            None => Err(StatusCode::NOT_FOUND),
        }
    }
    let app = axum::Router::new()
        .route("/.well-known/acme-challenge/{token}", get(answer))
        .with_state((tokens, shared));
    if let Err(e) = axum::serve(listener, app).await {
        warn!(error = %e, "ACME: the challenge listener stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_the_key_and_the_label() {
        let key = SharedKey([7; 32]);
        let sealed = seal(&key, "ftp.a.test", b"-----BEGIN PRIVATE KEY-----").unwrap();
        assert!(!sealed.contains("PRIVATE"));
        assert_eq!(
            open(&key, "ftp.a.test", &sealed).unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        assert!(
            open(&key, "ftp.b.test", &sealed).is_err(),
            "another host's label"
        );
        assert!(
            open(&SharedKey([8; 32]), "ftp.a.test", &sealed).is_err(),
            "another key"
        );
        assert_ne!(
            sealed,
            seal(&key, "ftp.a.test", b"-----BEGIN PRIVATE KEY-----").unwrap()
        );
        assert!(open(&key, "ftp.a.test", "AAAA").is_err());
        assert!(open(&key, "ftp.a.test", "not base64!").is_err());
    }

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
