//! vLLM `/inference/v1/generate` responses (docs/wire.md B.2, vLLM >= 0.20 "Tokens IN <> Tokens
//! OUT").
//!
//! Reads `choices[0].token_ids` (required), `choices[0].logprobs.content[]`, top-level
//! `prompt_token_ids`, `finish_reason`, `stop_reason`, `usage`, `request_id` and
//! `choices[0].routed_experts` (docs/wire.md A.5, passed through). There is no message: the route
//! returns ids only, so `content`, `reasoning_content` and `tool_calls` stay empty and
//! `finish_reason` is never `"tool_calls"` (the caller promotes it after parsing tool calls out
//! of the ids, as renderers does).
//!
//! Each logprob entry names the id it belongs to, in one of two shapes: `"token": "token_id:<id>"`
//! (prime-rl's server and vLLM before 0.32; renderers 0.1.12 `_parse_completion_logprobs`) or
//! `"token_id": <id>` with a `rank` (upstream vLLM 0.32's tokens mode, measured on a running
//! server: docs/wire.md B.2). That id must equal the completion id at the same position: it is the
//! one cross-check this route offers that ids and logprobs are aligned. Every logprob must be a
//! finite number other than vLLM's `-9999.0` clamp of `-inf`: a sampled token always has a finite
//! logprob, so anything else is not evidence to train on.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    check_aligned, routed, set_logprobs, stop_reason, Choices, Cx, Ids, LogprobContent,
    LogprobsObject, Parsed, Usage, VLLM_LOGPROB_CLAMP,
};
use crate::error::Result;

const TOKEN_IDS: &str = "choices[0].token_ids";
const LOGPROBS: &str = "choices[0].logprobs.content";

#[derive(Deserialize)]
struct GenerateBody<'a> {
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default, borrow)]
    choices: Choices<GenerateChoice<'a>>,
    #[serde(default)]
    prompt_token_ids: Option<Ids>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
    #[serde(default, borrow)]
    message: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct GenerateChoice<'a> {
    #[serde(default)]
    token_ids: Option<Ids>,
    #[serde(default)]
    logprobs: Option<LogprobsObject<true>>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default, borrow)]
    stop_reason: Option<&'a RawValue>,
    #[serde(default, borrow)]
    routed_experts: Option<&'a RawValue>,
}

