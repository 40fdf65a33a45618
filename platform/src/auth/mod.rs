//! End-user authentication, once, for every public service: [`Authenticator`] checks
//! the `authorization: Bearer <JWT>` metadata of each call against a JWKS (signature,
//! `iss`, `aud`, `exp`/`nbf` with a small leeway); the server's admission layer
//! (`crate::server`) runs it before any handler and puts the verified [`Caller`] into
//! the request extensions. Health and reflection stay open.
//!
//! - Only asymmetric algorithms are accepted (ES256/384, RS256/384/512, PS256/384/512,
//!   EdDSA); `alg: none` and HMAC never are, so a public key can never double as a
//!   shared secret (algorithm confusion).
//! - The JWKS comes from a file or an https URL ([`JwksSource`]); it is re-read every
//!   `AUTH_JWKS_REFRESH`, and a token naming an unknown `kid` triggers one early
//!   refresh (at most one per [`MIN_REFRESH_GAP`]), so a key rotation needs no restart.
//! - A refused call gets UNAUTHENTICATED with a message naming the failed check. The
//!   token itself is never logged, stored or echoed.
//!
//! - A verified token is remembered (by its exact text, in memory only) until it
//!   expires or the key set is re-read, so a client that reuses its token, as clients
//!   do, pays the signature check once rather than on every call: on this machine an
//!   ES256 check was about a third of order-svc's CPU under load.
//!
//! [`dev`] mints development keys and tokens for `talentshare up` and the tests.

mod caller;
pub mod dev;
mod jwks;
mod verified;

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Args;
use jsonwebtoken::{Algorithm, Validation};
use tokio_util::sync::CancellationToken;

pub use caller::{Caller, Denied};
pub use jwks::JwksSource;

use crate::settings::parse_duration;
use crate::values::ExternalId;

/// Longest `authorization` value accepted; anything larger is refused unread.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Shortest gap between two refreshes caused by unknown `kid`s, so a flood of made-up
/// key ids cannot turn into a flood of JWKS fetches.
pub const MIN_REFRESH_GAP: Duration = Duration::from_secs(10);
/// The role claim value that makes a caller a talent manager.
pub const MANAGER_ROLE: &str = "manager";

/// The algorithms a token may be signed with.
const ACCEPTED: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::EdDSA,
];

/// How the public services verify end-user tokens. All three are required: there is
/// no way to run a public service without authentication.
#[derive(Args, Clone, Debug)]
pub struct AuthSettings {
    /// JWKS with the identity provider's signing keys: a file path or an https URL
    /// (`talentshare up` writes `<DATA_DIR>/dev-jwks.json`).
    #[arg(long, env = "AUTH_JWKS", hide_env_values = true)]
    pub auth_jwks: JwksSource,
    /// Expected `iss` of every token (the OIDC issuer URL).
    #[arg(long, env = "AUTH_ISSUER")]
    pub auth_issuer: String,
    /// Expected `aud` of every token (this API's audience).
    #[arg(long, env = "AUTH_AUDIENCE")]
    pub auth_audience: String,
    /// How often the JWKS is re-read (key rotation); an unknown `kid` also re-reads it.
    #[arg(long, env = "AUTH_JWKS_REFRESH", default_value = "5m", value_parser = parse_duration)]
    pub auth_jwks_refresh: Duration,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[arg(long, env = "AUTH_LEEWAY", default_value = "30s", value_parser = parse_duration)]
    pub auth_leeway: Duration,
    /// Claim with the caller's roles (a list; `manager` makes a talent manager): a name
    /// or a dotted path such as `realm_access.roles`.
    #[arg(long, env = "AUTH_ROLES_CLAIM", default_value = "roles")]
    pub auth_roles_claim: ClaimPath,
    /// Claim with the talent ids a manager manages (a list), a name or a dotted path.
    #[arg(long, env = "AUTH_TALENTS_CLAIM", default_value = "talents")]
    pub auth_talents_claim: ClaimPath,
    /// PEM file of CA certificates trusted, besides the public web roots, for an https
    /// AUTH_JWKS (an identity provider behind a private CA).
    #[arg(long, env = "AUTH_JWKS_CA")]
    pub auth_jwks_ca: Option<std::path::PathBuf>,
}

