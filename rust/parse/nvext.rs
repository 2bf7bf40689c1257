//! NVIDIA Dynamo chat completions carrying token data in `nvext` (docs/wire.md C.2).
//!
//! Read precedence, the union of renderers #79 `parse` and vf #1574 `_graft_engine_data`:
//! * completion ids: `nvext.engine_data.completion_token_ids`, then `nvext.completion_token_ids`,
//!   then `choices[0].token_ids` (renderers ranks it last: "a detokenize-then-retokenize echo").
//!   A present-but-empty list is a valid zero-token completion; absence everywhere is an error
//!   (renderers #79 `RuntimeError`).
//! * prompt ids: `nvext.engine_data.prompt_token_ids`, then `nvext.prompt_token_ids` (dyn #13640).
//! * logprobs: `nvext.engine_data.completion_logprobs` whenever that key is present, even as an
//!   empty list (it is authoritative); otherwise `choices[0].logprobs.content[].logprob`, which
//!   older Dynamo left empty with `top_logprobs=0` and NeMo-Gym #1963 saw off by one. Either
//!   way a length mismatch with the ids is fatal (renderers #79, docs/wire.md D3).
//! * routed experts: `choices[0].routed_experts`, then `nvext.routed_experts`, then
//!   `nvext.engine_data.routed_experts`, passed through unparsed.
//! * stop reason: `choices[0].stop_reason`, then `nvext.stop_reason`.
//!
//! A key whose value is `null` counts as absent at every step. `engine_data` is "backend-specific
//! and not a stable cross-backend schema" (Dynamo docs): only the keys above are read, the rest
//! is ignored.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::vllm_chat::{ChatBody, LOGPROBS, TOKEN_IDS};
use super::{check_aligned, routed, set_logprobs, Choices, Cx, FloatList, Ids, Parsed};
use crate::error::Result;

const ENGINE_COMPLETION_IDS: &str = "nvext.engine_data.completion_token_ids";
const NVEXT_COMPLETION_IDS: &str = "nvext.completion_token_ids";
const ENGINE_LOGPROBS: &str = "nvext.engine_data.completion_logprobs";

/// The response `nvext` (`NvExtResponse`, dyn `extensions.rs`).
#[derive(Deserialize, Default)]
struct NvExt<'a> {
    #[serde(default, borrow)]
    engine_data: Option<EngineData<'a>>,
    #[serde(default)]
    completion_token_ids: Option<Ids>,
    #[serde(default)]
    prompt_token_ids: Option<Ids>,
    #[serde(default, borrow)]
    routed_experts: Option<&'a RawValue>,
    #[serde(default, borrow)]
    stop_reason: Option<&'a RawValue>,
}

/// `nvext.engine_data`, as the Dynamo vLLM worker fills it (dyn #9651).
#[derive(Deserialize, Default)]
struct EngineData<'a> {
    #[serde(default)]
    completion_token_ids: Option<Ids>,
    #[serde(default)]
    prompt_token_ids: Option<Ids>,
    #[serde(default)]
    completion_logprobs: Option<FloatList>,
    #[serde(default, borrow)]
    routed_experts: Option<&'a RawValue>,
}

/// Parses a Dynamo chat completion body.
pub(crate) fn parse(cx: Cx<'_>) -> Result<Parsed> {
    let body: ChatBody<'_, Option<NvExt<'_>>> = cx.from_body()?;
    let server_error = body.server_error();
    let choice = match body.choices {
        Choices::First(choice) => choice,
        Choices::Empty => return Err(cx.no_choice("an empty `choices` list", server_error)),
        Choices::Absent => return Err(cx.no_choice("no `choices`", server_error)),
    };
    let nvext = body.nvext.unwrap_or_default();
    let engine = nvext.engine_data.unwrap_or_default();

    let (ids, ids_from) = match (
        engine.completion_token_ids,
        nvext.completion_token_ids,
        choice.token_ids,
    ) {
        (Some(Ids(ids)), _, _) => (ids, ENGINE_COMPLETION_IDS),
        (None, Some(Ids(ids)), _) => (ids, NVEXT_COMPLETION_IDS),
        (None, None, Some(Ids(ids))) => (ids, TOKEN_IDS),
        (None, None, None) => {
            return Err(cx.error(format_args!(
                "expected the completion's token ids, found none of `{ENGINE_COMPLETION_IDS}`, \
                 `{NVEXT_COMPLETION_IDS}` or `{TOKEN_IDS}`. Request them with \
                 `nvext.extra_fields: [\"engine_data\"]` (Dynamo >= 1.3 with the vLLM worker; \
                 docs/wire.md C.1, C.2)"
            )))
        }
    };
    let mut out = Parsed::new(ids, ids_from);

    let logprobs = match engine.completion_logprobs {
        Some(FloatList(lp)) => Some((lp, ENGINE_LOGPROBS)),
        None => choice.logprobs.and_then(|l| l.0).map(|c| (c.0, LOGPROBS)),
    };
    if let Some((lp, from)) = logprobs {
        check_aligned(cx, &out.completion_ids, ids_from, &lp, from)?;
        let mut lp = lp;
        out.completion_top_logprobs = lp.take_top();
        set_logprobs(&mut out, lp, from);
    }

    out.prompt_ids = engine
        .prompt_token_ids
        .or(nvext.prompt_token_ids)
        .map(|Ids(ids)| ids);
    out.usage = body.usage;
    out.response_id = body.id;
    let stop = choice
        .stop_reason
        .filter(|r| r.get() != "null")
        .or(nvext.stop_reason);
    super::vllm_chat::fill_choice(cx, &mut out, choice.message, choice.finish_reason, stop)?;
    let experts = [
        choice.routed_experts,
        nvext.routed_experts,
        engine.routed_experts,
    ]
    .into_iter()
    .find_map(|raw| routed(cx, raw));
    if let Some((raw, span)) = experts {
        out.routed_experts = Some(raw);
        out.routed_experts_span = Some(span);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::parse::{parse_response, ParseOptions, Wire};

    fn parse(body: &str) -> crate::Result<crate::parse::Parsed> {
        parse_response(body.as_bytes(), Wire::Dynamo, &ParseOptions::default())
    }

    #[test]
    fn null_engine_keys_fall_through() {
        let p = parse(
            r#"{"choices":[{"token_ids":[5],"logprobs":{"content":[{"logprob":-1}]}}],
                "nvext":{"engine_data":{"completion_token_ids":null,"completion_logprobs":null},
                         "completion_token_ids":null}}"#,
        );
        let p = p.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.completion_ids, vec![5]);
        assert_eq!(p.completion_ids_from, "choices[0].token_ids");
        assert_eq!(
            p.completion_logprobs_from,
            Some("choices[0].logprobs.content")
        );
    }

    #[test]
    fn nvext_null_is_absent() {
        let p = parse(r#"{"choices":[{"token_ids":[]}],"nvext":null}"#);
        assert!(p.map(|p| p.completion_ids.is_empty()).unwrap_or(false));
    }
}
