//! `talentshare token`: prints a development token signed with the key `talentshare up`
//! keeps in its data directory, for grpcurl and scripts:
//! `talentshare token --customer alice`, `talentshare token --manager lee --talent t-1,t-2`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args};
use platform::auth::dev::{DevIssuer, TokenSpec};
use platform::values::ExternalId;

/// Flags of `talentshare token`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("who").required(true).args(["customer", "manager"])))]
pub struct TokenArgs {
    /// A customer token for this customer id (the token subject).
    #[arg(long)]
    customer: Option<String>,
    /// A talent-manager token for this manager id (needs --talent).
    #[arg(long, requires = "talents")]
    manager: Option<String>,
    /// Talent ids the manager manages, comma-separated.
    #[arg(long = "talent", value_delimiter = ',', requires = "manager")]
    talents: Vec<String>,
    /// How long the token is valid.
    #[arg(long, default_value = "60m", value_parser = platform::settings::parse_duration)]
    ttl: Duration,
    /// The data directory of `talentshare up` (its development key lives there; created
    /// on first use).
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
}

/// Mints and prints the token.
pub fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let spec = match (&args.customer, &args.manager) {
        (Some(c), None) => TokenSpec::customer(valid_id("--customer", c)?),
        (None, Some(m)) => {
            for t in &args.talents {
                valid_id("--talent", t)?;
            }
            let talents: Vec<&str> = args.talents.iter().map(String::as_str).collect();
            TokenSpec::manager(valid_id("--manager", m)?, &talents)
        }
        // clap's group makes exactly one of them present.
        _ => anyhow::bail!("give either --customer or --manager"),
    };
    let issuer = DevIssuer::load_or_create(&args.data_dir)?;
    println!("{}", issuer.mint(&spec, args.ttl)?);
    Ok(ExitCode::SUCCESS)
}

fn valid_id(flag: &str, s: &str) -> anyhow::Result<String> {
    ExternalId::try_from(s.to_owned())
        .map(|id| id.to_string())
        .map_err(|e| anyhow::anyhow!("{flag} `{s}`: {e}"))
}
