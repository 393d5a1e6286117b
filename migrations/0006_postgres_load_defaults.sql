-- PostgreSQL only: the example fact table fills its load metadata itself,
-- so that an append COPY need not send (nor PostgreSQL parse) the load id
-- and time on every row. ferry sets ferry.load_id for each load's
-- transaction only; now() is that transaction's start, the time ferry
-- would write. Targets of your own get the same speed-up with the same
-- two defaults; without them ferry sends both values on each row.
-- Redshift's COPY loads from S3 in parallel and needs neither.

/*@postgres ALTER TABLE task_events ALTER COLUMN ferry_loaded_at SET DEFAULT now(), ALTER COLUMN ferry_load_id SET DEFAULT current_setting('ferry.load_id', true) */;
