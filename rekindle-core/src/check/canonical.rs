//! Canonical worlds: generations renamed densely, stale timers trimmed, identical
//! backends sorted, and the 128-bit fingerprints the visited set stores.

use std::hash::{Hash, Hasher};

use arrayvec::ArrayVec;

use crate::lifecycle::{Generation, Timer, TimerKind};

use super::world::{BackendWorld, LATE_SETUPS_KEPT, STALE_TIMERS_KEPT, World};

/// Renames generations densely (live ones first, then the rest oldest
/// first) and keeps only the newest stale timers and late setups.
pub fn canonical(mut b: BackendWorld) -> BackendWorld {
    canonicalize(&mut b);
    b
}

/// Sorts a handful of items in place (insertion sort: the lists here hold
/// at most a few entries, where the general sort's set-up dominates).
#[inline]
pub(super) fn sort_small<T: Copy, K: Ord>(items: &mut [T], key: impl Fn(&T) -> K) {
    for i in 1..items.len() {
        let item = items[i];
        let mut j = i;
        while j > 0 && key(&items[j - 1]) > key(&item) {
            items[j] = items[j - 1];
            j -= 1;
        }
        items[j] = item;
    }
}

/// Generations of one backend world, on the stack (at most: two live, one
/// running, the kept late setups and every timer).
pub(super) struct Names {
    items: [Generation; 16],
    len: usize,
}

impl Names {
    #[inline]
    fn has(&self, g: Generation) -> bool {
        self.items[..self.len].contains(&g)
    }
    #[inline]
    fn add(&mut self, g: Generation) {
        if !self.has(g) && self.len < self.items.len() {
            self.items[self.len] = g;
            self.len += 1;
        }
    }
    /// The canonical name of `g`: its position plus one.
    #[inline]
    fn rename(&self, g: Generation) -> Generation {
        self.items[..self.len]
            .iter()
            .position(|n| *n == g)
            .map_or(g, |i| i as Generation + 1)
    }
}

/// [`canonical`] in place. Runs on every step: generations below 64 (all
/// of them, as a canonical world's successor has only a handful) take a
/// bitmask path; anything else takes the general one. Debug builds (the
/// test suite) run both and require the same result.
pub(super) fn canonicalize(b: &mut BackendWorld) {
    #[cfg(debug_assertions)]
    let raw = b.clone();
    if !canonicalize_small(b) {
        canonicalize_general(b);
    } else {
        #[cfg(debug_assertions)]
        {
            let mut expected = raw;
            canonicalize_general(&mut expected);
            assert_eq!(
                *b, expected,
                "the bitmask canonicalisation differs from the general one"
            );
        }
    }
}

/// [`canonicalize`] for worlds whose generations are all below 64 and that
/// need no trimming of stale timers or late setups: names are marked in a
/// bitmask, so "the rest, oldest first" is the bitmask read upwards and a
/// rename is one table lookup. Returns false, changing nothing, otherwise.
pub(super) fn canonicalize_small(b: &mut BackendWorld) -> bool {
    const BITS: u64 = 64;
    let live = b.lc.live_generations();
    // Every generation's bits or-ed together: below 64 iff each one is.
    let mut all_bits = 0;
    for &g in live.as_slice() {
        all_bits |= g;
    }
    for &g in b.running.as_slice() {
        all_bits |= g;
    }
    for &g in b.late.as_slice() {
        all_bits |= g;
    }
    for t in b.timers.as_slice() {
        all_bits |= t.generation;
    }
    if all_bits >= BITS || b.late.len() > LATE_SETUPS_KEPT {
        return false;
    }
    let bit = |g: Generation| 1u64 << g;
    // Live generations, then running setups, in that order.
    let mut table = [0u8; BITS as usize];
    let mut named = 0u64;
    let mut count = 0u8;
    for &g in live.iter().chain(b.running.iter()) {
        if named & bit(g) == 0 {
            named |= bit(g);
            count += 1;
            table[g as usize] = count;
        }
    }
    let stale = b
        .timers
        .iter()
        .filter(|t| named & bit(t.generation) == 0)
        .count();
    if stale > STALE_TIMERS_KEPT {
        return false;
    }
    // The rest (late setups and timers), oldest first.
    let mut rest = 0u64;
    for &g in b.late.as_slice() {
        rest |= bit(g);
    }
    for t in b.timers.as_slice() {
        rest |= bit(t.generation);
    }
    rest &= !named;
    while rest != 0 {
        let g = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        count += 1;
        table[g] = count;
    }
    let rename = |g: Generation| match table.get(g as usize) {
        Some(&name) if name != 0 => Generation::from(name),
        _ => g,
    };
    b.lc.rename_generations(rename, Generation::from(count));
    for t in b.timers.iter_mut() {
        t.generation = rename(t.generation);
    }
    for g in b.running.iter_mut() {
        *g = rename(*g);
    }
    for g in b.late.iter_mut() {
        *g = rename(*g);
    }
    sort_timers(b);
    true
}

