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
    /// Per job: held while the job's files are worked on, so a listing
    /// pass and received work never share a job's waiting batch.
    pub(super) job_locks: HashMap<String, tokio::sync::Mutex<()>>,
    /// With SQS: the work queue, what this replica holds, its leases.
    pub(super) shared: Option<super::shared::Shared>,
    /// Each job's current mapping (with the columns `evolve` added).
    pub(super) schemas: super::evolve::Schemas,
    /// Archives opened and not yet done with (members still to load).
    pub(super) archives: super::archives::OpenArchives,
}

impl Runtime {
    /// Connects S3 and the warehouse, and records the jobs in `ferry_jobs`.
    pub async fn start(config: Config) -> Result<Runtime> {
        let stager = Stager::new(&config.staging).await;
        let warehouse: Arc<dyn Warehouse> = Arc::from(warehouse::connect(&config, &stager).await?);
        crate::ledger::verify_ledger(&*warehouse).await?;
        crate::ledger::sync_jobs(&*warehouse, &config.jobs).await?;
        create_targets(&*warehouse, &config).await?;
        stager.load_lookups(&config.jobs).await?;
        let shared = super::shared::Shared::start(&config).await;
        let schemas = super::evolve::Schemas::load(&config.jobs, &*warehouse).await?;
        Ok(Runtime {
            schemas,
            archives: Default::default(),
            job_locks: config
                .jobs
                .iter()
                .map(|j| (j.name.clone(), tokio::sync::Mutex::new(())))
                .collect(),
            shared,
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

    /// Takes `job`'s waiting batch out, holding the job's lock until it
    /// is put back ([`Runtime::put_pending`]).
    pub(super) async fn take_pending(
        &self,
        job: &str,
    ) -> (Option<tokio::sync::MutexGuard<'_, ()>>, Pending) {
        let lock = match self.job_locks.get(job) {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let pending = self.pending.lock().await.remove(job).unwrap_or_default();
        (lock, pending)
    }

    /// Puts `job`'s waiting batch back and lets go of the job's lock.
    pub(super) async fn put_pending(
        &self,
        job: &str,
        pending: Pending,
        lock: Option<tokio::sync::MutexGuard<'_, ()>>,
    ) {
        if !pending.is_empty() {
            self.pending.lock().await.insert(job.to_string(), pending);
        }
        drop(lock);
    }

    /// Whether staged files of `job` wait for their batch.
    pub(super) async fn has_pending(&self, job: &str) -> bool {
        self.pending
            .lock()
            .await
            .get(job)
            .is_some_and(|p| !p.is_empty())
    }

    /// Whether this replica shares work through a work queue.
    pub fn shares_work(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| s.work.is_some())
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

/// Creates the tables of every job with `auto_create` that does not have
/// them yet (`CREATE TABLE IF NOT EXISTS`: idempotent, and safe when
/// several replicas start at once).
async fn create_targets(warehouse: &dyn Warehouse, config: &Config) -> Result<()> {
    for job in config.jobs.iter().filter(|j| j.auto_create.is_some()) {
        let sqls = crate::warehouse::sql::create_targets(
            config.warehouse.schema(),
            job,
            warehouse.ledger().dialect(),
        );
        warehouse
            .write_ledger(&crate::ledger::reports::Change {
                sqls,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                e.wrap(format!(
                    "job {}: cannot create its target {} (auto_create)",
                    job.name, job.target
                ))
            })?;
        tracing::info!(job = %job.name, target = %job.target, dimensions = job.dimensions.len(), "target tables exist (auto_create)");
    }
    Ok(())
}
