//! Hashing and token storage for the miner: a fast non-cryptographic hash for index keys and
//! line caches, and `Tokens`, a line's tokens kept in one allocation.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        // Mix the high bits into the low ones the table indexes by.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_str_bytes(self.0, bytes);
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        // Index keys are hashes already.
        self.0 ^= n;
    }
}

pub(super) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;
/// Keys that are not hashes yet (fingerprints): their bytes go through `mix`, then the
/// finaliser. No protection against chosen collisions is needed for these keys.
pub(super) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[inline]
pub(super) fn mix(h: u64, x: u64) -> u64 {
    (h.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95)
}

#[inline]
pub(super) fn hash_str(h: u64, s: &str) -> u64 {
    hash_str_bytes(h, s.as_bytes())
}

#[inline]
pub(super) fn hash_str_bytes(mut h: u64, s: &[u8]) -> u64 {
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        h = mix(
            h,
            u64::from_le_bytes(c.try_into().expect("chunks_exact gives 8 bytes")),
        );
    }
    let mut last = [0u8; 8];
    let rest = chunks.remainder();
    last[..rest.len()].copy_from_slice(rest);
    mix(mix(h, u64::from_le_bytes(last)), s.len() as u64)
}

#[inline]
pub(super) fn index_key(service: u32, len: usize, pos: usize, token: &str) -> u64 {
    hash_str(
        mix(mix(mix(7, u64::from(service)), len as u64), pos as u64),
        token,
    )
}

/// Tokens kept in one allocation: the text joined by single spaces, and where each ends. The
/// text is the template people read; one allocation keeps matching cache-friendly. Boxed, not
/// grown: every template and family holds one, and they are built once.
#[derive(Clone, Default, PartialEq, Eq)]
pub(super) struct Tokens {
    /// Shared with every log's [`Fingerprinted::template`](crate::grouping::Fingerprinted).
    pub(super) text: Arc<str>,
    pub(super) ends: Box<[u32]>,
}

impl Tokens {
    pub(super) fn new<'a>(tokens: impl Iterator<Item = &'a str>) -> Self {
        let mut text = String::new();
        let mut ends = Vec::new();
        for tok in tokens {
            if !ends.is_empty() {
                text.push(' ');
            }
            text.push_str(tok);
            ends.push(text.len() as u32);
        }
        Tokens {
            text: Arc::from(text),
            ends: ends.into_boxed_slice(),
        }
    }

    #[inline]
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    #[inline]
    pub(super) fn get(&self, p: usize) -> &str {
        let start = if p == 0 {
            0
        } else {
            self.ends[p - 1] as usize + 1
        };
        &self.text[start..self.ends[p] as usize]
    }

    #[inline]
    pub(super) fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|p| self.get(p))
    }

    /// The same tokens with position `p` replaced.
    pub(super) fn with(&self, p: usize, token: &str) -> Self {
        Tokens::new(
            self.iter()
                .enumerate()
                .map(|(i, t)| if i == p { token } else { t }),
        )
    }
}

pub(super) fn key_of<'a>(tokens: impl Iterator<Item = &'a str>) -> u64 {
    tokens.fold(0x9e37_79b9_7f4a_7c15, hash_str)
}
