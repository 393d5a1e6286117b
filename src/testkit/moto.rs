//! A real second implementation of SQS (and SNS, for alerts) for tests: moto's server (pip
//! `moto[server]`, installed by `.ci/setup`) on a free loopback port, a
//! child process killed when this is dropped. Static test credentials;
//! queues made with [`MotoServer::create_queue`].
//!
//! It runs through `moto_server.py` beside this file, which makes moto's
//! ReceiveMessage atomic: moto serves each request on its own thread and
//! two receives at the same moment could take the same message, which SQS
//! never does (and the tests count every fetch).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The credentials moto accepts (any; these are the tests').
pub const ACCESS_KEY: &str = "testing";
/// The secret that goes with [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "testing";
/// The region queues are made in.
pub const REGION: &str = "us-east-1";

/// A running `moto_server`.
pub struct MotoServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
    client: aws_sdk_sqs::Client,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MotoServer {
    /// Starts `moto_server` on a free port and waits (up to 30 s) until it
    /// answers.
    pub async fn start() -> std::io::Result<MotoServer> {
        let port = super::free_port()?;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/src/testkit/moto_server.py");
        let child = Command::new("python3")
            .args([script, "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                std::io::Error::other(format!(
                    "cannot start python3 {script} ({e}); it needs `pip install \"moto[server]\"` (.ci/setup does)"
                ))
            })?;
        let creds =
            aws_sdk_sqs::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test");
        let conf = aws_sdk_sqs::config::Builder::new()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new(REGION))
            .credentials_provider(creds)
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .build();
        let server = MotoServer {
            port,
            child,
            client: aws_sdk_sqs::Client::from_conf(conf),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if server.client.list_queues().send().await.is_ok() {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(std::io::Error::other(format!(
            "moto_server did not answer on 127.0.0.1:{port} within 30 s"
        )))
    }

    /// Its endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Makes a queue (`name` ending in `.fifo` makes a FIFO queue) and
    /// returns its URL.
    pub async fn create_queue(&self, name: &str) -> std::io::Result<String> {
        let mut req = self.client.create_queue().queue_name(name);
        if name.ends_with(".fifo") {
            req = req.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
        }
        let out = req.send().await.map_err(|e| {
            std::io::Error::other(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
        })?;
        out.queue_url()
            .map(str::to_string)
            .ok_or_else(|| std::io::Error::other("CreateQueue returned no URL"))
    }

    /// Sends `body` to `url` as it is (S3 event notifications, in tests).
    pub async fn send_raw(&self, url: &str, body: &str) -> std::io::Result<()> {
        self.client
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| {
                std::io::Error::other(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
            })?;
        Ok(())
    }

    /// Makes an SNS topic `name` and an SQS queue subscribed to it (raw
    /// delivery: each message body is what was published); returns the
    /// topic's ARN and the queue's URL.
    pub async fn topic_with_queue(&self, name: &str) -> std::io::Result<(String, String)> {
        let err = |e: String| std::io::Error::other(e);
        let sns = self.sns();
        let topic = sns
            .create_topic()
            .name(name)
            .send()
            .await
            .map_err(|e| err(aws_sdk_sns::error::DisplayErrorContext(e).to_string()))?;
        let arn = topic.topic_arn().unwrap_or_default().to_string();
        let url = self.create_queue(&format!("{name}-inbox")).await?;
        let queue_arn = format!("arn:aws:sqs:{REGION}:123456789012:{name}-inbox");
        sns.subscribe()
            .topic_arn(&arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .attributes("RawMessageDelivery", "true")
            .send()
            .await
            .map_err(|e| err(aws_sdk_sns::error::DisplayErrorContext(e).to_string()))?;
        Ok((arn, url))
    }

    /// Receives (and deletes) what `url` holds now, waiting up to `wait`
    /// for the first message.
    pub async fn take_messages(&self, url: &str, wait: Duration) -> std::io::Result<Vec<String>> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            let got = self
                .client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .send()
                .await
                .map_err(|e| {
                    std::io::Error::other(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
                })?;
            let messages = got.messages();
            for m in messages {
                out.push(m.body().unwrap_or_default().to_string());
                if let Some(h) = m.receipt_handle() {
                    let _ = self
                        .client
                        .delete_message()
                        .queue_url(url)
                        .receipt_handle(h)
                        .send()
                        .await;
                }
            }
            if (messages.is_empty() && !out.is_empty()) || Instant::now() > deadline {
                return Ok(out);
            }
            if messages.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    fn sns(&self) -> aws_sdk_sns::Client {
        let creds =
            aws_sdk_sns::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test");
        let conf = aws_sdk_sns::config::Builder::new()
            .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
            .region(aws_sdk_sns::config::Region::new(REGION))
            .credentials_provider(creds)
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_sns::Client::from_conf(conf)
    }

    /// How many messages `url` holds, visible and in flight (moto counts
    /// them exactly).
    pub async fn depth(&self, url: &str) -> std::io::Result<(u64, u64)> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| {
                std::io::Error::other(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
            })?;
        let get = |a: A| {
            out.attributes()
                .and_then(|m| m.get(&a))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((
            get(A::ApproximateNumberOfMessages),
            get(A::ApproximateNumberOfMessagesNotVisible),
        ))
    }
}