/// Why a call was refused. The messages name the check, never the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing `authorization: Bearer <token>` metadata")]
    Missing,
    #[error("the authorization metadata must be `Bearer <token>`")]
    Scheme,
    #[error("the token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error(
        "token algorithm `{0}` is not accepted (asymmetric signatures only: ES256, RS256, ...)"
    )]
    Algorithm(String),
    #[error("the token header has no `kid`")]
    NoKeyId,
    #[error("the token is signed with an unknown key (`kid` not in the JWKS)")]
    UnknownKey,
    #[error("the token algorithm does not match its signing key")]
    KeyMismatch,
    #[error("the token signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (`nbf`)")]
    NotYetValid,
    #[error("the token has the wrong issuer")]
    Issuer,
    #[error("the token has the wrong audience")]
    Audience,
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(String),
    #[error("the token claims are malformed: {0}")]
    Claims(String),
    /// No key could be loaded yet (the JWKS URL never answered): retryable.
    #[error("signing keys are not available yet; retry shortly")]
    KeysUnavailable,
}

impl AuthError {
    /// The gRPC status for this refusal, with its `ErrorInfo` reason.
    pub fn to_status(&self) -> tonic::Status {
        use crate::status::{Failure, RETRY_SOON};
        use talentshare_proto::common::ErrorReason;
        use tonic::Code;
        let message = self.to_string();
        match self {
            AuthError::KeysUnavailable => Failure::new(
                Code::Unavailable,
                ErrorReason::TokenKeysUnavailable,
                message,
            )
            .retry_after(RETRY_SOON),
            AuthError::Missing => {
                Failure::new(Code::Unauthenticated, ErrorReason::TokenMissing, message)
            }
            AuthError::Expired => {
                Failure::new(Code::Unauthenticated, ErrorReason::TokenExpired, message)
            }
            AuthError::Scheme
            | AuthError::TooLarge
            | AuthError::Malformed(_)
            | AuthError::Algorithm(_)
            | AuthError::NoKeyId
            | AuthError::UnknownKey
            | AuthError::KeyMismatch
            | AuthError::Signature
            | AuthError::NotYetValid
            | AuthError::Issuer
            | AuthError::Audience
            | AuthError::MissingClaim(_)
            | AuthError::Claims(_) => {
                Failure::new(Code::Unauthenticated, ErrorReason::TokenInvalid, message)
            }
        }
        .into_status()
    }
}

/// The claims talentshare reads beyond the registered ones (`iss`, `aud`, `exp`, `nbf`,
/// checked by jsonwebtoken).
#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    /// Seconds since the epoch; a number of either JSON kind (checked by jsonwebtoken).
    exp: f64,
}

/// Where a claim sits in the token: a top-level name (`roles`) or a dotted path into
/// nested objects (`realm_access.roles`, as Keycloak issues them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimPath(Vec<String>);

impl std::str::FromStr for ClaimPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<String> = s.split('.').map(str::to_owned).collect();
        if parts.iter().any(|p| {
            p.is_empty()
                || !p
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '/'))
        }) {
            return Err(
                "must be a claim name or a dotted path of names (e.g. realm_access.roles)".into(),
            );
        }
        Ok(Self(parts))
    }
}

impl std::fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

impl ClaimPath {
    /// The list of strings at this path; absent means empty.
    fn strings(&self, claims: &serde_json::Value) -> Result<Vec<String>, AuthError> {
        let mut at = claims;
        for part in &self.0 {
            match at.get(part) {
                Some(v) => at = v,
                None => return Ok(Vec::new()),
            }
        }
        serde_json::from_value(at.clone())
            .map_err(|_| AuthError::Claims(format!("`{self}` must be a list of strings")))
    }
}

#[derive(serde::Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

/// Verifies tokens; cheap to clone (one key set shared by all clones).
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    loader: jwks::JwksLoader,
    keys: RwLock<Arc<jwks::KeySet>>,
    /// Tokens already verified against the current key set.
    verified: verified::Verified,
    /// When the keys were last re-read because of an unknown `kid`; held while
    /// re-reading, so concurrent calls wait for one fetch instead of starting many.
    refreshed: tokio::sync::Mutex<Option<Instant>>,
    /// `iss`, `aud`, leeway and required claims, built once; each call only sets the
    /// one algorithm its token may use.
    validation: Validation,
    refresh_every: Duration,
    roles_claim: ClaimPath,
    talents_claim: ClaimPath,
}

