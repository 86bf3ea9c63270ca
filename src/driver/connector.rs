//! Connector: the initiator's properties (os-brick `get_connector_properties`).
//! Placeholder until the typed, validated connector lands.

use serde::{Deserialize, Serialize};

/// What the attaching host looks like.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connector {
    /// Host name of the initiator.
    pub host: Option<String>,
    /// IP address of the initiator.
    pub ip: Option<String>,
}
