//! Token ids held as shared pieces, so a rollout's memory grows with its tokens, not their square.
//!
//! Turn `k + 1` of a TITO rollout sends turn `k`'s prompt ids, its completion ids and a bridge.
//! Kept as one contiguous array per turn, a rollout of `T` turns would hold about `T²/2` prompts'
//! worth of ids (64 turns of a coding agent: 3 million ids, 12 MB, per rollout). A [`Rope`] is
//! instead a persistent list of pieces: turn `k + 1`'s prompt is turn `k`'s rope plus two new
//! pieces (its completion and the bridge), sharing everything before them. Appending is O(1);
//! reading the ids in order costs one walk over the pieces.

use std::sync::Arc;

use rustc_hash::FxHashSet;

/// An immutable sequence of token ids made of shared pieces.
#[derive(Debug, Clone, Default)]
pub struct Rope(Option<Arc<Node>>);

#[derive(Debug)]
struct Node {
    prev: Rope,
    piece: Arc<[u32]>,
    /// Ids in `prev` and `piece` together.
    len: usize,
}

impl Drop for Node {
    // A long chain dropped recursively could overflow a thread's stack: unlink it in a loop,
    // stopping at the first node something else still shares.
    fn drop(&mut self) {
        let mut next = self.prev.0.take();
        while let Some(node) = next {
            match Arc::try_unwrap(node) {
                Ok(mut node) => next = node.prev.0.take(),
                Err(_) => break,
            }
        }
    }
}

impl Rope {
    /// A rope of one piece.
    pub fn leaf(piece: Arc<[u32]>) -> Self {
        Self::default().push(piece)
    }

    /// This rope followed by `piece` (shares this rope; an empty piece adds nothing).
    pub fn push(&self, piece: Arc<[u32]>) -> Self {
        if piece.is_empty() {
            return self.clone();
        }
        let len = self.len() + piece.len();
        Rope(Some(Arc::new(Node {
            prev: self.clone(),
            piece,
            len,
        })))
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |n| n.len)
    }

    /// No ids.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The last id.
    pub fn last(&self) -> Option<u32> {
        self.0.as_ref().and_then(|n| n.piece.last().copied())
    }

    /// The pieces, first to last.
    pub fn pieces(&self) -> Vec<&[u32]> {
        let mut out = Vec::new();
        let mut at = self.0.as_deref();
        while let Some(node) = at {
            out.push(&node.piece[..]);
            at = node.prev.0.as_deref();
        }
        out.reverse();
        out
    }

    /// Appends the ids, in order, to `out`.
    pub fn extend_into(&self, out: &mut Vec<u32>) {
        out.reserve(self.len());
        for piece in self.pieces() {
            out.extend_from_slice(piece);
        }
    }

    /// The ids as one vector.
    pub fn to_vec(&self) -> Vec<u32> {
        let mut out = Vec::new();
        self.extend_into(&mut out);
        out
    }

    /// Whether `ids` starts with this rope's ids.
    pub fn is_prefix_of(&self, ids: &[u32]) -> bool {
        if self.len() > ids.len() {
            return false;
        }
        let mut at = 0;
        for piece in self.pieces() {
            if ids[at..at + piece.len()] != *piece {
                return false;
            }
            at += piece.len();
        }
        true
    }

    /// Ids held by `ropes` together, each shared piece counted once.
    pub fn held<'a>(ropes: impl IntoIterator<Item = &'a Rope>) -> usize {
        let mut seen: FxHashSet<*const Node> = FxHashSet::default();
        let mut total = 0;
        for rope in ropes {
            let mut at = rope.0.as_ref();
            while let Some(node) = at {
                if !seen.insert(Arc::as_ptr(node)) {
                    break; // the rest of this chain was counted through another rope
                }
                total += node.piece.len();
                at = node.prev.0.as_ref();
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(ids: &[u32]) -> Arc<[u32]> {
        ids.into()
    }

    #[test]
    fn pieces_read_in_order_and_share() {
        let a = Rope::leaf(piece(&[1, 2]));
        let b = a.push(piece(&[3])).push(piece(&[])).push(piece(&[4, 5]));
        let c = a.push(piece(&[9]));
        assert_eq!(b.to_vec(), [1, 2, 3, 4, 5]);
        assert_eq!((b.len(), b.last()), (5, Some(5)));
        assert_eq!(c.to_vec(), [1, 2, 9]);
        assert_eq!(a.to_vec(), [1, 2]);
        assert!(Rope::default().is_empty() && Rope::default().last().is_none());
        // [1, 2] is held once for the three ropes.
        assert_eq!(Rope::held([&a, &b, &c]), 2 + 1 + 2 + 1);
        assert!(b.is_prefix_of(&[1, 2, 3, 4, 5, 6]));
        assert!(b.is_prefix_of(&[1, 2, 3, 4, 5]));
        assert!(!b.is_prefix_of(&[1, 2, 3, 4]));
        assert!(!b.is_prefix_of(&[1, 2, 3, 4, 6]));
        assert!(Rope::default().is_prefix_of(&[]));
    }

    #[test]
    fn a_long_chain_drops_without_recursion() {
        let mut rope = Rope::default();
        for i in 0..1_000_000u32 {
            rope = rope.push(piece(&[i]));
        }
        let shared = rope.clone();
        drop(rope);
        assert_eq!(shared.len(), 1_000_000);
        // Dropped on a small stack: a recursive drop of a million nodes would overflow it.
        std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || drop(shared))
            .unwrap()
            .join()
            .unwrap();
    }
}
