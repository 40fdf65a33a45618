//! Development identity: a local ES256 signing key with its JWKS, and tokens signed
//! by it. `talentshare up` keeps one under its data directory and `talentshare token`
//! mints with it; tests use a fresh one each. Never used by a deployed service, which
//! only ever verifies (against its identity provider's JWKS).

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rand::RngCore;

/// The issuer of development tokens (`AUTH_ISSUER` under `talentshare up`).
pub const DEV_ISSUER: &str = "https://talentshare.local/dev";
/// The audience of development tokens (`AUTH_AUDIENCE` under `talentshare up`).
pub const DEV_AUDIENCE: &str = "talentshare";
/// File names under the data directory.
const KEY_FILE: &str = "dev-signing-key.pem";
const JWKS_FILE: &str = "dev-jwks.json";

/// Who a token is for.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TokenSpec {
    /// The subject: a customer id, or a manager id.
    pub sub: String,
    /// `["manager"]` for a talent manager, empty for a customer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The talents a manager manages.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub talents: Vec<String>,
}

impl TokenSpec {
    /// A customer token's claims.
    pub fn customer(id: impl Into<String>) -> Self {
        Self {
            sub: id.into(),
            ..Self::default()
        }
    }

    /// A manager token's claims.
    pub fn manager(id: impl Into<String>, talents: &[&str]) -> Self {
        Self {
            sub: id.into(),
            roles: vec![super::MANAGER_ROLE.to_owned()],
            talents: talents.iter().map(|t| (*t).to_owned()).collect(),
        }
    }
}

#[derive(serde::Serialize)]
struct Registered<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    #[serde(flatten)]
    spec: &'a TokenSpec,
}

/// A development signing key and the JWKS that verifies it.
pub struct DevIssuer {
    encoding: EncodingKey,
    /// The private key as PKCS#8 PEM, to write it to the data directory once.
    pem: String,
    kid: String,
    jwks: String,
    issuer: String,
    audience: String,
}

impl DevIssuer {
    /// A fresh key for [`DEV_ISSUER`] and [`DEV_AUDIENCE`].
    pub fn generate() -> anyhow::Result<Self> {
        Self::generate_for(DEV_ISSUER, DEV_AUDIENCE)
    }

    /// A fresh key for the given issuer and audience.
    pub fn generate_for(issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let secret = loop {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            // Fails only for zero or values above the curve order: astronomically rare.
            if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
                break k;
            }
        };
        Self::from_secret(&secret, issuer, audience)
    }

    fn from_secret(secret: &p256::SecretKey, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let pem = secret.to_pkcs8_pem(LineEnding::LF)?;
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes())?;
        let mut jwk: serde_json::Value =
            serde_json::from_str(&secret.public_key().to_jwk_string())?;
        let x = jwk["x"].as_str().unwrap_or_default().to_owned();
        let kid = format!("dev-{}", &x[..x.len().min(16)]);
        jwk["kid"] = kid.clone().into();
        jwk["alg"] = "ES256".into();
        jwk["use"] = "sig".into();
        let jwks = serde_json::to_string_pretty(&serde_json::json!({ "keys": [jwk] }))?;
        Ok(Self {
            encoding,
            pem: pem.to_string(),
            kid,
            jwks,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// The key kept under `dir` (created with its JWKS on first use; the private key
    /// file is readable by its owner only).
    ///
    /// # Errors
    ///
    /// The directory or files cannot be written or read.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        let key_path = dir.join(KEY_FILE);
        let issuer = match std::fs::read_to_string(&key_path) {
            Ok(pem) => {
                let secret = p256::SecretKey::from_pkcs8_pem(&pem).map_err(|e| {
                    anyhow::anyhow!("{}: not a PKCS#8 P-256 key ({e})", key_path.display())
                })?;
                Self::from_secret(&secret, DEV_ISSUER, DEV_AUDIENCE)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                let issuer = Self::generate()?;
                write_private(&key_path, &issuer.pem)?;
                tracing::info!(key = %key_path.display(), "created a development signing key");
                issuer
            }
            Err(e) => anyhow::bail!("{}: {e}", key_path.display()),
        };
        // Derived from the key, so the two files can never disagree; replaced whole
        // (temp file, then rename) and only when it differs, since running services
        // may be re-reading it right now.
        let jwks_path = Self::jwks_path(dir);
        if std::fs::read_to_string(&jwks_path).ok().as_deref() != Some(issuer.jwks.as_str()) {
            let tmp = dir.join(format!(".{JWKS_FILE}.{}", std::process::id()));
            std::fs::write(&tmp, &issuer.jwks)?;
            std::fs::rename(&tmp, &jwks_path)?;
        }
        Ok(issuer)
    }

    /// Where [`DevIssuer::load_or_create`] keeps the JWKS under `dir`.
    pub fn jwks_path(dir: &Path) -> PathBuf {
        dir.join(JWKS_FILE)
    }

    /// The JWKS document (public key only).
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// The key id tokens carry.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The issuer tokens carry.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audience tokens carry.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The private signing key, for tests that craft tokens [`DevIssuer::mint`] never
    /// makes (expired, wrong issuer, another `kid`, ...) and must check they are refused.
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// A signed token for `spec`, valid from now for `ttl`.
    ///
    /// # Errors
    ///
    /// Signing failed (it does not, for a key this type made).
    pub fn mint(&self, spec: &TokenSpec, ttl: Duration) -> anyhow::Result<String> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Registered {
            iss: &self.issuer,
            aud: &self.audience,
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs(),
            spec,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding)?)
    }
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}
