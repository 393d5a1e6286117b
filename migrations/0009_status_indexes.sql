-- PostgreSQL only: indexes for the status page's reads, so that each page
-- costs a few index lookups however large the ledger grows (Redshift
-- reads these through its sort keys and zone maps): a job's latest files,
-- its failed ones, the latest loads, and a job's loads by time.

/*@postgres CREATE INDEX IF NOT EXISTS ferry_files_job_recent ON ferry_files (job, (COALESCE(loaded_at, first_seen_at)) DESC, path) */;
/*@postgres CREATE INDEX IF NOT EXISTS ferry_files_failed ON ferry_files (job) WHERE state = 'failed' */;
/*@postgres CREATE INDEX IF NOT EXISTS ferry_loads_started ON ferry_loads (started_at) */;
/*@postgres CREATE INDEX IF NOT EXISTS ferry_loads_job_finished ON ferry_loads (job, finished_at) */;
