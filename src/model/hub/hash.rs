//! What the hub says a file hashes to, and the running hash that checks it: the LFS sha256 for
//! large files (`lfs.sha256` in the listing, `X-Linked-Etag` on the file), the git blob sha1 for
//! the small ones (`blobId`, `ETag`). The blob is named by this hash in the cache, as the hub's
//! own tools name it, so a cache they filled serves us and ours serves them.
//!
//! SHA-1 is written out here (forty lines, checked against the standard vectors below) because
//! no SHA-1 crate is in the workspace's lock file; SHA-256 is the `sha2` crate.

use sha2::Digest;

/// The hash a file must have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileHash {
    /// sha256 of the content, lower-case hex (LFS files).
    Sha256(String),
    /// git's blob id: sha1 of `blob <len>\0` + content, lower-case hex.
    GitSha1(String),
}

impl FileHash {
    /// The hex digest, which is also the blob's file name in the cache.
    pub fn hex(&self) -> &str {
        match self {
            FileHash::Sha256(h) | FileHash::GitSha1(h) => h,
        }
    }

    /// A running hash of a file of `len` bytes.
    pub fn hasher(&self, len: u64) -> RunningHash {
        match self {
            FileHash::Sha256(_) => RunningHash::Sha256(Box::default()),
            FileHash::GitSha1(_) => {
                let mut s = Sha1::new();
                s.update(format!("blob {len}\0").as_bytes());
                RunningHash::Sha1(Box::new(s))
            }
        }
    }
}

pub enum RunningHash {
    Sha256(Box<sha2::Sha256>),
    Sha1(Box<Sha1>),
}

impl RunningHash {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            RunningHash::Sha256(h) => h.update(data),
            RunningHash::Sha1(h) => h.update(data),
        }
    }

    pub fn finish_hex(self) -> String {
        match self {
            RunningHash::Sha256(h) => to_hex(&h.finalize()),
            RunningHash::Sha1(h) => to_hex(&h.finish()),
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of `data`, hex (for tests and mock hubs).
pub fn sha256_hex(data: &[u8]) -> String {
    to_hex(&sha2::Sha256::digest(data))
}

/// git's blob id of `data`, hex (for tests and mock hubs).
pub fn git_blob_sha1_hex(data: &[u8]) -> String {
    let mut h = FileHash::GitSha1(String::new()).hasher(data.len() as u64);
    h.update(data);
    h.finish_hex()
}

/// SHA-1 (FIPS 180-4), streaming.
#[derive(Clone)]
pub struct Sha1 {
    state: [u32; 5],
    buf: [u8; 64],
    buf_len: usize,
    total: u64,
}

impl Default for Sha1 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha1 {
    pub fn new() -> Sha1 {
        Sha1 {
            state: [
                0x6745_2301,
                0xEFCD_AB89,
                0x98BA_DCFE,
                0x1032_5476,
                0xC3D2_E1F0,
            ],
            buf: [0; 64],
            buf_len: 0,
            total: 0,
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if self.buf_len > 0 {
            let take = (64 - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&data[..take]);
            self.buf_len += take;
            data = &data[take..];
            if self.buf_len < 64 {
                return;
            }
            let block = self.buf;
            self.block(&block);
            self.buf_len = 0;
        }
        let mut chunks = data.chunks_exact(64);
        for c in &mut chunks {
            self.block(c.try_into().expect("64 bytes"));
        }
        let rest = chunks.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
    }

    pub fn finish(mut self) -> [u8; 20] {
        let bits = self.total.wrapping_mul(8);
        let mut pad = vec![0x80u8];
        let len_after = (self.buf_len + 1) % 64;
        let zeros = if len_after <= 56 {
            56 - len_after
        } else {
            120 - len_after
        };
        pad.extend(std::iter::repeat_n(0u8, zeros));
        pad.extend_from_slice(&bits.to_be_bytes());
        let total = self.total;
        self.update(&pad);
        self.total = total;
        debug_assert_eq!(self.buf_len, 0);
        let mut out = [0u8; 20];
        for (o, s) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&s.to_be_bytes());
        }
        out
    }

    fn block(&mut self, block: &[u8; 64]) {
        let mut w = [0u32; 80];
        for (i, c) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes(c.try_into().expect("4 bytes"));
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = self.state;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (s, v) in self.state.iter_mut().zip([a, b, c, d, e]) {
            *s = s.wrapping_add(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha1_hex(data: &[u8]) -> String {
        let mut s = Sha1::new();
        s.update(data);
        to_hex(&s.finish())
    }

    #[test]
    fn sha1_matches_the_standard_vectors() {
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            sha1_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        let million = vec![b'a'; 1_000_000];
        assert_eq!(
            sha1_hex(&million),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
        // Fed in odd pieces, the same.
        let mut s = Sha1::new();
        for c in million.chunks(77) {
            s.update(c);
        }
        assert_eq!(
            to_hex(&s.finish()),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }

    #[test]
    fn git_blob_ids_are_gits() {
        // `echo hello | git hash-object --stdin`
        assert_eq!(
            git_blob_sha1_hex(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(
            git_blob_sha1_hex(b""),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
    }

    #[test]
    fn sha256_is_sha256() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
