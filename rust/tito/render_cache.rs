//! A bounded cache of the bridge's base render: the ids of `[dummy]` rendered without the
//! generation prompt (`bridge.rs`).
//!
//! Every bridged turn renders two conversations; the base one depends only on the dummy
//! assistant message, the tools and the template variables, which repeat across turns and across
//! the rollouts sharing a tokenizer (ids-only transports number tool calls `call_0`, `call_1`...
//! per turn). The key is the dummy's full JSON plus the fingerprints the rollout already compares
//! tools and `chat_template_kwargs` by, so a hit returns the ids a fresh render would.
//! Templates that read the clock (`strftime_now`) are never cached. A full cache is cleared, not
//! grown: memory stays bounded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

/// Entries kept before the cache starts over.
pub const CAPACITY: usize = 4096;

/// Rendered ids by the key they were rendered under.
type RenderMap = FxHashMap<Box<[u8]>, Arc<[u32]>>;

#[derive(Default)]
pub struct RenderCache {
    map: Mutex<RenderMap>,
    hits: AtomicU64,
}

impl RenderCache {
    /// The cached ids under `key`, or `render()`'s (cached when it succeeds).
    pub fn get_or_render<E>(
        &self,
        key: &[u8],
        render: impl FnOnce() -> Result<Vec<u32>, E>,
    ) -> Result<Arc<[u32]>, E> {
        if let Some(ids) = self.map.lock().get(key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Arc::clone(ids));
        }
        let ids: Arc<[u32]> = render()?.into();
        let mut map = self.map.lock();
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(key.into(), Arc::clone(&ids));
        Ok(ids)
    }

    /// Lookups answered from the cache so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_return_the_first_render_and_errors_are_not_cached() {
        let cache = RenderCache::default();
        let mut calls = 0;
        let mut render = |ids: Vec<u32>| {
            calls += 1;
            Ok::<_, ()>(ids)
        };
        assert_eq!(
            &*cache.get_or_render(b"a", || render(vec![1, 2])).unwrap(),
            &[1, 2]
        );
        assert_eq!(
            &*cache.get_or_render(b"a", || render(vec![9])).unwrap(),
            &[1, 2]
        );
        assert_eq!((calls, cache.hits()), (1, 1));
        assert!(cache
            .get_or_render(b"b", || Err::<Vec<u32>, _>("boom"))
            .is_err());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = RenderCache::default();
        for i in 0..CAPACITY as u32 + 1 {
            cache
                .get_or_render(&i.to_le_bytes(), || Ok::<_, ()>(vec![i]))
                .unwrap();
        }
        assert_eq!(cache.len(), 1);
    }
}
