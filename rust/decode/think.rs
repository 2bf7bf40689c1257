//! `<think>…</think>` reasoning at the start of a completion (Qwen3, DeepSeek-R1, and any
//! template that renders `reasoning_content`).
//!
//! Grammar (a leading block; `WS` is whitespace):
//!
//! ```text
//! completion := WS? "<think>" REASONING "</think>" "\n"* BODY      (model-opened block)
//!             | REASONING "</think>" "\n"* BODY                    (the prompt opened it: Qwen3-
//!                                                                  Thinking-2507, R1-0528 end their
//!                                                                  generation prompt with "<think>\n")
//!             | WS? "<think>" REASONING                            (unterminated: cut by the
//!                                                                  length limit, all reasoning)
//!             | BODY                                               (no "</think>": no reasoning)
//! ```
//!
//! `reasoning_content` is REASONING without its leading and trailing `\n`s, and the body starts
//! after the `\n`s that follow `</think>`. This is exactly what Qwen3's template takes apart and
//! puts back: it renders `'<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' +
//! content.lstrip('\n')`, so a completion of that canonical shape re-renders byte for byte
//! (other newline counts around the block cannot be expressed by the template and do not).
//! The split is at the first `</think>`, as Qwen3's template (`content.split('</think>')[0]`)
//! and vLLM's `qwen3`/`deepseek_r1` reasoning parsers do. Text before an opening `<think>`
//! that is not whitespace means the block is not leading: nothing is split, so nothing is lost.

use super::{Parsed, Text};

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// Splits a leading reasoning block off `text.s[start..end]` into `out.reasoning`; returns
/// where the body starts.
pub(crate) fn split(text: &Text, start: usize, end: usize, out: &mut Parsed) -> usize {
    let region = &text.s[start..end];
    let open = region.find(OPEN);
    let leading_open = open.filter(|o| region[..*o].trim().is_empty());
    match region.find(CLOSE) {
        Some(close) => {
            let reasoning_start = match open {
                Some(o) if o < close => match leading_open {
                    Some(o) => start + o + OPEN.len(),
                    None => return start,
                },
                _ => start,
            };
            let close = start + close;
            out.reasoning = Some(
                text.plain(reasoning_start, close)
                    .trim_matches('\n')
                    .to_owned(),
            );
            let mut body = close + CLOSE.len();
            while text.s[body..end].starts_with('\n') {
                body += 1;
            }
            body
        }
        None => match leading_open {
            Some(o) => {
                let reasoning_start = start + o + OPEN.len();
                out.reasoning = Some(
                    text.plain(reasoning_start, end)
                        .trim_matches('\n')
                        .to_owned(),
                );
                end
            }
            None => start,
        },
    }
}
