-- PostgreSQL only: the indexes a row store needs where Redshift relies on
-- its sort keys (ferry_files is sorted by job, path there; the example
-- fact and dimension tables by their keys). Without them every ledger
-- lookup, every "already loaded?" check and every merge by key scans the
-- whole table, and loads slow down as the tables grow.
-- `/*@postgres … */` blocks are applied on PostgreSQL only.

/*@postgres CREATE INDEX IF NOT EXISTS ferry_files_job_path ON ferry_files (job, path) */;
/*@postgres CREATE INDEX IF NOT EXISTS ferry_load_errors_job_path ON ferry_load_errors (job, path) */;
/*@postgres CREATE INDEX IF NOT EXISTS task_events_event_id ON task_events (event_id) */;
/*@postgres CREATE INDEX IF NOT EXISTS dim_task_task_id ON dim_task (task_id) */;
/*@postgres CREATE INDEX IF NOT EXISTS dim_user_user_id ON dim_user (user_id) */;
