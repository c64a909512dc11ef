//! The live objects a server runs with — the authenticator, the storage provider, TLS, the
//! throttles — built from [`Settings`] by the binary (or by a test, with other backends).

use std::sync::Arc;

use wharf_net::copy::{Throttle, Unlimited};

use crate::auth::{Account, Authenticator, DbUsers};
use crate::config::{ConfigError, Settings, TlsSettings};
use crate::identity::UserStore;
use crate::own_files::OwnFiles;
use crate::storage::{LocalProvider, S3Provider, StorageProvider};
use crate::tls::Tls;
use crate::userdb::UserDb;
use crate::xferlog::XferLog;

/// Paces the transfers of one user.
pub trait Throttles: Send + Sync + 'static {
    /// The throttles shared by every transfer of `account`, one per direction.
    fn for_account(&self, account: &Account) -> AccountThrottles;
}

/// The throttles of one account: downloads (and listings), uploads.
#[derive(Clone)]
pub struct AccountThrottles {
    pub download: Arc<dyn Throttle>,
    pub upload: Arc<dyn Throttle>,
}

/// No limits: every account shares one no-op throttle.
pub struct NoThrottles(Arc<dyn Throttle>);

impl Default for NoThrottles {
    fn default() -> NoThrottles {
        NoThrottles(Arc::new(Unlimited))
    }
}

impl Throttles for NoThrottles {
    fn for_account(&self, _account: &Account) -> AccountThrottles {
        AccountThrottles {
            download: self.0.clone(),
            upload: self.0.clone(),
        }
    }
}

