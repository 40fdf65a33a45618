//! The signing keys tokens are checked against: a JWKS read from a file or fetched
//! from an https URL, parsed key by key so one odd key does not hide the others.
//! Symmetric (`oct`) keys and encryption keys are never loaded: a token must be
//! signed with an asymmetric key the identity provider publishes.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Largest JWKS document accepted; real ones are a few KiB.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// How long one fetch of a JWKS URL may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the JWKS comes from (`AUTH_JWKS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    /// A file, re-read on every refresh (a mounted ConfigMap or `talentshare up`'s).
    File(PathBuf),
    /// An https URL (plain http only on a loopback host, for local tools and tests).
    Url(url::Url),
}

impl FromStr for JwksSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("must be a file path or an https URL".into());
        }
        if !s.contains("://") {
            return Ok(JwksSource::File(PathBuf::from(s)));
        }
        let url = url::Url::parse(s).map_err(|e| format!("not a valid URL ({e})"))?;
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        match url.scheme() {
            "https" => Ok(JwksSource::Url(url)),
            "http" if loopback => Ok(JwksSource::Url(url)),
            "http" => Err("must use https (plain http only on a loopback host)".into()),
            other => Err(format!(
                "unsupported scheme `{other}` (use a path or https://)"
            )),
        }
    }
}

/// Shown in logs and errors: a URL without any credentials it carries (a JWKS URL
/// with `user:password@` or a signed query is rare, but then it must not be logged).
impl fmt::Display for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksSource::File(p) => write!(f, "{}", p.display()),
            JwksSource::Url(u) => {
                let mut shown = u.clone();
                // Only fails for URLs that cannot hold credentials; nothing to hide then.
                let _ = shown.set_username("");
                let _ = shown.set_password(None);
                shown.set_query(None);
                write!(f, "{shown}")
            }
        }
    }
}

/// One verification key and what it may verify.
pub(crate) struct KeyEntry {
    pub(crate) key: DecodingKey,
    /// The `alg` the JWK pins, if any: a token must then use exactly it.
    pub(crate) alg: Option<Algorithm>,
}

/// The keys of one JWKS, by `kid`.
#[derive(Default)]
pub(crate) struct KeySet {
    pub(crate) by_kid: HashMap<String, KeyEntry>,
}

impl KeySet {
    /// Parses a JWKS document, skipping (and reporting) keys it cannot use.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc =
            serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document ({e})"))?;
        let mut set = KeySet::default();
        for raw in doc.keys {
            match key_entry(raw) {
                Ok((kid, entry)) => {
                    set.by_kid.insert(kid, entry);
                }
                Err(why) => tracing::warn!(reason = %why, "JWKS key skipped"),
            }
        }
        Ok(set)
    }
}

fn key_entry(raw: serde_json::Value) -> Result<(String, KeyEntry), String> {
    if raw.get("kty").and_then(|v| v.as_str()) == Some("oct") {
        return Err("symmetric (oct) keys are never accepted".into());
    }
    let jwk: Jwk = serde_json::from_value(raw).map_err(|e| format!("unusable key ({e})"))?;
    let kid = jwk.common.key_id.clone().ok_or("key has no `kid`")?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Err(format!("key {kid} is for encryption"));
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(
            signing_algorithm(a)
                .ok_or(format!("key {kid}: algorithm {a:?} is not for signatures"))?,
        ),
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("key {kid}: {e}"))?;
    Ok((kid, KeyEntry { key, alg }))
}

fn signing_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<bytes::Bytes>,
>;

/// Reads the JWKS from its source.
pub(crate) struct JwksLoader {
    source: JwksSource,
    origin: Origin,
}

/// How the key set is read: a URL always comes with its client.
enum Origin {
    File(PathBuf),
    Url(url::Url, Box<HttpsClient>),
}

