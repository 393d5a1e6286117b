//! `ferry check`: validate the configuration, then connect to S3, the
//! warehouse and every source, one line per component with OK or the exact
//! failure.

use crate::config::Config;
use crate::source;
use crate::stage::Stager;
use crate::warehouse;

/// The result for one component.
#[derive(Debug, Clone)]
pub struct CheckLine {
    /// What was checked, e.g. `source partner-sftp (sftp 10.0.0.5:22)`.
    pub component: String,
    /// `Ok(detail)` or `Err(reason)`.
    pub result: Result<String, String>,
}

impl std::fmt::Display for CheckLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.result {
            Ok(detail) => write!(f, "OK    {}: {detail}", self.component),
            Err(reason) => write!(f, "FAIL  {}: {reason}", self.component),
        }
    }
}

/// Checks every component; never stops at the first failure.
pub async fn run(config: &Config) -> Vec<CheckLine> {
    let mut out = Vec::new();
    let stager = Stager::new(&config.staging).await;
    out.push(CheckLine {
        component: format!(
            "staging s3://{}/{}",
            config.staging.bucket, config.staging.prefix
        ),
        result: stager
            .check()
            .await
            .map(|()| "bucket reachable".to_string())
            .map_err(|e| e.chain()),
    });
    let wh = match warehouse::connect(config, &stager).await {
        Ok(w) => crate::ledger::verify_ledger(&*w)
            .await
            .map_err(|e| e.chain()),
        Err(e) => Err(e.chain()),
    };
    out.push(CheckLine {
        component: "warehouse".into(),
        result: wh,
    });
    for (name, s) in &config.sources {
        let paths: Vec<&str> = config
            .jobs
            .iter()
            .filter(|j| j.source.name == *name)
            .map(|j| j.path.as_str())
            .collect();
        let result = match source::connect(s).await {
            Err(e) => Err(e.chain()),
            Ok(src) => {
                let mut r = Ok(format!("connected; {} job folder(s) listed", paths.len()));
                for p in &paths {
                    match src.list(p, false).await {
                        Ok(_) => {}
                        Err(e) => {
                            r = Err(e.chain());
                            break;
                        }
                    }
                }
                r
            }
        };
        out.push(CheckLine {
            component: format!("source {name} ({})", s.describe()),
            result,
        });
    }
    out
}
