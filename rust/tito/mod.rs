//! The TITO engine: one conversation's turns and the plan of its next one.
//!
//! [`rollout`] matches a new conversation against the recorded turns (by [`messages`] hashes)
//! and stitches the matched turn's prompt + completion ids verbatim with a [`bridge`] rendered
//! for the new messages; [`rope`] shares the ids between turns instead of copying them,
//! [`render_cache`] keeps rendered message segments for reuse, [`attribute`] maps ids back to
//! the messages they came from (training samples' loss masks), and [`metrics`] counts turns and
//! fallbacks process-wide.

pub mod attribute;
pub mod bridge;
pub mod messages;
pub mod metrics;
pub mod render_cache;
pub mod rollout;
pub mod rope;