/// Parses a vLLM `/inference/v1/generate` body.
pub(crate) fn parse(cx: Cx<'_>) -> Result<Parsed> {
    let body: GenerateBody<'_> = cx.from_body()?;
    let server_error = body.error.or(body.message);
    let choice = match body.choices {
        Choices::First(choice) => choice,
        Choices::Empty => return Err(cx.no_choice("an empty `choices` list", server_error)),
        Choices::Absent => return Err(cx.no_choice("no `choices`", server_error)),
    };
    let Some(Ids(ids)) = choice.token_ids else {
        return Err(cx.error(format_args!(
            "expected the completion's token ids at `{TOKEN_IDS}`, found none (absent or null). \
             {}",
            cx.wire.advice()
        )));
    };
    let mut out = Parsed::new(ids, TOKEN_IDS);
    if let Some(LogprobContent(lp)) = choice.logprobs.and_then(|l| l.0) {
        check_aligned(cx, &out.completion_ids, TOKEN_IDS, &lp, LOGPROBS)?;
        if let Some((i, found)) = &lp.first_bad_token {
            return Err(cx.error(format_args!(
                "expected `{LOGPROBS}[{i}]` to name token id {} (`\"token_id\": {}` or \
                 `\"token\": \"token_id:{}\"`), found {found}. The generate route labels \
                 every logprob with its token id; send requests to vLLM's \
                 /inference/v1/generate (docs/wire.md)",
                out.completion_ids[*i], out.completion_ids[*i], out.completion_ids[*i]
            )));
        }
        if let Some(i) = lp
            .tokens
            .iter()
            .zip(&out.completion_ids)
            .position(|(tag, id)| *tag != Some(*id))
        {
            return Err(cx.error(format_args!(
                "expected `{LOGPROBS}[{i}]` to name token id {} (the id at `{TOKEN_IDS}[{i}]`), \
                 found token id {}. The logprobs belong to other tokens than the ids, so the \
                 turn cannot be trained on; report it to the server's maintainers",
                out.completion_ids[i],
                lp.tokens[i].unwrap_or_default()
            )));
        }
        if let Some(i) = lp
            .values
            .iter()
            .position(|v| !v.is_finite() || *v == VLLM_LOGPROB_CLAMP)
        {
            let v = lp.values[i];
            let found = if v.is_nan() {
                "null".to_owned()
            } else {
                format!("{v}")
            };
            return Err(cx.error(format_args!(
                "expected `{LOGPROBS}[{i}].logprob` to be the finite logprob of the sampled \
                 token {}, found {found}{}. A sampled token has a finite logprob; this one \
                 carries no evidence to train on; report it to the server's maintainers",
                out.completion_ids[i],
                if v == VLLM_LOGPROB_CLAMP {
                    " (vLLM's clamp of -inf)"
                } else {
                    ""
                }
            )));
        }
        let mut lp = lp;
        out.completion_top_logprobs = lp.take_top();
        set_logprobs(&mut out, lp, LOGPROBS);
    }
    out.prompt_ids = body.prompt_token_ids.map(|Ids(ids)| ids);
    out.usage = body.usage;
    out.response_id = body.request_id;
    out.finish_reason = choice.finish_reason;
    out.stop_reason = stop_reason(choice.stop_reason);
    if let Some((raw, span)) = routed(cx, choice.routed_experts) {
        out.routed_experts = Some(raw);
        out.routed_experts_span = Some(span);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::parse::{parse_response, ParseOptions, Wire};

    fn parse(body: &str) -> crate::Result<crate::parse::Parsed> {
        parse_response(
            body.as_bytes(),
            Wire::VllmGenerate,
            &ParseOptions::default(),
        )
    }

    #[test]
    fn token_tags_checked_positionally() {
        let ok = parse(
            r#"{"choices":[{"token_ids":[7,8],"logprobs":{"content":[{"token":"token_id:7","logprob":-0.1},{"token":"token_id:8","logprob":-0.2}]}}]}"#,
        );
        assert!(ok.is_ok());
        let swapped = parse(
            r#"{"choices":[{"token_ids":[7,8],"logprobs":{"content":[{"token":"token_id:8","logprob":-0.1},{"token":"token_id:7","logprob":-0.2}]}}]}"#,
        );
        let text = swapped
            .err()
            .map(|e| e.text().to_owned())
            .unwrap_or_default();
        assert!(
            text.contains("content[0]`") && text.contains("token id 7"),
            "{text}"
        );
    }

    fn err(body: &str) -> String {
        parse(body)
            .err()
            .map(|e| e.text().to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn tokens_mode_entries_name_their_ids() {
        // vLLM 0.32 upstream: `token_id` + `rank`, no `token` key
        let p = parse(
            r#"{"output_mode":"tokens","choices":[{"token_ids":[504,2],"logprobs":{"content":[
                {"token_id":504,"logprob":-1.5,"rank":1,"top_logprobs":[{"token_id":504,"logprob":-1.5,"rank":1},{"token_id":9,"logprob":-2.5,"rank":2}]},
                {"token_id":2,"logprob":-0.25,"rank":3,"top_logprobs":[{"token_id":7,"logprob":-0.1,"rank":1},{"token_id":8,"logprob":-0.2,"rank":2}]}]}}]}"#,
        )
        .unwrap();
        assert_eq!(p.completion_logprobs, Some(vec![-1.5, -0.25]));
        let top = p.completion_top_logprobs.unwrap();
        assert_eq!(top.tokens(), 2);
        assert_eq!(top.at(0).collect::<Vec<_>>(), vec![(504, -1.5), (9, -2.5)]);
        assert_eq!(top.at(1).collect::<Vec<_>>(), vec![(7, -0.1), (8, -0.2)]);
        let shifted = err(
            r#"{"choices":[{"token_ids":[7,8],"logprobs":{"content":[{"token_id":7,"logprob":-0.1},{"token_id":9,"logprob":-0.2}]}}]}"#,
        );
        assert!(
            shifted.contains("content[1]`") && shifted.contains("token id 8"),
            "{shifted}"
        );
        let both = err(
            r#"{"choices":[{"token_ids":[7],"logprobs":{"content":[{"token":"token_id:7","token_id":8,"logprob":-0.1}]}}]}"#,
        );
        assert!(both.contains("token_id:7") && both.contains("8"), "{both}");
        let none =
            err(r#"{"choices":[{"token_ids":[7],"logprobs":{"content":[{"logprob":-0.1}]}}]}"#);
        assert!(none.contains("neither"), "{none}");
    }

    #[test]
    fn logprobs_must_be_finite_evidence() {
        // (JSON has no infinities: 1e999 is already a JSON error)
        for (lp, what) in [("null", "null"), ("-9999.0", "clamp")] {
            let e = err(&format!(
                r#"{{"choices":[{{"token_ids":[7,8],"logprobs":{{"content":[{{"token_id":7,"logprob":-0.5}},{{"token_id":8,"logprob":{lp}}}]}}}}]}}"#
            ));
            assert!(
                e.contains("content[1].logprob") && e.contains("finite"),
                "{what}: {e}"
            );
        }
    }

    #[test]
    fn labelled_top_logprobs_are_read() {
        let p = parse(
            r#"{"choices":[{"token_ids":[7],"logprobs":{"content":[{"token":"token_id:7","logprob":-0.1,"top_logprobs":[{"token":"token_id:7","logprob":-0.1},{"token":"token_id:3","logprob":-3.0}]}]}}]}"#,
        )
        .unwrap();
        let top = p.completion_top_logprobs.unwrap();
        assert_eq!(top.at(0).collect::<Vec<_>>(), vec![(7, -0.1), (3, -3.0)]);
        // no top_logprobs anywhere: None, not a table of empty lists
        let p = parse(
            r#"{"choices":[{"token_ids":[7],"logprobs":{"content":[{"token_id":7,"logprob":-0.1}]}}]}"#,
        )
        .unwrap();
        assert!(p.completion_top_logprobs.is_none());
    }

    #[test]
    fn null_entry_is_a_bad_token() {
        let e = parse(r#"{"choices":[{"token_ids":[7],"logprobs":{"content":[null]}}]}"#);
        let text = e.err().map(|e| e.text().to_owned()).unwrap_or_default();
        assert!(text.contains("null entry"), "{text}");
    }

    #[test]
    fn null_logprobs_mean_none() {
        let p = parse(r#"{"choices":[{"token_ids":[7],"logprobs":null}]}"#);
        assert!(p.map(|p| p.completion_logprobs.is_none()).unwrap_or(false));
    }
}
