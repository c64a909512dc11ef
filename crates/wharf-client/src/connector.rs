//! Everything needed to open another session to the same server as the same user: the
//! trees, the segmented download and every retry open their sessions through it.

use crate::client::{Client, Options};
use crate::error::Result;
use crate::log::LogLine;
use crate::url::FtpUrl;

/// Everything needed to open another session to the same server as the same user.
#[derive(Clone)]
pub struct Connector {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub ascii: bool,
    pub options: Options,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The user name and password sent for anonymous logins.
pub const ANONYMOUS: (&str, &str) = ("anonymous", "anonymous@");

impl Connector {
    /// The URL's host, port and user (anonymous when it has none); `password` overrides the
    /// URL's password.
    pub fn new(url: &FtpUrl, password: Option<String>, options: Options) -> Connector {
        let (user, password) = match &url.user {
            None => (ANONYMOUS.0.to_string(), ANONYMOUS.1.to_string()),
            Some(user) => (
                user.clone(),
                url.password.clone().or(password).unwrap_or_default(),
            ),
        };
        Connector {
            host: url.host.clone(),
            port: url.port,
            user,
            password,
            ascii: false,
            options,
        }
    }

    /// Connects and logs in.
    pub async fn open(&self) -> Result<Client> {
        let mut client = Client::connect(&self.host, self.port, self.options.clone()).await?;
        client.login(&self.user, &self.password).await?;
        client.set_ascii(self.ascii);
        Ok(client)
    }

    pub(crate) fn log_status(&self, message: String) {
        self.options.log(LogLine::Status(message));
    }
}
