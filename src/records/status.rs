//! The status words of volume and backup records, as enums with their stable names in
//! one place (Cinder's, as `cinder list` and `cinder backup-list` show them).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Declares a status enum whose variants serialize, display and parse as
/// their stable names.
macro_rules! statuses {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every status, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stable name, as the records and the control socket carry it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(text: &str) -> Result<Self, UnknownStatus> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownStatus(text.to_string())),
                }
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }
    };
}

statuses! {
    /// A volume record's status.
    VolumeStatus {
        /// Being created by its driver.
        Creating = "creating",
        /// Ready for use, attached nowhere.
        Available = "available",
        /// Attached to at least one host.
        InUse = "in-use",
        /// Being deleted (resumed after a crash).
        Deleting = "deleting",
        /// Being extended.
        Extending = "extending",
        /// A backup of it is being taken.
        BackingUp = "backing-up",
        /// A restore is writing into it.
        RestoringBackup = "restoring-backup",
        /// Its driver failed it (a create, a delete).
        Error = "error",
        /// An extend failed; the data is intact at the old size.
        ErrorExtending = "error_extending",
        /// A restore into it failed or was cut off.
        ErrorRestoring = "error_restoring",
        /// Gone (only in answers: the record is removed).
        Deleted = "deleted",
    }
}

statuses! {
    /// A backup record's status.
    BackupStatus {
        /// Being taken.
        Creating = "creating",
        /// Stored and restorable.
        Available = "available",
        /// Being restored into a volume.
        Restoring = "restoring",
        /// Being deleted (resumed after a crash).
        Deleting = "deleting",
        /// The backup failed.
        Error = "error",
        /// Gone (only in answers: the record is removed).
        Deleted = "deleted",
    }
}

impl VolumeStatus {
    /// The statuses an operator may set by hand (`volume reset-state`),
    /// as Cinder's `os-reset_status` allows for a volume.
    pub const SETTABLE: [VolumeStatus; 4] = [
        VolumeStatus::Available,
        VolumeStatus::InUse,
        VolumeStatus::Error,
        VolumeStatus::ErrorRestoring,
    ];

    /// What a volume in this status is busy with, in words (`None` for a
    /// status no operation holds). Cinder refuses the same operations on a
    /// volume in these statuses.
    pub fn busy_with(self) -> Option<&'static str> {
        match self {
            VolumeStatus::Creating => Some("it is being created"),
            VolumeStatus::Deleting => Some("it is being deleted"),
            VolumeStatus::Extending => Some("it is being extended"),
            VolumeStatus::BackingUp => Some("a backup of it is in progress"),
            VolumeStatus::RestoringBackup => Some("a restore into it is in progress"),
            _ => None,
        }
    }
}

impl BackupStatus {
    /// The statuses an operator may set by hand (`backup reset-state`), as
    /// Cinder's `backup-reset-state` allows.
    pub const SETTABLE: [BackupStatus; 2] = [BackupStatus::Available, BackupStatus::Error];
}

/// A status word that is not one of the record's statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_from_its_name_and_serializes_as_it() {
        for status in VolumeStatus::ALL {
            assert_eq!(status.as_str().parse::<VolumeStatus>(), Ok(*status));
            assert_eq!(
                serde_json::to_string(status).expect("json"),
                format!("\"{status}\"")
            );
        }
        for status in BackupStatus::ALL {
            assert_eq!(status.as_str().parse::<BackupStatus>(), Ok(*status));
        }
        assert_eq!(
            "in_use".parse::<VolumeStatus>(),
            Err(UnknownStatus("in_use".into()))
        );
        let recorded = String::from("in-use");
        assert!(recorded == VolumeStatus::InUse);
        assert!(*"in-use" == VolumeStatus::InUse);
    }
}
