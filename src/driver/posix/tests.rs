//! Tests of the `posix` backup driver: chunks and their checksums, a replace that fails,
//! a store moved away, the rate limit, sizes.

use super::*;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn a_store_moved_away_fails_the_probe_and_is_never_recreated_by_a_write() {
    let base = std::env::temp_dir().join(format!("rekindle-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let store = base.join("S");
    std::fs::create_dir_all(&store).expect("store");
    let source = base.join("vol.raw");
    std::fs::write(&source, vec![7u8; 4096]).expect("volume");
    let spec = crate::driver::DriverSpec::new(
        "backup",
        crate::driver::Kind::Backup,
        "posix",
        [("backup_posix_path".to_string(), store.display().to_string())],
    );
    let ctx = DriverContext {
        spec,
        started: actix::clock::Instant::now(),
        events: Default::default(),
    };
    let driver = PosixBackupDriver::from_context(&ctx).expect("driver");
    block_on(driver.do_setup()).expect("set up");
    block_on(driver.probe()).expect("healthy");
    let mut volume = Volume::new("6f1c3c52-1f5e-4e0b-9a3e-0d1f2b3c4d5e", 4096);
    volume.location = Some(Box::new(VolumeLocation {
        path: source.clone(),
        format: "raw".to_string(),
    }));
    let backup = BackupRecord {
        id: "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d".to_string(),
        volume_id: volume.id.to_string(),
        size_bytes: 4096,
        progress: Default::default(),
    };
    // mv S S.gone: the probe fails, a backup is refused, S is not recreated.
    std::fs::rename(&store, base.join("S.gone")).expect("move away");
    let lost = block_on(driver.probe()).expect_err("store gone");
    assert!(lost.to_string().contains("does not exist"), "{lost}");
    let refused = block_on(driver.backup(&backup, &volume)).expect_err("no store");
    assert!(refused.to_string().contains("does not exist"), "{refused}");
    assert!(!store.exists(), "the write path re-created the store root");
    // An empty directory in its place (an unmounted mount point): not the store.
    std::fs::create_dir(&store).expect("mount point");
    let replaced = block_on(driver.backup(&backup, &volume)).expect_err("other dir");
    assert!(
        replaced.to_string().contains("device and inode changed"),
        "{replaced}"
    );
    assert_eq!(std::fs::read_dir(&store).expect("dir").count(), 0);
    // The store returns: healthy again, and a backup lands inside it.
    std::fs::remove_dir(&store).expect("unmount");
    std::fs::rename(base.join("S.gone"), &store).expect("move back");
    block_on(driver.probe()).expect("healthy again");
    block_on(driver.backup(&backup, &volume)).expect("backup");
    assert!(store.join(&backup.id).is_dir());
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn chunks_round_trip_and_corruption_is_refused() {
    let root = std::env::temp_dir().join(format!("rekindle-posix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("dir");
    let source = root.join("source.raw");
    let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&source, &data).expect("write");
    let dir = root.join("b");
    let written = Progress::default();
    let unlimited = Throttle::new(0);
    let meta = write_chunks(&source, &dir, 16_384, "b", "v", &written, &unlimited).expect("backup");
    assert_eq!((written.done(), written.bytes()), (50_000, 50_000));
    assert_eq!(meta.chunks.len(), 4);
    assert_eq!(meta.size, 50_000);
    let target = root.join("target.raw");
    let staged = Progress::default();
    restore_chunks(&dir, &target, 0, &staged, &unlimited).expect("restore");
    assert_eq!(staged.done(), 50_000, "every verified byte counts as done");
    assert_eq!(staged.bytes(), 0, "staging writes nothing to a target");
    assert_eq!(std::fs::read(&target).expect("read"), data);
    let replaced = root.join("replaced.raw");
    std::fs::write(&replaced, b"old contents").expect("write");
    restore_in_place(&dir, &replaced, 0, &Progress::default(), &unlimited)
        .expect("restore over a volume");
    assert_eq!(std::fs::read(&replaced).expect("read"), data);
    let other = root.join("other.raw");
    // Flip one byte of chunk 2: restore refuses, naming the chunk.
    let chunk = dir.join("chunk-00002");
    let mut bytes = std::fs::read(&chunk).expect("read");
    bytes[10] ^= 0xff;
    std::fs::write(&chunk, bytes).expect("write");
    let e = restore_chunks(&dir, &other, 0, &Progress::default(), &unlimited).expect_err("corrupt");
    assert!(
        e.to_string().contains("chunk-00002") && e.to_string().contains("corrupt"),
        "{e}"
    );
    assert!(!other.exists(), "a failed restore leaves no partial file");
    // Restoring over an existing volume: the corrupt backup is refused
    // and the volume keeps its data, with no staged file left behind.
    let volume = root.join("volume.raw");
    std::fs::write(&volume, b"precious").expect("write");
    let untouched = Progress::default();
    untouched.start();
    let e = restore_in_place(&dir, &volume, 0, &untouched, &unlimited).expect_err("corrupt");
    assert!(
        !untouched.wrote(),
        "a refused restore left the volume untouched"
    );
    assert!(e.to_string().contains("chunk-00002"), "{e}");
    assert_eq!(std::fs::read(&volume).expect("read"), b"precious");
    assert!(!root.join(".volume.raw.restoring").exists());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_replace_that_fails_leaves_the_volume_unwritten_and_no_staged_file() {
    let root = std::env::temp_dir().join(format!("rekindle-posix-replace-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let volumes = root.join("volumes");
    std::fs::create_dir_all(&volumes).expect("dir");
    let source = root.join("source.raw");
    let data: Vec<u8> = (0..64_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&source, &data).expect("write");
    let dir = root.join("b");
    let unlimited = Throttle::new(0);
    write_chunks(
        &source,
        &dir,
        16_384,
        "b",
        "v",
        &Progress::default(),
        &unlimited,
    )
    .expect("backup");
    let target = volumes.join("volume-v.raw");
    std::fs::write(&target, b"precious").expect("write");
    // volumes_dir moves away while the chunks are staged (64 kB at
    // 64 kB/s: about a second): the replace step fails.
    let progress = Progress::default();
    progress.start();
    let restore = {
        let (dir, target, progress) = (dir.clone(), target.clone(), progress.clone());
        std::thread::spawn(move || {
            restore_in_place(&dir, &target, 0, &progress, &Throttle::new(64_000))
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let gone = root.join("volumes.gone");
    std::fs::rename(&volumes, &gone).expect("move volumes_dir away");
    let result = restore.join().expect("no panic");
    assert!(result.is_err(), "the replace step fails: {result:?}");
    assert!(!progress.wrote(), "the volume itself was never written");
    assert_eq!(
        std::fs::read(gone.join("volume-v.raw")).expect("read"),
        b"precious"
    );
    let left: Vec<_> = std::fs::read_dir(&gone)
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["volume-v.raw"], "the staged file was removed");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_rate_limit_holds_copying_to_its_rate() {
    let throttle = Throttle::new(4 << 20);
    let started = std::time::Instant::now();
    for _ in 0..4 {
        throttle.take(1 << 20);
    }
    // 4 MiB at 4 MiB/s: about a second, never less.
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_millis(990), "{took:?}");
    let free = std::time::Instant::now();
    Throttle::new(0).take(u64::MAX / 2);
    assert!(free.elapsed() < std::time::Duration::from_millis(100));
}

#[test]
fn sizes_parse() {
    assert_eq!(parse_size("64M"), Some(64 << 20));
    assert_eq!(parse_size("1G"), Some(1 << 30));
    assert_eq!(parse_size("4096"), Some(4096));
    assert_eq!(parse_size("1GiB"), Some(1 << 30));
    assert_eq!(parse_size("lots"), None);
}