/// Sorts the timers by generation and kind and drops exact duplicates.
/// Called after renaming, so generations are canonical names (a handful)
/// and each timer sorts as one word, `generation << 2 | kind`.
pub(super) fn sort_timers(b: &mut BackendWorld) {
    let len = b.timers.len();
    if len < 2 {
        return;
    }
    let word = |t: &Timer| t.generation << 2 | t.kind as u64;
    if b.timers.iter().all(|t| t.generation < 1 << 60) {
        let mut words = [0u64; 8];
        for (w, t) in words.iter_mut().zip(b.timers.iter()) {
            *w = word(t);
        }
        sort_small(&mut words[..len], |w| *w);
        for (t, w) in b.timers.iter_mut().zip(words.iter()) {
            t.generation = w >> 2;
            t.kind = match w & 3 {
                0 => TimerKind::Retry,
                1 => TimerKind::SetupDeadline,
                _ => TimerKind::DrainDeadline,
            };
        }
    } else {
        sort_small(&mut b.timers, |t| (t.generation, t.kind as u8));
    }
    let mut kept = 1;
    for i in 1..len {
        if b.timers[i] != b.timers[kept - 1] {
            b.timers[kept] = b.timers[i];
            kept += 1;
        }
    }
    b.timers.truncate(kept);
}

/// [`canonicalize`] for any world: names collected in a small list.
pub(super) fn canonicalize_general(b: &mut BackendWorld) {
    // Names in canonical order: live generations, running setups, then the
    // rest (late setups and timers) oldest first.
    let mut names = Names {
        items: [0; 16],
        len: 0,
    };
    for &g in b.lc.live_generations().as_slice() {
        names.add(g);
    }
    for &g in b.running.as_slice() {
        names.add(g);
    }
    let settled = names.len;
    // Keep only the newest stale timers (stale: not live, not running).
    let stale = b
        .timers
        .iter()
        .filter(|t| !names.items[..settled].contains(&t.generation))
        .count();
    if stale > STALE_TIMERS_KEPT {
        let mut gens: ArrayVec<Generation, 8> = b
            .timers
            .iter()
            .map(|t| t.generation)
            .filter(|g| !names.items[..settled].contains(g))
            .collect();
        gens.sort_unstable();
        let dropped = &gens[..gens.len() - STALE_TIMERS_KEPT];
        b.timers.retain(|t| !dropped.contains(&t.generation));
    }
    if b.late.len() > LATE_SETUPS_KEPT {
        b.late.sort_unstable();
        let extra = b.late.len() - LATE_SETUPS_KEPT;
        b.late.drain(..extra);
    }
    for &g in b.late.as_slice() {
        names.add(g);
    }
    for i in 0..b.timers.len() {
        names.add(b.timers[i].generation);
    }
    let len = names.len;
    sort_small(&mut names.items[settled..len], |g| *g);
    let identity = (0..len).all(|i| names.items[i] == i as Generation + 1);
    if identity {
        // Every generation keeps its name; only the count is recorded.
        b.lc.rename_generations(|g| g, len as Generation);
    } else {
        b.lc.rename_generations(|g| names.rename(g), len as Generation);
        for t in b.timers.iter_mut() {
            t.generation = names.rename(t.generation);
        }
        for g in b.running.iter_mut().chain(b.late.iter_mut()) {
            *g = names.rename(*g);
        }
    }
    sort_timers(b);
}

/// Two 64-bit lanes of folded-multiply hashing (the wyhash/foldhash mixing
/// step), each with its own seed and multiplier, fed in one walk over the
/// value: a 128-bit fingerprint without a buffer or a second pass.
pub(super) struct Fingerprinter {
    a: u64,
    b: u64,
}

pub(super) const LANE_A: (u64, u64) = (0x243F_6A88_85A3_08D3, 0xA076_1D64_78BD_642F);
pub(super) const LANE_B: (u64, u64) = (0x1319_8A2E_0370_7344, 0xE703_7ED1_A0B4_28DB);
pub(super) const FINISH: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline(always)]
pub(super) fn folded_multiply(x: u64, y: u64) -> u64 {
    let full = u128::from(x) * u128::from(y);
    (full as u64) ^ ((full >> 64) as u64)
}

impl Fingerprinter {
    #[inline(always)]
    fn mix(&mut self, x: u64) {
        self.a = folded_multiply(self.a ^ x, LANE_A.1);
        self.b = folded_multiply(self.b ^ x.rotate_left(29), LANE_B.1);
    }
}

impl Hasher for Fingerprinter {
    fn finish(&self) -> u64 {
        self.a
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let mut word = [0u8; 8];
        let rest = chunks.remainder();
        word[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
    }
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.mix(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
    fn write_isize(&mut self, i: isize) {
        self.mix(i as u64);
    }
}

/// A 128-bit state fingerprint (two independently seeded lanes, each
/// finished by one more folded multiply). The visited set stores 16 bytes
/// per state and never compares states.
pub(super) fn fingerprint128<T: Hash>(value: &T) -> u128 {
    let mut h = Fingerprinter {
        a: LANE_A.0,
        b: LANE_B.0,
    };
    value.hash(&mut h);
    let a = folded_multiply(h.a ^ LANE_B.0, LANE_A.1 ^ FINISH);
    let b = folded_multiply(h.b ^ LANE_A.0, LANE_B.1 ^ FINISH);
    (u128::from(a) << 64) | u128::from(b)
}

/// Sorts identical backends so permutations are one state.
pub fn symmetric(mut world: World) -> World {
    if world.len() > 1 {
        world.sort_by_cached_key(fingerprint128);
    }
    world
}

/// The key of a world from its backends' fingerprints: order-free (sorted),
/// so permuted backends share one key, and computed without building the
/// world, so a successor already seen costs no copy.
pub(super) fn world_key(fingerprints: &mut [u128]) -> u128 {
    if fingerprints.len() == 1 {
        return fingerprints[0];
    }
    fingerprints.sort_unstable();
    fingerprint128(&fingerprints)
}
