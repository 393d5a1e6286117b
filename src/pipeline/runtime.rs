//! What a pass runs on: the configuration, the connected sources (each
//! connected on first use, on its own), the stager, the warehouse, and
//! the slots that cap staging, transfers and loads.

use super::*;

/// Everything a pass needs, connected once.
pub struct Runtime {
    /// The configuration.
    pub config: Arc<Config>,
    /// S3 staging.
    pub stager: Stager,
    /// The warehouse.
    pub warehouse: Arc<dyn Warehouse>,
    /// Per job: sizes and mtimes seen in earlier polls (settle.stable_polls).
    pub stability: std::sync::Mutex<HashMap<String, Stability>>,
    /// One connection per source, kept across passes (an SSH handshake
    /// costs the server half a second; sources reconnect by themselves
    /// when the connection drops).
    /// Connected on first use; each source on its own, so one that is
    /// unreachable (and retrying) never holds up the others.
    pub(super) sources: HashMap<String, tokio::sync::OnceCell<Arc<dyn Source>>>,
    /// Per job: staged files waiting for their batch to load.
    pub(super) pending: tokio::sync::Mutex<HashMap<String, Pending>>,
    /// Files staged at once across all jobs (`daemon.concurrency`).
    pub(super) staging_slots: tokio::sync::Semaphore,
    /// Per source: files fetched from it at once (`max_transfers`).
    pub(super) transfer_slots: HashMap<String, tokio::sync::Semaphore>,
    /// Loads in flight at once (`daemon.max_concurrent_loads`).
    pub(super) load_slots: tokio::sync::Semaphore,
}

impl Runtime {
    /// Connects S3 and the warehouse, and records the jobs in `ferry_jobs`.
    pub async fn start(config: Config) -> Result<Runtime> {
        let stager = Stager::new(&config.staging).await;
        let warehouse: Arc<dyn Warehouse> = Arc::from(warehouse::connect(&config, &stager).await?);
        crate::ledger::verify_ledger(&*warehouse).await?;
        crate::ledger::sync_jobs(&*warehouse, &config.jobs).await?;
        Ok(Runtime {
            stager,
            warehouse,
            stability: std::sync::Mutex::new(HashMap::new()),
            sources: config
                .sources
                .keys()
                .map(|name| (name.clone(), tokio::sync::OnceCell::new()))
                .collect(),
            pending: tokio::sync::Mutex::new(HashMap::new()),
            staging_slots: tokio::sync::Semaphore::new(config.daemon.concurrency),
            transfer_slots: config
                .sources
                .iter()
                .map(|(name, s)| (name.clone(), tokio::sync::Semaphore::new(s.max_transfers)))
                .collect(),
            load_slots: tokio::sync::Semaphore::new(config.daemon.max_concurrent_loads),
            config: Arc::new(config),
        })
    }

    /// A slot among the files staged at once across all jobs; held while
    /// a file is fetched, normalized and uploaded.
    pub(crate) async fn staging_slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.staging_slots
            .acquire()
            .await
            .expect("the staging semaphore is never closed")
    }

    /// A slot among the files fetched from `source` at once (every job's
    /// source is configured, so it has its slots).
    pub(crate) async fn transfer_slot(&self, source: &str) -> tokio::sync::SemaphorePermit<'_> {
        self.transfer_slots
            .get(source)
            .expect("a job's source is configured")
            .acquire()
            .await
            .expect("never closed")
    }

    /// A slot among the loads in flight at once; held for one load
    /// transaction.
    pub(crate) async fn load_slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.load_slots.acquire().await.expect("never closed")
    }

    /// The connected source for `settings`, connecting on first use.
    pub async fn source(
        &self,
        settings: &Arc<crate::config::SourceSettings>,
    ) -> Result<Arc<dyn Source>> {
        let Some(cell) = self.sources.get(&settings.name) else {
            return Err(Error::config(format!(
                "source {} is not configured",
                settings.name
            )));
        };
        cell.get_or_try_init(|| {
            retry(RetryPolicy::CONNECT, "connect", || {
                source::connect(settings)
            })
        })
        .await
        .cloned()
    }
}
