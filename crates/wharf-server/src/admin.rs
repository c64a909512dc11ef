//! The admin listener: HTTP on its own address, for operators and control panels.
//!
//! - `GET /health` and `GET /metrics` need no token (load balancers and Prometheus).
//! - `/api/v1/…` needs `Authorization: Bearer TOKEN` (never a cookie or a query string; no CORS
//!   answers): users (in the user database), sessions (list, end), bans (list, lift), reload.
//!   Errors are JSON: `{"error": "…"}`.
//!
//! Every act that changes something is an audit line naming the admin's address. Wrong tokens
//! are counted (`/metrics`), logged at most once a second, and an address that keeps sending
//! them is refused for a while before any hash is computed. A state-changing request that a
//! browser marks as coming from another site (`Sec-Fetch-Site`, `Origin`) is refused. Every
//! answer carries nosniff, no-referrer and no framing; API answers are never cached.
//!
//! See `docs/ADMIN-API.md`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::auth::{Permissions, UserLimits};
use crate::server::Live;
use crate::userdb::{DbError, DbUser, UserDb, parse_permissions};

/// A reload asked for by the API: the binary reads the configuration again and answers.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// What the binary gives the server for its admin listener.
pub struct AdminSetup {
    pub listener: tokio::net::TcpListener,
    /// The hash of the API token (`[admin] token_hash`, or of the one made at start).
    pub token_hash: String,
    /// Where `POST /api/v1/reload` goes; `None`: reloads are not offered.
    pub reload: Option<mpsc::UnboundedSender<ReloadRequest>>,
    /// HTTPS; `None`: plain HTTP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

struct AdminState {
    live: Arc<Live>,
    token_hash: Arc<str>,
    /// A token that verified, kept so that every request does not cost a password hash.
    verified: Mutex<Option<String>>,
    /// Token checks one at a time: guessing costs a hash each, and cannot take every CPU.
    checks: tokio::sync::Semaphore,
    reload: Option<mpsc::UnboundedSender<ReloadRequest>>,
    /// Wrong tokens by address, and when the last line about them was logged.
    strikes: Mutex<Strikes>,
}

/// Wrong tokens an address may send within [`STRIKE_WINDOW`] before it is refused.
const MAX_STRIKES: u32 = 10;
const STRIKE_WINDOW: Duration = Duration::from_secs(60);
/// How long an address that sent too many wrong tokens is refused.
const STRIKE_OUT: Duration = Duration::from_secs(300);
/// Addresses remembered at most (the oldest go).
const STRIKE_ADDRESSES: usize = 10_000;

#[derive(Default)]
struct Strikes {
    by: HashMap<IpAddr, Strike>,
    /// When a line about wrong tokens was last logged, and how many were not since.
    logged: Option<Instant>,
    unlogged: u64,
}

struct Strike {
    count: u32,
    since: Instant,
    refused_until: Option<Instant>,
}

impl Strikes {
    /// Whether `ip` is refused now.
    fn refused(&mut self, ip: IpAddr, now: Instant) -> bool {
        match self.by.get(&ip).and_then(|s| s.refused_until) {
            Some(until) if until > now => true,
            Some(_) => {
                self.by.remove(&ip);
                false
            }
            None => false,
        }
    }

