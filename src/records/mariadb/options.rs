//! A Cinder `[database] connection` URL for MariaDB (`mysql+pymysql://user:pw@host:port/db?...`)
//! read into the client's options: what is honoured, what is ignored, what is refused.

use sqlx::ConnectOptions;
use sqlx::mysql::MySqlConnectOptions;

/// Query parameters of PyMySQL / SQLAlchemy URLs that change nothing here
/// (rekindle's own timeouts and session settings apply).
const IGNORED: &[&str] = &[
    "read_default_file",
    "read_default_group",
    "plugin",
    "connect_timeout",
    "read_timeout",
    "write_timeout",
    "binary_prefix",
    "autocommit",
    "local_infile",
    "client_flag",
    "program_name",
    "sql_mode",
    "init_command",
    "max_allowed_packet",
    "defer_connect",
    "auth_plugin_map",
];

/// The client options for `url`: user and password (percent-decoded),
/// host and port (3306 unless given) or `unix_socket`, the database.
/// `charset` is honoured as UTF-8 (`utf8`, `utf8mb3`, `utf8mb4`: rekindle
/// always speaks `utf8mb4`); the parameters in `IGNORED` (`plugin`,
/// `read_default_file`, timeouts, ...) are ignored, with a warning.
///
/// # Errors
/// A sentence naming the part of the URL at fault: one that does not
/// parse, names no database, asks for another charset or for TLS
/// (`ssl_ca`, `ssl_cert`, `ssl_key`, `ssl`: this build has no TLS client;
/// reach the database over a trusted network or a local socket), or
/// carries a parameter rekindle does not know.
pub fn connect_options(url: &str) -> Result<MySqlConnectOptions, String> {
    // SQLAlchemy writes a socket-only URL with no host (`user@/db?unix_socket=...`).
    let url = match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            if authority.ends_with('@') {
                format!("{scheme}://{authority}localhost{path}")
            } else {
                url.to_string()
            }
        }
        None => url.to_string(),
    };
    let parsed = url::Url::parse(&url).map_err(|e| {
        format!(
            "not a valid URL: {e} (a password or user with @ : / % # ? & = or spaces must be percent-encoded, @ as %40)"
        )
    })?;
    let decode = |what: &str, s: &str| {
        let escapes_ok = s
            .split('%')
            .skip(1)
            .all(|rest| rest.len() >= 2 && rest.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit));
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .filter(|_| escapes_ok)
            .map(|d| d.into_owned())
            .ok_or_else(|| {
                format!("the {what} is not valid percent-encoding (write a % as %25, @ as %40)")
            })
    };
    if parsed.username().is_empty() {
        return Err(
            "names no user: write it as mysql+pymysql://USER:PASSWORD@host/database".to_string(),
        );
    }
    // sqlx logs slow statements (their SQL) at WARN: rekindle says what
    // failed in its own words instead.
    let mut options = MySqlConnectOptions::new()
        .disable_statement_logging()
        .charset("utf8mb4")
        .username(&decode("user", parsed.username())?);
    if let Some(password) = parsed.password() {
        options = options.password(&decode("password", password)?);
    }
    if let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) {
        options = options.host(host.trim_start_matches('[').trim_end_matches(']'));
    }
    options = options.port(parsed.port().unwrap_or(3306));
    let database = decode("database name", parsed.path().trim_start_matches('/'))?;
    if database.is_empty() {
        return Err(
            "names no database: end it with the database, as in mysql+pymysql://rekindle@db.example/rekindle"
                .to_string(),
        );
    }
    options = options.database(&database);
    let mut ignored = Vec::new();
    for (key, value) in parsed.query_pairs() {
        match key.as_ref() {
            "charset" => {
                if !matches!(
                    value.to_ascii_lowercase().as_str(),
                    "utf8" | "utf8mb3" | "utf8mb4"
                ) {
                    return Err(format!(
                        "charset={value}: rekindle writes UTF-8; use charset=utf8 or utf8mb4"
                    ));
                }
            }
            "unix_socket" | "socket" => options = options.socket(value.as_ref()),
            "ssl"
            | "ssl_ca"
            | "ssl_cert"
            | "ssl_key"
            | "ssl_capath"
            | "ssl_cipher"
            | "ssl_verify_cert"
            | "ssl_verify_identity"
            | "ssl_check_hostname"
            | "ssl_disabled"
            | "ssl-mode"
            | "ssl_mode" => {
                return Err(format!(
                    "{key}: this rekindle has no TLS client for MariaDB; reach the database over a trusted network or a local socket (unix_socket=...) and remove the ssl_* parameters"
                ));
            }
            "password" | "passwd" | "user" => {
                return Err(format!(
                    "{key}: give the user and password before the host (mysql+pymysql://USER:PASSWORD@host/database), not as a parameter"
                ));
            }
            other if IGNORED.contains(&other) => ignored.push(other.to_string()),
            // The value is not repeated: it may be a secret.
            other => {
                return Err(format!(
                    "{other}: not a parameter rekindle knows (it honours charset and unix_socket, ignores {})",
                    IGNORED.join(", ")
                ));
            }
        }
    }
    if !ignored.is_empty() {
        tracing::warn!(
            parameters = %ignored.join(", "),
            "[database] connection: parameters ignored (rekindle's own timeouts and session settings apply)"
        );
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::connect_options;

    #[test]
    fn cinder_urls_are_read_with_their_user_password_host_port_and_database() {
        let o = connect_options(
            "mysql+pymysql://cinder:p%40ss@db.example:3307/cinder?charset=utf8&plugin=x",
        )
        .expect("a kolla URL");
        assert_eq!(
            (
                o.get_username(),
                o.get_host(),
                o.get_port(),
                o.get_database()
            ),
            ("cinder", "db.example", 3307, Some("cinder"))
        );
        let o = connect_options("mariadb://cinder@db/cinder").expect("mariadb://");
        assert_eq!(o.get_port(), 3306);
        let o =
            connect_options("mysql://cinder@localhost/cinder?unix_socket=/run/mysqld/mysqld.sock")
                .expect("a socket");
        assert_eq!(
            o.get_socket().map(|p| p.display().to_string()),
            Some("/run/mysqld/mysqld.sock".to_string())
        );
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_naming_the_parameter() {
        for (url, names) in [
            ("mysql+pymysql://c@db/cinder?ssl_ca=/etc/ca.pem", "ssl_ca"),
            (
                "mysql+pymysql://c@db/cinder?charset=latin1",
                "charset=latin1",
            ),
            (
                "mysql+pymysql://c@db/cinder?colour=blue",
                "colour: not a parameter",
            ),
            ("mysql+pymysql://c@db/", "names no database"),
            (
                "mysql+pymysql://c@db:notaport/cinder",
                "must be percent-encoded",
            ),
            ("mysql+pymysql://db.example/cinder", "names no user"),
            (
                "mysql+pymysql://c:p%zzss@db/cinder",
                "password is not valid percent-encoding",
            ),
            (
                "mysql+pymysql://c@db/cinder?password=topsecret",
                "password: give the user",
            ),
        ] {
            let error = connect_options(url).expect_err(url);
            assert!(error.contains(names), "{url}: {error}");
            assert!(
                !error.contains("topsecret") && !error.contains("zz"),
                "{error}"
            );
        }
    }
}