impl Authenticator {
    /// Loads the JWKS once.
    ///
    /// # Errors
    ///
    /// A JWKS file that cannot be read or parsed (the service refuses to start). A URL
    /// that does not answer is no error: the service starts, logs it, and fetches the
    /// keys on the first call (until then calls get UNAVAILABLE).
    pub async fn load(settings: &AuthSettings) -> anyhow::Result<Self> {
        if settings.auth_issuer.trim().is_empty() {
            anyhow::bail!("AUTH_ISSUER: must not be empty");
        }
        if settings.auth_audience.trim().is_empty() {
            anyhow::bail!("AUTH_AUDIENCE: must not be empty");
        }
        let loader =
            jwks::JwksLoader::new(settings.auth_jwks.clone(), settings.auth_jwks_ca.as_deref())
                .map_err(|e| anyhow::anyhow!("AUTH_JWKS_CA: {e}"))?;
        let keys = match loader.load().await {
            Ok(keys) => keys,
            Err(e) if matches!(settings.auth_jwks, JwksSource::File(_)) => {
                anyhow::bail!("AUTH_JWKS: {e}")
            }
            Err(e) => {
                tracing::warn!(jwks = %settings.auth_jwks, error = %e,
                    "JWKS not available yet; calls get UNAVAILABLE until it is");
                jwks::KeySet::default()
            }
        };
        if keys.by_kid.is_empty() {
            tracing::warn!(jwks = %settings.auth_jwks, "the JWKS holds no usable signing key");
        }
        tracing::debug!(jwks = %settings.auth_jwks, keys = keys.by_kid.len(), issuer = %settings.auth_issuer, "end-user authentication on");
        Ok(Self {
            inner: Arc::new(Inner {
                loader,
                keys: RwLock::new(Arc::new(keys)),
                verified: verified::Verified::new(verified::CAPACITY),
                refreshed: tokio::sync::Mutex::new(None),
                validation: validation(settings),
                refresh_every: settings.auth_jwks_refresh,
                roles_claim: settings.auth_roles_claim.clone(),
                talents_claim: settings.auth_talents_claim.clone(),
            }),
        })
    }

    /// Re-reads the JWKS every `AUTH_JWKS_REFRESH` until `stop`; a failed read keeps
    /// the keys it has.
    pub async fn refresh_periodically(self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.inner.refresh_every) => {}
                _ = stop.cancelled() => return,
            }
            self.reload().await;
        }
    }

    async fn reload(&self) -> bool {
        match self.inner.loader.load().await {
            Ok(keys) => {
                let n = keys.by_kid.len();
                *self.inner.keys.write().expect("key set lock poisoned") = Arc::new(keys);
                // A key that left the set must stop vouching for the tokens it signed.
                self.inner.verified.forget_all();
                tracing::debug!(keys = n, "JWKS refreshed");
                true
            }
            Err(e) => {
                tracing::warn!(jwks = %self.inner.loader.source(), error = %e,
                    "JWKS refresh failed; keeping the keys already loaded");
                false
            }
        }
    }

    /// Re-reads the keys after an unknown `kid`, unless that happened within
    /// [`MIN_REFRESH_GAP`].
    async fn refresh_for_unknown_kid(&self) {
        let mut last = self.inner.refreshed.lock().await;
        if last.is_some_and(|t| t.elapsed() < MIN_REFRESH_GAP) {
            return;
        }
        self.reload().await;
        *last = Some(Instant::now());
    }

    fn keys(&self) -> Arc<jwks::KeySet> {
        self.inner
            .keys
            .read()
            .expect("key set lock poisoned")
            .clone()
    }

    /// Verifies the value of an `authorization` header and returns the caller.
    ///
    /// # Errors
    ///
    /// The check that failed.
    pub async fn verify(&self, header: Option<&[u8]>) -> Result<Caller, AuthError> {
        self.authenticate(header).await.map(|(caller, _)| caller)
    }

    /// Like [`Authenticator::verify`], with the moment the token expires.
    ///
    /// # Errors
    ///
    /// The check that failed.
    pub async fn authenticate(
        &self,
        header: Option<&[u8]>,
    ) -> Result<(Caller, TokenExpiry), AuthError> {
        let token = bearer(header)?;
        if let Some(known) = self.inner.verified.get(token, std::time::SystemTime::now()) {
            return Ok(known);
        }
        let verified = self.verify_token(token).await?;
        self.inner.verified.insert(token, verified.clone());
        Ok(verified)
    }

    /// The full check of one token: header, key, signature, claims.
    async fn verify_token(&self, token: &str) -> Result<(Caller, TokenExpiry), AuthError> {
        let raw = raw_header(token)?;
        let alg = accepted_algorithm(&raw.alg)?;
        let kid = raw.kid.ok_or(AuthError::NoKeyId)?;
        let mut keys = self.keys();
        if !keys.by_kid.contains_key(&kid) {
            self.refresh_for_unknown_kid().await;
            keys = self.keys();
        }
        let Some(entry) = keys.by_kid.get(&kid) else {
            return Err(if keys.by_kid.is_empty() {
                AuthError::KeysUnavailable
            } else {
                AuthError::UnknownKey
            });
        };
        if entry.alg.is_some_and(|pinned| pinned != alg) || entry.key.family() != alg.family() {
            return Err(AuthError::KeyMismatch);
        }
        let mut validation = self.inner.validation.clone();
        validation.algorithms = vec![alg];
        // Decoded as plain JSON first: jsonwebtoken deserializes the target type before
        // it checks `exp`, `iss`, `aud` and the required claims, so decoding straight
        // into `Claims` turned a missing `sub` (or an expired token with odd extra
        // claims) into a vague "malformed" instead of naming the check that failed.
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &entry.key, &validation)
            .map_err(|e| classify(e.into_kind()))?;
        // `sub` and `exp` were checked to be present above, so this fails only on a
        // `sub` that is no string: say which claim, never its value.
        let claims = <Claims as serde::Deserialize>::deserialize(&data.claims)
            .map_err(|_| AuthError::Claims("`sub` must be a string".into()))?;
        let roles = self.inner.roles_claim.strings(&data.claims)?;
        let talents = self.inner.talents_claim.strings(&data.claims)?;
        let expiry = TokenExpiry(
            std::time::UNIX_EPOCH + Duration::from_secs_f64(claims.exp.clamp(0.0, 1e11)),
        );
        Ok((caller(claims.sub, &roles, talents)?, expiry))
    }
}