    /// A wrong token from `ip`: whether it is to be logged now (at most once a second), with
    /// how many went unlogged before it, and whether the address is refused from now on.
    fn strike(&mut self, ip: IpAddr, now: Instant) -> (Option<u64>, bool) {
        if self.by.len() >= STRIKE_ADDRESSES && !self.by.contains_key(&ip) {
            let oldest = self
                .by
                .iter()
                .min_by_key(|(_, s)| s.since)
                .map(|(ip, _)| *ip);
            if let Some(old) = oldest {
                self.by.remove(&old);
            }
        }
        let s = self.by.entry(ip).or_insert(Strike {
            count: 0,
            since: now,
            refused_until: None,
        });
        if now.duration_since(s.since) > STRIKE_WINDOW {
            *s = Strike {
                count: 0,
                since: now,
                refused_until: None,
            };
        }
        s.count += 1;
        let out = s.count >= MAX_STRIKES;
        if out {
            s.refused_until = Some(now + STRIKE_OUT);
        }
        let log = match self.logged {
            Some(t) if now.duration_since(t) < Duration::from_secs(1) && !out => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.logged = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        };
        (log, out)
    }
}

/// An audit line for an act through the admin listener: who (the address), what, on what.
fn audit(admin: SocketAddr, act: &str, on: &str) {
    tracing::info!(admin = %admin, act, on, "admin act");
}

type Shared = Arc<AdminState>;

/// An API error: its status and message, as JSON.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> ApiError {
        let status = match e {
            DbError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            DbError::Exists(_) => StatusCode::CONFLICT,
            DbError::NoSuchUser(_) => StatusCode::NOT_FOUND,
            DbError::Invalid(_) => StatusCode::BAD_REQUEST,
        };
        ApiError(status, e.to_string())
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// Serves the admin listener until `stop` turns true.
pub(crate) async fn serve(
    setup: AdminSetup,
    live: Arc<Live>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let state = Arc::new(AdminState {
        live,
        token_hash: Arc::from(setup.token_hash.as_str()),
        verified: Mutex::new(None),
        checks: tokio::sync::Semaphore::new(1),
        reload: setup.reload,
        strikes: Mutex::default(),
    });
    let api = Router::new()
        .route("/users", get(list_users).post(create_user))
        .route(
            "/users/{name}",
            get(show_user).patch(change_user).delete(delete_user),
        )
        .route("/sessions", get(list_sessions))
        .route("/sessions/{id}", axum::routing::delete(end_session))
        .route("/bans", get(list_bans))
        .route("/bans/{ip}", axum::routing::delete(lift_ban))
        .route("/reload", post(reload))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ))
        .route_layer(axum::middleware::from_fn(same_site_only));
    let app = Router::new()
        .route("/", get(page))
        .route("/app.js", get(script))
        .route("/app.css", get(style))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api)
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .layer(axum::middleware::from_fn(harden))
        .with_state(state);
    let addr = setup.listener.local_addr().ok();
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let r = match setup.tls {
        None => {
            tracing::info!(addr = ?addr, "admin listener serving (HTTP)");
            axum::serve(setup.listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
        Some(acceptor) => {
            tracing::info!(addr = ?addr, "admin listener serving (HTTPS)");
            let listener = HttpsListener::start(setup.listener, acceptor);
            axum::serve(axum::serve::ListenerExt::tap_io(listener, |_| {}), app)
                .with_graceful_shutdown(stopped)
                .await
        }
    };
    if let Err(e) = r {
        tracing::warn!(error = %e, "admin listener stopped");
    }
}

/// The admin listener over TLS: connections are accepted, and their handshakes run, by a task
/// of their own (a slow handshake holds up nobody), and handed over once established.
struct HttpsListener {
    ready: mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    local: std::io::Result<SocketAddr>,
    _accepting: tokio::task::JoinHandle<()>,
}

impl HttpsListener {
    fn start(listener: tokio::net::TcpListener, acceptor: tokio_rustls::TlsAcceptor) -> Self {
        let local = listener.local_addr();
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
                    match handshake.await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "admin TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "admin TLS handshake timed out"),
                    }
                });
            }
        });
        HttpsListener {
            ready,
            local,
            _accepting: accepting,
        }
    }
}

