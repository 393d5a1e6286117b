-- Schema drift: what each file version had that its job's mapping did not
-- (new fields, missing fields, values that did not fit a column) and what
-- the job's contract did about it, and every ALTER TABLE that `evolve`
-- ran (change added_column / widened_column, with the column's type): at
-- start a job reads those back to know its evolved columns. At most one
-- row per (job, path, size, mtime, change, field): writes are idempotent.

CREATE TABLE IF NOT EXISTS ferry_schema_changes (
    job          VARCHAR(64)   NOT NULL,
    path         VARCHAR(1024) NOT NULL,
    size         BIGINT        NOT NULL,
    mtime        BIGINT        NOT NULL,
    change       VARCHAR(32)   NOT NULL,
    field        VARCHAR(1024) NOT NULL,
    column_name  VARCHAR(128),
    column_type  VARCHAR(64),
    detail       VARCHAR(4096),
    action       VARCHAR(256)  NOT NULL,
    recorded_at  TIMESTAMPTZ   NOT NULL
) /*@redshift DISTKEY (job) SORTKEY (recorded_at) */;
