//! Process-wide counters of the TITO engine, read by `fasttito.metrics()`.
//!
//! Relaxed atomics: each counter is exact, the set is not a snapshot of one instant.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::tito::bridge::Fallback;

static TURNS: AtomicU64 = AtomicU64::new(0);
static TITO: AtomicU64 = AtomicU64::new(0);
static MITO: AtomicU64 = AtomicU64::new(0);
static TOKENS_REUSED: AtomicU64 = AtomicU64::new(0);
static TOKENS_BRIDGED: AtomicU64 = AtomicU64::new(0);
static TOKENS_RENDERED: AtomicU64 = AtomicU64::new(0);
static VERIFY_MISMATCHES: AtomicU64 = AtomicU64::new(0);
static FALLBACKS: [AtomicU64; Fallback::ALL.len()] =
    [const { AtomicU64::new(0) }; Fallback::ALL.len()];

/// Counts a turn sent as tokens: `reused` ids copied from the previous turn, `bridged` new.
pub fn count_tito(reused: usize, bridged: usize) {
    TURNS.fetch_add(1, Ordering::Relaxed);
    TITO.fetch_add(1, Ordering::Relaxed);
    TOKENS_REUSED.fetch_add(reused as u64, Ordering::Relaxed);
    TOKENS_BRIDGED.fetch_add(bridged as u64, Ordering::Relaxed);
}

/// Counts a turn sent as messages, and why.
pub fn count_mito(reason: Fallback) {
    TURNS.fetch_add(1, Ordering::Relaxed);
    MITO.fetch_add(1, Ordering::Relaxed);
    FALLBACKS[reason.index()].fetch_add(1, Ordering::Relaxed);
}

/// Counts ids produced by a full local render (a first turn, or a fallback rendered locally).
pub fn count_rendered(tokens: usize) {
    TOKENS_RENDERED.fetch_add(tokens as u64, Ordering::Relaxed);
}

/// Counts a verify-mode comparison where stitched and re-rendered ids differ.
pub fn count_verify_mismatch() {
    VERIFY_MISMATCHES.fetch_add(1, Ordering::Relaxed);
}

/// Every counter by name (fallbacks as `fallback.<reason>`).
pub fn snapshot() -> Vec<(String, u64)> {
    let mut out = vec![
        ("turns".to_owned(), TURNS.load(Ordering::Relaxed)),
        ("tito".to_owned(), TITO.load(Ordering::Relaxed)),
        ("mito".to_owned(), MITO.load(Ordering::Relaxed)),
        (
            "tokens_reused".to_owned(),
            TOKENS_REUSED.load(Ordering::Relaxed),
        ),
        (
            "tokens_bridged".to_owned(),
            TOKENS_BRIDGED.load(Ordering::Relaxed),
        ),
        (
            "tokens_rendered".to_owned(),
            TOKENS_RENDERED.load(Ordering::Relaxed),
        ),
        (
            "verify_mismatches".to_owned(),
            VERIFY_MISMATCHES.load(Ordering::Relaxed),
        ),
    ];
    for reason in Fallback::ALL {
        out.push((
            format!("fallback.{}", reason.as_str()),
            FALLBACKS[reason.index()].load(Ordering::Relaxed),
        ));
    }
    out
}

/// Sets every counter to zero.
pub fn reset() {
    for counter in [
        &TURNS,
        &TITO,
        &MITO,
        &TOKENS_REUSED,
        &TOKENS_BRIDGED,
        &TOKENS_RENDERED,
        &VERIFY_MISMATCHES,
    ] {
        counter.store(0, Ordering::Relaxed);
    }
    for counter in &FALLBACKS {
        counter.store(0, Ordering::Relaxed);
    }
}