impl Drop for HttpsListener {
    fn drop(&mut self) {
        self._accepting.abort();
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task is gone (never, while this lives): wait for the shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.local {
            Ok(a) => Ok(*a),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}

/// The headers a security review expects on every answer: no sniffing, no referrer, no
/// framing (the page's own policy says the rest), and API answers never cached.
async fn harden(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    if api {
        h.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    resp
}

/// A state-changing API request that a browser says comes from another site is refused
/// (defense in depth: the token is never sent by a browser on its own).
async fn same_site_only(headers: HeaderMap, req: Request, next: Next) -> Response {
    let safe = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if !safe && cross_site(&headers) {
        return ApiError(StatusCode::FORBIDDEN, "cross-site request refused".into())
            .into_response();
    }
    next.run(req).await
}

/// Whether the browser's headers say the request comes from another site than this listener.
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // The browser's own word comes first (a proxy in front may rewrite Host).
    if let Some(site) = text("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match text("origin") {
        None => false,
        Some(origin) => {
            let host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            host.is_none_or(|h| Some(h) != text("host"))
        }
    }
}

/// `Authorization: Bearer TOKEN`, checked against the token's hash; 401 otherwise, 429 for an
/// address that sent too many wrong ones.
async fn authorize(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let ip = peer.ip().to_canonical();
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        s.live.monitor.metrics.admin_refused();
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "missing Authorization: Bearer TOKEN".into(),
        )
        .into_response();
    };
    let verdict = check_token(&s, token, ip).await;
    if verdict == Verdict::Refused {
        s.live.monitor.metrics.admin_refused();
        return ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            "too many wrong tokens from this address; try again later".into(),
        )
        .into_response();
    }
    if verdict == Verdict::Wrong {
        s.live.monitor.metrics.admin_refused();
        let (log, out) = s
            .strikes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .strike(ip, Instant::now());
        if let Some(unlogged) = log {
            tracing::warn!(admin = %peer, unlogged, "admin API: wrong token");
        }
        if out {
            tracing::warn!(admin = %peer, minutes = STRIKE_OUT.as_secs() / 60, "admin API: {MAX_STRIKES} wrong tokens within a minute; this address is refused for a while");
        }
        return ApiError(StatusCode::UNAUTHORIZED, "invalid token".into()).into_response();
    }
    next.run(req).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    Wrong,
    /// The address sent too many wrong tokens: no hash is computed for it.
    Refused,
}

/// The token against the hash. A token that verified before passes at once (an admin behind
/// the same address as a guesser is not locked out); otherwise a refused address gets no
/// hash computed, also when its requests queued for the check in a burst.
async fn check_token(s: &Shared, token: &str, ip: IpAddr) -> Verdict {
    let known = s
        .verified
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_deref()
        .is_some_and(|v| constant_eq(v.as_bytes(), token.as_bytes()));
    if known {
        return Verdict::Ok;
    }
    let refused = || {
        s.strikes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refused(ip, Instant::now())
    };
    if refused() {
        return Verdict::Refused;
    }
    let Ok(_slot) = s.checks.acquire().await else {
        return Verdict::Wrong;
    };
    if refused() {
        return Verdict::Refused;
    }
    let (hash, candidate) = (s.token_hash.clone(), token.to_string());
    let ok =
        tokio::task::spawn_blocking(move || crate::auth::verify_hash(&hash, candidate.as_bytes()))
            .await
            .unwrap_or(false);
    if ok {
        *s.verified.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.to_string());
        return Verdict::Ok;
    }
    Verdict::Wrong
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn db(s: &Shared) -> Result<Arc<UserDb>, ApiError> {
    s.live.current().services.users_db.clone().ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            "no user database configured ([users] db or --users-db)".into(),
        )
    })
}

/// The admin page, all in the binary (no CDN): one HTML file, its script and its style. The
/// page only talks to this listener's API; the policy says so to the browser.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset(
        "text/html; charset=utf-8",
        include_str!("admin_page/index.html"),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("admin_page/app.js"),
    )
}

async fn style() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("admin_page/app.css"),
    )
}

async fn health(State(s): State<Shared>) -> Response {
    let sessions = s.live.monitor.sessions.len();
    let current = s.live.current();
    match &current.services.users_db {
        None => Json(json!({"status": "ok", "sessions": sessions, "users_db": "none"})).into_response(),
        Some(db) => match db.ping().await {
            Ok(()) => Json(json!({"status": "ok", "sessions": sessions, "users_db": "ok"}))
                .into_response(),
            Err(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "sessions": sessions, "users_db": "unavailable", "error": e.to_string()})),
            )
                .into_response(),
        },
    }
}