/// What a server runs with, besides its settings.
#[derive(Clone)]
pub struct Services {
    pub auth: Arc<dyn Authenticator>,
    pub storage: Arc<dyn StorageProvider>,
    /// FTPS: `None` when TLS is off.
    pub tls: Option<Arc<Tls>>,
    pub throttles: Arc<dyn Throttles>,
    /// The transfer log (`[log] xferlog`).
    pub xferlog: Option<Arc<XferLog>>,
    /// The user database (`[users] db`), also behind `auth`.
    pub users_db: Option<Arc<UserDb>>,
    /// The event hooks (`[[hook]]`); `None` without any.
    pub hooks: Option<Arc<crate::hooks::Hooks>>,
    /// The server's own files, which the local storage never serves (kept across reloads,
    /// their list replaced).
    pub own_files: Arc<OwnFiles>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Services {
    /// The built-in services: users from the settings, homes on the local file system, the
    /// configured certificate.
    pub fn new(settings: &Settings) -> Result<Services, ConfigError> {
        let tls = match &settings.tls {
            Some(t) => Some(Arc::new(new_tls(t, settings)?)),
            None => None,
        };
        let users_db = open_users_db(settings, None)?;
        let xferlog = open_xferlog(settings, None)?;
        // After the files it opens itself are there: their inodes are known from the start.
        let own_files = Arc::new(OwnFiles::new(settings.own_files()));
        Ok(Services {
            auth: user_store(settings, users_db.as_ref())?,
            storage: storage_provider(settings, &own_files)?,
            tls,
            throttles: Arc::new(crate::users::UserRates::default()),
            xferlog,
            users_db,
            hooks: hooks(settings),
            own_files,
        })
    }

    /// The services for reloaded `settings`, keeping what carries state across a reload: the
    /// storage provider (open homes), the throttles, and the TLS object when its certificate
    /// paths and flags are unchanged (its session store, so data connections of sessions from
    /// before the reload still resume) — its certificate and key are read again. Any error
    /// leaves `self` as it is.
    pub fn reloaded(&self, settings: &Settings) -> Result<Services, ConfigError> {
        // What can fail without touching anything first; the certificate, swapped in place,
        // last.
        let xferlog = open_xferlog(settings, self.xferlog.as_ref())?;
        let tls = match (&settings.tls, &self.tls) {
            (Some(t), Some(old)) if old.same_settings(t) => {
                old.reload()
                    .map_err(|m| ConfigError::new(t.cert_field, m))?;
                old.set_host_certs(&settings.host_certs())
                    .map_err(|m| ConfigError::new("host.cert", m))?;
                Some(old.clone())
            }
            // A new TLS object keeps serving the hosts' certificates of the old one, where ACME
            // puts its renewals.
            (Some(t), Some(old)) => {
                let fresh = new_tls(t, settings)?.share_host_store(old.host_store());
                fresh
                    .set_host_certs(&settings.host_certs())
                    .map_err(|m| ConfigError::new("host.cert", m))?;
                Some(Arc::new(fresh))
            }
            (Some(t), None) => Some(Arc::new(new_tls(t, settings)?)),
            (None, _) => None,
        };
        let users_db = open_users_db(settings, self.users_db.as_ref())?;
        self.own_files.set(settings.own_files());
        Ok(Services {
            auth: user_store(settings, users_db.as_ref())?,
            storage: self.storage.clone(),
            tls,
            throttles: self.throttles.clone(),
            xferlog,
            users_db,
            hooks: hooks(settings),
            own_files: self.own_files.clone(),
        })
    }
}

/// The local file system, or the S3 bucket of `[storage]`.
fn storage_provider(
    settings: &Settings,
    own_files: &Arc<OwnFiles>,
) -> Result<Arc<dyn StorageProvider>, ConfigError> {
    Ok(match &settings.storage {
        None => Arc::new(LocalProvider::guarding(own_files.clone())),
        Some(s3) => Arc::new(
            S3Provider::new(s3.clone(), settings.root.clone())
                .map_err(|m| ConfigError::new("storage", m))?,
        ),
    })
}

/// The built-in authenticator over the users of `settings`, the user database, the external
/// hook and the directory (a reload makes new ones: their caches and connections start anew).
fn user_store(
    settings: &Settings,
    db: Option<&Arc<UserDb>>,
) -> Result<Arc<dyn crate::auth::Authenticator>, ConfigError> {
    use crate::identity::{Extra, external::External, ldap::Ldap};
    let auth = &settings.auth;
    let extra = Extra {
        order: auth.order.clone(),
        access: settings.access.clone(),
        hosts: settings.hosts.clone(),
        external: auth
            .external
            .clone()
            .map(External::new)
            .transpose()
            .map_err(|m| ConfigError::new("auth.external", m))?,
        ldap: auth
            .ldap
            .clone()
            .map(Ldap::new)
            .transpose()
            .map_err(|m| ConfigError::new("auth.ldap", m))?,
    };
    let store = UserStore::with_db(
        settings.users.clone(),
        settings.anonymous.clone(),
        db.map(|db| DbUsers {
            db: db.clone(),
            home: settings.root.clone(),
            defaults: settings.limits.user_defaults(),
        }),
    )
    .with_extra(
        extra,
        settings.root.clone(),
        settings.limits.user_defaults(),
    )
    .map_err(|m| ConfigError::new("auth", m))?;
    Ok(Arc::new(store))
}

/// The hooks of `settings` (a reload makes new ones: their queue and worker start with the
/// first event; the old worker finishes what it was given).
fn hooks(settings: &Settings) -> Option<Arc<crate::hooks::Hooks>> {
    (!settings.hooks.is_empty()).then(|| Arc::new(crate::hooks::Hooks::new(settings.hooks.clone())))
}

/// The user database of `settings`: `current` if it is the same URL (its connections stay),
/// else a new one, not connected yet.
fn open_users_db(
    settings: &Settings,
    current: Option<&Arc<UserDb>>,
) -> Result<Option<Arc<UserDb>>, ConfigError> {
    let Some(url) = &settings.users_db else {
        return Ok(None);
    };
    if let Some(c) = current.filter(|c| c.url() == url) {
        return Ok(Some(c.clone()));
    }
    UserDb::lazy(url, settings.limits.backend_timeout)
        .map(Some)
        .map_err(|e| ConfigError::new("users.db", e.to_string()))
}

/// The transfer log of `settings`: `current` if it is the same file, else opened.
fn open_xferlog(
    settings: &Settings,
    current: Option<&Arc<XferLog>>,
) -> Result<Option<Arc<XferLog>>, ConfigError> {
    let Some(path) = &settings.log.xferlog else {
        return Ok(None);
    };
    if let Some(c) = current.filter(|c| c.path() == path) {
        return Ok(Some(c.clone()));
    }
    XferLog::open(path).map(Some).map_err(|e| {
        ConfigError::new(
            "log.xferlog",
            format!("`{}` cannot be opened: {e}", path.display()),
        )
    })
}

fn new_tls(t: &TlsSettings, settings: &Settings) -> Result<Tls, ConfigError> {
    let tls = Tls::new(
        t.mode,
        &t.cert,
        &t.key,
        t.require_session_reuse,
        t.require_close_notify,
    )
    .map_err(|m| ConfigError::new(t.cert_field, m))?;
    tls.set_host_certs(&settings.host_certs())
        .map_err(|m| ConfigError::new("host.cert", m))?;
    Ok(tls)
}
