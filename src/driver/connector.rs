//! Connector: the attaching host's properties (os-brick `get_connector_properties`),
//! deserialized from JSON with errors that name the field, plus validation helpers.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What the attaching host looks like. Unknown fields are refused so a typo
/// (`wwpn` for `wwpns`) is caught instead of silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connector {
    /// Host name of the initiator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// IP address of the initiator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// iSCSI initiator name (`iqn.` / `eui.` / `naa.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator: Option<String>,
    /// Fibre Channel port names (16 hex digits each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wwpns: Vec<String>,
    /// Fibre Channel node names (16 hex digits each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wwnns: Vec<String>,
    /// Whether the host uses multipath.
    #[serde(default)]
    pub multipath: bool,
    /// Whether multipath is required.
    #[serde(default)]
    pub enforce_multipath: bool,
    /// `x86_64`, `aarch64`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// `linux2`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
    /// NVMe-oF host NQN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nqn: Option<String>,
    /// Host UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// NVMe host id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvme_hostid: Option<String>,
    /// Where the compute side mounts the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<String>,
    /// Attach mode (`rw`, `ro`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// A connector that cannot be used: names the field and the problem.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConnectorError {
    /// The JSON does not match the connector's shape.
    #[error("connector: {0}")]
    Json(String),
    /// A field is required but missing.
    #[error("connector field `{field}` is required by this driver but missing")]
    Missing {
        /// The field.
        field: &'static str,
    },
    /// A field's value is malformed.
    #[error("connector field `{field}`: \"{value}\" {problem}")]
    Malformed {
        /// The field.
        field: &'static str,
        /// The value.
        value: String,
        /// What is wrong.
        problem: &'static str,
    },
}

impl Connector {
    /// Parses connector JSON; an error names the offending field.
    pub fn from_json(text: &str) -> Result<Connector, ConnectorError> {
        // Serde would read a JSON array as a struct's fields in order (`[]`
        // becomes an empty connector); os-brick's connector is an object.
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ConnectorError::Json(e.to_string()))?;
        let found = match &value {
            serde_json::Value::Object(_) => None,
            serde_json::Value::Array(_) => Some("an array"),
            serde_json::Value::String(_) => Some("a string"),
            serde_json::Value::Number(_) => Some("a number"),
            serde_json::Value::Bool(_) => Some("a boolean"),
            serde_json::Value::Null => Some("null"),
        };
        if let Some(found) = found {
            return Err(ConnectorError::Json(format!(
                "a connector must be a JSON object such as {{\"host\": \"compute-1\", \"ip\": \"192.0.2.10\"}}, found {found}"
            )));
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                ConnectorError::Json(inner.to_string())
            } else {
                ConnectorError::Json(format!("field `{path}`: {inner}"))
            }
        })
    }

    /// The host name, which must be present and non-empty.
    pub fn require_host(&self) -> Result<&str, ConnectorError> {
        match self.host.as_deref().map(str::trim) {
            None => Err(ConnectorError::Missing { field: "host" }),
            Some("") => Err(ConnectorError::Malformed {
                field: "host",
                value: String::new(),
                problem: "must not be empty",
            }),
            Some(host) => Ok(host),
        }
    }

    /// The IP address, which must be present and valid.
    pub fn require_ip(&self) -> Result<IpAddr, ConnectorError> {
        let ip = self
            .ip
            .as_deref()
            .ok_or(ConnectorError::Missing { field: "ip" })?;
        ip.trim().parse().map_err(|_| ConnectorError::Malformed {
            field: "ip",
            value: ip.to_string(),
            problem: "is not a valid IP address",
        })
    }

    /// The iSCSI initiator, which must be present and an `iqn.`, `eui.` or
    /// `naa.` name.
    pub fn require_initiator(&self) -> Result<&str, ConnectorError> {
        let initiator = self
            .initiator
            .as_deref()
            .ok_or(ConnectorError::Missing { field: "initiator" })?;
        if ["iqn.", "eui.", "naa."]
            .iter()
            .any(|p| initiator.starts_with(p))
            && initiator.len() > 4
        {
            Ok(initiator)
        } else {
            Err(ConnectorError::Malformed {
                field: "initiator",
                value: initiator.to_string(),
                problem: "is not an iSCSI name (iqn., eui. or naa.)",
            })
        }
    }

    /// The FC port names, at least one, each 16 hex digits.
    pub fn require_wwpns(&self) -> Result<&[String], ConnectorError> {
        if self.wwpns.is_empty() {
            return Err(ConnectorError::Missing { field: "wwpns" });
        }
        for wwpn in &self.wwpns {
            if wwpn.len() != 16 || !wwpn.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(ConnectorError::Malformed {
                    field: "wwpns",
                    value: wwpn.clone(),
                    problem: "is not 16 hex digits",
                });
            }
        }
        Ok(&self.wwpns)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_connector_that_is_not_an_object_is_named_as_such() {
        for (text, found) in [
            ("[]", "an array"),
            ("[\"compute-1\"]", "an array"),
            ("\"compute-1\"", "a string"),
            ("7", "a number"),
            ("null", "null"),
        ] {
            let error = super::Connector::from_json(text)
                .expect_err(text)
                .to_string();
            assert!(
                error.contains("a connector must be a JSON object")
                    && error.ends_with(&format!("found {found}")),
                "{text}: {error}"
            );
        }
    }

    use super::*;

    #[test]
    fn a_typical_os_brick_connector_parses() {
        let c = Connector::from_json(
            r#"{"host": "compute-1", "ip": "192.0.2.7", "initiator": "iqn.1993-08.org.debian:01:abc",
                "multipath": false, "platform": "x86_64", "os_type": "linux2",
                "wwpns": ["500143802426baf4"], "nqn": "nqn.2014-08.org.nvmexpress:uuid:1"}"#,
        )
        .expect("valid");
        assert_eq!(c.require_host(), Ok("compute-1"));
        assert_eq!(
            c.require_ip().map(|ip| ip.to_string()),
            Ok("192.0.2.7".to_string())
        );
        assert!(c.require_initiator().is_ok());
        assert!(c.require_wwpns().is_ok());
    }

    #[test]
    fn bad_input_names_the_field() {
        let e = Connector::from_json(r#"{"host": "h", "wwpn": ["x"]}"#).expect_err("typo");
        assert!(e.to_string().contains("unknown field `wwpn`"), "{e}");
        let e = Connector::from_json(r#"{"host": 5}"#).expect_err("type");
        assert!(
            e.to_string()
                .starts_with("connector: field `host`: invalid type"),
            "{e}"
        );
        let c = Connector::from_json(r#"{"host": "h", "ip": "300.1.1.1"}"#).expect("shape ok");
        assert_eq!(
            c.require_ip().expect_err("bad ip").to_string(),
            "connector field `ip`: \"300.1.1.1\" is not a valid IP address"
        );
        let c = Connector::from_json(r#"{"ip": "10.0.0.1"}"#).expect("shape ok");
        assert_eq!(
            c.require_host().expect_err("no host").to_string(),
            "connector field `host` is required by this driver but missing"
        );
        let c = Connector {
            wwpns: vec!["zz".into()],
            initiator: Some("bogus".into()),
            ..Connector::default()
        };
        assert!(
            c.require_wwpns()
                .expect_err("bad wwpn")
                .to_string()
                .contains("16 hex digits")
        );
        assert!(
            c.require_initiator()
                .expect_err("bad iqn")
                .to_string()
                .contains("iSCSI name")
        );
    }
}
