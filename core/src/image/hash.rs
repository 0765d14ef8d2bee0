//! The digests of image data, each on the fastest correct backend measured on this x86-64
//! (`cargo bench -p glint-core --bench digest`, figures in the README): all of them from the
//! system's libcrypto through the `openssl` crate, whose assembly picks AVX2 paths on AMD CPUs
//! too. On-CPU cost there, per GB: SHA-512 1.09 s (`aws-lc-rs` 1.63, which takes its plain
//! x86-64 code on AMD, `ring` 1.58, `sha2` 1.55), MD5 1.30 s (`md-5` 1.58, with its `asm`
//! backend 1.60). Every caller goes through these types, so a backend changes here alone.

use openssl::hash::{Hasher, MessageDigest};

/// One running digest. libcrypto's init, update and final fail only on an unusable
/// algorithm or memory exhaustion; neither is something an upload can recover from.
struct Running(Hasher);

impl Running {
    fn new(algo: MessageDigest) -> Running {
        Running(Hasher::new(algo).expect("libcrypto provides the digest"))
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data).expect("libcrypto digest update");
    }

    fn finish_hex(mut self) -> String {
        hex::encode(self.0.finish().expect("libcrypto digest final"))
    }
}

/// A running SHA-1, SHA-256 or SHA-512.
pub struct Sha(Running);

impl Sha {
    /// SHA-1 (`validation_data` of Glance's `os_hash_algo = sha1`; not for anything secret).
    pub fn sha1() -> Sha {
        Sha(Running::new(MessageDigest::sha1()))
    }

    /// SHA-256.
    pub fn sha256() -> Sha {
        Sha(Running::new(MessageDigest::sha256()))
    }

    /// SHA-512, Glint's `os_hash_algo`.
    pub fn sha512() -> Sha {
        Sha(Running::new(MessageDigest::sha512()))
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The lowercase hex digest of everything added.
    pub fn finish_hex(self) -> String {
        self.0.finish_hex()
    }
}

/// A running MD5 (Glance's `checksum`).
pub struct Md5(Running);

impl Default for Md5 {
    fn default() -> Md5 {
        Md5(Running::new(MessageDigest::md5()))
    }
}

impl Md5 {
    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The lowercase hex digest of everything added.
    pub fn finish_hex(self) -> String {
        self.0.finish_hex()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::Command;

    /// What coreutils' `NAMEsum` prints for `data`.
    fn coreutils(tool: &str, data: &[u8]) -> String {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(data).expect("write");
        let out = Command::new(tool).arg(file.path()).output().expect("run the coreutils digest");
        assert!(out.status.success(), "{tool} failed");
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("a digest").to_owned()
    }

    /// Bytes of every length around the block sizes and a few MiB of them, fed in uneven pieces.
    fn samples() -> Vec<Vec<u8>> {
        let pattern = |len: usize| (0..len).map(|i| (i * 31 + i / 251) as u8).collect::<Vec<u8>>();
        let mut lens = vec![0, 1, 55, 56, 63, 64, 65, 111, 112, 127, 128, 129, 1000];
        lens.push(3 * 1024 * 1024 + 17);
        lens.into_iter().map(pattern).collect()
    }

    fn in_pieces(data: &[u8], mut feed: impl FnMut(&[u8])) {
        let mut rest = data;
        let mut step = 1;
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(step.min(rest.len()));
            feed(piece);
            rest = tail;
            step = step * 7 % 100_003 + 1;
        }
    }

    #[test]
    fn digests_equal_the_coreutils_tools_whatever_the_pieces() {
        for data in samples() {
            let mut md5 = Md5::default();
            let (mut sha1, mut sha256, mut sha512) = (Sha::sha1(), Sha::sha256(), Sha::sha512());
            in_pieces(&data, |piece| {
                md5.update(piece);
                sha1.update(piece);
                sha256.update(piece);
                sha512.update(piece);
            });
            let len = data.len();
            assert_eq!(md5.finish_hex(), coreutils("md5sum", &data), "md5 of {len} bytes");
            assert_eq!(sha1.finish_hex(), coreutils("sha1sum", &data), "sha1 of {len} bytes");
            assert_eq!(sha256.finish_hex(), coreutils("sha256sum", &data), "sha256 of {len} bytes");
            assert_eq!(sha512.finish_hex(), coreutils("sha512sum", &data), "sha512 of {len} bytes");
        }
    }
}
