//! The client settings made from the configured URL: time limits, keepalives, and TLS by
//! `sslmode`.

use super::tls::MakeRustls;
use crate::config::{PgTarget, SslMode};
use crate::store::model::StoreError;
use postgres::Client;
use std::time::Duration;

/// A new client connected to `target`.
pub(super) fn client(target: &PgTarget) -> Result<Client, StoreError> {
    let open_err = |source| StoreError::PgOpen {
        url: target.redacted(),
        source,
    };
    let mut config: postgres::Config = target
        .url()
        .parse()
        .map_err(|e| StoreError::Config(format!("{}: {e}", target.redacted())))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_application_name().is_none() {
        config.application_name("authmilter");
    }
    // A database host that vanishes (no reset, no answer) is noticed within a minute.
    config.keepalives_idle(Duration::from_secs(30));
    config.tcp_user_timeout(Duration::from_secs(60));
    use postgres::config::SslMode as Mode;
    match target.ssl {
        SslMode::Disable => {
            config.ssl_mode(Mode::Disable);
            config.connect(postgres::NoTls).map_err(open_err)
        }
        mode => {
            config.ssl_mode(match mode {
                SslMode::Prefer => Mode::Prefer,
                _ => Mode::Require,
            });
            let tls = MakeRustls::new(mode, target.ca_file.as_deref())?;
            config.connect(tls).map_err(open_err)
        }
    }
}
