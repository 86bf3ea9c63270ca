//! Which database a `[database] connection` URL names (Cinder's SQLAlchemy form), decided
//! from its scheme alone, and the URL without its password: pure, so the config check
//! and the store agree.
//!
//! Cinder writes `mysql+pymysql://cinder:secret@db.example/cinder` (kolla,
//! openstack-helm) or `postgresql://...`; the part after `+` names a Python
//! driver and means nothing here.

/// A database rekindle keeps a fleet's records in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL (`postgresql://`, `postgres://`).
    Postgres,
    /// MariaDB or MySQL (`mysql+pymysql://`, `mysql://`, `mariadb://`).
    MariaDb,
}

/// The schemes rekindle speaks, as an error message lists them.
pub const SUPPORTED: &str = "postgresql://, mysql+pymysql:// (also mysql://, mariadb://)";

impl Dialect {
    /// The dialect of `url`, from its scheme; a driver suffix
    /// (`+pymysql`, `+psycopg2`) is ignored.
    ///
    /// # Errors
    /// A sentence for the operator: the scheme is missing, names SQLite
    /// (the embedded default needs no URL), or names a database rekindle
    /// does not speak (the supported ones listed).
    pub fn of(url: &str) -> Result<Dialect, String> {
        let Some((scheme, _)) = url.split_once("://") else {
            return Err(format!(
                "not a database URL (expected a scheme such as {SUPPORTED})"
            ));
        };
        let dialect = scheme.split('+').next().unwrap_or(scheme);
        match dialect.to_ascii_lowercase().as_str() {
            "postgresql" | "postgres" => Ok(Dialect::Postgres),
            "mysql" | "mariadb" => Ok(Dialect::MariaDb),
            "sqlite" => Err(
                "SQLite is not a fleet database: remove [database] connection and rekindle keeps its records in SQLite under state_dir".to_string(),
            ),
            other => Err(format!(
                "unsupported database dialect \"{other}\": rekindle speaks {SUPPORTED}"
            )),
        }
    }

    /// Its name, as messages say it.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::MariaDb => "MariaDB",
        }
    }

    /// The Cargo feature that brings its client.
    pub fn feature(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::MariaDb => "mariadb",
        }
    }

    /// Whether this build has its client.
    pub fn built(self) -> bool {
        match self {
            Dialect::Postgres => cfg!(feature = "postgres"),
            Dialect::MariaDb => cfg!(feature = "mariadb"),
        }
    }

    /// Why a URL of this dialect cannot be used by this build.
    pub fn not_built(self) -> String {
        format!(
            "this rekindle was built without {} support (Cargo feature `{}`)",
            self.name(),
            self.feature()
        )
    }
}

/// `url` without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::Dialect;

    #[test]
    fn cinder_urls_name_their_dialect_and_others_are_refused_naming_the_supported_ones() {
        for (url, dialect) in [
            ("postgresql://rekindle@db:5432/cinder", Dialect::Postgres),
            ("postgres://db/cinder", Dialect::Postgres),
            ("postgresql+psycopg2://u:p@db/cinder", Dialect::Postgres),
            (
                "mysql+pymysql://cinder:secret@db.example/cinder",
                Dialect::MariaDb,
            ),
            ("mysql://cinder@db/cinder?charset=utf8", Dialect::MariaDb),
            ("mariadb://cinder@db:3306/cinder", Dialect::MariaDb),
            ("MySQL+PyMySQL://cinder@db/cinder", Dialect::MariaDb),
        ] {
            assert_eq!(Dialect::of(url), Ok(dialect), "{url}");
        }
        let oracle = Dialect::of("oracle://scott:tiger@db/orcl").expect_err("refused");
        assert!(
            oracle.contains("\"oracle\"") && oracle.contains("mysql+pymysql://"),
            "{oracle}"
        );
        let sqlite = Dialect::of("sqlite:////var/lib/cinder/cinder.sqlite").expect_err("refused");
        assert!(sqlite.contains("state_dir"), "{sqlite}");
        let bare = Dialect::of("db.example/cinder").expect_err("refused");
        assert!(bare.contains("postgresql://"), "{bare}");
    }
}
