//! Paging shared by every `List*` RPC: `page_size` bounds and opaque page tokens.
//!
//! A token is the base64url form of `v1:<cursor>`, where the cursor is the last id
//! of the previous page (ids are UUID v7, so they sort by creation time). Tokens are
//! opaque to clients; a forged one at worst names another starting point, and one
//! that does not decode is INVALID_ARGUMENT.
//!
//! Streams resume the same way: a resume token is the base64url form of
//! `r1:<position>:<scope>`, valid only for the scope (the customer) it was issued to.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Page size used when the client sends 0.
pub const DEFAULT_PAGE_SIZE: u64 = 20;
/// Largest page served; a larger `page_size` is served as this (AIP-158: capped,
/// not refused).
pub const MAX_PAGE_SIZE: i32 = 100;

/// Why a paging field was refused; the text is shown to the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PagingError {
    #[error("page_size must not be negative, got {0}")]
    PageSize(i32),
    #[error("page_token is not a token returned by this service")]
    PageToken,
}

/// The number of rows to return for a requested `page_size`: the default for 0, at
/// most [`MAX_PAGE_SIZE`].
pub fn page_size(requested: i32) -> Result<u64, PagingError> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        1.. => Ok(requested.min(MAX_PAGE_SIZE) as u64),
        negative => Err(PagingError::PageSize(negative)),
    }
}

/// Encodes the cursor of the next page.
pub fn encode_token(last_id: &uuid::Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{last_id}"))
}

/// The token of the page after one whose last row is `last`: empty when no more
/// rows follow (`more` false) or the page is empty.
pub fn next_token(more: bool, last: Option<&uuid::Uuid>) -> String {
    match (more, last) {
        (true, Some(last)) => encode_token(last),
        _ => String::new(),
    }
}

/// Decodes a page token; an empty token means the first page.
pub fn decode_token(token: &str) -> Result<Option<uuid::Uuid>, PagingError> {
    if token.is_empty() {
        return Ok(None);
    }
    if token.len() > 128 {
        return Err(PagingError::PageToken);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| PagingError::PageToken)?;
    let text = std::str::from_utf8(&raw).map_err(|_| PagingError::PageToken)?;
    let id = text.strip_prefix("v1:").ok_or(PagingError::PageToken)?;
    uuid::Uuid::parse_str(id)
        .map(Some)
        .map_err(|_| PagingError::PageToken)
}

/// Why a resume token was refused; the text is shown to the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("resume_token is not a token this stream issued to the caller; watch without it")]
pub struct ResumeTokenError;

/// The resume token of stream position `position` (at least 1) in `scope`.
pub fn encode_resume_token(scope: &str, position: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("r1:{position}:{scope}"))
}

/// The position a resume token names; `None` for the empty token (start afresh).
/// A token of another scope, or one that does not decode, is refused.
pub fn decode_resume_token(token: &str, scope: &str) -> Result<Option<i64>, ResumeTokenError> {
    if token.is_empty() {
        return Ok(None);
    }
    if token.len() > 256 {
        return Err(ResumeTokenError);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| ResumeTokenError)?;
    let text = std::str::from_utf8(&raw).map_err(|_| ResumeTokenError)?;
    let (position, issued_to) = text
        .strip_prefix("r1:")
        .and_then(|rest| rest.split_once(':'))
        .ok_or(ResumeTokenError)?;
    let position: i64 = position.parse().map_err(|_| ResumeTokenError)?;
    if issued_to != scope || position < 1 {
        return Err(ResumeTokenError);
    }
    Ok(Some(position))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_resume_token_holds_only_for_its_scope() {
        let token = encode_resume_token("cust-1", 42);
        assert_eq!(decode_resume_token(&token, "cust-1"), Ok(Some(42)));
        assert_eq!(decode_resume_token("", "cust-1"), Ok(None));
        assert_eq!(decode_resume_token(&token, "cust-2"), Err(ResumeTokenError));
        for bad in [
            "not base64!".to_owned(),
            URL_SAFE_NO_PAD.encode("r1:x:cust-1"),
            URL_SAFE_NO_PAD.encode("r1:0:cust-1"),
            URL_SAFE_NO_PAD.encode("v1:42:cust-1"),
            encode_token(&uuid::Uuid::now_v7()),
        ] {
            assert_eq!(
                decode_resume_token(&bad, "cust-1"),
                Err(ResumeTokenError),
                "{bad}"
            );
        }
    }

    #[test]
    fn page_size_defaults_and_bounds() {
        assert_eq!(page_size(0), Ok(20));
        assert_eq!(page_size(1), Ok(1));
        assert_eq!(page_size(100), Ok(100));
        assert_eq!(page_size(101), Ok(100), "capped, not refused (AIP-158)");
        assert_eq!(page_size(i32::MAX), Ok(100));
        assert_eq!(page_size(-1), Err(PagingError::PageSize(-1)));
    }

    #[test]
    fn tokens_round_trip_and_forgeries_fail() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(decode_token(&encode_token(&id)), Ok(Some(id)));
        assert_eq!(decode_token(""), Ok(None));
        for forged in [
            "abc",
            "!!!!",
            &URL_SAFE_NO_PAD.encode("v2:x"),
            &"a".repeat(500),
        ] {
            assert_eq!(
                decode_token(forged),
                Err(PagingError::PageToken),
                "{forged}"
            );
        }
    }

    proptest! {
        #[test]
        fn decode_token_never_panics(s in ".{0,200}") {
            let _ = decode_token(&s);
        }
    }
}