async fn metrics(State(s): State<Shared>) -> Response {
    let m = &s.live.monitor;
    let mut text = m
        .metrics
        .render(m.sessions.len(), s.live.guard.ban_count(Instant::now()));
    // Sessions by virtual host, where the admin asked for them.
    let current = s.live.current();
    if current
        .settings
        .admin
        .as_ref()
        .is_some_and(|a| a.metrics_by_host)
    {
        let mut by_host: std::collections::BTreeMap<String, u64> = Default::default();
        for e in m.sessions.list() {
            *by_host
                .entry(e.host().unwrap_or_else(|| "default".into()))
                .or_default() += 1;
        }
        text.push_str(
            "# HELP wharf_sessions_by_host Sessions open now, by virtual host (host=\"default\": no [[host]] chosen).\n\
             # TYPE wharf_sessions_by_host gauge\n",
        );
        for (host, n) in by_host {
            text.push_str(&format!("wharf_sessions_by_host{{host=\"{host}\"}} {n}\n"));
        }
    }
    // One line per certificate (the default and each host's): bounded by the hosts configured.
    if let Some(tls) = &s.live.current().services.tls {
        text.push_str(
            "# HELP wharf_certificate_expiry_timestamp_seconds When the certificate served for a host expires (Unix time); host=\"default\" is [tls]'s.\n\
             # TYPE wharf_certificate_expiry_timestamp_seconds gauge\n",
        );
        for (host, until) in tls.expiries() {
            text.push_str(&format!(
                "wharf_certificate_expiry_timestamp_seconds{{host=\"{host}\"}} {until}\n"
            ));
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// `?host=NAME` of a listing: only that host's (`host=` alone: the default host's).
fn host_filter(uri: &axum::http::Uri) -> Option<Option<String>> {
    let query = uri.query()?;
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix("host=")?;
        Some((!value.is_empty()).then(|| crate::config::normalize_host(value)))
    })
}

async fn list_users(
    State(s): State<Shared>,
    uri: axum::http::Uri,
) -> Result<Json<Value>, ApiError> {
    let users = db(&s)?.list().await?;
    let only = host_filter(&uri);
    Ok(Json(Value::Array(
        users
            .iter()
            .filter(|u| only.as_ref().is_none_or(|h| u.host == *h))
            .map(DbUser::to_json)
            .collect(),
    )))
}

async fn show_user(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user = db(&s)?
        .find(&name)
        .await?
        .ok_or(DbError::NoSuchUser(name))?;
    Ok(Json(user.to_json()))
}

/// The fields a create or change may set; absent fields are left as they are (`null` clears a
/// home or a limit).
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UserBody {
    name: Option<String>,
    password: Option<String>,
    #[serde(default, with = "double_option")]
    home: Option<Option<String>>,
    permissions: Option<String>,
    enabled: Option<bool>,
    #[serde(default, with = "double_option")]
    max_sessions: Option<Option<u32>>,
    #[serde(default, with = "double_option")]
    download_rate: Option<Option<u64>>,
    #[serde(default, with = "double_option")]
    upload_rate: Option<Option<u64>>,
    #[serde(default, with = "double_option")]
    quota_bytes: Option<Option<u64>>,
    #[serde(default, with = "double_option")]
    quota_files: Option<Option<u64>>,
    #[serde(default, with = "double_option")]
    max_file_size: Option<Option<u64>>,
    /// The virtual host (a `[[host]]`'s first name); `null`: the default host.
    #[serde(default, with = "double_option")]
    host: Option<Option<String>>,
}

/// `absent` → `None`, `null` → `Some(None)`, a value → `Some(Some(v))`.
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

impl UserBody {
    /// What a change does, as the audit lines name it.
    fn acts(&self) -> Vec<&'static str> {
        let mut acts = Vec::new();
        match self.enabled {
            Some(false) => acts.push("user disable"),
            Some(true) => acts.push("user enable"),
            None => {}
        }
        if self.password.is_some() {
            acts.push("user password");
        }
        let other = self.home.is_some()
            || self.permissions.is_some()
            || self.max_sessions.is_some()
            || self.download_rate.is_some()
            || self.upload_rate.is_some()
            || self.quota_bytes.is_some()
            || self.quota_files.is_some()
            || self.max_file_size.is_some();
        if other || acts.is_empty() {
            acts.push("user change");
        }
        acts
    }

    /// Applies the body to `user`; returns the password set, if any.
    fn apply(self, user: &mut DbUser) -> Result<(), ApiError> {
        if let Some(host) = self.host {
            user.host = host.map(|h| crate::config::normalize_host(&h));
        }
        if let Some(home) = self.home {
            if let Some(h) = &home {
                if !h.starts_with('/') {
                    return Err(bad(format!("home `{h}`: give an absolute path")));
                }
            }
            user.home = home;
        }
        if let Some(p) = &self.permissions {
            user.permissions = parse_permissions(p).map_err(bad)?;
        }
        if let Some(e) = self.enabled {
            user.enabled = e;
        }
        if let Some(pw) = self.password {
            if pw.is_empty() {
                return Err(bad("empty password"));
            }
            user.password_hash = crate::auth::hash_password(pw.as_bytes())
                .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        }
        let l = &mut user.limits;
        let set = |slot: &mut Option<u64>, v: Option<Option<u64>>| {
            if let Some(v) = v {
                *slot = v.filter(|&n| n > 0);
            }
        };
        if let Some(v) = self.max_sessions {
            l.max_sessions = v.filter(|&n| n > 0);
        }
        set(&mut l.download_rate, self.download_rate);
        set(&mut l.upload_rate, self.upload_rate);
        set(&mut l.quota_bytes, self.quota_bytes);
        set(&mut l.quota_files, self.quota_files);
        set(&mut l.max_file_size, self.max_file_size);
        Ok(())
    }
}

