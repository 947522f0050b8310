//! `server mint-token`: writes a one-time token into the configured enterprise store, as the
//! enterprise system would, and prints the login link, so a newcomer can try the login flow.

use std::time::Duration;

use protocol::tokens::OneTimeTokenClaims;

use super::config::EnterpriseStoreConfig;
use super::secret::{ONE_TIME_TOKEN_BYTES, random_token};
use super::store::{OneTimeTokenStore, RedisStore, SqliteStore};
use crate::config::Config;

/// Flags of `server mint-token`.
#[derive(Debug, Clone, clap::Args)]
pub struct MintTokenArgs {
    /// The `userId` of the login.
    #[arg(long)]
    pub user: String,
    /// The `sponsorId`.
    #[arg(long)]
    pub sponsor: String,
    /// The `subscriberId`.
    #[arg(long)]
    pub subscriber: String,
    /// A permission (repeatable, or comma-separated), e.g. CanAccessDashboard.
    #[arg(long = "perm", value_name = "PERMISSION", value_delimiter = ',')]
    pub permissions: Vec<String>,
    /// How long the session may last (`validUntil` = now + this): 90s, 30m, 4h, 1d.
    #[arg(long, default_value = "4h", value_parser = parse_duration)]
    pub valid_for: Duration,
    /// The web app's base URL, for the printed login link.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
}

/// What `mint-token` made.
#[derive(Debug, Clone)]
pub struct MintedToken {
    /// The one-time token.
    pub token: String,
    /// `{base_url}/auth?token={token}`.
    pub login_url: String,
    /// What was stored under it.
    pub claims: OneTimeTokenClaims,
}

/// Stores a fresh one-time token for `args` in the enterprise store of `config`.
pub async fn mint_token(config: &Config, args: &MintTokenArgs) -> anyhow::Result<MintedToken> {
    let now = config.tokens.clock.now();
    let valid_for = i64::try_from(args.valid_for.as_millis()).unwrap_or(i64::MAX);
    let claims = OneTimeTokenClaims {
        user_id: args.user.clone(),
        sponsor_id: args.sponsor.clone(),
        subscriber_id: args.subscriber.clone(),
        permissions: args.permissions.clone(),
        valid_until: now.plus_millis(valid_for),
    };
    let token = random_token(ONE_TIME_TOKEN_BYTES)?;
    match &config.tokens.enterprise_store {
        EnterpriseStoreConfig::Embedded => {
            let store = SqliteStore::open(config.open_db()?)?;
            store.put(&token, &claims, now).await?;
        }
        EnterpriseStoreConfig::Redis { target, key_prefix } => {
            let store = RedisStore::connect(target, key_prefix)
                .await
                .map_err(|err| anyhow::anyhow!("enterprise Redis {}: {err}", target.shown()))?;
            store.put(&token, &claims, now).await?;
        }
    }
    // The token is base64url: nothing in it needs escaping in a query string.
    let login_url = format!("{}/auth?token={token}", args.base_url.trim_end_matches('/'));
    Ok(MintedToken { token, login_url, claims })
}

/// `90s`, `30m`, `4h`, `2d`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 4h"))?;
    let unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit in {text:?}: use s, m, h or d")),
    };
    let secs = number.checked_mul(unit).ok_or_else(|| format!("{text:?} is too long"))?;
    if secs == 0 {
        return Err("the duration must be longer than zero".to_owned());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(4 * 3600)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("4w").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