impl JwksLoader {
    /// A loader for `source`. An https source trusts the public web roots, plus the
    /// certificates in `extra_ca` (a PEM file) for a provider behind a private CA.
    ///
    /// # Errors
    ///
    /// `extra_ca` cannot be read or holds no certificate.
    pub(crate) fn new(source: JwksSource, extra_ca: Option<&Path>) -> Result<Self, String> {
        let origin = match &source {
            JwksSource::File(path) => Origin::File(path.clone()),
            JwksSource::Url(url) => {
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls_config(extra_ca)?)
                    .https_or_http()
                    .enable_http1()
                    .build();
                let client = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build(https);
                Origin::Url(url.clone(), Box::new(client))
            }
        };
        Ok(Self { source, origin })
    }

    pub(crate) fn source(&self) -> &JwksSource {
        &self.source
    }

    /// Fetches and parses the key set. Errors name the source as [`JwksSource`]
    /// shows it, never its credentials.
    pub(crate) async fn load(&self) -> Result<KeySet, String> {
        let shown = &self.source;
        let bytes = match &self.origin {
            Origin::File(path) => read_bounded(path)
                .await
                .map_err(|e| format!("cannot read {shown}: {e}"))?,
            Origin::Url(url, client) => tokio::time::timeout(FETCH_TIMEOUT, fetch(client, url))
                .await
                .map_err(|_| format!("{shown}: no answer within {FETCH_TIMEOUT:?}"))?
                .map_err(|e| format!("{shown}: {e}"))?,
        };
        KeySet::parse(&bytes)
    }
}

/// Reads a file of at most [`MAX_JWKS_BYTES`], without reading more of a larger one.
async fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let file = tokio::fs::File::open(path).await?;
    let mut bytes = Vec::new();
    file.take(MAX_JWKS_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await?;
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_JWKS_BYTES} bytes"
        )));
    }
    Ok(bytes)
}

/// TLS for the JWKS fetch: ring (the one crypto provider of the workspace), the
/// webpki roots, and the certificates of `extra_ca`.
fn tls_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;

    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let shown = path.display();
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read {shown}: {e}"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{shown}: not a PEM certificate bundle ({e})"))?;
        if certs.is_empty() {
            return Err(format!("{shown} holds no certificate"));
        }
        let (_, ignored) = roots.add_parsable_certificates(certs);
        if ignored > 0 {
            return Err(format!(
                "{shown}: {ignored} certificate(s) could not be used"
            ));
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

async fn fetch(client: &HttpsClient, url: &url::Url) -> Result<Vec<u8>, String> {
    let request = http::Request::get(url.as_str())
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(body.to_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_its_credentials() {
        let source: JwksSource = "https://svc:hunter2@idp.example.com/jwks?sig=s3cret"
            .parse()
            .expect("a URL source");
        let shown = source.to_string();
        assert_eq!(shown, "https://idp.example.com/jwks");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cret") && !shown.contains("svc"));
    }

    #[test]
    fn sources_are_paths_or_https_urls() {
        assert_eq!(
            "data/dev-jwks.json".parse(),
            Ok(JwksSource::File("data/dev-jwks.json".into()))
        );
        assert!(matches!(
            "https://idp.example.com/jwks".parse::<JwksSource>(),
            Ok(JwksSource::Url(_))
        ));
        assert!(matches!(
            "http://127.0.0.1:8080/jwks".parse::<JwksSource>(),
            Ok(JwksSource::Url(_))
        ));
        assert!("http://idp.example.com/jwks".parse::<JwksSource>().is_err());
        assert!("ftp://idp.example.com/jwks".parse::<JwksSource>().is_err());
        assert!("".parse::<JwksSource>().is_err());
    }

    #[test]
    fn symmetric_and_kidless_keys_are_skipped() {
        let doc = br#"{"keys":[
            {"kty":"oct","kid":"h","k":"c2VjcmV0"},
            {"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"EC","kid":"ok","crv":"P-256","alg":"ES256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]}"#;
        let set = KeySet::parse(doc).expect("parses");
        assert_eq!(set.by_kid.keys().collect::<Vec<_>>(), vec!["ok"]);
        assert!(KeySet::parse(b"[]").is_err());
    }
}
