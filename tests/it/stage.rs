//! Staging uploads against the in-process S3 server: large objects go up
//! as multipart uploads, a failed part aborts the upload (no orphaned
//! parts), and server-side encryption is requested as configured.

use crate::harness::Stack;
use ferry::rng::XorShift;
use std::sync::atomic::Ordering;

/// A file of `len` pseudo-random bytes.
fn random_file(dir: &std::path::Path, len: usize) -> (std::path::PathBuf, Vec<u8>) {
    let mut rng = XorShift(len as u64);
    let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
    let path = dir.join(format!("random-{len}.bin"));
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_object_goes_up_in_parts_with_kms_encryption() {
    let stack = Stack::start().await;
    let stager = stack
        .stager("multipart_part_size = \"5MiB\"\nsse = \"aws:kms\"\nkms_key_id = \"alias/ferry\"")
        .await;
    let (path, data) = random_file(stack.dir.path(), 12 * 1024 * 1024 + 7);
    stager
        .upload_file(&path, "ferry/staged/big.csv.gz")
        .await
        .expect("multipart upload");
    let stored = std::fs::read(stack.s3.root.join("ferry-test/ferry/staged/big.csv.gz")).unwrap();
    assert!(stored == data, "the object holds the file's bytes in order");
    assert_eq!(stack.s3.probe.multipart_completed.load(Ordering::SeqCst), 1);
    assert_eq!(
        stack.s3.probe.last_sse.lock().unwrap().clone(),
        Some(("aws:kms".to_string(), Some("alias/ferry".to_string())))
    );
    assert_eq!(stack.s3.pending_upload_parts(), 0);

    // A small object is one PutObject, encrypted the same way.
    let (small, _) = random_file(stack.dir.path(), 1000);
    stager
        .upload_file(&small, "ferry/staged/small.csv.gz")
        .await
        .unwrap();
    assert_eq!(stack.s3.probe.multipart_completed.load(Ordering::SeqCst), 1);
    assert!(
        stack
            .s3
            .root
            .join("ferry-test/ferry/staged/small.csv.gz")
            .exists()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_part_aborts_the_upload_and_leaves_nothing_behind() {
    let stack = Stack::start().await;
    let stager = stack
        .stager("multipart_part_size = \"5MiB\"\nsse = \"aes256\"")
        .await;
    let (path, _) = random_file(stack.dir.path(), 11 * 1024 * 1024);
    stack.s3.probe.fail_upload_part.store(2, Ordering::SeqCst);
    let err = stager
        .upload_file(&path, "ferry/staged/broken.csv.gz")
        .await
        .expect_err("part 2 fails");
    assert!(
        err.chain().contains("cannot upload part 2"),
        "{}",
        err.chain()
    );
    assert!(
        err.is_transient(),
        "a 500 is worth retrying: {}",
        err.chain()
    );
    assert_eq!(
        stack.s3.pending_upload_parts(),
        0,
        "the failed upload was aborted"
    );
    assert!(
        !stack
            .s3
            .root
            .join("ferry-test/ferry/staged/broken.csv.gz")
            .exists()
    );
    assert_eq!(
        stack.s3.probe.last_sse.lock().unwrap().clone(),
        Some(("AES256".to_string(), None))
    );
}
