//! The admin listener: HTTP on its own address, for operators and control panels.
//!
//! - `GET /health` and `GET /metrics` need no token (load balancers and Prometheus).
//! - `/api/v1/…` needs `Authorization: Bearer TOKEN`: users (in the user database), sessions
//!   (list, end), bans (list, lift), reload. Errors are JSON: `{"error": "…"}`.
//!
//! See `docs/ADMIN-API.md`.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use axum::extract::{Path, Request, State};
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
}

struct AdminState {
    live: Arc<Live>,
    token_hash: Arc<str>,
    /// A token that verified, kept so that every request does not cost a password hash.
    verified: Mutex<Option<String>>,
    /// Token checks one at a time: guessing costs a hash each, and cannot take every CPU.
    checks: tokio::sync::Semaphore,
    reload: Option<mpsc::UnboundedSender<ReloadRequest>>,
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
        ));
    let app = Router::new()
        .route("/", get(page))
        .route("/app.js", get(script))
        .route("/app.css", get(style))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api)
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .with_state(state);
    let addr = setup.listener.local_addr().ok();
    tracing::info!(addr = ?addr, "admin listener serving");
    let r = axum::serve(setup.listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "admin listener stopped");
    }
}

/// `Authorization: Bearer TOKEN`, checked against the token's hash; 401 otherwise.
async fn authorize(
    State(s): State<Shared>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "missing Authorization: Bearer TOKEN".into(),
        )
        .into_response();
    };
    if !token_ok(&s, token).await {
        return ApiError(StatusCode::UNAUTHORIZED, "invalid token".into()).into_response();
    }
    next.run(req).await
}

async fn token_ok(s: &Shared, token: &str) -> bool {
    let known = s
        .verified
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_deref()
        .is_some_and(|v| constant_eq(v.as_bytes(), token.as_bytes()));
    if known {
        return true;
    }
    let Ok(_slot) = s.checks.acquire().await else {
        return false;
    };
    let (hash, candidate) = (s.token_hash.clone(), token.to_string());
    let ok =
        tokio::task::spawn_blocking(move || crate::auth::verify_hash(&hash, candidate.as_bytes()))
            .await
            .unwrap_or(false);
    if ok {
        *s.verified.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.to_string());
    }
    ok
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
    let text = m
        .metrics
        .render(m.sessions.len(), s.live.guard.ban_count(Instant::now()));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn list_users(State(s): State<Shared>) -> Result<Json<Value>, ApiError> {
    let users = db(&s)?.list().await?;
    Ok(Json(Value::Array(
        users.iter().map(DbUser::to_json).collect(),
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
    /// Applies the body to `user`; returns the password set, if any.
    fn apply(self, user: &mut DbUser) -> Result<(), ApiError> {
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
    let mut out = db.find(&user.name).await?.unwrap_or(user).to_json();
    if let (Some(pw), Some(obj)) = (generated, out.as_object_mut()) {
        obj.insert("password".into(), Value::String(pw));
    }
    tracing::info!(user = %out["name"], "user created through the admin API");
    Ok((StatusCode::CREATED, Json(out)))
}

async fn change_user(
    State(s): State<Shared>,
    Path(name): Path<String>,
    sent: Result<Json<UserBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body(sent)?;
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
    let user = db.find(&name).await?.unwrap_or(user);
    Ok(Json(user.to_json()))
}

async fn delete_user(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    db(&s)?.delete(&name).await?;
    tracing::info!(user = %name, "user deleted through the admin API");
    Ok(StatusCode::NO_CONTENT)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn list_sessions(State(s): State<Shared>) -> Json<Value> {
    let now = Instant::now();
    let list: Vec<Value> = s
        .live
        .monitor
        .sessions
        .list()
        .iter()
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
                "client": e.peer.to_string(),
                "since": unix(e.since),
                "transfer": transfer,
            })
        })
        .collect();
    Json(Value::Array(list))
}

async fn end_session(State(s): State<Shared>, Path(id): Path<u64>) -> Result<StatusCode, ApiError> {
    if s.live.monitor.sessions.kick(id) {
        tracing::info!(session = id, "session ended through the admin API");
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

async fn lift_ban(State(s): State<Shared>, Path(ip): Path<String>) -> Result<StatusCode, ApiError> {
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
        tracing::info!(%ip, "ban lifted through the admin API");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("{ip} is not banned"),
        ))
    }
}

async fn reload(State(s): State<Shared>) -> Result<Json<Value>, ApiError> {
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
    match answer.await {
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
