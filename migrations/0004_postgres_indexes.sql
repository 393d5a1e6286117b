-- PostgreSQL only: indexes on the ledger, where Redshift relies on its sort
-- keys (ferry_files is sorted by job, path there). Without them every
-- ledger lookup, every "already loaded?" check and every per-file ledger
-- update scans the whole table, and loads slow down as the ledger grows.
-- The example fact and dimension tables get none: ferry's loads are bulk
-- COPYs and hash joins, which an index only slows down; add your own for
-- your queries. `/*@postgres … */` blocks are applied on PostgreSQL only.

/*@postgres CREATE INDEX IF NOT EXISTS ferry_files_job_path ON ferry_files (job, path) */;
/*@postgres CREATE INDEX IF NOT EXISTS ferry_load_errors_job_path ON ferry_load_errors (job, path) */;
