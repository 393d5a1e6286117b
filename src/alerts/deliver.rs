//! Delivery of one message to one alert's target, with its retries: a
//! webhook POST ([`webhook`](super::webhook)) or an SNS `Publish`. A
//! failure that may pass (network, 408, 429, 5xx, SNS throttling) is tried
//! again after 1 s, 2 s, 4 s … up to 60 s, `retries` times; any other
//! fails at once. Every outcome is logged and counted in
//! `ferry_alerts_total{alert, result}`.

use super::Message;
use super::webhook::{Failed, post};
use crate::config::{AlertSettings, AlertTarget};
use std::time::Duration;

/// An alert's target, connected.
pub enum Target {
    /// POST to this URL.
    Webhook(crate::config::Secret),
    /// Publish to this topic.
    Sns {
        /// The SNS client.
        client: aws_sdk_sns::Client,
        /// The topic.
        topic_arn: String,
    },
}

impl Target {
    /// The target of `alert` (an SNS client is built, not connected).
    pub async fn connect(alert: &AlertSettings) -> Target {
        match &alert.target {
            AlertTarget::Webhook { url } => Target::Webhook(url.clone()),
            AlertTarget::Sns { topic_arn, aws } => {
                let sdk =
                    crate::aws::aws_config(&aws.region, aws.credentials.as_ref(), aws.io_timeout)
                        .await;
                let mut b = aws_sdk_sns::config::Builder::from(&sdk);
                if let Some(url) = &aws.endpoint {
                    b = b.endpoint_url(url.clone());
                }
                Target::Sns {
                    client: aws_sdk_sns::Client::from_conf(b.build()),
                    topic_arn: topic_arn.clone(),
                }
            }
        }
    }

    async fn send_once(
        &self,
        alert: &AlertSettings,
        m: &Message,
        host: &str,
    ) -> Result<(), Failed> {
        match self {
            Target::Webhook(url) => {
                post(
                    url.expose(),
                    &m.json(&alert.name, host).to_string(),
                    alert.timeout,
                )
                .await
            }
            Target::Sns { client, topic_arn } => {
                // SNS subjects: ASCII, no line breaks, at most 100 characters.
                let subject: String = m
                    .text(host)
                    .chars()
                    .map(|c| {
                        if c.is_ascii() && !c.is_ascii_control() {
                            c
                        } else {
                            '?'
                        }
                    })
                    .take(100)
                    .collect();
                let body = format!("{}\n\n{}", m.text(host), m.json(&alert.name, host));
                let publish = client
                    .publish()
                    .topic_arn(topic_arn)
                    .subject(subject)
                    .message(body)
                    .send();
                match tokio::time::timeout(alert.timeout, publish).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => {
                        let e = crate::error::classified("cannot publish to SNS")(e);
                        Err(Failed {
                            why: e.chain(),
                            retry: e.is_transient(),
                        })
                    }
                    Err(_) => Err(Failed {
                        why: format!("SNS did not answer within {}s", alert.timeout.as_secs()),
                        retry: true,
                    }),
                }
            }
        }
    }
}

/// The wait before attempt `n` (1-based after the first): 1 s doubling,
/// at most 60 s.
pub fn backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// Delivers `m` to `alert`'s `target`, trying again as the alert says;
/// the last reason when it could not.
pub async fn deliver(
    alert: &AlertSettings,
    target: &Target,
    m: Message,
    host: &str,
) -> Result<(), String> {
    let kind = m.events.last().map_or("", |e| e.kind.name());
    let mut attempt = 0;
    loop {
        match target.send_once(alert, &m, host).await {
            Ok(()) => {
                tracing::info!(alert = %alert.name, kind, count = m.count, attempts = attempt + 1, "alert delivered");
                crate::telemetry::metrics::add(
                    "ferry_alerts_total",
                    &[("alert", &alert.name), ("result", "delivered")],
                    1.0,
                );
                return Ok(());
            }
            Err(f) if f.retry && attempt < alert.retries => {
                attempt += 1;
                tracing::warn!(alert = %alert.name, kind, attempt, why = %f.why, "alert not delivered; trying again");
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(f) => {
                tracing::error!(alert = %alert.name, kind, attempts = attempt + 1, why = %f.why, text = %m.text(host), "alert could not be delivered");
                crate::telemetry::metrics::add(
                    "ferry_alerts_total",
                    &[("alert", &alert.name), ("result", "failed")],
                    1.0,
                );
                return Err(f.why);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