/// A JSON body, or the API's JSON error (axum's own rejection is plain text).
fn body(
    body: Result<Json<UserBody>, axum::extract::rejection::JsonRejection>,
) -> Result<UserBody, ApiError> {
    body.map(|Json(b)| b).map_err(|e| bad(e.body_text()))
}

async fn create_user(
    State(s): State<Shared>,
    ConnectInfo(admin): ConnectInfo<SocketAddr>,
    sent: Result<Json<UserBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body(sent)?;
    let db = db(&s)?;
    let Some(name) = body.name.clone() else {
        return Err(bad("`name` is required"));
    };
    // No password given: one is made, and returned this once.
    let generated = match &body.password {
        Some(_) => None,
        None => {
            Some(generate_token(20).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?)
        }
    };
    let mut user = DbUser {
        name,
        password_hash: String::new(),
        home: None,
        permissions: Permissions::READ_ONLY,
        limits: UserLimits::default(),
        enabled: true,
        totp_secret: None,
        rules: Default::default(),
        host: None,
        created_at: 0,
        updated_at: 0,
        last_login: None,
    };
    let mut body = body;
    if body.password.is_none() {
        body.password = generated.clone();
    }
    body.apply(&mut user)?;
    db.add(&user).await?;
    audit(admin, "user add", &user.name);
    let mut out = db.find(&user.name).await?.unwrap_or(user).to_json();
    if let (Some(pw), Some(obj)) = (generated, out.as_object_mut()) {
        obj.insert("password".into(), Value::String(pw));
    }
    Ok((StatusCode::CREATED, Json(out)))
}

async fn change_user(
    State(s): State<Shared>,
    ConnectInfo(admin): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    sent: Result<Json<UserBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body(sent)?;
    let acts = body.acts();
    if body.name.as_ref().is_some_and(|n| *n != name) {
        return Err(bad("a user cannot be renamed"));
    }
    let db = db(&s)?;
    let mut user = db
        .find(&name)
        .await?
        .ok_or_else(|| DbError::NoSuchUser(name.clone()))?;
    body.apply(&mut user)?;
    db.update(&user).await?;
    for act in acts {
        audit(admin, act, &name);
    }
    let user = db.find(&name).await?.unwrap_or(user);
    Ok(Json(user.to_json()))
}

