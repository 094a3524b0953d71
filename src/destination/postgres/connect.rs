//! Connection settings from a `postgres://` URL, connecting, and messages
//! for the ways connecting fails. Every message names the URL without its
//! password.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::percent_decode_str;

use tokio_postgres::config::{Host, SslMode as DriverSslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::error::describe;
use super::tls::{self, SslMode};
use crate::destination::DestinationError;
use crate::redact::{redact, url_without_password};

/// Connecting gives up after this long unless the URL sets
/// `connect_timeout` (libpq waits for the operating system instead, which
/// can take minutes for an unreachable host).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Shown in `pg_stat_activity`, so an operator can tell ferry's sessions
/// (and the holder of a run lock) apart.
const APPLICATION_NAME: &str = "ferry";

/// URL parameters that configure client certificates, which ferry does not
/// send.
const UNSUPPORTED_PARAMETERS: [&str; 4] = ["sslcert", "sslkey", "sslpassword", "sslcrl"];

/// How to reach one database.
#[derive(Clone)]
pub struct Settings {
    config: Config,
    tls: Option<MakeRustlsConnect>,
    /// The URL without its password, for messages.
    pub shown: String,
}

impl Settings {
    /// Reads a `postgres://` or `postgresql://` URL. `sslmode` and
    /// `sslrootcert` configure TLS (see the `tls` module); every other
    /// parameter is the driver's (libpq's names: `host`, `port`, `user`,
    /// `password`, `dbname`, `connect_timeout`, `application_name`, ...).
    pub fn from_url(url: &str) -> Result<Settings, DestinationError> {
        let shown = url_without_password(url);
        let invalid = |reason: String| {
            DestinationError::Connect(redact(&format!(
                "{shown}: invalid PostgreSQL URL: {reason}"
            )))
        };

        // Split by hand rather than with a URL parser, which rejects the
        // host lists libpq accepts (`h1:5432,h2:5433`). The driver reads
        // user and password up to the first `@`, so a `?` before it belongs
        // to the password, and the query starts at the first `?` after it.
        let credentials_end = url.find('@').map_or(0, |at| at + 1);
        // A second `@` would make the rest of the password the host, and
        // messages name the host.
        let hosts = url[credentials_end..].split(['/', '?']).next();
        if hosts.is_some_and(|hosts| hosts.contains('@')) {
            return Err(invalid(
                "the user name or password contains @; write it as %40".to_string(),
            ));
        }
        let (base, query) = match url[credentials_end..].find('?') {
            Some(mark) => {
                let mark = credentials_end + mark;
                (&url[..mark], &url[mark + 1..])
            }
            None => (url, ""),
        };
        let mut mode = SslMode::Prefer;
        let mut root_certificates = None;
        // The driver's parameters pass on exactly as written, because the
        // driver decodes them as libpq does (`%XX` only). A form decoder
        // would turn `+` into a space, and re-encoding would turn a space
        // into `+`.
        let mut kept = Vec::new();
        for parameter in query.split('&').filter(|parameter| !parameter.is_empty()) {
            let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
            let key = percent_decode_str(key).decode_utf8_lossy();
            let value = percent_decode_str(value).decode_utf8_lossy();
            match key.as_ref() {
                "sslmode" => {
                    mode = SslMode::parse(&value).ok_or_else(|| {
                        invalid(format!(
                            "sslmode={value} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                        ))
                    })?;
                }
                "sslrootcert" => root_certificates = Some(value.into_owned()),
                name if UNSUPPORTED_PARAMETERS.contains(&name) => {
                    return Err(invalid(format!(
                        "{name} is not supported: ferry does not send client certificates"
                    )));
                }
                _ => kept.push(parameter),
            }
        }
        let driver_url = match kept.join("&") {
            kept if kept.is_empty() => base.to_string(),
            kept => format!("{base}?{kept}"),
        };
        let mut config =
            Config::from_str(&driver_url).map_err(|error| invalid(describe(&error)))?;
        config.ssl_mode(match mode {
            SslMode::Disable => DriverSslMode::Disable,
            SslMode::Prefer => DriverSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverSslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        let tls = tls::client_config(mode, root_certificates.as_deref())
            .map_err(invalid)?
            .map(MakeRustlsConnect::new);
        Ok(Settings { config, tls, shown })
    }

    /// Returns the URL's password, to register it as a secret.
    pub fn password(&self) -> Option<String> {
        let password = self.config.get_password()?;
        Some(String::from_utf8_lossy(password).into_owned())
    }

    /// Opens a session. Its connection runs on a task of its own, which
    /// ends when the returned client is dropped (closing the session and
    /// releasing its advisory locks).
    pub async fn connect(&self) -> Result<Client, DestinationError> {
        let client = match &self.tls {
            None => {
                let (client, connection) = self
                    .config
                    .connect(NoTls)
                    .await
                    .map_err(|error| self.connect_error(&error))?;
                self.drive(connection);
                client
            }
            Some(tls) => {
                let (client, connection) = self
                    .config
                    .connect(tls.clone())
                    .await
                    .map_err(|error| self.connect_error(&error))?;
                self.drive(connection);
                client
            }
        };
        Ok(client)
    }

    fn drive<F>(&self, connection: F)
    where
        F: Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
    {
        let shown = self.shown.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(
                    destination = %shown,
                    error = %redact(&describe(&error)),
                    "the PostgreSQL connection ended with an error"
                );
            }
        });
    }

    /// Explains a failed connection attempt and what to change.
    fn connect_error(&self, error: &tokio_postgres::Error) -> DestinationError {
        let user = self.config.get_user().unwrap_or("(none)");
        let database = self.config.get_dbname().unwrap_or(user);
        let (host, port) = self.first_address();
        let shown = &self.shown;

        let message = if let Some(db) = error.as_db_error() {
            match *db.code() {
                SqlState::INVALID_PASSWORD => format!(
                    "{shown}: password authentication failed for user \"{user}\"; check the password in the URL"
                ),
                SqlState::INVALID_CATALOG_NAME => format!(
                    "{shown}: database \"{database}\" does not exist; create it (CREATE DATABASE) or fix the database name in the URL"
                ),
                SqlState::INVALID_AUTHORIZATION_SPECIFICATION => format!(
                    "{shown}: the server rejected user \"{user}\": {}; check the user name, and that pg_hba.conf admits this host",
                    db.message()
                ),
                _ => format!("{shown}: connecting failed: {}", describe(error)),
            }
        } else {
            let text = describe(error);
            if text.contains("failed to lookup address")
                || text.contains("Name or service not known")
            {
                format!("{shown}: cannot resolve host \"{host}\"; check the host name in the URL")
            } else if text.contains("Connection refused") {
                format!(
                    "{shown}: connection refused by {host}:{port}; check that PostgreSQL runs there and accepts TCP connections"
                )
            } else if text.contains("timeout") || text.contains("timed out") {
                format!(
                    "{shown}: connecting to {host}:{port} timed out; check the host, the port and any firewall, or raise connect_timeout (seconds)"
                )
            } else if text.contains("server does not support TLS") {
                format!(
                    "{shown}: the server does not accept TLS connections; use sslmode=prefer or sslmode=disable to connect without TLS"
                )
            } else if text.contains("certificate") {
                format!(
                    "{shown}: the server's TLS certificate was not accepted ({text}); with verify-full it must chain to a root in the system store or in sslrootcert=FILE and name the host, or use sslmode=require to encrypt without checking it"
                )
            } else {
                format!("{shown}: connecting failed: {text}")
            }
        };
        DestinationError::Connect(redact(&message))
    }

    fn first_address(&self) -> (String, u16) {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            #[cfg(unix)]
            Some(Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        (host, port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(url: &str) -> String {
        match Settings::from_url(url) {
            Ok(_) => panic!("{url} was accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn url_parameters() {
        let settings =
            Settings::from_url("postgres://u:pw@db.example:6543/app?sslmode=require").unwrap();
        assert_eq!(settings.config.get_ssl_mode(), DriverSslMode::Require);
        assert_eq!(settings.config.get_ports(), [6543]);
        assert_eq!(settings.config.get_dbname(), Some("app"));
        assert_eq!(
            settings.config.get_connect_timeout(),
            Some(&DEFAULT_CONNECT_TIMEOUT)
        );
        assert_eq!(
            settings.shown,
            "postgres://u:***@db.example:6543/app?sslmode=require"
        );

        let plain = Settings::from_url("postgresql://u@h/app?sslmode=disable").unwrap();
        assert_eq!(plain.config.get_ssl_mode(), DriverSslMode::Disable);
        assert!(plain.tls.is_none());
        let default = Settings::from_url("postgres://u@h/app").unwrap();
        assert_eq!(default.config.get_ssl_mode(), DriverSslMode::Prefer);
    }

    #[test]
    fn host_list_with_ports() {
        let settings = Settings::from_url(
            "postgres://u:pw@h1:5432,h2:5433/app?target_session_attrs=read-write",
        )
        .unwrap();
        let hosts: Vec<String> = settings
            .config
            .get_hosts()
            .iter()
            .map(|host| match host {
                Host::Tcp(name) => name.clone(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(hosts, ["h1", "h2"]);
        assert_eq!(settings.config.get_ports(), [5432, 5433]);
        assert!(!settings.shown.contains("pw"), "{}", settings.shown);
    }

    #[test]
    fn question_mark_in_password_keeps_parameters() {
        let settings = Settings::from_url("postgres://u:pass?word@h/app?sslmode=disable").unwrap();
        assert_eq!(settings.password().as_deref(), Some("pass?word"));
        assert_eq!(settings.config.get_ssl_mode(), DriverSslMode::Disable);
        let message = error("postgres://u:pass?word@h/app?sslcert=client.pem");
        assert!(message.contains("sslcert is not supported"), "{message}");
        assert!(!message.contains("pass?word"), "{message}");
    }

    #[test]
    fn at_sign_in_password_is_rejected() {
        let message = error("postgres://u:hunter@22secret@h/app");
        assert!(message.contains("write it as %40"), "{message}");
        assert!(!message.contains("22secret"), "{message}");
        let settings = Settings::from_url("postgres://u:hunter%4022secret@h/app").unwrap();
        assert_eq!(settings.password().as_deref(), Some("hunter@22secret"));
    }

    #[test]
    fn invalid_urls_are_explained_without_password() {
        let message = error("postgres://u:hunter22@h/app?sslmode=sometimes");
        assert!(
            message.contains("sslmode=sometimes is not one of"),
            "{message}"
        );
        assert!(!message.contains("hunter22"), "{message}");
        let message = error("postgres://u:hunter22@h/app?sslcert=/x.pem");
        assert!(message.contains("sslcert is not supported"), "{message}");
        let message = error(
            "postgres://u:hunter22@h/app?sslmode=verify-full&sslrootcert=/no/such%20dir/a+b.pem",
        );
        assert!(message.contains("/no/such dir/a+b.pem"), "{message}");
        let message = error("postgres://u:hunter22@h/app?bogus=1");
        assert!(message.contains("bogus"), "{message}");
        assert!(!message.contains("hunter22"), "{message}");
    }
}
