//! The digests of image data, each on the fastest correct backend measured on x86-64
//! (`cargo bench -p glint-core --bench digest`, figures in the README): SHA-1, SHA-256 and
//! SHA-512 from AWS-LC through `aws-lc-rs` (hand-written assembly; already linked into Glint as
//! the S3 client's TLS crypto), MD5 from the `md-5` crate (pure Rust; its assembly and OpenSSL's
//! rivals are in the same bench, not yet measured on a quiet machine). Every caller goes
//! through these types, so a backend changes here alone.

use aws_lc_rs::digest;
use md5::Digest as _;

/// A running SHA-1, SHA-256 or SHA-512.
pub struct Sha(digest::Context);

impl Sha {
    /// SHA-1 (`validation_data` of Glance's `os_hash_algo = sha1`; not for anything secret).
    pub fn sha1() -> Sha {
        Sha(digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY))
    }

    /// SHA-256.
    pub fn sha256() -> Sha {
        Sha(digest::Context::new(&digest::SHA256))
    }

    /// SHA-512, Glint's `os_hash_algo`.
    pub fn sha512() -> Sha {
        Sha(digest::Context::new(&digest::SHA512))
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The lowercase hex digest of everything added.
    pub fn finish_hex(self) -> String {
        hex::encode(self.0.finish().as_ref())
    }
}

/// A running MD5 (Glance's `checksum`).
#[derive(Default)]
pub struct Md5(md5::Md5);

impl Md5 {
    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The lowercase hex digest of everything added.
    pub fn finish_hex(self) -> String {
        hex::encode(self.0.finalize())
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