/// When the token behind a call expires, next to its [`Caller`] in the request
/// extensions: a long-lived call (a WatchMyPage stream) ends then, so a token outlives
/// its `exp` by no more than a unary call would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenExpiry(pub std::time::SystemTime);

/// The expiry of the token that authenticated `request`, if any.
pub fn token_expiry_of<T>(request: &tonic::Request<T>) -> Option<TokenExpiry> {
    request.extensions().get::<TokenExpiry>().copied()
}

/// The checks every token gets, whatever its algorithm (set per call).
fn validation(settings: &AuthSettings) -> Validation {
    let mut v = Validation::new(Algorithm::ES256);
    v.leeway = settings.auth_leeway.as_secs();
    v.validate_nbf = true;
    v.set_issuer(&[&settings.auth_issuer]);
    v.set_audience(&[&settings.auth_audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v
}

/// The token out of `Bearer <token>`.
fn bearer(header: Option<&[u8]>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?;
    if value.len() > MAX_TOKEN_BYTES + "Bearer ".len() {
        return Err(AuthError::TooLarge);
    }
    let value = std::str::from_utf8(value).map_err(|_| AuthError::Scheme)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Scheme)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Scheme);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Malformed("empty token"));
    }
    Ok(token)
}

/// The header, read by hand so `alg: none` and HMAC get a clear refusal before any
/// key is looked at.
fn raw_header(token: &str) -> Result<RawHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("a JWT has three dot-separated parts"));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed("the header is not base64url"))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Malformed("the header is not a JWT header"))
}

fn accepted_algorithm(name: &str) -> Result<Algorithm, AuthError> {
    name.parse::<Algorithm>()
        .ok()
        .filter(|a| ACCEPTED.contains(a))
        .ok_or_else(|| {
            // Echo only a short, printable form of what the caller sent.
            let shown: String = name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(12)
                .collect();
            AuthError::Algorithm(shown)
        })
}

fn classify(kind: jsonwebtoken::errors::ErrorKind) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => AuthError::Signature,
        K::ExpiredSignature => AuthError::Expired,
        K::ImmatureSignature => AuthError::NotYetValid,
        K::InvalidIssuer => AuthError::Issuer,
        K::InvalidAudience => AuthError::Audience,
        K::MissingRequiredClaim(c) => AuthError::MissingClaim(c),
        K::InvalidClaimFormat(c) => AuthError::Claims(format!("`{c}` has the wrong type")),
        K::InvalidAlgorithm => AuthError::KeyMismatch,
        K::Json(_) | K::Utf8(_) => AuthError::Claims("not the expected JSON".into()),
        K::Base64(_) => AuthError::Malformed("a part is not base64url"),
        _ => AuthError::Malformed("the token could not be decoded"),
    }
}

fn caller(sub: String, roles: &[String], talents: Vec<String>) -> Result<Caller, AuthError> {
    let id = ExternalId::try_from(sub).map_err(|e| {
        AuthError::Claims(format!(
            "`sub` must be an id of letters, digits, '.', '_' or '-' ({e})"
        ))
    })?;
    if roles.iter().any(|r| r == MANAGER_ROLE) {
        Ok(Caller::Manager {
            id,
            talents: talents.into_iter().collect::<BTreeSet<_>>(),
        })
    } else {
        Ok(Caller::Customer { id })
    }
}

/// Health and reflection answer without a token: probes and grpcurl's `list` must work.
pub fn is_open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// The verified caller of a call, as the authentication layer left it.
///
/// # Errors
///
/// UNAUTHENTICATED when there is none (a route served without the layer).
pub fn caller_of<T>(request: &tonic::Request<T>) -> Result<Caller, tonic::Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| AuthError::Missing.to_status())
}
