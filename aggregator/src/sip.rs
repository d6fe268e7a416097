//! The hasher of the maps whose keys visitors choose (sites, pages,
//! sources): SipHash-1-3 under a random key, as std's `RandomState`, so no
//! one can send a flood of keys that collide; but fed in one piece.
//!
//! A key is hashed as several small writes (a page: its bytes, then a
//! `0xFF`; a source: each part's bytes and a `0xFF`, or a `0xFE`). std's
//! hasher folds each write into its state as it comes, merging the tails
//! of unaligned writes byte by byte, which costs more than the rounds
//! themselves on keys this short. Here the writes are gathered in a buffer
//! and hashed at once; SipHash is defined on the byte string, so the hash
//! is the same as the streamed one, and a key too long for the buffer is
//! streamed from where it ran over.

use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;

use siphasher::sip::SipHasher13;

/// Room for the keys of nearly every beacon: a page of up to 127 bytes, or
/// a source of a host and a campaign value.
const BUFFER: usize = 128;

/// Builds [`SipBuffer`]s under one random key per process (drawn from
/// std's `RandomState`, which the OS seeds).
#[derive(Clone, Copy)]
pub struct RandomSip {
    key: (u64, u64),
}

impl std::fmt::Debug for RandomSip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RandomSip(<key>)")
    }
}

impl Default for RandomSip {
    fn default() -> Self {
        static KEY: LazyLock<(u64, u64)> = LazyLock::new(|| {
            let state = std::hash::RandomState::new();
            (state.hash_one(0_u8), state.hash_one(1_u8))
        });
        Self { key: *KEY }
    }
}

impl BuildHasher for RandomSip {
    type Hasher = SipBuffer;
    fn build_hasher(&self) -> SipBuffer {
        SipBuffer {
            key: self.key,
            buf: [0; BUFFER],
            len: 0,
            spilled: None,
        }
    }
}

/// SipHash-1-3 of everything written, gathered first (see the module).
#[allow(missing_debug_implementations)] // holds the key and key material
pub struct SipBuffer {
    key: (u64, u64),
    buf: [u8; BUFFER],
    len: usize,
    /// The stream, once the writes outgrew the buffer.
    spilled: Option<SipHasher13>,
}

impl Hasher for SipBuffer {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        if let Some(stream) = &mut self.spilled {
            stream.write(bytes);
        } else if let Some(room) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            room.copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            let mut stream = SipHasher13::new_with_keys(self.key.0, self.key.1);
            stream.write(&self.buf[..self.len]);
            stream.write(bytes);
            self.spilled = Some(stream);
        }
    }

    fn finish(&self) -> u64 {
        match &self.spilled {
            Some(stream) => stream.finish(),
            None => SipHasher13::new_with_keys(self.key.0, self.key.1).hash(&self.buf[..self.len]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash of a key is SipHash-1-3 of its bytes under the key, however
    /// they were written and whether or not they fit the buffer.
    #[test]
    fn hashes_as_sip13_of_the_bytes_written() {
        let state = RandomSip::default();
        for len in [0, 1, 7, 8, 9, 63, 127, 128, 129, 300] {
            let page: String = "/abcdefgh".chars().cycle().take(len).collect();
            let mut bytes = page.as_bytes().to_vec();
            bytes.push(0xFF);
            let expected = SipHasher13::new_with_keys(state.key.0, state.key.1).hash(&bytes);
            assert_eq!(state.hash_one(page.as_str()), expected, "{len}");
            // In pieces of every size: the same.
            for piece in [1, 3, 8, 50] {
                let mut h = state.build_hasher();
                bytes.chunks(piece).for_each(|c| h.write(c));
                assert_eq!(h.finish(), expected, "{len} in {piece}s");
            }
        }
    }

    #[test]
    fn the_key_is_random_and_one_a_process() {
        assert_eq!(RandomSip::default().key, RandomSip::default().key);
        assert_ne!(RandomSip::default().key.0, RandomSip::default().key.1);
    }
}
