//! Benchmark of the real drivers against plain tools in the same run: posix backup and
//! restore of a 1 GiB raw volume vs `cp` of the same file, and initialize_connection on
//! an existing qemu-nbd export. Backup and restore fsync what they write before they
//! succeed, so backup_ratio_vs_cp and restore_ratio_vs_cp compare against `cp` followed
//! by `sync` of the copy; the *_vs_unsynced_cp figures compare against `cp` alone. Each
//! side runs three rounds into a new file (a new backup id, a new target volume) and
//! keeps its best. Prints those ratios and initialize_connection_us.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rekindle::driver::posix::PosixBackupDriver;
use rekindle::driver::qemu::QemuDriver;
use rekindle::driver::{
    BackupDriver, BackupRecord, Connector, DriverContext, DriverSpec, Kind, Volume, VolumeDriver,
    VolumeLocation,
};
use rekindle::engine::runtime::run_real;

const GIB: u64 = 1 << 30;
/// Rounds of each measurement; the best of each is kept.
const ROUNDS: usize = 3;

fn context(kind: Kind, driver: &str, options: &[(&str, String)]) -> DriverContext {
    DriverContext {
        spec: DriverSpec {
            backend: "bench".into(),
            kind,
            driver: driver.into(),
            options: options
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.clone()))
                .collect(),
            origin: None,
        },
        started: actix::clock::Instant::now(),
        events: Default::default(),
    }
}

fn write_volume(path: &Path) {
    let mut file = std::fs::File::create(path).expect("create volume");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let block: Vec<u8> = (0..(1 << 20))
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    for _ in 0..(GIB >> 20) {
        file.write_all(&block).expect("write volume");
    }
    file.sync_all().expect("sync");
}

/// The baseline, best of two: a plain `cp` of the volume, then `sync` of
/// the copy, because a backup is only done once its data is durable
/// (rekindle fsyncs every chunk); and the unsynced cp (often an in-kernel
/// copy within the page cache).
fn cp_baseline(volume_path: &std::path::Path, dir: &std::path::Path) -> (Duration, Duration) {
    let mut cp = Duration::MAX;
    let mut cp_unsynced = Duration::MAX;
    for _ in 0..ROUNDS {
        let copy = dir.join("copy.raw");
        let started = Instant::now();
        let status = Command::new("cp")
            .arg(volume_path)
            .arg(&copy)
            .status()
            .expect("cp runs");
        assert!(status.success());
        cp_unsynced = cp_unsynced.min(started.elapsed());
        let status = Command::new("sync").arg(&copy).status().expect("sync runs");
        assert!(status.success());
        cp = cp.min(started.elapsed());
        let _ = std::fs::remove_file(&copy);
    }
    (cp, cp_unsynced)
}

/// The time of one `initialize_connection` of an exported qemu volume,
/// averaged over 10,000 calls.
async fn connection_info_per_call(dir: &std::path::Path, id: &str) -> Duration {
    let volumes = dir.join("volumes");
    std::fs::create_dir_all(&volumes).expect("volumes dir");
    let qemu = QemuDriver::from_context(
        &context(
            Kind::Volume,
            "qemu",
            &[
                ("volumes_dir", volumes.display().to_string()),
                ("export_port_range", "22809-22829".to_string()),
            ],
        ),
        None,
    )
    .expect("qemu driver");
    qemu.do_setup().await.expect("qemu setup");
    let small = Volume::new(id, 16 << 20);
    qemu.create_volume(&small).await.expect("create");
    let connector = Connector {
        host: Some("bench".into()),
        ip: Some("127.0.0.1".into()),
        ..Connector::default()
    };
    qemu.create_export(&small, &connector)
        .await
        .expect("export");
    let calls = 10_000u32;
    let started = Instant::now();
    for _ in 0..calls {
        qemu.initialize_connection(&small, &connector)
            .await
            .expect("connection info");
    }
    let per_call = started.elapsed() / calls;
    qemu.remove_export(&small).await.expect("remove export");
    per_call
}