async fn delete_user(
    State(s): State<Shared>,
    ConnectInfo(admin): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    db(&s)?.delete(&name).await?;
    audit(admin, "user delete", &name);
    Ok(StatusCode::NO_CONTENT)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn list_sessions(State(s): State<Shared>, uri: axum::http::Uri) -> Json<Value> {
    let now = Instant::now();
    let only = host_filter(&uri);
    let list: Vec<Value> = s
        .live
        .monitor
        .sessions
        .list()
        .iter()
        .filter(|e| only.as_ref().is_none_or(|h| e.host() == *h))
        .map(|e| {
            let transfer = e.running().map(|r| {
                let bytes = e.bytes.load(std::sync::atomic::Ordering::Relaxed);
                let secs = now.duration_since(r.started).as_secs_f64();
                json!({
                    "verb": r.verb,
                    "path": r.path,
                    "direction": match r.direction {
                        crate::monitor::Direction::Download => "download",
                        crate::monitor::Direction::Upload => "upload",
                        crate::monitor::Direction::Listing => "listing",
                    },
                    "bytes": bytes,
                    "seconds": (secs * 10.0).round() / 10.0,
                    "rate": if secs > 0.0 { (bytes as f64 / secs).round() } else { 0.0 },
                })
            });
            json!({
                "id": e.id,
                "user": e.user(),
                "host": e.host(),
                "client": e.peer.to_string(),
                "since": unix(e.since),
                "transfer": transfer,
            })
        })
        .collect();
    Json(Value::Array(list))
}

async fn end_session(
    State(s): State<Shared>,
    ConnectInfo(admin): ConnectInfo<SocketAddr>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    let who = s
        .live
        .monitor
        .sessions
        .list()
        .iter()
        .find(|e| e.id == id)
        .map(|e| {
            format!(
                "session {id} ({} from {})",
                e.user().unwrap_or_else(|| "-".into()),
                e.peer
            )
        });
    if s.live.monitor.sessions.kick(id) {
        audit(
            admin,
            "session kick",
            &who.unwrap_or_else(|| format!("session {id}")),
        );
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, format!("no session {id}")))
    }
}

async fn list_bans(State(s): State<Shared>) -> Json<Value> {
    let list: Vec<Value> = s
        .live
        .guard
        .bans(Instant::now())
        .into_iter()
        .map(|(ip, left)| json!({"address": ip.to_string(), "seconds_left": left.as_secs()}))
        .collect();
    Json(Value::Array(list))
}

async fn lift_ban(
    State(s): State<Shared>,
    ConnectInfo(admin): ConnectInfo<SocketAddr>,
    Path(ip): Path<String>,
) -> Result<StatusCode, ApiError> {
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| bad(format!("`{ip}` is not an IP address")))?;
    let ip = ip.to_canonical();
    let here = s.live.guard.lift(ip, Instant::now());
    // On every node: the shared list loses it too (the others drop it at their next look).
    let shared = match s.live.current().services.users_db.clone() {
        Some(db) => db.lift_ban(ip).await.map_err(|e| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("user database: {e}"),
            )
        })?,
        None => false,
    };
    if here || shared {
        audit(admin, "ban lift", &ip.to_string());
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("{ip} is not banned"),
        ))
    }
}

async fn reload(
    State(s): State<Shared>,
    ConnectInfo(admin): ConnectInfo<SocketAddr>,
) -> Result<Json<Value>, ApiError> {
    let Some(tx) = &s.reload else {
        return Err(ApiError(
            StatusCode::NOT_IMPLEMENTED,
            "reload is not offered here".into(),
        ));
    };
    let (done, answer) = oneshot::channel();
    tx.send(done).map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is stopping".into(),
        )
    })?;
    let answer = answer.await;
    let result = match &answer {
        Ok(Ok(())) => "the configuration (reloaded)",
        _ => "the configuration (not reloaded)",
    };
    audit(admin, "reload", result);
    match answer {
        Ok(Ok(())) => Ok(Json(json!({"status": "reloaded"}))),
        Ok(Err(e)) => Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, e)),
        Err(_) => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the reload did not answer".into(),
        )),
    }
}

/// A random token of `len` letters and digits (for API tokens and generated passwords).
pub fn generate_token(len: usize) -> Result<String, String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let limit = 256 - 256 % ALPHABET.len();
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut bytes = [0u8; 64];
        getrandom::fill(&mut bytes).map_err(|e| format!("no random source: {e}"))?;
        // Rejection sampling: no character more likely than another.
        for b in bytes {
            if usize::from(b) < limit && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    Ok(out)
}