fn main() {
    let dir = std::env::temp_dir().join(format!("rekindle-bench-drivers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("backups")).expect("dirs");
    let volume_path = dir.join("volume.raw");
    write_volume(&volume_path);
    let results = run_real(async {
        let (cp, cp_unsynced) = cp_baseline(&volume_path, &dir);
        let backup_driver = PosixBackupDriver::from_context(&context(
            Kind::Backup,
            "posix",
            &[(
                "backup_posix_path",
                dir.join("backups").display().to_string(),
            )],
        ))
        .expect("posix driver");
        backup_driver.do_setup().await.expect("setup");
        let id = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
        let mut volume = Volume::new(id, GIB);
        volume.location = Some(Box::new(VolumeLocation {
            path: volume_path.clone(),
            format: "raw".into(),
        }));
        // Every round is a new backup (a fresh id, as real backups are); the
        // previous one is deleted outside the timing, as cp's copy is.
        let mut backup = Duration::MAX;
        let mut record = None;
        for round in 0..ROUNDS {
            if let Some(previous) = record.take() {
                backup_driver
                    .delete_backup(&previous)
                    .await
                    .expect("delete backup");
            }
            let fresh = BackupRecord {
                id: format!("1b4e28ba-2fa1-11d2-883f-0016d3cca4{round:02}"),
                volume_id: id.into(),
                size_bytes: GIB,
                progress: Default::default(),
            };
            let started = Instant::now();
            backup_driver.backup(&fresh, &volume).await.expect("backup");
            backup = backup.min(started.elapsed());
            record = Some(fresh);
        }
        let record = record.expect("at least one round");
        let mut target = Volume::new(id, GIB);
        let target_path = dir.join("restored.raw");
        target.location = Some(Box::new(VolumeLocation {
            path: target_path.clone(),
            format: "raw".into(),
        }));
        // Best of two (the first also pays for growing the page cache).
        let mut restore = Duration::MAX;
        for _ in 0..ROUNDS {
            // A new volume each round (as cp's copy is new each round).
            let _ = std::fs::remove_file(&target_path);
            let started = Instant::now();
            backup_driver
                .restore(&record, &target)
                .await
                .expect("restore");
            restore = restore.min(started.elapsed());
        }
        let same = Command::new("cmp")
            .arg(&volume_path)
            .arg(&target_path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(same, "restored data differs");

        let per_call = connection_info_per_call(&dir, id).await;
        (cp, cp_unsynced, backup, restore, per_call)
    })
    .expect("runtime");
    let (cp, cp_unsynced, backup, restore, per_call) = results;
    let mib_s = |d: Duration| 1024.0 / d.as_secs_f64();
    println!("cp_unsynced_1gib_mib_per_sec: {:.0}", mib_s(cp_unsynced));
    println!("cp_synced_1gib_mib_per_sec: {:.0}", mib_s(cp));
    println!("backup_1gib_mib_per_sec: {:.0}", mib_s(backup));
    println!("restore_1gib_mib_per_sec: {:.0}", mib_s(restore));
    println!(
        "backup_ratio_vs_cp: {:.2}",
        cp.as_secs_f64() / backup.as_secs_f64()
    );
    println!(
        "restore_ratio_vs_cp: {:.2}",
        cp.as_secs_f64() / restore.as_secs_f64()
    );
    // The same against a cp that leaves the copy in the page cache (backup
    // and restore both fsync what they wrote before they report success).
    println!(
        "backup_ratio_vs_unsynced_cp: {:.2}",
        cp_unsynced.as_secs_f64() / backup.as_secs_f64()
    );
    println!(
        "restore_ratio_vs_unsynced_cp: {:.2}",
        cp_unsynced.as_secs_f64() / restore.as_secs_f64()
    );
    println!(
        "initialize_connection_us: {:.1}",
        per_call.as_secs_f64() * 1e6
    );
    let _ = std::fs::remove_dir_all(&dir);
}
